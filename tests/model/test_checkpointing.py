"""Training checkpoints: complete or absent, loadable as HF weights, pruned to last K + best."""

import json

import pytest
import torch

from model.bert import BertForPreTraining
from model.checkpointing import (
    INFO_NAME,
    STATE_NAME,
    CheckpointError,
    best_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_trainer_state,
    prune_checkpoints,
    read_info,
    remove_leftovers,
    save_checkpoint,
)
from model.hf_checkpoint import CONFIG_NAME, SAFETENSORS_NAME, load_hf_checkpoint
from model.optim import WarmupLinearDecay, build_optimizer
from model.train_config import OptimConfig


def trained_model(config, steps=2):
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3), torch.device("cpu"))
    scheduler = WarmupLinearDecay(optimizer, warmup_steps=1, total_steps=10)
    ids = torch.randint(5, config.vocab_size, (4, 7))
    for _ in range(steps):
        out = model.pretraining_loss(
            ids,
            torch.zeros_like(ids),
            torch.ones_like(ids),
            torch.tensor([[1, 2]] * 4),
            torch.tensor([[7, 8]] * 4),
            torch.tensor([0, 1, 0, 1]),
        )
        out.loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def save(directory, step, model, loss=None, phase=1):
    return save_checkpoint(
        directory,
        step=step,
        model=model,
        trainer_state={"step": step, "rng": [torch.get_rng_state()]},
        info={"phase": phase, "validation_loss": loss},
    )


def test_checkpoint_round_trip(tiny_config, tmp_path):
    model, optimizer, scheduler = trained_model(tiny_config)
    path = save_checkpoint(
        tmp_path,
        step=2,
        model=model,
        trainer_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        info={"phase": 1, "validation_loss": 3.5, "vocab_hash": "abc"},
    )
    assert path.name == "step-000000002"
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [CONFIG_NAME, INFO_NAME, SAFETENSORS_NAME, STATE_NAME]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000002"]  # no leftovers
    info = read_info(path)
    assert (info.step, info.phase, info.validation_loss, info.info["vocab_hash"]) == (
        2,
        1,
        3.5,
        "abc",
    )

    # The weights are a Hugging Face checkpoint: they load as such, unchanged.
    loaded, report = load_hf_checkpoint(path, for_pretraining=True)
    assert report.missing_keys == () and report.unexpected_keys == ()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    # Optimizer and schedule continue exactly where they were.
    state = load_trainer_state(info)
    _, fresh_optimizer, fresh_scheduler = trained_model(tiny_config, steps=0)
    fresh_optimizer.load_state_dict(state["optimizer"])
    fresh_scheduler.load_state_dict(state["scheduler"])
    assert fresh_scheduler.step_count == 2 and fresh_scheduler.lr == scheduler.lr
    for a, b in zip(optimizer.state.values(), fresh_optimizer.state.values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_interrupted_save_leaves_no_checkpoint(tiny_config, tmp_path):
    model, _, _ = trained_model(tiny_config, steps=0)
    save(tmp_path, 10, model)
    # What a run killed while saving step 20 leaves: a hidden staging dir without trainer.json.
    staging = tmp_path / ".tmp-step-000000020-dead"
    staging.mkdir()
    (staging / CONFIG_NAME).write_text("{}")
    # And a visible directory that never got its trainer.json is no checkpoint either.
    (tmp_path / "step-000000030").mkdir()
    assert [c.step for c in list_checkpoints(tmp_path)] == [10]
    assert latest_checkpoint(tmp_path).step == 10
    assert remove_leftovers(tmp_path) == [staging] and not staging.exists()
    assert latest_checkpoint(tmp_path / "missing") is None


def test_saving_a_step_again_replaces_it(tiny_config, tmp_path):
    model, _, _ = trained_model(tiny_config, steps=0)
    save(tmp_path, 5, model, loss=2.0)
    save(tmp_path, 5, model, loss=1.0)
    (only,) = list_checkpoints(tmp_path)
    assert only.validation_loss == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000005"]


def test_prune_keeps_the_last_k_and_the_best_of_each_phase(tiny_config, tmp_path):
    model, _, _ = trained_model(tiny_config, steps=0)
    losses = {10: 5.0, 20: 3.0, 30: 4.0, 40: None, 50: 6.5, 60: 6.0, 70: 6.2, 80: None}
    for step, loss in losses.items():
        save(tmp_path, step, model, loss=loss, phase=1 if step <= 40 else 2)
    best = best_checkpoints(list_checkpoints(tmp_path))
    assert {phase: c.step for phase, c in best.items()} == {1: 20, 2: 60}
    removed = prune_checkpoints(tmp_path, keep_last=2, keep_best=True)
    assert sorted(p.name for p in removed) == [f"step-0000000{s}" for s in (10, 30, 40, 50)]
    assert [c.step for c in list_checkpoints(tmp_path)] == [20, 60, 70, 80]
    prune_checkpoints(tmp_path, keep_last=1, keep_best=False)
    assert [c.step for c in list_checkpoints(tmp_path)] == [80]


def test_broken_checkpoints_are_named(tiny_config, tmp_path):
    model, _, _ = trained_model(tiny_config, steps=0)
    path = save(tmp_path, 3, model)
    (path / INFO_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{INFO_NAME}: unreadable"):
        latest_checkpoint(tmp_path)
    (path / INFO_NAME).write_text(json.dumps({"step": 3}))
    (path / STATE_NAME).write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=f"{STATE_NAME}: cannot read trainer state"):
        load_trainer_state(read_info(path))
