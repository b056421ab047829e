"""What --line-breaks does to real text, hard-wrapped and not: the measurement behind its default.

    .venv/bin/python bench/line_breaks.py [--prose data/prose] [--width 65]

Real documents (news articles from the gensim wheel's lee_background.cor, one per line; and,
with --prose, the JSONL sources that `python -m pipelines.corpora` writes) are taken as they
are, and hard-wrapped with textwrap at --width characters, never inside a word (a hyphen
that ends a line would come back as "south- west"; a blank line between paragraphs
in JSONL; none in a .txt document, where a blank line ends the document). Each line-break
mode then splits both into sentences as the extraction job does. A "fragment" is a sentence
that is not one of the unwrapped original's sentences. Nothing here is timed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.corpora import CACHE_ENV, DEFAULT_CACHE, fetch_package, read_member  # noqa: E402
from pipelines.sentences import (  # noqa: E402
    LINE_BREAKS,
    collapse_whitespace,
    document_sentences,
    split_sentences,
    text_paragraphs,
)

NEWS_MEMBER = "gensim/test/test_data/lee_background.cor"


def news_documents() -> list[str]:
    """The 300 news articles of lee_background.cor (one a line, no paragraph breaks)."""
    wheel = fetch_package("gensim==4.4.0", "wheel", Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)))
    text = read_member(wheel, NEWS_MEMBER).decode("utf-8")
    return [line.strip() for line in io.StringIO(text) if line.strip()]


def prose_documents(directory: Path) -> dict[str, list[str]]:
    """The texts of each train/<source>.jsonl: paragraphs joined by a newline."""
    return {
        path.stem: [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
        for path in sorted((directory / "train").glob("*.jsonl"))
    }


def jsonl_sentences(text: str, line_breaks: str) -> tuple[list[str], bool]:
    paragraphs, joined = text_paragraphs(text, line_breaks)
    sentences = [collapse_whitespace(s) for p in paragraphs for s in split_sentences(p)]
    return [s for s in sentences if s], joined


def wrap_jsonl(text: str, width: int) -> str:
    return "\n\n".join(
        textwrap.fill(p, width, break_on_hyphens=False) for p in text.splitlines() if p.strip()
    )


def measure_jsonl(texts: list[str], width: int) -> dict[str, int]:
    row = {"documents": len(texts), "original": 0}
    for text in texts:
        truth, _ = jsonl_sentences(text, "paragraph")
        known = set(truth)
        row["original"] += len(truth)
        for mode in LINE_BREAKS:
            wrapped, joined = jsonl_sentences(wrap_jsonl(text, width), mode)
            row[f"{mode}"] = row.get(mode, 0) + len(wrapped)
            row[f"{mode}_fragments"] = row.get(f"{mode}_fragments", 0) + sum(
                s not in known for s in wrapped
            )
            same, flagged = jsonl_sentences(text, mode)
            row[f"{mode}_changed_unwrapped"] = row.get(f"{mode}_changed_unwrapped", 0) + (
                same != truth
            )
        row["auto_flagged_unwrapped"] = row.get("auto_flagged_unwrapped", 0) + int(
            jsonl_sentences(text, "auto")[1]
        )
    return row


def measure_text(texts: list[str], width: int) -> dict[str, int]:
    """As .txt documents: one sentence per line (the format), and the same hard-wrapped."""
    row = {"documents": len(texts), "original": 0}
    for text in texts:
        truth, _ = jsonl_sentences(text, "paragraph")
        known = set(truth)
        row["original"] += len(truth)
        wrapped_lines = textwrap.wrap(" ".join(truth), width, break_on_hyphens=False)
        for mode in LINE_BREAKS:
            wrapped, _ = document_sentences(wrapped_lines, mode)
            row[mode] = row.get(mode, 0) + len(wrapped)
            row[f"{mode}_fragments"] = row.get(f"{mode}_fragments", 0) + sum(
                s not in known for s in wrapped
            )
            same, _ = document_sentences(truth, mode)
            row[f"{mode}_changed_unwrapped"] = row.get(f"{mode}_changed_unwrapped", 0) + (
                same != truth
            )
    return row


def print_table(title: str, rows: dict[str, dict[str, int]]) -> None:
    print(f"\n{title}")
    head = ["corpus", "docs", "sentences"] + [f"{m}: sentences/fragments" for m in LINE_BREAKS]
    head += [f"{m}: unwrapped docs changed" for m in LINE_BREAKS]
    print(" | ".join(head))
    for name, r in rows.items():
        cells = [name, str(r["documents"]), str(r["original"])]
        cells += [f"{r[m]}/{r[f'{m}_fragments']}" for m in LINE_BREAKS]
        cells += [str(r[f"{m}_changed_unwrapped"]) for m in LINE_BREAKS]
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prose", type=Path, default=None, help="a pipelines.corpora output")
    parser.add_argument("--width", type=int, default=65)
    args = parser.parse_args()
    corpora = {"news": news_documents()}
    if args.prose:
        corpora |= prose_documents(args.prose)
    print(f"hard-wrapped at {args.width} characters with textwrap")
    print_table(
        "JSONL texts (wrapped: a blank line between paragraphs)",
        {name: measure_jsonl(texts, args.width) for name, texts in corpora.items()},
    )
    print_table(
        ".txt documents (one sentence per line; wrapped: no blank line inside a document)",
        {name: measure_text(texts, args.width) for name, texts in corpora.items()},
    )


if __name__ == "__main__":
    main()
