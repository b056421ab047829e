"""The WordPiece learner: the merges it should make, deterministic, and its limits."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from wordpiece.learner import (
    EmptyCorpusError,
    LearnerConfig,
    VocabSizeError,
    learn_vocab,
)
from wordpiece.tokenizer import TokenizerOptions, WordSplitter, build_tokenizer
from wordpiece.vocab_file import special_tokens_layout, validate_vocab

REPO = Path(__file__).resolve().parents[2]
TOY = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
TOY_BASE = [
    *special_tokens_layout(0),
    *"bghnpsu",
    *("##" + c for c in "bghnpsu"),
]


def test_toy_corpus_merges_most_frequent_pair_first_and_ties_by_token_order():
    learned = learn_vocab(TOY, LearnerConfig(vocab_size=100, min_frequency=1))
    # ##u ##g occurs 20 times, ##u ##n 16, h ##ug 15, p ##un 12; then hug ##s and p ##ug
    # both occur 5 times and "hug" sorts before "p"; b ##un occurs 4 times.
    assert learned.tokens == [*TOY_BASE, "##ug", "##un", "hug", "pun", "hugs", "pug", "bun"]
    assert learned.stats["merges"] == 7


def test_learning_stops_at_vocab_size_or_min_frequency():
    full = learn_vocab(TOY, LearnerConfig(vocab_size=len(TOY_BASE) + 3, min_frequency=1))
    assert full.tokens[len(TOY_BASE) :] == ["##ug", "##un", "hug"]
    assert full.stats["stopped_by"] == "vocab_size"
    rare = learn_vocab(TOY, LearnerConfig(vocab_size=100, min_frequency=5))
    assert rare.tokens[-1] == "pug"  # b ##un, seen 4 times, is not merged
    assert rare.stats["stopped_by"] == "min_frequency"


def naive_learn(counts: dict[str, int], base: list[str], config: LearnerConfig) -> list[str]:
    """The same algorithm written plainly: recount every pair after every merge."""
    tokens = list(base)
    words = {w: [w[0], *("##" + c for c in w[1:])] for w in counts}
    while len(tokens) < config.vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, seq in words.items():
            for pair in pairwise(seq):
                pairs[pair] += counts[word]
        if not pairs:
            break
        (left, right), count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < config.min_frequency:
            break
        merged = left + right[2:]
        if merged not in tokens:
            tokens.append(merged)
        for word, seq in words.items():
            out, i = [], 0
            while i < len(seq):
                if seq[i : i + 2] == [left, right]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            words[word] = out
    return tokens


@pytest.fixture(scope="module")
def real_counts(sample_text) -> Counter[str]:
    splitter = WordSplitter(TokenizerOptions(lowercase=False))
    return Counter(w for text in sample_text[:400] for w in splitter.split(text))


def test_learner_equals_plain_algorithm_on_real_words(sample_text):
    splitter = WordSplitter(TokenizerOptions(lowercase=False))
    counts = Counter(w for text in sample_text[:100] for w in splitter.split(text))
    config = LearnerConfig(vocab_size=800, limit_alphabet=10_000)
    learned = learn_vocab(counts, config)
    first_merged = (
        i for i, t in enumerate(learned.tokens) if i > 4 and len(t.removeprefix("##")) > 1
    )
    base_size = next(first_merged)
    assert learned.stats["stopped_by"] == "vocab_size"
    assert learned.stats["merges"] > 250
    assert learned.tokens == naive_learn(counts, learned.tokens[:base_size], config)


def test_same_counts_give_same_vocab_in_any_order_and_any_process(real_counts, tmp_path):
    config = LearnerConfig(vocab_size=2000)
    expected = learn_vocab(real_counts, config).tokens
    shuffled = list(real_counts.items())
    random.Random(7).shuffle(shuffled)
    assert learn_vocab(shuffled, config).tokens == expected
    counts_file = tmp_path / "counts.json"
    counts_file.write_text(json.dumps(shuffled))
    script = (
        "import json, sys; from wordpiece.learner import LearnerConfig, learn_vocab; "
        "counts = json.load(open(sys.argv[1])); "
        "print(json.dumps(learn_vocab(counts, LearnerConfig(vocab_size=2000)).tokens))"
    )
    # Another process with another string hash seed: set and dict order must not matter.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(counts_file)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == expected


def test_learned_vocab_is_valid_and_covers_every_word_of_its_alphabet(real_counts, sample_text):
    config = LearnerConfig(vocab_size=2500, num_unused=3)
    learned = learn_vocab(real_counts, config)
    validate_vocab(learned.tokens, source="learned")
    assert learned.tokens[:8] == special_tokens_layout(3)
    assert len(learned.tokens) == 2500
    options = TokenizerOptions(lowercase=False)
    tokenizer = build_tokenizer(learned.tokens, options)
    splitter = WordSplitter(options)
    alphabet = {t for t in learned.tokens if len(t) == 1}
    unseen = [w for text in sample_text[400:600] for w in splitter.split(text)]
    for word in unseen:
        tokens = tokenizer.encode(word, add_special_tokens=False).tokens
        assert (tokens == ["[UNK]"]) == (not alphabet.issuperset(word)), word


def test_punctuation_and_cjk_get_no_continuation_form():
    counts = {"ab": 5, ".": 3, "中": 2, "x": 1}
    split = learn_vocab(counts, LearnerConfig(vocab_size=50)).tokens
    assert {"##b", "##a", "##x"} <= set(split)
    assert "##." not in split and "##中" not in split
    whole = learn_vocab(counts, LearnerConfig(vocab_size=50, tokenize_chinese_chars=False))
    assert "##中" in whole.tokens


def test_alphabet_limit_and_long_words():
    counts = {"aab": 50, "ba": 40, "abz": 1, "b" * 201: 7}
    learned = learn_vocab(counts, LearnerConfig(vocab_size=50, limit_alphabet=2))
    assert "z" not in learned.tokens and "##z" not in learned.tokens
    assert learned.stats["words_outside_alphabet"] == 1
    assert learned.stats["words_too_long"] == 7
    assert learned.stats["alphabet_size"] == 2


def test_vocab_size_below_special_tokens_plus_alphabet_says_what_to_change():
    counts = {"abcdefghij": 3, "klmnop": 2}
    with pytest.raises(
        VocabSizeError,
        match=r"vocab_size 20 is smaller than the 5 special and reserved tokens plus the 32 "
        r"single-character tokens of the 16-character alphabet; raise vocab_size "
        r"\(--vocab-size\) to at least 37 or lower limit_alphabet",
    ):
        learn_vocab(counts, LearnerConfig(vocab_size=20))
    with pytest.raises(VocabSizeError, match="use at least 6"):
        LearnerConfig(vocab_size=5)


def test_no_words_is_an_error():
    with pytest.raises(EmptyCorpusError, match="no words to learn a vocabulary from"):
        learn_vocab({}, LearnerConfig())
    with pytest.raises(EmptyCorpusError):
        learn_vocab([("", 3), ("word", 0)], LearnerConfig())
