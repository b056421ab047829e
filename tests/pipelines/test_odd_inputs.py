"""Odd input files, run through the real extraction job: refused naming the file, or counted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import extract

ROOT = Path(__file__).resolve().parents[2]
PROSE = (
    "The river rises in the northern hills and flows south for two hundred kilometres. "
    "Its valley has been farmed since the Bronze Age, and several villages line its banks. "
    "A railway bridge built in 1887 crosses it near the town of Easton."
)


def run_job(inputs: list[Path], output: Path, *extra: str) -> dict:
    argv = [a for i in inputs for a in ("--input", str(i))] + ["--output", str(output)]
    return extract.run([*argv, "--num-shards", "2", *extra])


def run_command(inputs: list[Path], output: Path) -> subprocess.CompletedProcess:
    argv = [a for i in inputs for a in ("--input", str(i))] + ["--output", str(output)]
    return subprocess.run(
        [sys.executable, "-m", "pipelines.extract", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "column, type_name",
    [
        (pa.array([1, 2], pa.int64()), "int64"),
        (pa.array([["a", "b"], ["c"]], pa.list_(pa.string())), "list<element: string>"),
    ],
    ids=["int64", "list<string>"],
)
def test_parquet_text_column_of_another_type_is_bad_input_naming_file_and_column(
    tmp_path, column, type_name
):
    path = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"text": column}), path)
    result = run_command([path], tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}: text column 'text' is {type_name}, not string")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_parquet_with_dictionary_encoded_strings_is_read(tmp_path):
    path = tmp_path / "part-0.parquet"
    text = pa.array([PROSE, PROSE + " It floods in spring."]).dictionary_encode()
    pq.write_table(pa.table({"text": text}), path)
    assert run_job([path], tmp_path / "out")["total_rows"] == 2


def test_corrupt_parquet_is_bad_input_naming_the_file(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [PROSE] * 50}), good)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = run_command([corrupt], tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {corrupt}: not a readable Parquet file")


def test_empty_text_and_jsonl_files_are_counted_and_named(tmp_path, caplog):
    empty_text = tmp_path / "empty.txt"
    empty_jsonl = tmp_path / "empty.jsonl"
    empty_text.write_bytes(b"")
    empty_jsonl.write_bytes(b"")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": PROSE}) + "\n")
    with caplog.at_level(logging.WARNING, logger="pipelines.extract"):
        manifest = run_job([empty_text, empty_jsonl, good], tmp_path / "out")
    assert manifest["total_rows"] == 1
    assert manifest["counters"]["empty_files"] == 2
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert f"{empty_text} is empty" in warnings and f"{empty_jsonl} is empty" in warnings


def test_files_with_content_count_no_empty_files(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(PROSE.replace(". ", ".\n") + "\n")
    manifest = run_job([good], tmp_path / "out")
    assert manifest["total_rows"] == 1 and manifest["counters"]["empty_files"] == 0


def test_byte_order_mark_at_the_start_of_jsonl_is_read(tmp_path):
    records = [{"text": f"{PROSE} Record {i} ends it."} for i in range(3)]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in records).encode())
    manifest = run_job([path], tmp_path / "out")
    assert manifest["total_rows"] == 3
    assert manifest["counters"]["skipped_malformed_records"] == 0


def test_byte_order_mark_at_the_start_of_text_is_not_in_the_first_sentence(tmp_path):
    from tests.pipelines.test_extract import read_documents

    lines = PROSE.replace(". ", ".\n").splitlines()
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    run_job([path], tmp_path / "out")
    _, rows = read_documents(tmp_path / "out")
    assert [r["sentences"] for r in rows] == [lines]
