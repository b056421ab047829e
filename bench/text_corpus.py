"""A plain-text corpus of a chosen size from a documents directory, for timing the whole chain.

    .venv/bin/python bench/text_corpus.py --documents DIR --mb 1000 --files 8 --output DIR

Writes the documents again and again, each pass respelled as bench/scale.py respells a copy
(half of the distinct words of five letters or more get a letter doubled, chosen per pass), so
that extraction's deduplication keeps every pass. The format is google-research/bert's: one
sentence per line, a blank line between documents; pass k goes to file k mod --files, so that
worker processes can share the files. Stops after the pass that reaches --mb million characters.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scale import respell  # noqa: E402

WORD = re.compile(r"\b[A-Za-z]{5,}\b")
FIRST_PASS = 100  # pass numbers differ from scale.py's copies 1..N, so its copies respell anew


def _respelled(match: re.Match, copy: int) -> str:
    return respell(match.group(0), copy)


def documents(directory: Path) -> list[list[str]]:
    found = []
    for path in sorted(directory.glob("*.arrow")):
        found += pa.ipc.open_file(path).read_all().column("sentences").to_pylist()
    if not found:
        raise SystemExit(f"{directory}: no documents (*.arrow shards of pipelines.extract)")
    return found


def write_corpus(docs: list[list[str]], output: Path, chars: int, num_files: int) -> int:
    """Passes over docs into num_files files until `chars` characters; returns the passes."""
    output.mkdir(parents=True, exist_ok=True)
    files = [open(output / f"part-{i}.txt", "w") for i in range(num_files)]
    written, passes = 0, 0
    try:
        while written < chars:
            f = files[(FIRST_PASS + passes) % num_files]
            spell = functools.partial(_respelled, copy=FIRST_PASS + passes)
            for sentences in docs:
                text = "\n".join(WORD.sub(spell, s) for s in sentences)
                f.write(text + "\n\n")
                written += len(text) + 2
            passes += 1
    finally:
        for f in files:
            f.close()
    return passes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=Path, required=True, help="pipelines.extract output")
    parser.add_argument("--mb", type=float, required=True, help="million characters to write")
    parser.add_argument("--files", type=int, default=8, help="files to spread the passes over")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    passes = write_corpus(documents(args.documents), args.output, int(args.mb * 1e6), args.files)
    print(f"{passes} passes over {args.documents} in {args.files} files under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
