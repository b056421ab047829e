"""Sentence splitting and the cut of over-long sentences."""

from __future__ import annotations

import pytest

from pipelines.sentences import split_long_sentence, split_sentences


def test_split_sentences_handles_abbreviations_decimals_and_initials():
    paragraph = (
        "The U.S. Army was founded in 1775.  Dr. Smith arrived at 10 a.m. on Monday. "
        "Pi is approximately 3.14159. The author J. R. R. Tolkien wrote The Hobbit. "
        "Why did it fail? Nobody knows!"
    )
    assert split_sentences(paragraph) == [
        "The U.S. Army was founded in 1775.",
        "Dr. Smith arrived at 10 a.m. on Monday.",
        "Pi is approximately 3.14159.",
        "The author J. R. R. Tolkien wrote The Hobbit.",
        "Why did it fail?",
        "Nobody knows!",
    ]


def test_split_sentences_keeps_all_text_and_returns_no_empties():
    paragraph = "  He waited... and waited. (It was later revived.) Some, e.g. cats, purr.  "
    sentences = split_sentences(paragraph)
    assert all(s and s == s.strip() for s in sentences)
    assert " ".join(sentences) == " ".join(paragraph.split())
    assert len(sentences) == 3


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_split_sentences_of_blank_is_empty(blank):
    assert split_sentences(blank) == []


def test_short_sentence_comes_back_alone():
    assert split_long_sentence("  A short one.  ", 50) == ["A short one."]


def test_long_sentence_cut_at_last_whitespace_before_limit():
    sentence = "alpha beta gamma delta epsilon"
    assert split_long_sentence(sentence, 11) == ["alpha beta", "gamma delta", "epsilon"]
    assert split_long_sentence(sentence, 10) == ["alpha beta", "gamma", "delta", "epsilon"]


def test_word_longer_than_limit_is_cut_hard():
    assert split_long_sentence("see https://example.org/very/long/path now", 12) == [
        "see",
        "https://exam",
        "ple.org/very",
        "/long/path",
        "now",
    ]


@pytest.mark.parametrize("max_chars", [1, 3, 7, 20, 64])
def test_pieces_respect_bound_and_keep_every_word_character(max_chars):
    sentence = "Anarchism draws on many currents of thought, e.g. Godwinian and Proudhonian, " * 3
    pieces = split_long_sentence(sentence, max_chars)
    assert all(0 < len(piece) <= max_chars and piece == piece.strip() for piece in pieces)
    assert "".join("".join(pieces).split()) == "".join(sentence.split())


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError, match="max_chars"):
        split_long_sentence("text", 0)
