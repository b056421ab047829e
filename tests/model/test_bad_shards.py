"""The trainer refuses shards that disagree with their manifest at open, before the first
step: exit 2 and a message that names the shard (not an Arrow index error after a step)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.synthetic_data import write_synthetic_pretraining_data
from schemas.manifest import MANIFEST_NAME, Manifest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = [
    "--preset=bert_tiny",
    "--set=model.hidden_size=32",
    "--set=model.num_attention_heads=2",
    "--set=model.intermediate_size=64",
    "--set=phase1.seq_length=64",
    "--set=phase1.global_batch_size=8",
    "--set=schedule.phase1_fraction=1.0",
    "--set=data.num_workers=0",
    "--set=log.progress=false",
    "--set=runtime.compile=false",
]


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "pretraining"
    write_synthetic_pretraining_data(
        root / "seq64", num_examples=96, num_shards=3, max_seq_length=64, vocab_size=200
    )
    return root


def pretrain(data: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model.pretrain", f"--data={data}", f"--output={output}"]
        + ["--steps=20", *TINY, *extra],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused_at_open(result: subprocess.CompletedProcess, output: Path, message: str):
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in result.stderr
    assert not (output / "checkpoints").exists()
    assert (
        not (output / "metrics.jsonl").exists()
        or '"train"' not in (output / "metrics.jsonl").read_text()
    )


def test_edited_row_counts_are_refused_naming_the_shard(data, tmp_path):
    path = data / "seq64" / MANIFEST_NAME
    manifest = Manifest.from_json(path.read_bytes())
    shards = list(manifest.shards)
    # More rows promised for one shard, fewer for another: the total still adds up.
    shards[0] = dataclasses.replace(shards[0], rows=shards[0].rows + 5)
    shards[1] = dataclasses.replace(shards[1], rows=shards[1].rows - 5)
    path.write_text(dataclasses.replace(manifest, shards=shards).to_json())
    output = tmp_path / "run"
    result = pretrain(data, output, "--set=data.validation_shards=0")
    first = data / "seq64" / shards[0].path
    assert_refused_at_open(
        result,
        output,
        f"{first}: {shards[0].rows - 5} rows, the manifest says {shards[0].rows}; the manifest "
        "was changed after the stage finished: re-run the pretraining data stage",
    )


def test_a_deleted_shard_is_refused_naming_it(data, tmp_path):
    manifest = Manifest.from_json((data / "seq64" / MANIFEST_NAME).read_bytes())
    missing = data / "seq64" / manifest.shards[-1].path  # the held-out validation shard
    missing.unlink()
    output = tmp_path / "run"
    assert_refused_at_open(
        pretrain(data, output),
        output,
        f"{missing}: shard listed in the manifest is missing; re-run the pretraining data "
        "stage (pipelines.pretraining_data) for this directory",
    )


def test_a_truncated_shard_is_refused_naming_it(data, tmp_path):
    manifest = Manifest.from_json((data / "seq64" / MANIFEST_NAME).read_bytes())
    shard = manifest.shards[1]
    path = data / "seq64" / shard.path
    path.write_bytes(path.read_bytes()[:1000])
    output = tmp_path / "run"
    assert_refused_at_open(
        pretrain(data, output),
        output,
        f"{path}: 1000 bytes, the manifest says {shard.bytes}; the shard is damaged or was "
        "changed after the stage finished: re-run the pretraining data stage",
    )
