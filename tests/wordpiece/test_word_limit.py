"""The longest word WordPiece splits: 200 characters, as google-research/bert's tokenizer."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from bertdata.tokens import TOKENIZER_NAME
from wordpiece.learner import LearnerConfig, learn_vocab
from wordpiece.tokenizer import TokenizerOptions, build_tokenizer, tokenizer_json
from wordpiece.vocab_file import special_tokens_layout

VOCAB = [*special_tokens_layout(0), "a", "b", "##a", "##b", "##ab"]


def word(num_chars: int) -> str:
    return ("ab" * num_chars)[:num_chars]


def pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    return tokenizer.encode(text, add_special_tokens=False).tokens


def test_word_of_200_chars_becomes_pieces_and_201_unk():
    tokenizer = build_tokenizer(VOCAB, TokenizerOptions())
    at_limit = pieces(tokenizer, word(200))
    assert at_limit[0] == "a" and "[UNK]" not in at_limit
    assert "".join(p.removeprefix("##") for p in at_limit) == word(200)
    assert pieces(tokenizer, word(201)) == ["[UNK]"]


def test_the_saved_tokenizer_json_keeps_the_limit(tmp_path: Path):
    path = tmp_path / TOKENIZER_NAME
    path.write_text(tokenizer_json(build_tokenizer(VOCAB, TokenizerOptions())))
    loaded = Tokenizer.from_file(str(path))
    assert loaded.model.max_input_chars_per_word == 200
    assert "[UNK]" not in pieces(loaded, word(200))
    assert pieces(loaded, word(201)) == ["[UNK]"]


def test_learner_learns_from_200_char_words_and_drops_201():
    counts = {word(200): 5, "b" + word(200): 7}  # 200 and 201 characters
    learned = learn_vocab(counts, LearnerConfig(vocab_size=200, min_frequency=1))
    assert learned.stats["distinct_words_too_long"] == 1
    assert learned.stats["words_too_long"] == 7
    assert learned.stats["words"] == 12
