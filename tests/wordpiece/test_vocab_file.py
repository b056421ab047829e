"""vocab.txt: BERT's layout, a byte-exact round trip, and clear errors for broken files."""

from __future__ import annotations

import pytest

from wordpiece.vocab_file import (
    SPECIAL_TOKENS,
    VocabFileError,
    parse_vocab,
    read_vocab,
    special_token_ids,
    special_tokens_layout,
    vocab_bytes,
)

GOOD = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##b", "ab"]


def test_layout_without_reserved_tokens_is_the_conventional_one():
    assert special_tokens_layout(0) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_layout_with_994_reserved_tokens_is_bert_base_uncased(bert_vocab_path):
    bert = read_vocab(bert_vocab_path)
    assert special_tokens_layout(994) == bert[:999]
    assert special_token_ids(bert) == {
        "[PAD]": 0,
        "[UNK]": 100,
        "[CLS]": 101,
        "[SEP]": 102,
        "[MASK]": 103,
    }


def test_real_vocab_round_trips_byte_for_byte(bert_vocab_path):
    data = bert_vocab_path.read_bytes()
    tokens = parse_vocab(data, source="vocab.txt")
    assert len(tokens) == 30522
    assert tokens[1996] == "the"
    assert vocab_bytes(tokens) == data


def test_windows_line_endings_and_missing_final_newline_are_read():
    crlf = "\r\n".join(GOOD).encode()
    assert parse_vocab(crlf, source="v") == GOOD
    assert parse_vocab("\n".join(GOOD).encode(), source="v") == GOOD


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            [*GOOD, "b"],
            r"my/vocab.txt: line 10: token 'b' repeats line 7; each token must appear once",
        ),
        (["a", "b", "[CLS]", "[SEP]"], r"lacks the special token\(s\) \[PAD\] \[UNK\] \[MASK\]"),
        ([*GOOD[:6], "", "b"], r"line 7 is empty"),
        ([*GOOD, "new york"], r"line 10: token 'new york' contains whitespace"),
        (list(SPECIAL_TOKENS), r"holds only the special tokens"),
        ([], r"holds no tokens"),
    ],
    ids=["duplicate", "no-special-tokens", "blank-line", "space", "only-special", "empty"],
)
def test_broken_vocab_is_refused_with_file_line_and_fix(lines, message):
    data = "".join(f"{line}\n" for line in lines).encode()
    with pytest.raises(VocabFileError, match=message):
        parse_vocab(data, source="my/vocab.txt")


def test_undecodable_line_and_byte_order_mark_are_refused():
    data = vocab_bytes(GOOD[:6]) + b"caf\xe9\n"
    with pytest.raises(VocabFileError, match="line 7 is not valid UTF-8"):
        parse_vocab(data, source="v")
    with pytest.raises(VocabFileError, match="byte order mark"):
        parse_vocab(b"\xef\xbb\xbf" + vocab_bytes(GOOD), source="v")


def test_negative_reserved_count_is_refused():
    with pytest.raises(ValueError, match="num_unused"):
        special_tokens_layout(-1)
