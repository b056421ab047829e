"""Guards of the pretraining loop that a loss curve hides: evaluation runs without dropout,
and gradients are clipped to the configured global norm (and only to it)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from model.bert import BertForPreTraining
from model.checkpointing import latest_checkpoint, load_trainer_state
from model.metrics_log import read_metrics
from model.optim import clip_gradients
from model.parallelize import Distributed
from model.pretrain import (
    evaluate,
    model_config_for,
    open_phase_data,
    parse_args,
    plan_phases,
    train,
)
from model.synthetic_data import write_synthetic_pretraining_data
from model.train_config import PretrainConfig

SEQ, VOCAB = 32, 99
CPU = Distributed(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Real pretraining shards of random tokens: 3 shards, the last one held out."""
    write_synthetic_pretraining_data(
        tmp_path / "pretraining" / f"seq{SEQ}",
        num_examples=72,
        num_shards=3,
        max_seq_length=SEQ,
        vocab_size=VOCAB,
        short_seq_prob=0.5,  # padded sequences too
        seed=1,
    )
    return tmp_path / "pretraining"


def tiny_run_args(data_dir: Path, output: Path, steps: int, *overrides: str) -> list[str]:
    """A tiny model (L=2, H=32) at SEQ tokens, phase 1 only, on the CPU and in the process."""
    return [
        f"--data={data_dir}",
        f"--output={output}",
        f"--steps={steps}",
        "--preset=bert_tiny",
        "--phase=1",
        "--set=schedule.phase1_fraction=1.0",
        "--set=model.hidden_size=32",
        "--set=model.num_attention_heads=2",
        "--set=model.intermediate_size=64",
        f"--set=phase1.seq_length={SEQ}",
        "--set=phase1.global_batch_size=8",
        "--set=data.validation_shards=1",
        "--set=data.num_workers=0",
        "--set=eval.examples=0",  # all 24 held-out sequences
        "--set=log.progress=false",
        "--set=log.tensorboard=false",
        "--set=runtime.device=cpu",
        "--set=runtime.threads=1",
        *overrides,
    ]


# -- evaluation ----------------------------------------------------------------------------


def evaluation_setup(data_dir: Path, tmp_path: Path, *overrides: str):
    config = parse_args(tiny_run_args(data_dir, tmp_path / "run", 10, *overrides))
    (phase,) = plan_phases(config, world_size=1)
    data = open_phase_data(config, phase)
    assert data.validation is not None and sum(s.rows for s in data.validation_shards) == 24
    return config, phase, data


def run_evaluation(
    model: BertForPreTraining, config: PretrainConfig, phase, data
) -> dict[str, float]:
    return evaluate(model, data, config=config, phase=phase, dist=CPU, precision="fp32")


@pytest.mark.parametrize("unpad", [True, False])
def test_evaluation_runs_without_dropout_and_leaves_the_model_training(data_dir, tmp_path, unpad):
    dropout = (
        "--set=model.hidden_dropout_prob=0.3",
        "--set=model.attention_probs_dropout_prob=0.3",
    )
    config, phase, data = evaluation_setup(
        data_dir, tmp_path, *dropout, f"--set=runtime.unpad={unpad}"
    )
    model_config = model_config_for(config, data.train)
    assert model_config.hidden_dropout_prob == 0.3
    torch.manual_seed(0)
    model = BertForPreTraining(model_config).train()  # as the training loop hands it over
    # The same weights without any dropout: what evaluation must measure.
    no_dropout = dataclasses.replace(
        model_config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    reference_model = BertForPreTraining(no_dropout).train()
    reference_model.load_state_dict(model.state_dict())
    reference = run_evaluation(reference_model, config, phase, data)
    assert reference["examples"] == 24 and math.isfinite(reference["loss"])

    first = run_evaluation(model, config, phase, data)
    second = run_evaluation(model, config, phase, data)
    assert model.training  # training goes on with dropout after an evaluation
    assert first == second  # the same held-out batches, the same numbers
    assert first.keys() == reference.keys()
    for key, value in reference.items():
        assert first[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# -- gradient clipping ---------------------------------------------------------------------


def gradients_of_a_tiny_bert(tiny_config) -> list[torch.nn.Parameter]:
    """The parameters of a tiny BERT after one backward pass of its pretraining loss."""
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config).eval()
    g = torch.Generator().manual_seed(1)
    B, T, P = 4, 12, 3
    ids = torch.randint(5, tiny_config.vocab_size, (B, T), generator=g)
    positions = torch.stack([torch.randperm(T, generator=g)[:P] for _ in range(B)])
    labels = torch.randint(5, tiny_config.vocab_size, (B, P), generator=g)
    model(
        ids,
        torch.zeros_like(ids),
        torch.ones_like(ids),
        positions,
        labels,
        torch.tensor([0, 1, 1, 0]),
    ).loss.backward()
    parameters = list(model.parameters())
    assert all(p.grad is not None for p in parameters)
    return parameters


def global_norm(grads: list[torch.Tensor]) -> float:
    """L2 norm of all gradients taken as one vector, by hand in float64."""
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))


@pytest.mark.parametrize("share", [0.5, 0.1, 0.02])  # max_norm as a share of the gradient norm
def test_clipping_scales_all_gradients_down_to_max_norm(tiny_config, share):
    parameters = gradients_of_a_tiny_bert(tiny_config)
    before = [p.grad.clone() for p in parameters]
    norm = global_norm(before)
    max_norm = share * norm
    returned = clip_gradients(parameters, max_norm)
    assert float(returned) == pytest.approx(norm, rel=1e-5)  # the norm before clipping
    after = [p.grad for p in parameters]
    assert global_norm(after) == pytest.approx(max_norm, rel=1e-4)
    for old, new in zip(before, after, strict=True):  # one factor for all: the direction stays
        torch.testing.assert_close(new, old * (max_norm / norm), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("max_norm", ["above", "zero"])
def test_gradients_below_max_norm_or_with_clipping_off_are_unchanged(tiny_config, max_norm):
    parameters = gradients_of_a_tiny_bert(tiny_config)
    before = [p.grad.clone() for p in parameters]
    norm = global_norm(before)
    limit = 1.5 * norm if max_norm == "above" else 0.0  # 0 turns clipping off
    returned = clip_gradients(parameters, limit)
    assert float(returned) == pytest.approx(norm, rel=1e-5)
    for old, p in zip(before, parameters, strict=True):
        torch.testing.assert_close(p.grad, old, rtol=1e-6, atol=0)


def test_a_hand_made_gradient_is_clipped_to_max_norm():
    # Two parameters whose gradients form the vector (3, 4, 0, 12): global norm 13.
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, 1))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([[0.0], [12.0]])
    returned = clip_gradients([a, b], 1.3)
    assert float(returned) == pytest.approx(13.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.3, 0.4]), rtol=1e-5, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([[0.0], [1.2]]), rtol=1e-5, atol=0)


SMALL_CLIP = 0.01  # far below the first step's gradient norm


@pytest.mark.parametrize("grad_clip", [SMALL_CLIP, 0.0])
def test_the_trainer_steps_with_the_clipped_gradient(data_dir, tmp_path, grad_clip):
    """One AdamW step of the real loop: its first moment is (1 - beta1) x the gradient it was
    given, so the checkpoint shows the norm the optimizer saw next to the logged grad_norm."""
    output = tmp_path / "run"
    config = parse_args(
        tiny_run_args(
            data_dir,
            output,
            1,
            f"--set=optim.grad_clip={grad_clip}",
            "--set=optim.warmup_fraction=0",
            "--set=log.every=1",
            "--set=checkpoint.every=1",
        )
    )
    train(config)
    (logged,) = [r for r in read_metrics(output / "metrics.jsonl") if r["event"] == "train"]
    grad_norm = logged["grad_norm"]  # before clipping
    assert grad_norm > 10 * SMALL_CLIP  # so clipping at SMALL_CLIP must act
    state = load_trainer_state(latest_checkpoint(output / "checkpoints"))["optimizer"]
    beta1 = config.optim.betas[0]
    seen = global_norm([s["exp_avg"] / (1 - beta1) for s in state["state"].values()])
    expected = min(grad_norm, grad_clip) if grad_clip > 0 else grad_norm
    assert seen == pytest.approx(expected, rel=1e-4)
