"""The tokenizer of a checkpoint directory: vocab.txt + lower-casing -> a `tokenizers.Tokenizer`.

This is a stand-in for the shared `wordpiece/` package: `build_wordpiece` is the only place that
builds the tokenizer, so switching to `wordpiece.tokenizer.build_tokenizer(vocab,
TokenizerOptions(lowercase=lowercase))` is a one-line change. Text is always encoded without
special tokens; `frame_pair` adds [CLS] A [SEP] B [SEP] itself, so truncation is exactly
google-research/bert's `truncate_seq_pair`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from bertdata.tokens import CLS, HF_CONFIG_NAME, MASK, PAD, SEP, UNK, VOCAB_NAME
from wordpiece.tokenizer import MAX_INPUT_CHARS_PER_WORD, TokenizerOptions, build_tokenizer


class TokenizerError(ValueError):
    """A checkpoint has no tokenizer, or one that does not match its model."""


def build_wordpiece(
    vocab: list[str], *, lowercase: bool, max_chars: int = MAX_INPUT_CHARS_PER_WORD
) -> Tokenizer:
    """BERT's basic tokenizer + WordPiece for `vocab` (ids = positions), no post-processor;
    words over `max_chars` characters become [UNK]."""
    options = TokenizerOptions(lowercase=lowercase, max_input_chars_per_word=max_chars)
    tokenizer = build_tokenizer(vocab, options)
    tokenizer.post_processor = None  # the task encoders place [CLS] and [SEP] themselves
    return tokenizer


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> bool:
    """Pop from the longer list until both fit in max_length; True if anything was removed.

    One token at a time from the longer one: a short sentence keeps proportionally more of its
    tokens than a long one, as in google-research/bert.
    """
    truncated = False
    while len(tokens_a) + len(tokens_b) > max_length:
        truncated = True
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    return truncated


@dataclass(frozen=True)
class CheckpointTokenizer:
    """A checkpoint's tokenizer and the ids of its special tokens."""

    tokenizer: Tokenizer  # basic tokenizer + WordPiece; encode with add_special_tokens=False
    vocab: list[str]  # token of each id, from vocab.txt
    lowercase: bool  # whether text is lower-cased (and accents stripped) before WordPiece
    source: str  # the vocab.txt read

    @property
    def cls_id(self) -> int:
        return self.vocab.index(CLS)

    @property
    def sep_id(self) -> int:
        return self.vocab.index(SEP)

    @property
    def pad_id(self) -> int:
        return self.vocab.index(PAD)

    @property
    def unk_id(self) -> int:
        return self.vocab.index(UNK)

    def encode_texts(self, texts: list[str]) -> list[Encoding]:
        """WordPiece encodings (ids, offsets into each text) without special tokens."""
        return self.tokenizer.encode_batch(texts, add_special_tokens=False)

    def encode_words(self, sentences: list[list[str]]) -> list[Encoding]:
        """Encodings of pre-split words; `word_ids` says which word each piece came from."""
        return self.tokenizer.encode_batch(
            sentences, is_pretokenized=True, add_special_tokens=False
        )

    def frame_pair(
        self, ids_a: list[int], ids_b: list[int] | None, max_seq_length: int
    ) -> tuple[list[int], list[int], bool]:
        """[CLS] A [SEP] (B [SEP]) ids and segment ids, truncated to fit; True if truncated."""
        a = list(ids_a)
        b = list(ids_b) if ids_b is not None else []
        truncated = truncate_seq_pair(a, b, max_seq_length - (3 if ids_b is not None else 2))
        input_ids = [self.cls_id, *a, self.sep_id]
        token_type_ids = [0] * len(input_ids)
        if ids_b is not None:
            input_ids += [*b, self.sep_id]
            token_type_ids += [1] * (len(b) + 1)
        return input_ids, token_type_ids, truncated

    def save(self, directory: Path, max_length: int = 512) -> None:
        """Write vocab.txt and a tokenizer_config.json that transformers also reads; its
        model_max_length is the length fine-tuned at, where truncation=True then cuts."""
        (directory / VOCAB_NAME).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": None,
            "tokenize_chinese_chars": True,
            "unk_token": UNK,
            "sep_token": SEP,
            "pad_token": PAD,
            "cls_token": CLS,
            "mask_token": MASK,
            "model_max_length": max_length,
        }
        (directory / HF_CONFIG_NAME).write_text(
            json.dumps(config, indent=2) + "\n", encoding="utf-8"
        )


def read_vocab(path: Path) -> list[str]:
    """Tokens of a vocab.txt, one per line; the line number (from 0) is the id."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TokenizerError(f"{path}: not UTF-8 text ({error})") from error
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _lowercase_setting(directory: Path, vocab: list[str]) -> bool:
    """do_lower_case from tokenizer_config.json; without one, uncased unless the vocab has capitals."""
    path = directory / HF_CONFIG_NAME
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TokenizerError(f"{path}: not valid JSON ({error})") from error
        if isinstance(config, dict) and isinstance(config.get("do_lower_case"), bool):
            return config["do_lower_case"]
    # A cased vocabulary (bert-base-cased) holds capitalised words; an uncased one holds none.
    return not any(t[:1].isupper() for t in vocab if not (t.startswith("[") and t.endswith("]")))


def load_tokenizer(directory: str | Path, *, vocab_size: int | None = None) -> CheckpointTokenizer:
    """The tokenizer of checkpoint `directory`; checks it against the model's vocab_size."""
    directory = Path(directory)
    path = directory / VOCAB_NAME
    if not path.is_file():
        raise TokenizerError(
            f"{directory}: no {VOCAB_NAME}; a checkpoint for fine-tuning needs the vocabulary "
            "it was trained with (copy its vocab.txt next to config.json)"
        )
    vocab = read_vocab(path)
    missing = [t for t in (PAD, UNK, CLS, SEP) if t not in vocab]
    if missing:
        raise TokenizerError(f"{path}: lacks the special token(s) {missing}")
    duplicates = len(vocab) - len(set(vocab))
    if duplicates:
        raise TokenizerError(f"{path}: {duplicates} token(s) appear more than once")
    if vocab_size is not None and len(vocab) != vocab_size:
        raise TokenizerError(
            f"{path}: has {len(vocab)} tokens but the model's config.json says vocab_size "
            f"{vocab_size}; this vocabulary does not belong to this checkpoint"
        )
    lowercase = _lowercase_setting(directory, vocab)
    wordpiece = build_wordpiece(vocab, lowercase=lowercase, max_chars=_word_limit(directory))
    return CheckpointTokenizer(wordpiece, vocab, lowercase, str(path))


def _word_limit(directory: Path) -> int:
    """The longest word the checkpoint's tokenizer.json splits into pieces (transformers'
    files say 100); without one, BERT's own 200."""
    path = directory / "tokenizer.json"
    if path.is_file():
        try:
            limit = json.loads(path.read_text(encoding="utf-8"))["model"][
                "max_input_chars_per_word"
            ]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise TokenizerError(f"{path}: no readable WordPiece model ({error})") from error
        if isinstance(limit, int) and limit > 0:
            return limit
    return MAX_INPUT_CHARS_PER_WORD
