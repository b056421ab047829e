"""The pretraining data job's options, its vocabulary input and the seeds of its random choices.

Shared by both ways the job moves data between its steps (pipelines/pretraining_shuffle.py and
pipelines/pretraining_local.py), which must give the same bytes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems
from tokenizers import Tokenizer

from bertdata.masking import MaskingConfig
from bertdata.tokens import TOKENIZER_NAME, VOCAB_NAME
from pipelines.arrow_shards import join, read_bytes
from pipelines.pairs import SPECIAL_TOKENS_PER_PAIR
from pipelines.vocab import read_vocab_dir
from wordpiece.tokenizer import CONFIG_NAME
from wordpiece.vocab_file import special_token_ids

STAGE = "pretraining_data"  # also the namespace of the job's counters
MIN_SEQ_LENGTH = 2 + SPECIAL_TOKENS_PER_PAIR  # [CLS] a [SEP] b [SEP]


class BadInputError(ValueError):
    """Inputs the job refuses, with the file they came from."""


@dataclass(frozen=True, kw_only=True)
class PretrainingDataConfig:
    """Options that shape the examples; all go into the manifests and their config hash."""

    max_seq_lengths: tuple[int, ...] = (128, 512)  # one output directory seq<N> per length
    max_predictions_per_seq: tuple[int, ...] = (20, 80)  # masked-LM cap, one per length
    masked_lm_prob: float = 0.15  # share of maskable tokens to predict
    short_seq_prob: float = 0.1  # chance per pair of a shorter random target length
    dupe_factor: int = 5  # copies of the corpus, each with its own pairs and masks
    whole_word_mask: bool = False  # mask whole words, the 80/10/10 choice per word
    dynamic_masking: bool = False  # store unmasked pairs; the loader masks every epoch
    seed: int = 12345  # with a record's identity, seeds every random choice
    num_shards: int = 0  # shards per length; 0: ceil(examples / examples_per_shard)
    examples_per_shard: int = 50_000  # shard size when num_shards is 0
    max_position_embeddings: int = 512  # the model's position table: the longest length

    def validate(self) -> None:
        """Raise ValueError naming the first option that is out of range."""
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
            if length < MIN_SEQ_LENGTH:
                raise ValueError(f"max_seq_length {length} is below {MIN_SEQ_LENGTH}")
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
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if not 1 <= self.dupe_factor <= 65535:
            raise ValueError(f"dupe_factor must be in [1, 65535], got {self.dupe_factor}")
        if self.num_shards < 0:
            raise ValueError(f"num_shards must be 0 (automatic) or more, got {self.num_shards}")
        if self.examples_per_shard < 1:
            raise ValueError(f"examples_per_shard must be positive, got {self.examples_per_shard}")

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


@dataclass(frozen=True)
class Vocabulary:
    """A vocabulary directory, checked: its tokens, special ids and manifest hash."""

    directory: str
    tokens: list[str]
    manifest_hash: str

    @property
    def special_ids(self) -> dict[str, int]:
        return special_token_ids(self.tokens)


def read_vocabulary_files(vocab_dir: str) -> tuple[list[str], Tokenizer, str]:
    """The tokens and the checked tokenizer of a finished vocab stage (local or gs://), and the
    hash of its manifest.

    The vocab stage's reader checks its manifest, the files' checksums and that tokenizer.json
    agrees with vocab.txt. Padding and truncation, which a tokenizer.json may have been saved
    with, are turned off.
    """
    for name in (VOCAB_NAME, TOKENIZER_NAME, CONFIG_NAME):
        path = join(vocab_dir, name)
        if not FileSystems.exists(path):
            raise BadInputError(f"{path}: missing; {vocab_dir} is not a vocabulary directory")
    tokenizer, vocab_hash = read_vocab_dir(vocab_dir)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # read_vocab_dir checked that the tokenizer's vocabulary is vocab.txt, token for token
    by_id = tokenizer.get_vocab(with_added_tokens=False)
    tokens = sorted(by_id, key=by_id.__getitem__)
    return tokens, tokenizer, vocab_hash


def vocab_lines(vocab_dir: str) -> list[str]:
    """vocab.txt's tokens, unchecked: for workers, after the driver checked the directory."""
    return [
        line.removesuffix("\r")
        for line in read_bytes(join(vocab_dir, VOCAB_NAME)).decode("utf-8").split("\n")[:-1]
    ]


def load_vocabulary(vocab_dir: str) -> Vocabulary:
    """A finished vocabulary stage's output, its files checked."""
    tokens, _, vocab_hash = read_vocabulary_files(vocab_dir)
    return Vocabulary(vocab_dir, tokens, vocab_hash)


def record_seed(seed: int, *identity: Any) -> int:
    """A 128-bit rng seed from the job's seed and a record's identity."""
    text = "\x1f".join(str(part) for part in (seed, *identity))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def doc_hash(doc_id: str) -> int:
    """The 64-bit hash that orders documents and assigns them to buckets."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")


def checked_num_shards(config: PretrainingDataConfig, total_examples: int, length: int) -> int:
    """Shards of one length; no example at all is an error, not an empty output."""
    if total_examples == 0:
        raise BadInputError(
            f"no pretraining examples at length {length}: every document has a single sentence "
            "(a pair needs two segments of one document)"
        )
    return config.num_shards_for(total_examples)
