"""The generic stage runner: subprocess, log streaming, failure kinds, kill, cache and retries."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from prefect import flow

from flows.runner import (
    StageError,
    StageInputError,
    StageKilledError,
    StageTransientError,
    error_message,
    kill_stage_processes,
    run_command,
    run_stage,
    stage_outcome,
    stage_task,
    submit_in_lanes,
)
from flows.stages import StageCall

PY = sys.executable


def _run(code: str, lines: list[str] | None = None) -> None:
    run_command(
        [PY, "-c", code], name="probe", log_line=(lines if lines is not None else []).append
    )


def test_output_lines_are_streamed_in_order_as_they_come():
    lines: list[str] = []
    seen_at: list[float] = []

    def log_line(line: str) -> None:
        lines.append(line)
        seen_at.append(time.monotonic())

    code = "import time\nprint('first', flush=True)\ntime.sleep(1.0)\nprint('second')"
    run_command([PY, "-c", code], name="probe", log_line=log_line)
    assert lines == ["first", "second"]
    # The first line arrives while the process still runs, not at its end.
    assert seen_at[1] - seen_at[0] > 0.5


def test_exit_status_2_is_bad_input_with_the_stages_own_message():
    code = "import sys\nprint('reading...')\nprint('error: a.jsonl line 7: not JSON', file=sys.stderr)\nsys.exit(2)"
    with pytest.raises(StageInputError, match=r"exit status 2\): error: a.jsonl line 7: not JSON"):
        _run(code)


def test_a_storage_error_is_transient_and_another_error_is_not():
    with pytest.raises(StageTransientError, match="Connection reset by peer"):
        _run("raise ConnectionResetError('[Errno 104] Connection reset by peer')")
    with pytest.raises(StageError) as info:
        _run("raise ValueError('vocab_size must be positive')")
    assert not isinstance(info.value, StageTransientError | StageInputError)
    assert "ValueError: vocab_size must be positive" in str(info.value)


def test_multi_line_failure_message_is_kept_whole():
    tail = [
        "INFO working",
        "FAILED data: 2 check(s) failed:",
        "  mask_rate: 0.3",
        "  not_next: 0.9",
    ]
    assert error_message(tail) == "\n".join(tail[1:])


def test_a_killed_stage_is_reported_as_killed():
    with pytest.raises(StageKilledError, match="SIGKILL"):
        _run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")


def _spawn_tree_code(pid_file: Path) -> str:
    # A stage with a worker child, like Beam's multi-processing mode or torchrun's ranks.
    return (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )


def test_an_interrupted_run_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"

    class Cancelled(BaseException):
        pass

    def log_line(line: str) -> None:
        if line == "started":
            raise Cancelled  # what a cancelled flow run raises in the waiting thread

    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_command([PY, "-c", _spawn_tree_code(pid_file)], name="probe", log_line=log_line)
    child = int(pid_file.read_text())
    assert not _alive(child), "the stage's worker process outlived the cancelled run"
    assert time.monotonic() - started < 30


def test_kill_stage_processes_stops_stages_running_in_other_threads(tmp_path):
    pid_file = tmp_path / "child.pid"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_command([PY, "-c", _spawn_tree_code(pid_file)], name="probe", log_line=print)
        except BaseException as err:  # noqa: BLE001 (collected for the assertion)
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    assert kill_stage_processes() == 1
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors and isinstance(errors[0], StageKilledError)
    assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Cache and retries, through a real Prefect server (test harness) and the toy stage.


def toy_call(
    tmp_path: Path, *, rows: int = 3, fail: str = "none", runtime: list[str] = ()
) -> StageCall:
    return StageCall(
        name="toy",
        kind="extract",  # read like extraction: the figures of manifest.json
        module="toy_stage",
        args=["--output", str(tmp_path / "out"), "--rows", str(rows), "--fail", fail],
        runtime_args=["--counter", str(tmp_path / "runs.txt"), *runtime],
        output=str(tmp_path / "out"),
        markers=["manifest.json"],
    )


def runs(tmp_path: Path) -> int:
    path = tmp_path / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


@flow
def run_toy(call: StageCall) -> tuple[dict, bool]:
    result = run_stage(call)
    return result.summary, result.cached


def test_a_finished_stage_is_taken_from_the_cache_while_its_output_is_intact(
    prefect_harness, toy_stage, tmp_path
):
    summary, cached = run_toy(toy_call(tmp_path))
    assert (summary["rows"], summary["toy_rows"], cached) == (3, 3, False)
    assert runs(tmp_path) == 1

    # Same call, even run differently (runtime args are not in the key): from the cache.
    _, cached = run_toy(toy_call(tmp_path, runtime=["--sleep", "0"]))
    assert cached and runs(tmp_path) == 1

    # A changed parameter runs the stage again.
    summary, cached = run_toy(toy_call(tmp_path, rows=5))
    assert (summary["rows"], cached) == (5, False)
    assert runs(tmp_path) == 2

    # Back to 3 rows: that key is cached, but the output now holds 5 rows: run it again.
    summary, cached = run_toy(toy_call(tmp_path))
    assert (summary["rows"], cached) == (3, False)
    assert runs(tmp_path) == 3

    # A shard deleted (a crash, a person): the cached result is stale, the stage runs.
    (tmp_path / "out" / "toy-00000-of-00001.txt").unlink()
    _, cached = run_toy(toy_call(tmp_path))
    assert not cached and runs(tmp_path) == 4
    _, cached = run_toy(toy_call(tmp_path))
    assert cached and runs(tmp_path) == 4


@flow
def run_toy_fast_retries(call: StageCall) -> BaseException | None:
    """None if the stage succeeded (after retries), else its exception."""
    state = stage_task.with_options(retry_delay_seconds=0)(call, return_state=True)
    return None if state.is_completed() else state.result(raise_on_failure=False)


def test_transient_failures_are_retried_and_bad_input_is_not(prefect_harness, toy_stage, tmp_path):
    assert run_toy_fast_retries(toy_call(tmp_path, fail="transient-once")) is None
    assert runs(tmp_path) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    error = run_toy_fast_retries(toy_call(bad, fail="bad-input"))
    assert isinstance(error, StageInputError)
    assert "record 7 has no text" in str(error)
    assert runs(bad) == 1

    crash = tmp_path / "crash"
    crash.mkdir()
    error = run_toy_fast_retries(toy_call(crash, fail="crash"))
    assert isinstance(error, StageError) and "something broke inside the stage" in str(error)
    assert runs(crash) == 1
    assert not os.path.exists(crash / "out" / "manifest.json")


@flow
def run_toys_in_lanes(calls: list[StageCall], lanes: int) -> list[str]:
    """Each stage's outcome: 'ok' or its error's type."""
    outcomes = []
    for future in submit_in_lanes(calls, lanes):
        try:
            stage_outcome(future)
            outcomes.append("ok")
        except Exception as error:  # noqa: BLE001 - the outcome is what is asserted
            outcomes.append(type(error).__name__)
    return outcomes


def test_stages_in_lanes_run_at_most_lanes_at_once_and_a_failure_holds_up_nothing(
    prefect_harness, toy_stage, tmp_path
):
    times = tmp_path / "times.txt"
    calls = []
    for i, fail in enumerate(["crash", "none", "none", "none", "none"]):
        folder = tmp_path / f"stage{i}"
        folder.mkdir()
        call = toy_call(folder, fail=fail, runtime=["--sleep", "1.5", "--times", str(times)])
        calls.append(call.model_copy(update={"name": f"toy{i}"}))
    assert run_toys_in_lanes(calls, 2) == ["StageError", "ok", "ok", "ok", "ok"]

    spans: dict[str, list[float]] = {}
    for line in times.read_text().splitlines():
        output, _, at = line.split()
        spans.setdefault(output, []).append(float(at))
    starts_ends = [spans[call.output] for call in calls]
    assert all(len(span) == 2 for span in starts_ends), spans
    # Never more than two at once: whenever one starts, at most one other is running.
    for start, _ in starts_ends:
        assert sum(s <= start < e for s, e in starts_ends) <= 2, starts_ends
    # Stage i waits for stage i - 2, which failed for stage 2: it ran all the same.
    for i in range(2, len(calls)):
        assert starts_ends[i][0] >= starts_ends[i - 2][1], (i, starts_ends)
    # Two lanes side by side: the five stages took about three stage-times, not five.
    assert starts_ends[3][0] < starts_ends[2][1]


def test_the_health_artifact_says_whether_the_model_learns():
    from flows.runner import health_markdown

    def check(step, status, ratio, problems, checked=True):
        return {"event": "health", "step": step, "status": status, "problems": problems,
                "learning_checked": checked, "mlm_accuracy": 0.05 * ratio,
                "mlm_accuracy_ratio": ratio, "token_cosine": 0.4, "nsp_accuracy": 0.6,
                "nsp_chance": 0.5}  # fmt: skip

    assert health_markdown("pretrain-phase1", [{"event": "train", "step": 1}]) is None
    failing = [check(10, "ok", 1.0, [], checked=False), check(2000, "failing", 1.0, ["collapse"])]
    text = health_markdown("pretrain-phase1", failing)
    assert text.startswith("# pretrain-phase1: is it learning? NOT LEARNING")
    assert "| 2,000 | failing | 0.050 | 1.00 | 0.400 | 0.600 | 0.500 | collapse |" in text
    healthy = health_markdown("p", [check(3000, "ok", 3.2, [])])
    assert "learning: above the unigram baseline" in healthy
    early = health_markdown("p", [check(10, "ok", 1.0, [], checked=False)])
    assert "too early to tell" in early
