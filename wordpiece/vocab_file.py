"""vocab.txt in BERT's format: one token per line, the line number is the id."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bertdata.tokens import CLS, CONTINUATION_PREFIX, MASK, PAD, SEP, SPECIAL_TOKENS, UNK

__all__ = ["CLS", "CONTINUATION_PREFIX", "MASK", "PAD", "SEP", "SPECIAL_TOKENS", "UNK"]  # here too
UNUSED_BEFORE_UNK = 99  # bert-base puts [unused0]..[unused98] between [PAD] and [UNK]


class VocabFileError(ValueError):
    """A vocab.txt that a BERT tokenizer cannot use as it is."""


def unused_token(index: int) -> str:
    return f"[unused{index}]"


def special_tokens_layout(num_unused: int = 0) -> list[str]:
    """The first ids of a vocabulary: special tokens and `num_unused` reserved [unusedN] slots.

    BERT's layout: [PAD], up to 99 reserved slots, [UNK] [CLS] [SEP] [MASK], the other slots.
    With no reserved slots that is [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; with 994 it is
    exactly the first 999 lines of bert-base-uncased.
    """
    if num_unused < 0:
        raise ValueError(f"num_unused must be 0 or more, got {num_unused}")
    head = min(num_unused, UNUSED_BEFORE_UNK)
    return [
        PAD,
        *(unused_token(i) for i in range(head)),
        UNK,
        CLS,
        SEP,
        MASK,
        *(unused_token(i) for i in range(head, num_unused)),
    ]


def parse_vocab(data: bytes, *, source: str) -> list[str]:
    """Tokens of a vocab.txt's bytes, checked; errors name `source`, the line and what to change."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise VocabFileError(f"{source}: starts with a UTF-8 byte order mark; save it without one")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    tokens: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # Windows line endings, read as transformers reads them
        try:
            token = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise VocabFileError(
                f"{source}: line {number} is not valid UTF-8 ({err.reason}); "
                "vocab.txt must be UTF-8 text"
            ) from None
        tokens.append(token)
    validate_vocab(tokens, source=source)
    return tokens


def validate_vocab(tokens: Sequence[str], *, source: str) -> None:
    """Raise VocabFileError unless every token is usable, unique and the special tokens are there."""
    if not tokens:
        raise VocabFileError(f"{source}: holds no tokens")
    first_line: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        where = f"{source}: line {number}"
        if token == "":
            raise VocabFileError(f"{where} is empty; every line must hold one token")
        if any(c.isspace() for c in token):
            raise VocabFileError(
                f"{where}: token {token!r} contains whitespace, which the tokenizer never "
                "produces; remove the line or fix the token"
            )
        if token in first_line:
            raise VocabFileError(
                f"{where}: token {token!r} repeats line {first_line[token]}; each token must "
                "appear once, since its line number is its id"
            )
        first_line[token] = number
    missing = [t for t in SPECIAL_TOKENS if t not in first_line]
    if missing:
        raise VocabFileError(
            f"{source}: lacks the special token(s) {' '.join(missing)}; a BERT vocabulary needs "
            f"{' '.join(SPECIAL_TOKENS)} (conventionally on the first lines)"
        )
    if len(first_line) == len(SPECIAL_TOKENS):
        raise VocabFileError(f"{source}: holds only the special tokens, no word pieces")


def vocab_bytes(tokens: Sequence[str]) -> bytes:
    """The vocab.txt bytes of `tokens`: one per line, each line ending in a newline."""
    return "".join(f"{t}\n" for t in tokens).encode("utf-8")


def read_vocab(path: str | Path) -> list[str]:
    """Read and check a local vocab.txt."""
    return parse_vocab(Path(path).read_bytes(), source=str(path))


def special_token_ids(tokens: Sequence[str]) -> dict[str, int]:
    """Ids of [PAD], [UNK], [CLS], [SEP] and [MASK] in a checked vocabulary."""
    ids = {t: i for i, t in enumerate(tokens) if t in SPECIAL_TOKENS}
    return {t: ids[t] for t in SPECIAL_TOKENS}
