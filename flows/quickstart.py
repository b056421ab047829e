"""The main job: a local Prefect server and worker, the deployments, and the sample run.

    python -m flows.quickstart            # start what is missing, deploy, run pretrain-bert/sample
    python -m flows.quickstart --stop     # stop the server and worker it started

It starts a Prefect server on 127.0.0.1 (SQLite under .prefect-local/) and a process worker
unless they already run, creates the work pool, deploys the sample deployments from
prefect.yaml, runs `prefect deployment run pretrain-bert/sample --watch`, then prints where
the results, the artifacts and the UI are. A second run reuses the server and worker and takes
every unchanged stage from the cache.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from bertdata.options import command_parser
from flows.local_server import ROOT, LocalPrefect, LocalServerError, add_server_options

SAMPLE_DEPLOYMENTS = ("pretrain-bert/sample", "finetune-bert/sample", "evaluate-bert/sample")
# Deployed too, run on request: the CPU recipe that learns (docs/recipes.md), about an hour.
LOCAL_DEPLOYMENTS = (
    *SAMPLE_DEPLOYMENTS, "pretrain-bert/small", "ablate-bert/sample", "ablate-bert/small",
)  # fmt: skip
RUN_ID = re.compile(r"UUID: ([0-9a-f-]{36})")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def deploy(local: LocalPrefect, names: tuple[str, ...] = LOCAL_DEPLOYMENTS) -> None:
    """`prefect deploy` each named deployment of prefect.yaml onto the local pool."""
    env = local.full_env() | {"PWD": str(ROOT)}  # prefect.yaml's pull step runs flows from here
    procs = {
        # One deployment per call (`--pool` applies to a single one), side by side.
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "--no-prompt",
                "deploy",
                "-n",
                name,
                "--pool",
                local.pool,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    }
    for name, proc in procs.items():
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise LocalServerError(f"`prefect deploy -n {name}` failed:\n{output[-4000:]}")


def create_run(local: LocalPrefect, name: str, params: list[str]) -> str | None:
    """`prefect deployment run NAME [--param ...]`; returns the flow run id, None if refused."""
    argv = [sys.executable, "-m", "prefect", "--no-prompt", "deployment", "run", name]
    for param in params:
        argv += ["--param", param]
    proc = subprocess.run(argv, env=local.full_env(), cwd=ROOT, capture_output=True, text=True)
    print((proc.stdout + proc.stderr).strip())
    m = RUN_ID.search(proc.stdout)
    return m.group(1) if proc.returncode == 0 and m else None


def watch(local: LocalPrefect, run_id: str, timeout_s: float | None, poll_s: float = 2.0) -> dict:
    """Print the flow run's and its stages' state changes until it ends; returns the run."""
    api, seen = local.api_url, {}
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
        tasks = httpx.post(
            f"{api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
            timeout=30,
        ).json()
        changes = []
        for item in [*tasks, run]:
            state = item.get("state") or {}
            name = state.get("name")
            if not name or name in ("Pending", "Scheduled") and item is not run:
                continue  # a task run is named only once it starts
            if seen.get(item["id"]) != name:
                seen[item["id"]] = name
                label = "flow run" if item is run else "  task"
                took = item.get("total_run_time") or 0
                extra = f" ({took:.1f} s)" if name in ("Completed", "Failed") and took else ""
                changes.append(
                    (state.get("timestamp", ""), f"{label} {item['name']}: {name}{extra}")
                )
        for _, line in sorted(changes):
            print(f"{time.strftime('%H:%M:%S')} {line}")
        if (run.get("state") or {}).get("type") in FINAL_STATES:
            return run
        if deadline and time.monotonic() > deadline:
            print(f"still running after {timeout_s:.0f} s; it goes on on the worker")
            return run
        time.sleep(poll_s)


def flow_run_summary(local: LocalPrefect, run_id: str) -> dict[str, Any]:
    """The run's state, parameters and artifacts, read from the server."""
    api = local.api_url
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
    # Latest version of every keyed artifact: a cached stage's come from the run that made it.
    artifacts = httpx.post(f"{api}/artifacts/latest/filter", json={"sort": "KEY_ASC"}, timeout=30)
    artifacts = artifacts.json()
    return {"run": run, "artifacts": artifacts}


def results_dir(deployment: str, parameters: dict[str, Any]) -> Path | None:
    """Where a pretrain-bert run wrote its outputs (its resolved workdir), or an ablate-bert
    run its report (<workdir>/ablations)."""
    from flows.ablate_bert import resolve_ablation_params
    from flows.params import resolve_pretrain_params

    try:
        if deployment.startswith("pretrain-bert/"):
            workdir = resolve_pretrain_params(**parameters).workdir
        elif deployment.startswith("ablate-bert/"):
            workdir = resolve_ablation_params(**parameters).recipe.workdir + "/ablations"
        else:
            return None
    except (ValueError, TypeError):
        return None
    return ROOT / workdir if "://" not in workdir else None


def print_summary(local: LocalPrefect, deployment: str, run_id: str) -> bool:
    """Print where the results, artifacts and UI are; True if the run completed."""
    summary = flow_run_summary(local, run_id)
    run = summary["run"]
    state = run.get("state") or {}
    print()
    print(f"flow run:  {run.get('name')} ({state.get('name')})")
    if state.get("type") != "COMPLETED" and state.get("message"):
        print(f"message:   {state['message']}")
    workdir = results_dir(deployment, run.get("parameters") or {})
    if workdir is not None:
        print(f"results:   {workdir}")
        if (workdir / "report.md").exists():
            print(f"report:    {workdir / 'report.md'}")
        if (workdir / "report.json").exists():
            verdict = json.loads((workdir / "report.json").read_text()).get("verdict")
            if verdict:
                print(textwrap.fill(f"learned?   {verdict}", width=100, subsequent_indent=" " * 11))
    keyed = [a for a in summary["artifacts"] if a.get("key")]
    if keyed:
        print("artifacts:")
        for a in keyed:
            print(f"  {a['key']:<32} {local.ui_url}/artifacts/key/{a['key']}")
    print(f"UI:        {local.ui_url}/runs/flow-run/{run_id}")
    print(
        f"server:    {local.ui_url} (state in {local.state_dir}; stop: python -m flows.quickstart --stop)"
    )
    return state.get("type") == "COMPLETED"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m flows.quickstart", __doc__)
    parser.add_argument("--stop", action="store_true", help="stop the server and worker it started")
    parser.add_argument(
        "--deployment",
        default="pretrain-bert/sample",
        help="deployment to run (default: %(default)s)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a flow parameter for the run, repeatable, e.g. --param stop_after='\"validate\"'",
    )
    add_server_options(parser)
    parser.add_argument(
        "--timeout",
        type=int,
        default=0,
        help="give up watching after S seconds; 0: never (default: %(default)s)",
    )
    parser.add_argument("--no-run", action="store_true", help="start and deploy only")
    args = parser.parse_args(argv)
    local = LocalPrefect(state_dir=args.state_dir.resolve(), port=args.port, pool=args.pool)
    if args.stop:
        stopped = local.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing started by quickstart runs")
        return 0
    try:
        for name, new in local.up().items():
            print(f"{name}: {'started' if new else 'already running'}")
        deploy(local)
        print(f"deployed: {', '.join(LOCAL_DEPLOYMENTS)}")
        if args.no_run:
            return 0
        run_id = create_run(local, args.deployment, args.param)
        if run_id is None:
            print("error: the flow run was not created (see the message above)", file=sys.stderr)
            return 2
        watch(local, run_id, args.timeout or None)
    except LocalServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nstopped watching; cancel the run with: prefect flow-run cancel {run_id}")
        return 130
    return 0 if print_summary(local, args.deployment, run_id) else 1


if __name__ == "__main__":
    sys.exit(main())
