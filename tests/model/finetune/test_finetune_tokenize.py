"""The checkpoint tokenizer: same ids as transformers' BERT tokenizer, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import transformers

from model.tasks.tokenize import TokenizerError, load_tokenizer, truncate_seq_pair

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Zürich's naïve café served crème brûlée in 1990s-era U.S.A.!",
    "Unbelievably, tokenization splits rare words: antidisestablishmentarianism.",
    "中文字符 and emoji 🙂 with [MASK] inside",
    "x" * 120 + " long words become [UNK]",
    "tabs\tand\nnew lines  and   spaces",
]


def test_ids_and_offsets_match_transformers_on_minilm(minilm_dir: Path):
    ours = load_tokenizer(minilm_dir, vocab_size=30522)
    reference = transformers.BertTokenizer.from_pretrained(str(minilm_dir))
    assert ours.lowercase is True
    for text, encoding in zip(TEXTS, ours.encode_texts(TEXTS), strict=True):
        assert encoding.ids == reference(text, add_special_tokens=False)["input_ids"], text
        for piece, (start, end) in zip(encoding.tokens, encoding.offsets, strict=True):
            if piece not in ("[UNK]", "[MASK]"):
                assert (
                    piece.removeprefix("##")
                    == reference.backend_tokenizer.normalizer.normalize_str(text[start:end]).strip()
                )


def test_pairs_are_framed_and_truncated_as_google_research_bert_does(minilm_dir: Path):
    tokenizer = load_tokenizer(minilm_dir)
    ids, types, cut = tokenizer.frame_pair([10, 11, 12, 13, 14, 15], [20, 21], max_seq_length=8)
    assert ids == [tokenizer.cls_id, 10, 11, 12, tokenizer.sep_id, 20, 21, tokenizer.sep_id]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1] and cut
    a, b = [1, 2, 3, 4], [5, 6, 7]
    assert truncate_seq_pair(a, b, 4) and (a, b) == ([1, 2], [5, 6])


def test_a_checkpoint_without_a_matching_vocabulary_is_refused(
    tiny_checkpoint: Path, tmp_path: Path
):
    directory = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, directory)
    vocab = (directory / "vocab.txt").read_text().splitlines()
    with pytest.raises(
        TokenizerError,
        match=f"has {len(vocab)} tokens but the model's config.json says vocab_size 30522",
    ):
        load_tokenizer(directory, vocab_size=30522)
    (directory / "vocab.txt").unlink()
    with pytest.raises(TokenizerError, match="no vocab.txt"):
        load_tokenizer(directory)
    (directory / "vocab.txt").write_text("\n".join(t for t in vocab if t != "[SEP]") + "\n")
    with pytest.raises(TokenizerError, match=r"lacks the special token\(s\) \['\[SEP\]'\]"):
        load_tokenizer(directory)


def test_case_comes_from_tokenizer_config_or_from_the_vocabulary(
    tiny_checkpoint: Path, tmp_path: Path
):
    directory = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, directory)
    assert load_tokenizer(directory).lowercase  # an all-lower-case vocabulary: uncased
    with open(directory / "vocab.txt", "a") as f:
        f.write("Paris\n")
    assert not load_tokenizer(directory).lowercase  # capitals in the vocabulary: cased
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tokenizer = load_tokenizer(directory)
    assert tokenizer.lowercase and tokenizer.encode_texts(["PARIS"])[0].tokens == ["paris"]


def test_the_word_limit_is_the_checkpoints_own(minilm_dir: Path, tmp_path: Path):
    """transformers' tokenizer.json cuts words at 100 characters; a checkpoint without one (as
    fine-tuned models and training checkpoints are) gets BERT's own 200."""
    unk = 100  # bert-base-uncased's [UNK]
    with_json = load_tokenizer(minilm_dir, vocab_size=30522)
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    vocab_only = load_tokenizer(tmp_path, vocab_size=30522)
    words = ["x" * 150, "x" * 200, "x" * 201]
    assert [e.ids == [unk] for e in with_json.encode_texts(words)] == [True, True, True]
    assert [e.ids == [unk] for e in vocab_only.encode_texts(words)] == [False, False, True]
