"""One run at a time per output directory: a second run is refused, a dead run's lock is taken."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertdata.output_lock import LOCK_NAME, OutputBusyError, output_lock
from pipelines import pretraining_data

ROOT = Path(__file__).resolve().parents[2]
_HOLD = """
import sys, time
from bertdata.output_lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holding_process(output: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(output)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_while_another_process_holds_the_output(tmp_path):
    output = tmp_path / "out"
    proc = _holding_process(output)
    try:
        with pytest.raises(OutputBusyError, match=f"process {proc.pid} on .*remove .*{LOCK_NAME}"):
            with output_lock(str(output)):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_run_is_taken_over_and_released_after(tmp_path):
    output = tmp_path / "out"
    proc = _holding_process(output)
    proc.send_signal(signal.SIGKILL)  # no finally runs: the lock file stays behind
    proc.wait()
    lock = output / LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == proc.pid
    with output_lock(str(output)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_an_empty_lock_is_busy_at_first_and_stale_later(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    lock = output / LOCK_NAME
    lock.touch()  # a run killed between creating the file and writing its name in it
    with pytest.raises(OutputBusyError, match="a run that is starting"):
        with output_lock(str(output)):
            pass
    old = time.time() - 60
    os.utime(lock, (old, old))
    with output_lock(str(output)):
        pass
    assert not lock.exists()


def test_the_job_refuses_an_output_in_use_and_writes_nothing(tmp_path, capsys):
    output = tmp_path / "pretraining"
    with output_lock(str(output)):
        code = pretraining_data.main(
            ["--documents", str(tmp_path / "docs"), "--vocab", str(tmp_path / "vocab"),
             "--output", str(output)]
        )  # fmt: skip
        assert sorted(p.name for p in output.iterdir()) == [LOCK_NAME]  # the holder's only
    assert code == 2
    assert "being written by another run" in capsys.readouterr().err
    assert not output.exists()  # the holder made the directory and left nothing in it
