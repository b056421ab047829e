"""Two runs on one output: the second is refused (exit 2, naming the output and the live run);
a run killed with SIGKILL leaves a lock that the next run takes over.

Real processes: the first run is paused with SIGSTOP once it holds the output (its lock file
exists), so the second meets a live run whatever the machine's speed; SIGCONT lets it finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bertdata.output_lock import LOCK_NAME
from model.synthetic_data import write_synthetic_pretraining_data
from schemas.manifest import MANIFEST_NAME, Manifest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SENTENCE = "The {} of the valley is farmed by the people of the town near the old bridge."


def write_corpus(path: Path, word: str, documents: int) -> Path:
    """Plain text, one sentence per line, a blank line between documents."""
    blocks = []
    for d in range(documents):
        blocks.append("\n".join(SENTENCE.format(f"{word} {d} part {s}") for s in range(4)))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


def start(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_lock(proc: subprocess.Popen, lock: Path, timeout: float = 120.0) -> None:
    """Until `proc` has written its name into `lock`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(lock.read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{lock} never named process {proc.pid}")


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_a_second_extract_on_a_busy_output_is_refused_and_the_first_finishes(tmp_path):
    first_input = write_corpus(tmp_path / "first.txt", "barley", 12)
    second_input = write_corpus(tmp_path / "second.txt", "apple", 5)
    output = tmp_path / "documents"
    first = start("pipelines.extract", f"--input={first_input}", f"--output={output}")
    try:
        wait_for_lock(first, output / LOCK_NAME)
        first.send_signal(signal.SIGSTOP)  # alive, holding the output
        second = run("pipelines.extract", f"--input={second_input}", f"--output={output}")
    finally:
        first.send_signal(signal.SIGCONT)
    status, out, err = finish(first)
    assert status == 0, err[-3000:]
    assert "12 documents" in out

    assert second.returncode == 2, second.stderr[-3000:]
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {output} is being written by another run")
    assert f"process {first.pid} on {socket.gethostname()}" in message
    assert "Traceback" not in second.stderr

    manifest = Manifest.from_json((output / MANIFEST_NAME).read_bytes())
    assert [Path(i.path).name for i in manifest.inputs] == ["first.txt"]
    assert manifest.total_rows == 12
    assert not (output / LOCK_NAME).exists()


def test_an_extract_killed_with_sigkill_does_not_block_the_next_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", "barley", 6)
    output = tmp_path / "documents"
    killed = start("pipelines.extract", f"--input={corpus}", f"--output={output}")
    wait_for_lock(killed, output / LOCK_NAME)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.loads((output / LOCK_NAME).read_text())["pid"] == killed.pid  # left behind

    again = run("pipelines.extract", f"--input={corpus}", f"--output={output}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "taking over the lock of a run that is gone" in again.stderr
    assert Manifest.from_json((output / MANIFEST_NAME).read_bytes()).total_rows == 6
    assert not (output / LOCK_NAME).exists()


TINY_PRETRAIN = [
    "--preset=bert_tiny",
    "--set=model.hidden_size=32",
    "--set=model.num_attention_heads=2",
    "--set=model.intermediate_size=64",
    "--set=phase1.seq_length=64",
    "--set=phase2.seq_length=128",
    "--set=phase1.global_batch_size=4",
    "--set=phase2.global_batch_size=4",
    "--set=schedule.phase1_fraction=1.0",
    "--set=checkpoint.every=2",
    "--set=data.validation_shards=0",
    "--set=data.num_workers=0",
    "--set=log.progress=false",
    "--set=runtime.compile=false",
]


def test_a_second_pretraining_run_on_one_output_is_refused(tmp_path):
    data = tmp_path / "pretraining"
    write_synthetic_pretraining_data(
        data / "seq64", num_examples=64, num_shards=2, max_seq_length=64, vocab_size=200
    )
    output = tmp_path / "run"
    args = [f"--data={data}", f"--output={output}", "--steps=6", *TINY_PRETRAIN]
    first = start("model.pretrain", *args)
    try:
        wait_for_lock(first, output / LOCK_NAME)
        first.send_signal(signal.SIGSTOP)
        second = run("model.pretrain", *args)
    finally:
        first.send_signal(signal.SIGCONT)
    status, out, err = finish(first)
    assert status == 0, err[-3000:]
    assert out.splitlines()[-1].startswith("step 6:")

    assert second.returncode == 2, second.stderr[-3000:]
    assert f"error: {output} is being written by another run (process {first.pid}" in (
        second.stderr
    )
    assert "Traceback" not in second.stderr and "resuming" not in second.stderr
    starts = [
        json.loads(line)
        for line in (output / "metrics.jsonl").read_text().splitlines()
        if '"start"' in line
    ]
    assert len(starts) == 1  # the refused run wrote nothing
    assert not (output / LOCK_NAME).exists()

    # The lock of a pretraining run killed with SIGKILL does not block its resume.
    killed = start("model.pretrain", *args[:2], "--steps=8", *TINY_PRETRAIN)
    wait_for_lock(killed, output / LOCK_NAME)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = run("model.pretrain", *args[:2], "--steps=8", *TINY_PRETRAIN)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.splitlines()[-1].startswith("step 8:")
    assert "resuming from" in resumed.stderr
