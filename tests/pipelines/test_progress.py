"""Progress of a Beam stage: counts that worker processes write, summed by the launcher into a
line with the amount done, the rate and the time left."""

from __future__ import annotations

import io
import logging
import multiprocessing
import time

from pipelines.progress import (
    Counter,
    CountingReader,
    Heartbeat,
    progress_dir,
    progress_line,
    units_done,
)


def _count_in_child(directory: str, units: int) -> None:
    counter = Counter(directory)
    for _ in range(units):
        counter.add(1)
    counter.flush()


def test_counts_from_several_processes_add_up(tmp_path):
    directory = str(tmp_path / ".progress")
    children = [
        multiprocessing.get_context("spawn").Process(target=_count_in_child, args=(directory, n))
        for n in (1000, 2500)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert units_done(directory) == 3500
    assert progress_dir("gs://bucket/out") is None and units_done(None) == 0


def test_a_counting_reader_counts_every_byte_however_it_is_read(tmp_path):
    counter = Counter(str(tmp_path / ".progress"))
    reader = CountingReader(io.BytesIO(b"line one\nline two\n" + b"x" * 1000), counter)
    assert reader.readline() == b"line one\n"
    assert reader.read(5) == b"line "
    buffer = bytearray(4)
    assert reader.readinto(buffer) == 4
    rest = b"".join(reader)
    assert counter.done == 18 + 1000 and len(rest) == 1000
    counter.flush()
    assert units_done(str(tmp_path / ".progress")) == 1018


def test_the_line_says_amount_rate_and_time_left():
    line = progress_line("extract", 3 * 2**30, 12 * 2**30, "bytes", elapsed=60.0)
    assert line == "extract: 3.0 GB of 12.0 GB (25%), 51.2 MB/s, eta 0:03:00, elapsed 0:01:00"
    line = progress_line("vocab", 1500, 6000, "documents", elapsed=30.0)
    assert (
        line
        == "vocab: 1,500 documents of 6,000 documents (25%), 50 documents/s, eta 0:01:30, elapsed 0:00:30"
    )
    assert progress_line("extract", 0, None, "bytes", 5.0) == "extract: running, elapsed 0:00:05"


def test_the_heartbeat_logs_at_once_then_periodically_and_cleans_up(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    directory = str(tmp_path / "out" / ".progress")
    counter = Counter(directory)
    with Heartbeat("extract", directory, total=100, unit="documents", every_s=0.2):
        counter.add(40)
        counter.flush()
        time.sleep(0.7)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "extract: started (100 documents to do); a progress line every 0.2 s"
    assert any(m.startswith("extract: 40 documents of 100 documents (40%)") for m in messages[1:])
    assert messages[-1].endswith("(done)")
    assert not (tmp_path / "out" / ".progress").exists()


def test_a_beam_stage_reports_its_work_as_it_goes(tmp_path):
    """The real extraction and vocabulary jobs: a line at once, the counts of the steps summed
    into the last line, nothing left behind in the output."""
    import json
    import os
    import subprocess
    import sys

    text = "The first sentence is here. A second one follows it. The third ends the text. "
    rows = [json.dumps({"id": str(i), "text": f"Document {i}. " + text * 3}) for i in range(50)]
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    env = os.environ | {"BERT_PROGRESS_EVERY_S": "0.2"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    log = run("pipelines.extract", "--input", str(tmp_path / "in.jsonl"), "--output",
              str(tmp_path / "documents"), "--num-shards", "2")  # fmt: skip
    assert "extract: started" in log
    assert "extract: 50 records cleaned" in log and "(done)" in log
    log = run("pipelines.vocab", "--documents", str(tmp_path / "documents"), "--output",
              str(tmp_path / "vocab"), "--vocab-size", "200", "--no-reference")  # fmt: skip
    lines = [line for line in log.splitlines() if "pipelines.progress" in line]
    assert "vocab: started (50 documents to do)" in lines[0]
    assert "vocab: 50 documents of 50 documents (100%)" in lines[-1] and "(done)" in lines[-1]
    assert not (tmp_path / "vocab" / ".progress").exists()
