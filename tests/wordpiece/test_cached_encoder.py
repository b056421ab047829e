"""CachedEncoder gives exactly the tokenizer's ids for whole sentences, however full its caches."""

from __future__ import annotations

import array
import random
import string
import sys
import unicodedata

import pytest

from tests.wordpiece.test_tokenizer import CASED, EDGE_TEXTS, UNCASED, _sweep_texts
from wordpiece.cached_encoder import CachedEncoder
from wordpiece.normalization import bert_normalizer
from wordpiece.tokenizer import TokenizerOptions, build_tokenizer
from wordpiece.vocab_file import read_vocab

# Characters that stress the chunk boundary: white space other than U+0020, controls that
# cleaning deletes, combining marks, final-sigma contexts, CJK, special tokens typed in text.
_ALPHABET = list("abcXYZ019 .,;'\"[]()-_~`#\t\n\x00\x1f\x7f\xa0é\u0301Σσ中\u2028\ufffd") + [
    "[MASK]", "[SEP]", "[mask]", "##", "ΣΑΣ", "  ", "Straße", "İ", "H\u0331", "j\u030c", "Å",
]  # fmt: skip
UNCASED_ACCENTS_KEPT = TokenizerOptions(lowercase=True, strip_accents=False)


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def _ids(cache: CachedEncoder, texts: list[str], batch: int = 50) -> list[list[int]]:
    out = []
    for i in range(0, len(texts), batch):
        out += [array.array(cache.typecode, b).tolist() for b in cache.encode(texts[i : i + batch])]
    return out


def _assert_same(tokenizer, cache: CachedEncoder, texts: list[str]) -> None:
    expected = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    got = _ids(cache, texts)
    for text, g, e in zip(texts, got, expected, strict=True):
        if g != e:
            pytest.fail(f"{text!r}\n  cache:     {g}\n  tokenizer: {e}")


_SIZES = {"large": (1 << 19, 1 << 18), "full": (40, 10), "none": (0, 0)}
_OPTIONS = {"uncased": UNCASED, "cased": CASED, "accents-kept": UNCASED_ACCENTS_KEPT}


@pytest.mark.parametrize(
    ("options", "sizes"),
    [
        (_OPTIONS[o], _SIZES[s])
        for o, s in [
            *((o, s) for o in ("uncased", "cased") for s in _SIZES),
            ("accents-kept", "full"),
        ]
    ],
    ids=lambda v: next((k for d in (_OPTIONS, _SIZES) for k, x in d.items() if x == v), None),
)
def test_ids_equal_the_tokenizer_on_hard_and_real_text(
    options, sizes, bert_vocab_path, sample_text
):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), options)
    texts = EDGE_TEXTS + sample_text + _random_texts(3000, seed=1) + _sweep_texts()[:40]
    cache = CachedEncoder(
        tokenizer,
        typecode="H",
        lowercase=options.lowercase,
        accents_stripped=options.accents_stripped,
        max_chunks=sizes[0],
        max_words=sizes[1],
    )
    _assert_same(tokenizer, cache, texts)
    _assert_same(tokenizer, cache, texts[::-1])  # again, now from what the caches hold
    swapped = [t.swapcase() for t in texts]  # the same chunks in other cases, served again
    _assert_same(tokenizer, cache, swapped)
    assert len(cache._chunks) <= sizes[0] and len(cache._words) <= sizes[1]


def test_without_the_ascii_path_and_with_int32_ids(bert_vocab_path, sample_text):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    cache = CachedEncoder(tokenizer, typecode="i", lowercase=None)
    texts = EDGE_TEXTS + sample_text[:200]
    _assert_same(tokenizer, cache, texts)
    assert cache.itemsize == 4


def test_repeated_words_and_chunks_are_served_from_the_caches(bert_vocab_path):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    cache = CachedEncoder(tokenizer, typecode="H", lowercase=True, accents_stripped=True)
    # Printable ASCII: words. "the" twice, then "dog" is the only new word.
    cache.encode(["The cat sat on the mat.", "The dog sat."])
    assert (cache.words_seen, cache.words_new) == (11, 7)
    cache.encode(["THE CAT SAT."])  # other case, same words once lower-cased
    assert (cache.words_seen, cache.words_new) == (15, 7)
    # Other text: space-separated chunks, distinct per call, ASCII letters lower-cased.
    cache.encode(["Café au lait, café.", "Café noir."])
    assert (cache.chunks_seen, cache.chunks_new) == (5, 5)  # "café" in both
    cache.encode(["CAFé NOIR, Café."])  # "café", "noir," and "café." once lower-cased
    assert (cache.chunks_seen, cache.chunks_new) == (8, 6)  # only "noir," is new
    assert len(cache._chunks) == 6


def _combining_marks() -> list[str]:
    return [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c < 0xE000 and unicodedata.combining(chr(c))
    ]


def test_ascii_case_is_folded_only_where_the_uncased_normalizer_ignores_it():
    # What the chunk path's lower-casing of ASCII letters rests on: with BERT's uncased options,
    # every ASCII letter normalizes the same in either case, next to any combining mark and in
    # final-sigma contexts. With accents kept it does not hold, and the encoder keeps the case.
    texts = [
        form.format(letter, mark)
        for letter in string.ascii_uppercase
        for mark in _combining_marks()
        for form in ("{0}{1}", "{0}{1}{1}Σ", "Σ{0}{1}Σ x")
    ]
    uncased = bert_normalizer(lowercase=True, strip_accents=True).normalize_str
    differ = [t for t in texts if uncased(t) != uncased(t.lower())]
    assert differ == []
    kept = bert_normalizer(lowercase=True, strip_accents=False).normalize_str
    assert kept("H\u0331") != kept("h\u0331")  # "h" + U+0331 composes to "ẖ"; "H" has none
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "h", "ẖ", "##\u0331"]
    tokenizer = build_tokenizer(tokens, UNCASED_ACCENTS_KEPT)
    folded = CachedEncoder(tokenizer, typecode="H", lowercase=True, accents_stripped=True)
    assert folded.fold_ascii_case
    cache = CachedEncoder(tokenizer, typecode="H", lowercase=True, accents_stripped=False)
    _assert_same(tokenizer, cache, ["H\u0331 é", "h\u0331 é", "ẖ é"])


def test_bad_typecode_is_refused(bert_vocab_path):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    with pytest.raises(ValueError, match="typecode"):
        CachedEncoder(tokenizer, typecode="q", lowercase=True)
