"""Memory a pretraining run will need, estimated before it starts.

A run that cannot fit used to be killed by the kernel minutes in, with no message from the
project (bert_base at the paper's batch of 256 on a CPU: killed at 17.4 GB). The trainer now
estimates, once the model is built, what each phase adds on top of the process as it stands:
gradients and optimizer moments (8 bytes and more per parameter) and the activations that one
micro-batch keeps for the backward pass. It refuses a run that needs more than the memory
available, naming the micro-batch size that would fit, and warns when it is close.

The activation coefficients are measured, not derived: bench/memory_estimate.py runs the
trainer at several sizes and prints its peak resident memory against this estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.bert import BertForPreTraining
from model.config import BertConfig

# Bytes kept for the backward pass per layer, per token, per unit of width (fp32 on CPU),
# measured by bench/memory_estimate.py. Autocast to bf16 halves most of them on GPU.
PER_TOKEN_HIDDEN = 4 * 14  # x, q, k, v, attention output, residuals, LayerNorms, dropout masks
PER_TOKEN_INTERMEDIATE = 4 * 3  # the feed-forward input to GELU, its output, the dropout mask
PER_SCORE = 4 * 2  # attention scores and probabilities where the kernel materialises them
PER_PREDICTION_VOCAB = 4 * 3  # MLM logits over the vocabulary, their softmax and gradient


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a phase adds to the process once training starts."""

    parameters: int
    states: int  # gradients and optimizer moments (the weights are already in memory)
    activations: int  # one micro-batch's forward, kept for its backward

    @property
    def total(self) -> int:
        return self.states + self.activations


def count_parameters(config: BertConfig) -> int:
    """Parameters of the pretraining model, counted without allocating it."""
    with torch.device("meta"):
        model = BertForPreTraining(config)
    return sum(p.numel() for p in model.parameters())


def estimate_phase(
    config: BertConfig,
    *,
    micro_batch_size: int,
    seq_length: int,
    max_predictions: int,
    optimizer: str = "adamw",
    half_precision: bool = False,
) -> MemoryEstimate:
    """What training at this micro-batch and length adds on top of the built model."""
    parameters = count_parameters(config)
    moments = 8 if optimizer in ("adamw", "lamb") else 4
    states = parameters * (4 + moments)  # fp32 gradients and moments
    tokens = micro_batch_size * seq_length
    per_layer = tokens * (
        PER_TOKEN_HIDDEN * config.hidden_size + PER_TOKEN_INTERMEDIATE * config.intermediate_size
    )
    per_layer += micro_batch_size * config.num_attention_heads * seq_length**2 * PER_SCORE
    predictions = micro_batch_size * max_predictions * PER_PREDICTION_VOCAB * config.vocab_size
    activations = config.num_hidden_layers * per_layer + predictions
    if half_precision:
        activations //= 2
    return MemoryEstimate(parameters=parameters, states=states, activations=activations)


def largest_fitting_micro_batch(
    estimate_for, micro_batch_size: int, global_batch_size: int, available: int
) -> int | None:
    """The largest divisor of the global batch (at most the current micro-batch) whose
    estimate fits `available`; None when not even one sequence does."""
    for candidate in sorted(_divisors(global_batch_size), reverse=True):
        if candidate <= micro_batch_size and estimate_for(candidate).total <= available:
            return candidate
    return None


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
