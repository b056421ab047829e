"""The pretraining objectives of the paper's ablations, as transforms of a loaded batch.

The data stage chose which tokens to predict and how to replace them (80% [MASK], 10% a random
token, 10% kept). The ablations change that after loading, so that one data set serves every
arm of a comparison:

- mask mix (Table 8): the same chosen positions, their replacement redrawn with other shares
  of [MASK] / same / random (`objective.mask_mix`, e.g. "100/0/0");
- left to right (Table 5, "LTR & No NSP"): the original tokens restored, every real token
  predicts the next one, and the model attends to the left only (BertConfig.is_decoder).

The NSP switch is not a batch transform: BertForPreTraining.pretraining_loss(nsp=False).
Each transform is deterministic in its torch.Generator, which the trainer seeds from
(seed, step, stream) so that a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bertdata.masking import MaskingVocab
from model.pretraining_batch import IGNORE_INDEX, PretrainingBatch
from model.train_config import ObjectiveConfig, parse_mask_mix


def restore_tokens(batch: PretrainingBatch) -> torch.Tensor:
    """(B, T) input ids with every masked slot given back its original token."""
    ids = batch.input_ids.clone()
    used = batch.masked_lm_labels != IGNORE_INDEX  # (B, P)
    rows = torch.arange(ids.size(0)).unsqueeze(1).expand_as(used)  # (B, P)
    ids[rows[used], batch.masked_lm_positions[used]] = batch.masked_lm_labels[used]
    return ids


def remix(
    batch: PretrainingBatch,
    mix: tuple[float, float, float],
    tables: MaskingVocab,
    generator: torch.Generator,
) -> PretrainingBatch:
    """The batch with each chosen token replaced afresh: [MASK] with probability mix[0],
    kept with mix[1], a random ordinary token with mix[2]. Positions and labels are unchanged."""
    ids = restore_tokens(batch)
    used = batch.masked_lm_labels != IGNORE_INDEX  # (B, P)
    rows = torch.arange(ids.size(0)).unsqueeze(1).expand_as(used)[used]  # (N,)
    cols = batch.masked_lm_positions[used]  # (N,)
    draw = torch.rand(rows.numel(), generator=generator)  # (N,)
    to_mask = draw < mix[0]
    to_random = draw >= mix[0] + mix[1]
    ids[rows[to_mask], cols[to_mask]] = tables.mask_id
    candidates = torch.from_numpy(tables.random_token_ids)
    picks = torch.randint(len(candidates), (int(to_random.sum()),), generator=generator)
    ids[rows[to_random], cols[to_random]] = candidates[picks]
    return dataclasses.replace(batch, input_ids=ids)


def left_to_right(batch: PretrainingBatch) -> PretrainingBatch:
    """The original tokens, with slot t of each sequence predicting token t+1 (T-1 slots);
    slots whose next token is padding are labelled IGNORE_INDEX and point at position 0."""
    ids = restore_tokens(batch)
    B, T = ids.shape
    real_next = batch.attention_mask[:, 1:]  # (B, T-1)
    positions = torch.arange(T - 1).expand(B, T - 1).masked_fill(~real_next, 0)  # (B, T-1)
    labels = ids[:, 1:].masked_fill(~real_next, IGNORE_INDEX)  # (B, T-1)
    return dataclasses.replace(
        batch, input_ids=ids, masked_lm_positions=positions.contiguous(), masked_lm_labels=labels
    )


class Objective:
    """One run's objective: how its batches are transformed and whether NSP counts."""

    def __init__(self, config: ObjectiveConfig, vocab_tokens: list[str] | None = None) -> None:
        self.config = config
        self.nsp = config.nsp
        self.mix = parse_mask_mix(config.mask_mix) if config.mask_mix else None
        self.tables = None
        if self.mix is not None:
            if vocab_tokens is None:
                raise ValueError("objective.mask_mix needs the vocabulary's tokens")
            self.tables = MaskingVocab.from_tokens(vocab_tokens)

    @property
    def changes_batches(self) -> bool:
        return self.mix is not None or self.config.name == "ltr"

    def prepare(self, batch: PretrainingBatch, generator: torch.Generator) -> PretrainingBatch:
        """The batch as this objective trains on it (a CPU batch, before it moves to the device)."""
        if self.config.name == "ltr":
            return left_to_right(batch)
        if self.mix is not None:
            assert self.tables is not None
            return remix(batch, self.mix, self.tables, generator)
        return batch


def batch_generator(*words: int) -> torch.Generator:
    """A torch.Generator seeded from integers (seed, step, stream...), the same everywhere."""
    seed = int(np.random.SeedSequence([*words, 0x0B1E]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)
