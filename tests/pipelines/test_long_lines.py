"""Very long lines: the long-sentence cut against its plain reference, and a 5 MB line extracted.

Their speed (linear in the line's length since the cut walks a position instead of slicing the
rest of the line at every cut) is measured by bench/long_lines.py, not here.
"""

from __future__ import annotations

import json
import random

import pytest

from pipelines import extract
from pipelines.sentences import collapse_whitespace, split_long_sentence
from tests.pipelines.test_extract import read_documents

WORDS = "the river rises in northern hills and flows south past Easton's mill, Zürich; 1887".split()


def reference_split(sentence: str, max_chars: int) -> list[str]:
    """The cut as first written: plain and quadratic (it copies the rest at every cut)."""
    rest = sentence.strip()
    pieces: list[str] = []
    while len(rest) > max_chars:
        cut = max_chars
        for i in range(max_chars, 0, -1):
            if rest[i].isspace():
                cut = i
                break
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def random_text(rng: random.Random, num_words: int) -> str:
    spaces = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000"]
    parts = []
    for _ in range(num_words):
        word = rng.choice(WORDS)
        if rng.random() < 0.05:
            word *= rng.randrange(5, 40)  # a run longer than the window: a hard cut
        parts += [word, rng.choice(spaces)]
    return "".join(parts)


@pytest.mark.parametrize("seed", range(20))
def test_cut_matches_the_plain_reference(seed):
    rng = random.Random(seed)
    text = random_text(rng, rng.randrange(1, 400))
    for max_chars in (1, 2, 7, 20, 64, 300):
        assert split_long_sentence(text, max_chars) == reference_split(text, max_chars)


@pytest.mark.parametrize("seed", range(20))
def test_collapse_whitespace_is_split_and_join(seed):
    text = random_text(random.Random(seed), 200)
    assert collapse_whitespace(text) == " ".join(text.split())


def long_line(num_chars: int) -> str:
    rng = random.Random(7)
    words = []
    size = 0
    while size < num_chars:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_five_megabyte_line_becomes_bounded_sentences_and_parts_without_loss(tmp_path, fmt):
    text = long_line(5_000_000)
    path = tmp_path / f"line.{fmt}"
    path.write_text(text + "\n" if fmt == "txt" else json.dumps({"text": text}) + "\n")
    manifest = extract.run(["--input", str(path), "--output", str(tmp_path / "out")])
    counters = manifest["counters"]
    assert counters["long_sentences_split"] >= 1 and counters["long_documents_split"] == 1
    _, rows = read_documents(tmp_path / "out")
    rows.sort(key=lambda r: int(r["original_id"].split("#")[1]))
    assert len(rows) == 5
    assert all(len(s) <= 1000 for r in rows for s in r["sentences"])
    assert all(r["num_chars"] <= 1_000_000 for r in rows)
    assert " ".join(s for r in rows for s in r["sentences"]) == text
