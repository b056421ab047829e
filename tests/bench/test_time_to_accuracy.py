"""bench/time_to_accuracy.py: the target arithmetic, and that the race is apples to apples."""

import math

import pytest
import torch
from safetensors.torch import load_file

from bench.time_to_accuracy import (
    Evaluation,
    build_config,
    compare,
    first_at_target,
    parse_args,
    race,
    setup_race,
)
from model.hf_checkpoint import to_hf_state_dict
from model.synthetic_data import write_synthetic_pretraining_data


def evaluation(step: int, seconds: float, accuracy: float) -> Evaluation:
    return Evaluation(step, seconds, accuracy, 1.0, 0.5, 1.0)


def test_first_at_target_is_the_first_evaluation_at_or_above_it():
    evaluations = [evaluation(0, 0, 0.0), evaluation(10, 5, 0.12), evaluation(20, 9, 0.2)]
    assert first_at_target(evaluations, 0.12).step == 10
    assert first_at_target(evaluations, 0.15).step == 20
    assert first_at_target(evaluations, 0.3) is None


def test_time_ratio_is_steps_ratio_times_step_time_ratio():
    ours, theirs = evaluation(50, 20.0, 0.2), evaluation(40, 40.0, 0.2)
    c = compare(ours, theirs)
    assert c.steps_ratio == 1.25
    assert c.step_time_ratio == pytest.approx(0.4 / 1.0)
    assert c.time_ratio == pytest.approx(c.steps_ratio * c.step_time_ratio) == 0.5


def test_without_dropout_both_contestants_train_to_the_same_weights(tmp_path):
    """Same initial weights, batches and recipe: only float rounding may differ. A recipe that
    differs (decay on LayerNorm, another schedule, no clipping) moves weights by ~1e-4."""
    write_synthetic_pretraining_data(
        tmp_path / "data" / "seq32", num_examples=64, num_shards=2, max_seq_length=32, vocab_size=99
    )
    args = parse_args(
        ["--data", str(tmp_path / "data"), "--vocab", "", "--seq-length", "32"]
        + ["--batch-size", "8", "--max-steps", "4", "--eval-examples", "16", "--lr", "1e-2"]
        + ["--set", "model.hidden_size=32", "--set", "model.num_attention_heads=4"]
        + ["--set", "model.intermediate_size=37", "--set", "model.hidden_dropout_prob=0"]
        + ["--set", "model.attention_probs_dropout_prob=0", "--set", "optim.grad_clip=0.5"]
    )
    config = build_config(args, str(tmp_path / "work"))
    setup = setup_race(config, tmp_path / "work", args.contestants)
    ours, theirs = setup.contestants
    runs = race(
        setup.contestants,
        setup.batches,
        max_steps=4,
        eval_every=2,
        baseline=setup.baseline,
        target_accuracy=2.0,  # out of reach: both run every step
    )

    assert [e.step for e in runs["ours"].evaluations] == [0, 2, 4]
    assert [e.step for e in runs["hf"].evaluations] == [0, 2, 4]
    for mine, hf in zip(runs["ours"].evaluations, runs["hf"].evaluations, strict=True):
        assert mine.mlm_loss == pytest.approx(hf.mlm_loss, rel=1e-5)
        assert math.isnan(mine.train_loss) or mine.train_loss == pytest.approx(
            hf.train_loss, rel=1e-5
        )
    initial = load_file(tmp_path / "work" / "initial" / "model.safetensors")
    trained = to_hf_state_dict(ours.model)
    hf_weights = theirs.model.state_dict()
    moved = max(float((trained[name] - tensor).abs().max()) for name, tensor in initial.items())
    assert moved > 1e-2  # the comparison below is not between two untrained models
    for name, tensor in trained.items():
        torch.testing.assert_close(hf_weights[name], tensor, atol=2e-5, rtol=0, msg=name)
