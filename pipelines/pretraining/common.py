"""What every step of the pretraining data job shares: its vocabulary input, the seeds of its
random choices, its errors and its counters' namespace.

Both ways the job moves data between its steps (shuffle_exchange.py and local_exchange.py) use
these, and must give the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems
from tokenizers import Tokenizer

from bertdata.tokens import TOKENIZER_NAME, VOCAB_NAME
from pipelines.arrow_shards import join, read_bytes
from pipelines.options import PretrainingDataConfig
from pipelines.vocab import read_vocab_dir
from wordpiece.tokenizer import CONFIG_NAME
from wordpiece.vocab_file import special_token_ids

STAGE = "pretraining_data"  # also the namespace of the job's counters


class BadInputError(ValueError):
    """Inputs the job refuses, with the file they came from."""


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
