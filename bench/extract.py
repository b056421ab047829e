"""Extraction throughput on the sample: input MB/s and documents/s per core.

    .venv/bin/python bench/extract.py [--dump PATH] [--repeats 3]

Two measurements in one run: the per-document work alone (read, clean, split; one process,
no Beam) and the whole Beam job on one worker (DirectRunner in_memory). Their ratio is the
cost of Beam's machinery around the same work.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import extract  # noqa: E402
from pipelines.sample import fetch_sample  # noqa: E402
from pipelines.sentences import split_sentences  # noqa: E402
from pipelines.wikidump import WikiPage, iter_pages, open_dump  # noqa: E402
from pipelines.wikitext import clean_wikitext, is_disambiguation  # noqa: E402


def plain_loop(dump: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    docs = sentences = 0
    with open(dump, "rb") as raw:
        for page in iter_pages(open_dump(raw, str(dump)), str(dump)):
            if not isinstance(page, WikiPage) or page.namespace != 0 or page.redirect:
                continue
            if is_disambiguation(page.text):
                continue
            paragraphs = clean_wikitext(page.text)
            sentences += sum(len(split_sentences(p)) for p in paragraphs)
            docs += 1
    return time.perf_counter() - start, docs, sentences


def beam_job(dump: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = extract.run(
            [
                "--input",
                str(dump),
                "--output",
                f"{tmp}/docs",
                "--num-shards",
                "4",
                "--direct_running_mode",
                "in_memory",
                "--direct_num_workers",
                "1",
            ]
        )
        return time.perf_counter() - start, manifest["total_rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dump = args.dump or fetch_sample()
    compressed = dump.stat().st_size / 1e6
    import bz2

    with bz2.open(dump) as f:
        uncompressed = len(f.read()) / 1e6
    plain = min((plain_loop(dump) for _ in range(args.repeats)), key=lambda r: r[0])
    job = min((beam_job(dump) for _ in range(args.repeats)), key=lambda r: r[0])
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"best of {args.repeats}"
    )
    print(f"input: {dump.name}: {compressed:.2f} MB bz2, {uncompressed:.2f} MB of XML")
    print(f"{'run':<28}{'seconds':>9}{'docs':>7}{'docs/s':>9}{'MB/s xml':>10}{'MB/s bz2':>10}")
    t, docs, sentences = plain
    print(
        f"{'functions, no Beam (1 core)':<28}{t:9.2f}{docs:7d}{docs / t:9.1f}"
        f"{uncompressed / t:10.2f}{compressed / t:10.2f}"
    )
    t2, rows = job
    print(
        f"{'Beam job, 1 worker':<28}{t2:9.2f}{rows:7d}{rows / t2:9.1f}"
        f"{uncompressed / t2:10.2f}{compressed / t2:10.2f}"
    )
    print(f"sentences: {sentences}; Beam job time / plain functions time: {t2 / t:.2f}x")


if __name__ == "__main__":
    main()
