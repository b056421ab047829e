"""Guarantees that no other test held when bench/seeded_bugs.py broke them (docs/seeded_bugs.md):
the masking rate asked for is the one the data has, stage writes are atomic, and the "No NSP"
arm trains on the MLM loss alone."""

from __future__ import annotations

import pytest
import torch
from apache_beam.io.filesystems import FileSystems
from safetensors.torch import load_file

from model.checkpointing import latest_checkpoint
from model.metrics_log import read_metrics
from model.pretrain import parse_args, train
from pipelines import validate
from pipelines.arrow_shards import write_atomic
from tests.model.test_training_guards import data_dir, tiny_run_args  # noqa: F401  (fixture)
from tests.pipelines.test_pretraining_data import (  # noqa: F401  (fixtures)
    documents_dir,
    run_job,
    vocab_dir,
)

# -- masked_lm_prob ---------------------------------------------------------------------------


def test_the_masked_lm_prob_asked_for_is_the_mask_rate_of_the_data(
    documents_dir,  # noqa: F811
    vocab_dir,  # noqa: F811
    tmp_path,
):
    # Twice the default, with a cap high enough never to bind at 128 tokens.
    output = tmp_path / "pretraining"
    flags = "--masked-lm-prob 0.3 --max-seq-lengths 128 --max-predictions-per-seq 60".split()
    manifests = run_job(documents_dir, vocab_dir, output, *flags)
    assert manifests[128]["config"]["masked_lm_prob"] == 0.3
    body = validate.validate(str(output / "seq128"), vocab_dir=str(vocab_dir))
    assert body["passed"]
    assert abs(body["mask_rate"] - 0.3) < 0.01  # the default would give 0.15


# -- atomic writes ----------------------------------------------------------------------------


class Killed(Exception):
    """Stands for the process dying in the middle of a write."""


def die_half_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file created through Beam's FileSystems gets half its bytes, then the writer dies."""
    create = FileSystems.create

    class HalfWriter:
        def __init__(self, f) -> None:
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            self.f.close()
            return False

        def write(self, data: bytes) -> None:
            self.f.write(data[: len(data) // 2])
            raise Killed

    monkeypatch.setattr(
        FileSystems, "create", lambda path, *a, **kw: HalfWriter(create(path, *a, **kw))
    )


def test_stage_writes_are_atomic_a_write_cut_short_leaves_the_old_file_whole(tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.json"
    write_atomic(str(manifest), b'{"the": "finished manifest of the last run"}')
    die_half_way(monkeypatch)
    with pytest.raises(Killed):
        write_atomic(str(manifest), b'{"the": "manifest of a run that is killed now"}')
    with pytest.raises(Killed):
        write_atomic(str(tmp_path / "pretraining-00000-of-00001.arrow"), b"shard bytes" * 100)
    # Readers see the old manifest whole, and no shard under its final name.
    assert manifest.read_bytes() == b'{"the": "finished manifest of the last run"}'
    assert not (tmp_path / "pretraining-00000-of-00001.arrow").exists()


# -- the "No NSP" arm -------------------------------------------------------------------------


def test_the_no_nsp_arm_trains_on_the_mlm_loss_alone(data_dir, tmp_path):  # noqa: F811
    output = tmp_path / "run"
    config = parse_args(
        tiny_run_args(
            data_dir,
            output,
            2,
            "--set=objective.nsp=false",
            "--set=optim.warmup_fraction=0",
            "--set=log.every=1",
            "--set=checkpoint.every=1",
        )
    )
    train(config)
    steps = [r for r in read_metrics(output / "metrics.jsonl") if r["event"] == "train"]
    assert len(steps) == 2
    for record in steps:  # the NSP loss is measured, but not trained on
        assert record["nsp_loss"] > 0.1
        assert record["loss"] == pytest.approx(record["mlm_loss"], rel=1e-6)
    # No gradient reached the NSP head: AdamW left its bias (no weight decay) at its init, 0.
    weights = load_file(latest_checkpoint(output / "checkpoints").path / "model.safetensors")
    assert torch.count_nonzero(weights["cls.seq_relationship.bias"]) == 0
    assert torch.count_nonzero(weights["cls.predictions.bias"]) > 0  # the MLM head did train
