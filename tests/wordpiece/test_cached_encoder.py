"""CachedEncoder gives exactly the tokenizer's ids for whole sentences, however full its caches."""

from __future__ import annotations

import array
import random

import pytest

from tests.wordpiece.test_tokenizer import CASED, EDGE_TEXTS, UNCASED, _sweep_texts
from wordpiece.cached_encoder import CachedEncoder
from wordpiece.tokenizer import build_tokenizer
from wordpiece.vocab_file import read_vocab

# Characters that stress the chunk boundary: white space other than U+0020, controls that
# cleaning deletes, combining marks, final-sigma contexts, CJK, special tokens typed in text.
_ALPHABET = list("abcXYZ019 .,;'\"[]()-_~`#\t\n\x00\x1f\x7f\xa0é\u0301Σσ中\u2028\ufffd") + [
    "[MASK]", "[SEP]", "[mask]", "##", "ΣΑΣ", "  ", "Straße", "İ",
]  # fmt: skip


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


@pytest.mark.parametrize("options", [UNCASED, CASED], ids=["uncased", "cased"])
@pytest.mark.parametrize(
    "sizes", [(1 << 19, 1 << 18), (40, 10), (0, 0)], ids=["large", "full", "none"]
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
        max_chunks=sizes[0],
        max_words=sizes[1],
    )
    _assert_same(tokenizer, cache, texts)
    _assert_same(tokenizer, cache, texts[::-1])  # again, now from what the caches hold
    assert len(cache._chunks) <= sizes[0] and len(cache._words) <= sizes[1]


def test_without_the_ascii_path_and_with_int32_ids(bert_vocab_path, sample_text):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    cache = CachedEncoder(tokenizer, typecode="i", lowercase=None)
    texts = EDGE_TEXTS + sample_text[:200]
    _assert_same(tokenizer, cache, texts)
    assert cache.itemsize == 4


def test_repeated_words_and_chunks_are_served_from_the_caches(bert_vocab_path):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    cache = CachedEncoder(tokenizer, typecode="H", lowercase=True)
    # Printable ASCII: words. "the" twice, then "dog" is the only new word.
    cache.encode(["The cat sat on the mat.", "The dog sat."])
    assert (cache.words_seen, cache.words_new) == (11, 7)
    cache.encode(["THE CAT SAT."])  # other case, same words once lower-cased
    assert (cache.words_seen, cache.words_new) == (15, 7)
    # Other text: space-separated chunks, distinct per call.
    cache.encode(["Café au lait, café.", "Café noir."])
    assert (cache.chunks_seen, cache.chunks_new) == (5, 5)  # "Café" in both
    cache.encode(["Café noir, café."])
    assert (cache.chunks_seen, cache.chunks_new) == (8, 6)  # only "noir," is new
    assert len(cache._chunks) == 6


def test_bad_typecode_is_refused(bert_vocab_path):
    tokenizer = build_tokenizer(read_vocab(bert_vocab_path), UNCASED)
    with pytest.raises(ValueError, match="typecode"):
        CachedEncoder(tokenizer, typecode="q", lowercase=True)
