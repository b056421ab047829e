"""The pretraining data job's options, described once (bertdata/options.py): the job's command
line and the flows' `pretraining_data` section are built from `PretrainingDataConfig`.

Beam-free, so that the flows can import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bertdata.masking import MaskingConfig
from bertdata.options import check, option
from pipelines.pairs import SPECIAL_TOKENS_PER_PAIR

MIN_SEQ_LENGTH = 2 + SPECIAL_TOKENS_PER_PAIR  # [CLS] a [SEP] b [SEP]


@dataclass(frozen=True, kw_only=True)
class PretrainingDataConfig:
    """Options that shape the examples; all go into the manifests and their config hash.

    Each option is described once, here (bertdata/options.py): the command line and the flows'
    `pretraining_data` section are built from these declarations.
    """

    max_seq_lengths: tuple[int, ...] = option(
        (128, 512),
        "sequence lengths to build, one output directory seq<N> each; the paper trains 90% of "
        "steps at 128, then 10% at 512",
        ge=MIN_SEQ_LENGTH,
        le=4096,
    )
    max_predictions_per_seq: tuple[int, ...] = option(
        (),
        "masked-LM cap per length, in the same order; empty: 5/32 of each length (20 at 128, "
        "80 at 512)",
        ge=1,
    )
    masked_lm_prob: float = option(
        0.15, "share of the tokens masked (80% [MASK], 10% random, 10% kept)", gt=0.0, lt=1.0
    )
    short_seq_prob: float = option(
        0.1, "share of pairs given a shorter random target length", ge=0.0, le=1.0
    )
    dupe_factor: int = option(
        5, "passes over the corpus, each with other pairs and masks", ge=1, le=65535
    )
    whole_word_mask: bool = option(False, "mask all pieces of a word together")
    dynamic_masking: bool = option(
        False, "store unmasked pairs; the training loader masks them afresh each epoch"
    )
    seed: int = option(12345, "seed of every random choice, with each record's identity", ge=0)
    num_shards: int = option(0, "shards per length; 0: automatic (--examples-per-shard)", ge=0)
    examples_per_shard: int = option(50_000, "target examples per shard when num_shards is 0", ge=1)
    max_position_embeddings: int = option(
        512, "the model's longest sequence; longer max_seq_lengths are refused", ge=MIN_SEQ_LENGTH
    )

    def __post_init__(self) -> None:
        if not self.max_predictions_per_seq:  # the paper's caps for these lengths
            caps = tuple(default_max_predictions(n) for n in self.max_seq_lengths)
            object.__setattr__(self, "max_predictions_per_seq", caps)

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
        check(self)
        if not self.max_seq_lengths:
            raise ValueError("max_seq_lengths must name at least one length")
        if len(set(self.max_seq_lengths)) != len(self.max_seq_lengths):
            raise ValueError(f"max_seq_lengths has duplicates: {self.max_seq_lengths}")
        if len(self.max_predictions_per_seq) != len(self.max_seq_lengths):
            raise ValueError(
                f"max_predictions_per_seq {self.max_predictions_per_seq} needs one value per "
                f"length in max_seq_lengths {self.max_seq_lengths}"
            )
        for length, cap in zip(self.max_seq_lengths, self.max_predictions_per_seq, strict=True):
            if length > self.max_position_embeddings:
                raise ValueError(
                    f"max_seq_length {length} exceeds the position table "
                    f"(max_position_embeddings {self.max_position_embeddings})"
                )
            if not 1 <= cap <= length - SPECIAL_TOKENS_PER_PAIR:
                raise ValueError(
                    f"max_predictions_per_seq {cap} for length {length} must be in "
                    f"[1, {length - SPECIAL_TOKENS_PER_PAIR}]"
                )
        MaskingConfig(masked_lm_prob=self.masked_lm_prob).validate()

    def masking(self, length_index: int) -> MaskingConfig:
        return MaskingConfig(
            masked_lm_prob=self.masked_lm_prob,
            max_predictions_per_seq=self.max_predictions_per_seq[length_index],
            whole_word_mask=self.whole_word_mask,
        )

    def num_shards_for(self, num_examples: int) -> int:
        if self.num_shards:
            return self.num_shards
        return max(1, math.ceil(num_examples / self.examples_per_shard))


def default_max_predictions(max_seq_length: int) -> int:
    """The paper's caps, 20 at 128 and 80 at 512: 5/32 of the length, rounded up."""
    return -(-max_seq_length * 5 // 32)
