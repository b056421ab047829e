"""Progress of a Beam stage while it runs: a line at once, then one every half minute with
what is done, the rate and the time left.

The DirectRunner reports nothing until a pipeline ends, and its workers may be other
processes. So the steps that do the work count it into small files of their own under
`<output>/.progress/` (one per process and step, rewritten at most every few seconds), and the
launching process sums them. Outputs on object stores (Dataflow) get the elapsed time only:
Dataflow's own console shows its progress. The directory is removed when the stage ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

PROGRESS_DIR = ".progress"
WRITE_EVERY_S = 2.0
# Seconds between progress lines; an environment variable so that a test or a CI log can ask
# for more.
EVERY_S = float(os.environ.get("BERT_PROGRESS_EVERY_S", "30"))


def progress_dir(output_dir: str) -> str | None:
    """Where a stage writing to `output_dir` keeps its counts; None for remote outputs."""
    if "://" in output_dir:
        return None
    return os.path.join(output_dir, PROGRESS_DIR)


class Counter:
    """One process's count of units done, kept in a file that the launcher reads."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.path = None
        self.done = 0
        self.written_at = 0.0

    def add(self, units: int) -> None:
        self.done += units
        now = time.monotonic()
        if self.directory is not None and now - self.written_at >= WRITE_EVERY_S:
            self.flush()
            self.written_at = now

    def flush(self) -> None:
        if self.directory is None:
            return
        if self.path is None:
            os.makedirs(self.directory, exist_ok=True)
            self.path = os.path.join(self.directory, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.write(str(self.done))
        os.replace(tmp, self.path)


class CountingReader:
    """A binary file that counts the bytes read from it into a Counter."""

    def __init__(self, raw: BinaryIO, counter: Counter) -> None:
        self.raw = raw
        self.counter = counter

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.counter.add(len(data))
        return data

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.counter.add(n or 0)
        return n

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.counter.add(len(data))
        return data

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


def units_done(directory: str | None) -> int:
    """The sum of every counter file (a file being replaced is read next time)."""
    if directory is None or not os.path.isdir(directory):
        return 0
    total = 0
    for path in Path(directory).iterdir():
        if path.suffix == ".tmp":
            continue
        try:
            total += int(path.read_text() or 0)
        except (OSError, ValueError):
            continue
    return total


def format_amount(units: float, unit: str) -> str:
    if unit == "bytes":
        for scale, name in ((2**30, "GB"), (2**20, "MB"), (2**10, "kB")):
            if units >= scale:
                return f"{units / scale:,.1f} {name}"
        return f"{units:,.0f} B"
    return f"{units:,.0f} {unit}"


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(stage: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """'extract: 1.2 GB of 3.4 GB (35%), 12.3 MB/s, eta 0:03:00, elapsed 0:01:40'."""
    parts = [f"{stage}: running"]
    if done or total:
        parts = [f"{stage}: {format_amount(done, unit)}"]
        if total:
            parts[0] += f" of {format_amount(total, unit)} ({100 * min(done, total) / total:.0f}%)"
        if done and elapsed > 0:
            parts.append(f"{format_amount(done / elapsed, unit)}/s")
            if total and done < total:
                parts.append(f"eta {clock(elapsed / done * (total - done))}")
    parts.append(f"elapsed {clock(elapsed)}")
    return ", ".join(parts)


class Heartbeat:
    """While the `with` block runs: a line at once, then one every `every_s` seconds."""

    def __init__(
        self,
        stage: str,
        directory: str | None,
        *,
        total: int | None,
        unit: str,
        every_s: float = EVERY_S,
    ) -> None:
        self.stage, self.directory, self.total, self.unit = stage, directory, total, unit
        self.every_s = every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"{stage}-progress", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self.directory is not None and os.path.isdir(self.directory):
            for path in Path(self.directory).iterdir():  # a killed run's counts
                path.unlink(missing_ok=True)
        self.started = time.monotonic()
        total = f" ({format_amount(self.total, self.unit)} to do)" if self.total else ""
        log.info("%s: started%s; a progress line every %g s", self.stage, total, self.every_s)
        self.thread.start()
        return self

    def line(self) -> str:
        done = units_done(self.directory)
        return progress_line(
            self.stage, done, self.total, self.unit, time.monotonic() - self.started
        )

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            log.info("%s", self.line())

    def __exit__(self, exc_type, *exc) -> None:
        self.stop.set()
        self.thread.join()
        if exc_type is None:
            log.info("%s (done)", self.line())
        if self.directory is not None and os.path.isdir(self.directory):
            for path in Path(self.directory).iterdir():
                path.unlink(missing_ok=True)
            os.rmdir(self.directory)
