"""One run at a time per output directory: a lock file that names the run holding it.

Two runs writing the same output would share its work files and overwrite each other's shards.
A run holds `<output>/.lock` (local paths; a gs:// output has none) from start to finish. A lock
left by a run that is gone (killed, crashed machine) is taken over when it names a process of
this machine that no longer exists; a lock from another machine is never taken over, and the
error says which file to remove once that run is known to be gone.

Taking the lock is also the stage's first write: an output that is a file, or on a read-only
filesystem, is refused here, before any work, with OutputNotWritableError.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator

LOCK_NAME = ".lock"
UNWRITTEN_GRACE_S = 10.0  # a lock still empty after this long was left by a killed run
log = logging.getLogger(__name__)


class OutputError(ValueError):
    """The output directory cannot be used by this run (the stages exit with status 2)."""


class OutputBusyError(OutputError):
    """Another run holds the output directory."""


class OutputNotWritableError(OutputError):
    """The output directory cannot be created or written (a file, a read-only filesystem...)."""


@contextlib.contextmanager
def output_lock(output: str) -> Iterator[None]:
    """Hold `<output>/.lock` for the duration of the block; OutputBusyError if another run does."""
    if "://" in output:
        yield
        return
    created = not os.path.exists(output)
    path = os.path.join(output, LOCK_NAME)
    try:
        try:
            os.makedirs(output, exist_ok=True)
            _acquire(path)
        except OSError as err:
            raise OutputNotWritableError(
                f"{output}: cannot write the output here ({err.strerror or err}); "
                "choose another --output"
            ) from err
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    finally:
        if created:  # a run refused before it wrote anything leaves no directory behind
            with contextlib.suppress(OSError):
                os.rmdir(output)


def _acquire(path: str) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not _is_stale(path, holder):
                raise OutputBusyError(_busy_message(path, holder)) from None
            log.warning("%s: taking over the lock of a run that is gone (%s)", path, holder)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise OutputBusyError(f"{path}: other runs keep taking this lock; is a run being restarted?")


def _holder(path: str) -> dict | None:
    """The run named in the lock file; None while it is empty or unreadable."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _is_stale(path: str, holder: dict | None) -> bool:
    if holder is None:  # its run was killed between creating and writing it, or is writing now
        with contextlib.suppress(FileNotFoundError):
            return time.time() - os.path.getmtime(path) > UNWRITTEN_GRACE_S
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    # The pid of a killed run may since belong to another process: one that started after the
    # lock was written is not its holder.
    started = _process_start_time(pid)
    return started is not None and started > float(holder.get("started", 0)) + 1.0


def _process_start_time(pid: int) -> float | None:
    """When a process started (epoch seconds), from /proc; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _busy_message(path: str, holder: dict | None) -> str:
    if holder is None:
        who = "a run that is starting"
    else:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        who = f"process {holder.get('pid')} on {holder.get('host')}, started {started}"
    return (
        f"{os.path.dirname(path)} is being written by another run ({who}); wait for it to "
        f"finish, or remove {path} if that run is gone"
    )
