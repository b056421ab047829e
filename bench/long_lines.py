"""Extraction of one very long line: seconds and peak memory against the line's size.

    .venv/bin/python bench/long_lines.py [--sizes 2,6,20,50] [--format text|jsonl]

Each size is one line of real prose (the sample dump's articles, cleaned, repeated with a
changed word order per copy so that no two copies are alike) in a .txt file (one line is one
sentence: the long-sentence cut does the work) or a one-record .jsonl file (the sentence
splitter and the long-document cut do). Every run is `python -m pipelines.extract` in a fresh
process, so the peak RSS is that run's alone. A run on a 10 kB line in the same invocation is
the reference for start-up (Python and Beam, about 4 s here). The ratio printed last is the
time per MB at the largest size over that at the smallest, start-up included: linear work
gives at most 1 (start-up weighs less as the size grows); the quadratic long-sentence cut
this bench was written for gave 2.1 at 6 MB against 2 MB, and 50 MB never finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prose_words() -> list[str]:
    """The words of the sample dump's articles, cleaned of markup."""
    from pipelines.sample import fetch_sample
    from pipelines.wikidump import WikiPage, iter_pages, open_dump
    from pipelines.wikitext import clean_wikitext

    dump = fetch_sample()
    words: list[str] = []
    with open(dump, "rb") as raw:
        for page in iter_pages(open_dump(raw, str(dump)), str(dump)):
            if isinstance(page, WikiPage) and page.namespace == 0 and not page.redirect:
                words.extend(" ".join(clean_wikitext(page.text)).split())
    return words


def one_line(words: list[str], num_chars: int) -> str:
    """About num_chars characters of the words on one line, each copy rotated differently."""
    copies: list[str] = []
    size = 0
    k = 0
    while size < num_chars:
        shift = (k * 7919) % len(words)
        copy = " ".join(words[shift:] + words[:shift])
        copies.append(copy)
        size += len(copy) + 1
        k += 1
    return " ".join(copies)[:num_chars].rstrip()


def write_input(folder: Path, text: str, fmt: str) -> Path:
    if fmt == "text":
        path = folder / "line.txt"
        path.write_text(text + "\n", encoding="utf-8")
    else:
        path = folder / "line.jsonl"
        path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    return path


def run_extract(path: Path, output: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one extraction in a fresh process."""
    cmd = [sys.executable, "-m", "pipelines.extract", "--input", str(path)]
    cmd += ["--output", str(output), "--num-shards", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = output.with_name("extract.log")
    start = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"extract failed on {path}:\n{log.read_text()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2,6,20,50", help="MB, comma-separated")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    words = prose_words()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; format {args.format}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in [0.01, *sizes]:
            folder = Path(tmp) / f"{mb}"
            folder.mkdir()
            path = write_input(folder, one_line(words, int(mb * 1_000_000)), args.format)
            seconds, rss = run_extract(path, folder / "out")
            rows.append((path.stat().st_size / 1e6, seconds, rss))
            path.unlink()
    (_, reference, reference_rss), measured = rows[0], rows[1:]
    print(f"reference: 10 kB line {reference:.1f} s, peak RSS {reference_rss:.0f} MB")
    print(f"{'MB':>6} {'seconds':>8} {'s/MB':>6} {'peak RSS MB':>12} {'(RSS - ref)/MB':>15}")
    per_mb = []
    for size, seconds, rss in measured:
        per_mb.append(seconds / size)
        extra = (rss - reference_rss) / size
        print(f"{size:6.1f} {seconds:8.1f} {per_mb[-1]:6.2f} {rss:12.0f} {extra:15.1f}")
    print(f"per-MB time, largest over smallest size: {per_mb[-1] / per_mb[0]:.2f}")


if __name__ == "__main__":
    main()
