"""BERT's WordPiece tokenizer on the Rust `tokenizers` library: build, save, check and load it.

A vocabulary directory holds vocab.txt (the ids), tokenizer.json (the whole tokenizer, for
`tokenizers` and `transformers`) and vocab_config.json (the options below). Load it with
`load_tokenizer(directory)`, which refuses a tokenizer.json that disagrees with the others.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, processors
from tokenizers.models import WordPiece

from bertdata.tokens import TOKENIZER_NAME, VOCAB_NAME
from schemas.versioned_json import read_versioned_json
from wordpiece.normalization import (
    UNICODE_VERSION,
    bert_normalizer,
    bert_pre_tokenizer,
    isolation_table,
)
from wordpiece.vocab_file import (
    CLS,
    CONTINUATION_PREFIX,
    SEP,
    SPECIAL_TOKENS,
    UNK,
    parse_vocab,
    special_token_ids,
    validate_vocab,
)

CONFIG_NAME = "vocab_config.json"
# google-research/bert's WordpieceTokenizer: a word of 200 characters becomes pieces, one of
# 201 [UNK]. (tokenizers' and transformers' own default is 100.)
MAX_INPUT_CHARS_PER_WORD = 200
CONFIG_FORMAT = "bert-pipeline-vocab-config"
CONFIG_VERSION = 1


class TokenizerMismatchError(ValueError):
    """tokenizer.json, vocab.txt and vocab_config.json do not describe the same tokenizer."""


@dataclass(frozen=True, kw_only=True)
class TokenizerOptions:
    """How text becomes words before WordPiece; BERT's defaults are bert-base-uncased's."""

    lowercase: bool = True  # uncased like bert-base-uncased; False keeps case (bert-base-cased)
    strip_accents: bool | None = None  # None: strip exactly when lower-casing, as BERT does
    tokenize_chinese_chars: bool = True  # every CJK ideograph is a word of its own
    max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD  # a longer word becomes [UNK]

    def __post_init__(self) -> None:
        if self.max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be at least 1, got {self.max_input_chars_per_word}"
            )

    @property
    def accents_stripped(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents

    def to_dict(self) -> dict[str, Any]:
        """The options with accent stripping resolved to True or False."""
        return {
            "lowercase": self.lowercase,
            "strip_accents": self.accents_stripped,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "max_input_chars_per_word": self.max_input_chars_per_word,
        }


def build_tokenizer(vocab: Sequence[str], options: TokenizerOptions) -> Tokenizer:
    """The BERT tokenizer for a vocabulary: basic tokenizer, WordPiece, [CLS] A [SEP] B [SEP]."""
    validate_vocab(vocab, source="vocabulary")
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = Tokenizer(
        WordPiece(
            ids,
            unk_token=UNK,
            continuing_subword_prefix=CONTINUATION_PREFIX,
            max_input_chars_per_word=options.max_input_chars_per_word,
        )
    )
    tokenizer.normalizer = bert_normalizer(
        lowercase=options.lowercase, strip_accents=options.accents_stripped
    )
    tokenizer.pre_tokenizer = bert_pre_tokenizer(
        tokenize_chinese_chars=options.tokenize_chinese_chars
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, ids[CLS]), (SEP, ids[SEP])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    # As in BERT's Python port: "[MASK]" typed in text is the mask token, not three words.
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    return tokenizer


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """tokenizer.json text; the same tokenizer always gives the same bytes."""
    return tokenizer.to_str(pretty=True) + "\n"


class WordSplitter:
    """Text to words exactly as BERT's basic tokenizer splits it: what the vocabulary learns from.

    The normalizer is the tokenizer's own; the split after it is done by str.translate and
    str.split, the reference's own whitespace split, which is twice as fast as getting
    (word, offsets) pairs back from the pre-tokenizer. Tests hold both to the reference.
    """

    def __init__(self, options: TokenizerOptions):
        self._normalizer = bert_normalizer(
            lowercase=options.lowercase, strip_accents=options.accents_stripped
        )
        self._isolate = isolation_table(tokenize_chinese_chars=options.tokenize_chinese_chars)

    def split(self, text: str) -> list[str]:
        return self._normalizer.normalize_str(text).translate(self._isolate).split()


def vocab_config_json(vocab: Sequence[str], options: TokenizerOptions, **extra: Any) -> str:
    """vocab_config.json: the options, vocabulary size, special token ids and Unicode version."""
    body = {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        **options.to_dict(),
        "vocab_size": len(vocab),
        "special_token_ids": special_token_ids(vocab),
        "unicode_version": UNICODE_VERSION,
        **extra,
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def read_vocab_config(text: str | bytes, *, source: str) -> tuple[TokenizerOptions, dict]:
    """The options of a vocab_config.json, and the whole file as a dict."""
    body = read_versioned_json(
        text,
        source=source,
        format_name=CONFIG_FORMAT,
        version_key="version",
        version=CONFIG_VERSION,
        error=TokenizerMismatchError,
    )
    try:
        options = TokenizerOptions(
            lowercase=bool(body["lowercase"]),
            strip_accents=bool(body["strip_accents"]),
            tokenize_chinese_chars=bool(body["tokenize_chinese_chars"]),
            max_input_chars_per_word=int(body["max_input_chars_per_word"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise TokenizerMismatchError(f"{source}: missing or bad field {err}") from err
    return options, body


def hf_tokenizer_config_json(options: TokenizerOptions) -> str:
    """tokenizer_config.json for transformers: BertTokenizerFast.from_pretrained reads it."""
    body = {
        # A BERT class: AutoTokenizer then honours do_lower_case; a generic one ignores it.
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": options.lowercase,
        "strip_accents": options.accents_stripped,
        "tokenize_chinese_chars": options.tokenize_chinese_chars,
        "do_basic_tokenize": True,
        "unk_token": UNK,
        "sep_token": SEP,
        "pad_token": "[PAD]",
        "cls_token": CLS,
        "mask_token": "[MASK]",
        "model_max_length": 512,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    return json.dumps(body, indent=2) + "\n"


def observed_options(tokenizer: Tokenizer, max_input_chars_per_word: int) -> TokenizerOptions:
    """What a tokenizer does to probe text (lower-casing, accents, CJK), whatever its JSON form."""

    def normalize(text: str) -> str:
        return tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer else text

    def words(text: str) -> list[str]:
        normalized = normalize(text)
        if tokenizer.pre_tokenizer is None:
            return normalized.split()
        return [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]

    accented = normalize("\u00c9")  # É
    return TokenizerOptions(
        lowercase=normalize("A") == "a",
        strip_accents=not any(
            unicodedata.combining(c) for c in unicodedata.normalize("NFD", accented)
        ),
        tokenize_chinese_chars=len(words("\u4e2d\u6587")) == 2,  # 中文
        max_input_chars_per_word=max_input_chars_per_word,
    )


def check_tokenizer(
    tokenizer: Tokenizer, vocab: Sequence[str], options: TokenizerOptions, *, source: str
) -> None:
    """Raise TokenizerMismatchError, saying what differs, unless `tokenizer` is vocab + options."""
    model = tokenizer.model
    if not isinstance(model, WordPiece):
        raise TokenizerMismatchError(
            f"{source}: holds a {type(model).__name__} model, not WordPiece"
        )
    expected = {token: i for i, token in enumerate(vocab)}
    actual = tokenizer.get_vocab(with_added_tokens=False)
    for token, i in expected.items():
        if token not in actual:
            raise TokenizerMismatchError(
                f"{source}: lacks token {token!r}, line {i + 1} of vocab.txt; "
                "use the tokenizer.json made from this vocab.txt"
            )
        if actual[token] != i:
            raise TokenizerMismatchError(
                f"{source}: gives token {token!r} id {actual[token]} but vocab.txt has it on "
                f"line {i + 1} (id {i}); use the tokenizer.json made from this vocab.txt"
            )
    if len(actual) != len(expected):
        extra = sorted((i, t) for t, i in actual.items() if t not in expected)[0]
        raise TokenizerMismatchError(
            f"{source}: has {len(actual)} tokens, vocab.txt {len(expected)}; e.g. "
            f"{extra[1]!r} (id {extra[0]}) is not in vocab.txt"
        )
    settings = {
        "unknown token": (model.unk_token, UNK),
        "continuation prefix": (model.continuing_subword_prefix, CONTINUATION_PREFIX),
        "max_input_chars_per_word": (
            model.max_input_chars_per_word,
            options.max_input_chars_per_word,
        ),
    }
    for name, (got, want) in settings.items():
        if got != want:
            raise TokenizerMismatchError(f"{source}: {name} is {got!r}, expected {want!r}")
    observed = observed_options(tokenizer, options.max_input_chars_per_word).to_dict()
    for name, want in options.to_dict().items():
        if observed[name] != want:
            raise TokenizerMismatchError(
                f"{source}: {name} is {observed[name]} in this tokenizer but {want} in the "
                "vocabulary's options (cased/uncased, accents, CJK); make them agree"
            )
    ids = special_token_ids(vocab)
    probe = Tokenizer.from_str(tokenizer.to_str())  # a copy: padding off, caller's untouched
    probe.no_padding()
    probe.no_truncation()
    encoded = probe.encode("a", "b")
    if encoded.ids[0] != ids[CLS] or encoded.ids[-1] != ids[SEP] or encoded.type_ids[-1] != 1:
        raise TokenizerMismatchError(
            f"{source}: does not frame text as [CLS] A [SEP] B [SEP] with vocab.txt's ids "
            f"({CLS}={ids[CLS]}, {SEP}={ids[SEP]})"
        )


def tokenizer_from_json(text: str, *, source: str) -> Tokenizer:
    """A tokenizer from tokenizer.json text; an unreadable file's error names `source`."""
    try:
        return Tokenizer.from_str(text)
    except Exception as err:  # the library raises a bare Exception for unreadable JSON
        raise TokenizerMismatchError(f"{source}: not a tokenizers file ({err})") from err


def tokenizer_from_files(
    *, vocab_txt: bytes, tokenizer_json_text: str, vocab_config_text: str, source: str
) -> Tokenizer:
    """The tokenizer of a vocabulary directory's three files, after checking they agree."""
    vocab = parse_vocab(vocab_txt, source=f"{source}/{VOCAB_NAME}")
    options, _ = read_vocab_config(vocab_config_text, source=f"{source}/{CONFIG_NAME}")
    tokenizer = tokenizer_from_json(tokenizer_json_text, source=f"{source}/{TOKENIZER_NAME}")
    check_tokenizer(tokenizer, vocab, options, source=f"{source}/{TOKENIZER_NAME}")
    return tokenizer


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The checked tokenizer of a local vocabulary directory (the vocab stage's output)."""
    d = Path(directory)
    return tokenizer_from_files(
        vocab_txt=(d / VOCAB_NAME).read_bytes(),
        tokenizer_json_text=(d / TOKENIZER_NAME).read_text(encoding="utf-8"),
        vocab_config_text=(d / CONFIG_NAME).read_text(encoding="utf-8"),
        source=str(d),
    )
