"""Is the run learning? Checks of a pretraining run against what an untrained model scores.

A run can finish with a falling loss and still have learned nothing useful: post-LayerNorm
BERT at too high a learning rate collapses (every token's final hidden state points the same
way, the MLM head predicts the corpus's most frequent pieces whatever the context) and its loss
settles at the entropy of the token distribution. Fine-tuning from such a model scored below
random initialisation in our measurements, and no log line said so. The checks here compare
each evaluation with references measured on the same held-out tokens:

- the unigram baseline: predicting every masked token by its corpus frequency, i.e. always the
  most frequent one (its accuracy) and the cross-entropy of the token distribution (its loss);
- chance for NSP: the share of the majority label;
- representation collapse: the mean cosine between the final hidden states of different
  tokens (different ids) of one probe batch.

Checks of learning apply from twice the warm-up on (an untrained model is at the baseline by
definition, and a healthy one stays there for a while after the warm-up); a non-finite value
is reported at any step. --stop-on-collapse ends a run after `patience` failing checks in a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.bert import IGNORE_INDEX, BertModel
from model.pretraining_batch import PretrainingBatch
from model.train_config import HealthConfig

# Problem kinds; those in FATAL make --stop-on-collapse end the run.
COLLAPSE = "collapse"
NOT_LEARNING = "not_learning"
LOSS_AT_UNIGRAM = "loss_at_unigram_entropy"
NSP_AT_CHANCE = "nsp_at_chance"
NON_FINITE = "non_finite"
FATAL = (COLLAPSE, NOT_LEARNING)


@dataclass(frozen=True)
class Baseline:
    """What a model that ignores the context scores on a set of masked tokens."""

    unigram_accuracy: float  # share of masked tokens equal to the most frequent one
    unigram_entropy: float  # nats: cross-entropy of the tokens under their own frequencies
    top_token_id: int  # the most frequent masked token
    masked_tokens: int  # how many masked tokens were counted
    nsp_chance: float  # share of the majority NSP label
    sequences: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "unigram_accuracy": self.unigram_accuracy,
            "unigram_entropy": self.unigram_entropy,
            "top_token_id": self.top_token_id,
            "masked_tokens": self.masked_tokens,
            "nsp_chance": self.nsp_chance,
            "baseline_sequences": self.sequences,
        }


def baseline_from_counts(token_counts: np.ndarray, nsp_counts: np.ndarray) -> Baseline:
    """The baseline of masked-token counts per id (V,) and NSP label counts (2,)."""
    total = int(token_counts.sum())
    sequences = int(nsp_counts.sum())
    if total == 0 or sequences == 0:
        raise ValueError("no masked tokens or sequences to measure a baseline on")
    p = token_counts[token_counts > 0] / total
    return Baseline(
        unigram_accuracy=float(p.max()),
        unigram_entropy=float(-(p * np.log(p)).sum()),
        top_token_id=int(token_counts.argmax()),
        masked_tokens=total,
        nsp_chance=float(nsp_counts.max() / sequences),
        sequences=sequences,
    )


def measure_baseline(batches: Iterable[PretrainingBatch], vocab_size: int) -> Baseline:
    """Count the masked tokens and NSP labels of the batches (the evaluation's own)."""
    token_counts = np.zeros(vocab_size, dtype=np.int64)
    nsp_counts = np.zeros(2, dtype=np.int64)
    for batch in batches:
        labels = batch.masked_lm_labels[batch.masked_lm_labels != IGNORE_INDEX].numpy()
        token_counts += np.bincount(labels, minlength=vocab_size)[:vocab_size]
        nsp_counts += np.bincount(batch.next_sentence_label.numpy(), minlength=2)[:2]
    return baseline_from_counts(token_counts, nsp_counts)


def mean_token_cosine(hidden: Tensor, token_ids: Tensor, max_tokens: int) -> float:
    """Mean cosine between the (R, H) vectors of tokens with different ids (R ids).

    The first max_tokens vectors are used. 1.0 means every token has the same direction.
    """
    hidden, token_ids = hidden[:max_tokens].float(), token_ids[:max_tokens]
    unit = torch.nn.functional.normalize(hidden, dim=-1)
    cosine = unit @ unit.T  # (R, R)
    different = token_ids[:, None] != token_ids[None, :]  # (R, R)
    if not different.any():
        return float("nan")
    return float(cosine[different].mean())


@torch.no_grad()
def probe_cosine(encoder: BertModel, batch: PretrainingBatch, max_tokens: int) -> float:
    """Mean cosine between different tokens' final hidden states on one batch (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = encoder(batch.input_ids, batch.token_type_ids, batch.attention_mask)
    finally:
        encoder.train(was_training)
    real = batch.attention_mask.bool()  # (B, T)
    return mean_token_cosine(out.last_hidden_state[real], batch.input_ids[real], max_tokens)


@dataclass
class HealthReport:
    """One check: the figures, and each problem found with a message a person can act on."""

    step: int
    figures: dict[str, Any]
    problems: dict[str, str] = field(default_factory=dict)  # kind -> message
    failing_checks: int = 0  # consecutive failing checks up to this one

    @property
    def status(self) -> str:
        if not self.problems:
            return "ok"
        return "failing" if any(kind in FATAL for kind in self.problems) else "warning"

    @property
    def fatal(self) -> list[str]:
        return [kind for kind in self.problems if kind in FATAL]

    def record(self) -> dict[str, Any]:
        """The metrics.jsonl line of this check."""
        return {
            "event": "health",
            "step": self.step,
            "status": self.status,
            "problems": sorted(self.problems),
            "failing_checks": self.failing_checks,
            **self.figures,
        }

    def line(self) -> str:
        """One log line: the status, the key ratios, then each problem."""
        f = self.figures
        text = f"health at step {self.step}: {self.status}"
        if "mlm_accuracy_ratio" in f:
            text += f"; mlm accuracy {f['mlm_accuracy']:.3f} = {f['mlm_accuracy_ratio']:.2f}x"
            text += f" the unigram baseline {f['unigram_accuracy']:.3f}"
        if "token_cosine" in f and math.isfinite(f["token_cosine"]):
            text += f"; token cosine {f['token_cosine']:.3f}"
        if "nsp_accuracy" in f:
            text += f"; nsp accuracy {f['nsp_accuracy']:.3f} (chance {f['nsp_chance']:.3f})"
        for kind in sorted(self.problems):
            text += f"\n  {kind}: {self.problems[kind]}"
        return text


def diagnose(
    step: int,
    metrics: dict[str, float],
    *,
    baseline: Baseline,
    token_cosine: float,
    learning_checked: bool,
    config: HealthConfig,
) -> HealthReport:
    """Compare one evaluation (loss, mlm_loss, mlm_accuracy, nsp_accuracy) with the baselines.

    learning_checked: the warm-up is over, so a model at the baseline is a problem.
    """
    mlm_accuracy, mlm_loss = metrics["mlm_accuracy"], metrics["mlm_loss"]
    nsp_accuracy = metrics.get("nsp_accuracy")  # absent when the run does not train NSP
    figures: dict[str, Any] = {
        "mlm_accuracy": mlm_accuracy,
        "mlm_loss": mlm_loss,
        "mlm_accuracy_ratio": mlm_accuracy / max(baseline.unigram_accuracy, 1e-12),
        "mlm_loss_vs_unigram_entropy": mlm_loss / max(baseline.unigram_entropy, 1e-12),
        "token_cosine": token_cosine,
        "learning_checked": learning_checked,
        **baseline.as_dict(),
    }
    if nsp_accuracy is not None:
        figures["nsp_accuracy"] = nsp_accuracy
    report = HealthReport(step=step, figures=figures)
    values = (metrics["loss"], mlm_loss, metrics.get("nsp_loss", 0.0), token_cosine)
    if not all(math.isfinite(v) for v in values[:3]):
        report.problems[NON_FINITE] = f"loss values are not finite: {values[:3]}"
    if not learning_checked:
        return report
    if math.isfinite(token_cosine) and token_cosine > config.collapse_cosine:
        report.problems[COLLAPSE] = (
            f"the final hidden states of different tokens have mean cosine {token_cosine:.4f} "
            f"(> {config.collapse_cosine}): the representations collapsed. Restart with a lower "
            "optim.lr or a longer optim.warmup_fraction"
        )
    if mlm_accuracy <= baseline.unigram_accuracy:
        report.problems[NOT_LEARNING] = (
            f"MLM accuracy {mlm_accuracy:.4f} is not above the unigram baseline "
            f"{baseline.unigram_accuracy:.4f} (always predicting token id "
            f"{baseline.top_token_id}): the model does not use the context"
        )
    if abs(mlm_loss - baseline.unigram_entropy) <= baseline.unigram_entropy * config.entropy_margin:
        report.problems[LOSS_AT_UNIGRAM] = (
            f"MLM loss {mlm_loss:.4f} sits at the unigram entropy {baseline.unigram_entropy:.4f} "
            "nats, where a model that knows only token frequencies stays"
        )
    if nsp_accuracy is not None and nsp_accuracy <= baseline.nsp_chance + config.nsp_margin:
        report.problems[NSP_AT_CHANCE] = (
            f"NSP accuracy {nsp_accuracy:.4f} is at chance ({baseline.nsp_chance:.4f}); NSP often "
            "lags MLM early in a run, so this alone does not stop it"
        )
    return report


class HealthMonitor:
    """The checks of one run: a baseline and a probe batch per phase, a report per check."""

    def __init__(self, config: HealthConfig, *, after_steps: int, vocab_size: int) -> None:
        self.config = config
        self.after_steps = after_steps  # learning checks apply from this step on
        self.vocab_size = vocab_size
        self.baseline: Baseline | None = None
        self.probe: PretrainingBatch | None = None
        self.failing_checks = 0

    def start_phase(self, batches: Iterable[PretrainingBatch], device: torch.device) -> Baseline:
        """Measure the phase's baseline on its evaluation batches; keep the first as probe."""
        first: list[PretrainingBatch] = []

        def keeping_the_first() -> Iterator[PretrainingBatch]:
            for batch in batches:  # streamed: the evaluation set is never held whole
                if not first:
                    first.append(batch)
                yield batch

        self.baseline = measure_baseline(keeping_the_first(), self.vocab_size)
        self.probe = first[0].to(device)
        return self.baseline

    def check(self, encoder: BertModel, step: int, metrics: dict[str, float]) -> HealthReport:
        """One report for the metrics of this step (an evaluation, or the last train means);
        `encoder` is the model's (BERT's, or ELECTRA's discriminator), probed for collapse."""
        if self.baseline is None or self.probe is None:
            raise RuntimeError("start_phase() must measure the baseline first")
        cosine = probe_cosine(encoder, self.probe, self.config.probe_tokens)
        report = diagnose(
            step,
            metrics,
            baseline=self.baseline,
            token_cosine=cosine,
            learning_checked=step >= self.after_steps,
            config=self.config,
        )
        self.failing_checks = self.failing_checks + 1 if report.fatal else 0
        report.failing_checks = self.failing_checks
        return report
