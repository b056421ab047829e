"""A local Prefect server (SQLite, 127.0.0.1), a process work pool and a worker, started once.

    python -m flows.local_server up [--port 4200] [--state-dir .prefect-local]
    python -m flows.local_server down
    python -m flows.local_server env        # shell exports to use the server from a terminal

Everything lives under the state directory: PREFECT_HOME (database, cached stage results),
the logs and a PID file per process it started. `up` reuses a server that already answers on
the port and a worker that already polls the pool; `down` stops only what `up` started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bertdata.options import command_parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = ROOT / ".prefect-local"
DEFAULT_POOL = "bert-local"


class LocalServerError(RuntimeError):
    """The local server or worker could not be started."""


@dataclass(kw_only=True)
class LocalPrefect:
    """Where the local server listens, where it keeps its state, and the pool it serves."""

    state_dir: Path = DEFAULT_STATE_DIR  # PREFECT_HOME, logs and PID files
    host: str = "127.0.0.1"  # the server listens only here
    port: int = 4200  # Prefect's usual port
    pool: str = DEFAULT_POOL  # process work pool the worker polls
    started: list[str] = field(default_factory=list)  # what this object started

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        return self.state_dir / "home"

    def env(self) -> dict[str, str]:
        """Environment that points Prefect at this server and keeps everything local."""
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": self.ui_url,
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"sqlite+aiosqlite:///{self.home / 'prefect.db'}"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
            "DO_NOT_TRACK": "1",
        }

    def full_env(self) -> dict[str, str]:
        return os.environ | self.env()

    # Health and state.

    def server_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def pool_status(self) -> str | None:
        """The pool's status (READY once a worker polls it), or None if it does not exist."""
        try:
            response = httpx.get(f"{self.api_url}/work_pools/{self.pool}", timeout=10)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return response.json().get("status")

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def running(self, name: str) -> psutil.Process | None:
        """The process this tool started as `name`, if it is still the same process."""
        path = self._pid_file(name)
        try:
            record = json.loads(path.read_text())
            proc = psutil.Process(record["pid"])
            if abs(proc.create_time() - record["create_time"]) < 1 and proc.is_running():
                return proc
        except (OSError, ValueError, KeyError, psutil.Error):
            pass
        return None

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.full_env(),
            cwd=ROOT,
            start_new_session=True,  # outlives this command; stopped by `down`
        )
        log.close()
        record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
        self._pid_file(name).write_text(json.dumps(record))
        self.started.append(name)
        return proc

    def _log_tail(self, name: str, lines: int = 25) -> str:
        try:
            text = (self.state_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # Starting.

    def ensure_server(self, timeout_s: float = 240) -> bool:
        """Start the server unless one answers on the port; True if it was started now."""
        if self.server_healthy():
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "prefect", "server", "start"]
        argv += ["--host", self.host, "--port", str(self.port)]
        proc = self._spawn("server", argv)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalServerError(
                    f"the Prefect server exited with status {proc.returncode} (port "
                    f"{self.port} taken? try --port):\n{self._log_tail('server')}"
                )
            if self.server_healthy():
                return True
            time.sleep(0.5)
        raise LocalServerError(
            f"the Prefect server did not answer on {self.api_url} within {timeout_s:.0f} s:\n"
            f"{self._log_tail('server')}"
        )

    def prefect(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the Prefect CLI against this server."""
        proc = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args],
            env=self.full_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise LocalServerError(
                f"`prefect {' '.join(args)}` failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return proc

    def ensure_pool(self) -> bool:
        """Create the process work pool unless it exists; True if it was created now."""
        if self.pool_status() is not None:
            return False
        self.prefect("work-pool", "create", self.pool, "--type", "process")
        return True

    def ensure_worker(self, timeout_s: float = 120) -> bool:
        """Start a process worker on the pool unless one polls it; True if started now."""
        if self.running("worker") is not None:
            return False
        if not self._pid_file("worker").exists() and self.pool_status() == "READY":
            return False  # a worker this tool did not start already polls the pool
        argv = [sys.executable, "-m", "prefect", "worker", "start"]
        argv += ["--pool", self.pool, "--type", "process", "--name", f"{self.pool}-worker"]
        proc = self._spawn("worker", argv)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalServerError(
                    f"the worker exited with status {proc.returncode}:\n{self._log_tail('worker')}"
                )
            if self.pool_status() == "READY":
                return True
            time.sleep(0.5)
        raise LocalServerError(f"the worker did not start polling '{self.pool}' in time")

    def up(self) -> dict[str, bool]:
        """Server, pool and worker, each started only if missing."""
        return {
            "server": self.ensure_server(),
            "pool": self.ensure_pool(),
            "worker": self.ensure_worker(),
        }

    # Stopping.

    def down(self, grace_s: float = 20) -> list[str]:
        """Stop the worker and the server if this tool started them; returns what it stopped."""
        stopped = []
        for name in ("worker", "server"):
            proc = self.running(name)
            if proc is not None:
                stop_process_tree(proc, grace_s)
                stopped.append(name)
            self._pid_file(name).unlink(missing_ok=True)
        return stopped


def stop_process_tree(proc: psutil.Process, grace_s: float) -> None:
    """SIGTERM a process and its children, SIGKILL what is left after `grace_s`."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--port, --state-dir and --pool: where the local server runs and what it keeps."""
    parser.add_argument("--port", type=int, default=4200, help="server port (default: %(default)s)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="server state, logs, PID files (default: %(default)s)",
    )
    parser.add_argument("--pool", default=DEFAULT_POOL, help="work pool (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m flows.local_server", __doc__)
    parser.add_argument(
        "command",
        choices=("up", "down", "env"),
        help="up: start what is missing; down: stop it; env: print the PREFECT_* settings",
    )
    add_server_options(parser)
    args = parser.parse_args(argv)
    local = LocalPrefect(state_dir=args.state_dir.resolve(), port=args.port, pool=args.pool)
    if args.command == "env":
        for key, value in local.env().items():
            print(f"export {key}={value}")
        return 0
    if args.command == "down":
        stopped = local.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")
        return 0
    try:
        started = local.up()
    except LocalServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, new in started.items():
        print(f"{name}: {'started' if new else 'already running'}")
    print(f"UI: {local.ui_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
