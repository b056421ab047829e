"""One generic Prefect task that runs any stage as a subprocess, cached, retried and reported.

- The stage runs as `python -m <module> ...` in its own process group; every output line goes
  to the task run's log as it comes. Cancelling or killing the flow run kills the stage's whole
  process group (Beam workers, torchrun's ranks), and a stage never outlives the flow run.
- The cache key is the stage's module, arguments, input manifest hashes and code version
  (`StageCall.cache_key`). A cached result is used only while the output it describes is still
  there unchanged (marker hashes and shard sizes); otherwise the stage runs again.
- Failures are classified from the exit status and the stage's last words: exit 2 is bad input
  and is not retried, a storage or network error is retried, anything else fails at once.
"""

from __future__ import annotations

import collections
import ctypes
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
from prefect import allow_failure, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.results import get_result_store

from flows import storage
from flows.charts import line_chart_svg, svg_markdown_image
from flows.report import figure_rows
from flows.stages import (
    METRICS_NAME,
    StageCall,
    StageResult,
    marker_hashes,
    outputs_intact,
    phase_markers,
    read_metrics,
    summarize,
)

TAIL_LINES = 200  # output lines kept to explain a failure
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL of a stage's process group
TRANSIENT = re.compile(
    r"ConnectionError|ConnectionResetError|ConnectionAbortedError|RemoteDisconnected|"
    r"ReadTimeout|ConnectTimeout|TimeoutError|socket\.timeout|ServiceUnavailable|"
    r"TooManyRequests|InternalServerError|BadGateway|GatewayTimeout|DeadlineExceeded|"
    r"TransportError|Temporary failure in name resolution|Connection reset by peer|"
    r"Connection refused|\b(?:429|500|502|503|504)\b (?:Too Many|Internal|Bad Gateway|"
    r"Service Unavailable|Gateway Timeout)"
)
ERROR_START = re.compile(r"^(error:|FAILED\b|Traceback |[A-Za-z_][\w.]*(Error|Exception)\b:?)")


class StageError(RuntimeError):
    """A stage failed; the message is the stage's own last words."""


class StageInputError(StageError):
    """Bad input or bad flags (exit status 2): running it again would not help."""


class StageTransientError(StageError):
    """A storage or network failure: worth another try."""


class StageKilledError(StageError):
    """The stage was killed by a signal (a cancel, the OOM killer, a person)."""


# Live stage processes, so that a cancelled or crashing flow run can take them down.
_live: dict[int, subprocess.Popen] = {}
_live_lock = threading.Lock()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the flow-run process dies (even by SIGKILL). Linux only."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


try:  # resolved before any fork, so the child only makes the call
    _PRCTL: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def terminate(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its group may still hold workers: make sure they go too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 5.0
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def kill_stage_processes() -> int:
    """Kill every stage process this process started that still runs; returns how many."""
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        terminate(proc, grace_s=5.0)
    return len(procs)


def error_message(tail: list[str], limit: int = 20) -> str:
    """The stage's own error: from its last error-looking line to the end."""
    lines = [line for line in tail if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if ERROR_START.match(lines[i]) and not lines[i].startswith("Traceback"):
            # Include a multi-line message (e.g. the failed checks listed under FAILED).
            return "\n".join(lines[i : i + limit])
    return "\n".join(lines[-5:])


def classify_failure(name: str, returncode: int, tail: list[str]) -> StageError:
    """The exception for a stage that exited with `returncode` after printing `tail`."""
    message = error_message(tail)
    if returncode < 0:
        sig = signal.Signals(-returncode).name
        return StageKilledError(f"stage '{name}' was killed by {sig}\n{message}".rstrip())
    text = f"stage '{name}' failed (exit status {returncode}): {message}"
    if returncode == 2:
        return StageInputError(text)
    if TRANSIENT.search("\n".join(tail[-40:])):
        return StageTransientError(text)
    return StageError(text)


def run_command(
    argv: list[str],
    *,
    name: str,
    log_line: Callable[[str], Any],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> None:
    """Run `argv`, passing each output line to `log_line`; raise a StageError on failure."""
    full_env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )
    with _live_lock:
        _live[proc.pid] = proc
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log_line(line)
        returncode = proc.wait()
    finally:
        # Reached with the process still running only when this thread was interrupted
        # (a cancelled flow run raises here): take the stage down with it.
        if proc.poll() is None:
            terminate(proc)
        with _live_lock:
            _live.pop(proc.pid, None)
    if returncode != 0:
        raise classify_failure(name, returncode, list(tail))


class StageCachePolicy(CachePolicy):
    """Cache key of a stage run: `StageCall.cache_key()` of the task's `call` argument."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return inputs["call"].cache_key()


def _is_transient(task, task_run, state) -> bool:
    """Retry only storage and network failures, never bad input."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        exc = None
    if isinstance(exc, BaseException):
        return isinstance(exc, StageTransientError)
    return "StageTransientError" in (state.message or "")


def artifact_key(name: str, suffix: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", f"{name}-{suffix}".lower()).strip("-")


def publish_stage_artifacts(call: StageCall, result: StageResult) -> None:
    """A table of the stage's figures, links to its outputs in the cloud console (a local
    path is named in the figures' description: browsers block file:// links from the UI's
    page), and training curves if any."""
    create_table_artifact(
        key=artifact_key(call.name, "figures"),
        table=figure_rows(result),
        description=f"**{call.name}**: figures of `{result.output}`",
    )
    for label, path in result.links.items():
        if not storage.is_remote(path):
            continue
        create_link_artifact(
            key=artifact_key(call.name, label),
            link=storage.browser_url(path),
            link_text=path,
            description=f"**{call.name}**: {label}",
        )
    health = health_markdown(call.name, read_metrics(storage.join(call.output, METRICS_NAME)))
    if health:
        create_markdown_artifact(
            key=artifact_key(call.name, "health"),
            markdown=health,
            description=f"**{call.name}**: is the model learning?",
        )
    curves = training_curves_markdown(call)
    if curves:
        create_markdown_artifact(
            key=artifact_key(call.name, "curves"),
            markdown=curves,
            description=f"**{call.name}**: loss and accuracy by step",
        )


def health_markdown(name: str, records: list[dict]) -> str | None:
    """The trainer's health checks (model/health.py) as a table with a verdict on top."""
    checks = [r for r in records if r.get("event") == "health" and "mlm_accuracy_ratio" in r]
    if not checks:
        return None
    last = checks[-1]
    verdict = {
        "ok": "learning: above the unigram baseline, no collapse",
        "warning": "learning, with warnings",
        "failing": "NOT LEARNING",
    }[last["status"]]
    if not last["learning_checked"]:
        verdict = "too early to tell (the checks of learning start at twice the warm-up)"
    lines = [
        f"# {name}: is it learning? {verdict}",
        "MLM accuracy against the unigram baseline (always the most frequent masked token), "
        "mean cosine between different tokens' final hidden states (collapse above 0.95), "
        "NSP accuracy against the majority label's share.",
        "",
        "| step | status | MLM acc | x unigram | token cosine | NSP acc | NSP chance | problems |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in checks:
        nsp = f"{r['nsp_accuracy']:.3f}" if "nsp_accuracy" in r else "not trained"
        lines.append(
            f"| {r['step']:,} | {r['status']} | {r['mlm_accuracy']:.3f} | "
            f"{r['mlm_accuracy_ratio']:.2f} | {r['token_cosine']:.3f} | {nsp} | "
            f"{r['nsp_chance']:.3f} | {', '.join(r['problems']) or '-'} |"
        )
    return "\n".join(lines)


def _series(records: list[dict], keys: list[str]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for key in keys:
        pts = [
            (float(r["step"]), float(r[key]))
            for r in records
            if "step" in r and isinstance(r.get(key), int | float) and not isinstance(r[key], bool)
        ]
        if pts:
            out[key] = pts
    return out


def training_curves_markdown(call: StageCall) -> str | None:
    """Markdown with the loss and accuracy curves of a training stage's metrics.jsonl."""
    path = storage.join(call.output, METRICS_NAME)
    records = read_metrics(path)
    if not records:
        return None
    train = [r for r in records if r.get("event", "train") == "train"]
    evals = [r for r in records if r.get("event") == "eval"]

    def curves(word: str) -> dict[str, list[tuple[float, float]]]:
        out = _series(train, sorted({k for r in train for k in r if word in k}))
        keys = sorted({k for r in evals for k in r if word in k})
        out.update({f"eval {k}": v for k, v in _series(evals, keys).items()})
        return out

    loss, accuracy = curves("loss"), curves("acc")
    markers = phase_markers(records)
    parts = [f"# {call.name}: training curves", f"From `{path}` ({len(records)} records)."]
    for series, title, label in ((loss, "loss", "loss"), (accuracy, "accuracy", "accuracy")):
        if series:
            svg = line_chart_svg(
                series,
                title=f"{call.name}: {title}",
                x_label="step",
                y_label=label,
                markers=markers,
            )
            write_chart(storage.join(call.output, f"{call.name}-{title}.svg"), svg)
            parts.append(svg_markdown_image(svg, f"{call.name} {title}"))
    return "\n\n".join(parts)


def write_chart(path: str, svg: str) -> None:
    try:
        storage.write_atomic(path, svg.encode())
    except OSError:
        pass  # the chart is a convenience; the artifact still carries it


@task(
    name="stage",
    cache_policy=StageCachePolicy(),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_is_transient,
    task_run_name="{call.name}",
)
def stage_task(call: StageCall) -> StageResult:
    """Run one stage as a subprocess and return where its output is, with its figures."""
    call.check_available()
    logger = get_run_logger()
    command = call.command()
    logger.info("$ %s", shlex.join(command))
    started = time.monotonic()
    run_command(command, name=call.name, log_line=logger.info, env=call.env)
    markers = marker_hashes(call.output, call.markers)
    if markers is None:
        missing = [m for m in call.markers if not storage.exists(storage.join(call.output, m))]
        raise StageError(
            f"stage '{call.name}' exited 0 but did not write {', '.join(missing)} in {call.output}"
        )
    result = StageResult(
        name=call.name,
        kind=call.kind,
        output=call.output,
        markers=markers,
        summary=summarize(call),
        links={"output": call.output},
        seconds=time.monotonic() - started,
        cache_key=call.cache_key(),
    )
    publish_stage_artifacts(call, result)
    logger.info("%s finished in %.1f s: %s", call.name, result.seconds, call.output)
    return result


def cached_result(call: StageCall) -> tuple[bool, StageResult | None]:
    """(whether a cache record exists, its result if it can be read)."""
    store = get_result_store().update_for_task(stage_task)
    key = call.cache_key()
    if not store.exists(key):
        return False, None
    try:
        return True, store.read(key).result
    except Exception:  # an unreadable or outdated record is a stale one
        return True, None


def _options(call: StageCall) -> dict[str, Any]:
    options: dict[str, Any] = {"tags": set(call.tags)}
    found, result = cached_result(call)
    if found:
        reason = "unreadable" if result is None else outputs_intact(result)
        if reason:
            get_run_logger().info(
                "%s: the cached result is stale (%s); running it", call.name, reason
            )
            options["refresh_cache"] = True
    return options


def _outcome(state) -> StageResult:
    result = state.result()  # raises the stage's error if it failed
    if state.name == "Cached":
        result = result.model_copy(update={"cached": True})
    return result


def run_stage(call: StageCall) -> StageResult:
    """Run a stage in the current flow, or take its cached result if its output is intact."""
    return _outcome(stage_task.with_options(**_options(call))(call, return_state=True))


def submit_stage(
    call: StageCall, after: PrefectFuture[StageResult] | None = None
) -> PrefectFuture[StageResult]:
    """`run_stage` on the flow's task runner, for stages that run side by side; with `after`,
    it starts once that stage has ended, whether or not it succeeded."""
    wait_for = [allow_failure(after)] if after is not None else None
    return stage_task.with_options(**_options(call)).submit(call, wait_for=wait_for)


def submit_in_lanes(calls: list[StageCall], lanes: int) -> list[PrefectFuture[StageResult]]:
    """Submit `calls` so that at most `lanes` run at once: call i starts when call i - lanes has
    ended (a failed one too), so a slow stage holds up only its own lane. Futures in call order."""
    futures: list[PrefectFuture[StageResult]] = []
    for i, call in enumerate(calls):
        futures.append(submit_stage(call, after=futures[i - lanes] if i >= lanes else None))
    return futures


def stage_outcome(future: PrefectFuture[StageResult]) -> StageResult:
    """The result of a submitted stage (raises its error), marked if it came from the cache."""
    future.wait()
    return _outcome(future.state)
