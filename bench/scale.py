"""Whole-chain scale benchmark: N copies of the sample dump through every data stage.

    .venv/bin/python bench/scale.py [--scales 1,4,16,64] [--pages K] [--workdir DIR] [--keep]
                                    [--json PATH] [--chart PATH]

Input: the embedded sample Wikipedia dump (`pipelines.sample.fetch_sample`). The Nx input is one
.xml.bz2 with N copies of its pages. Copy 0 is the dump itself; copy k > 0 has new page ids and
titles (bench/wikiextractor_compare.py's scheme) and changed prose: in the top-level text of each
article and the shown text of its links to articles (not in templates, tags, tables, headings,
so the markup stays as it was) half of the distinct words of five letters or more (lower-case
but perhaps the first) get a letter doubled, which half and which letter chosen by a hash of
(k, word): "philosophy" may read "phillosophy" in one copy and "philosoophy" in another. Every
copy is then new to extraction's deduplication (it case-folds the text, so a change of case
would be dropped as a duplicate; the 64 copies of each article's prose differ) and brings new
words to the vocabulary's counts and the tokenizer's caches, as a larger corpus does.

Each stage runs as a user runs it, `python -m pipelines.<stage>` in a child process, with the
same options at every scale (sequence length 128 only), on the DirectRunner's in_memory engine
with one worker (the flows' default). Measured per stage and scale:
- wall s; CPU s: user + system of the process tree (getrusage of the waited-for children);
- peak RSS: /proc/<pid>/status of the process and its descendants every 50 ms
  (`bench.peak_memory.watch`), RssAnon and RssFile summed over the tree, the largest sums;
  the total is VmRSS summed likewise;
- input MB (uncompressed XML for extract, the input directory on disk for the others) and
  throughput per core: input MB / CPU s; disk used by the stage's output (on-disk blocks).

Goals (issue 17): at 64x every stage's peak RSS at most 1.2x its 1x figure and its throughput
per core at least 0.9x its 1x figure. Ratios are taken against the smallest scale run.
"""

from __future__ import annotations

import argparse
import bz2
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape, unescape

import mwparserfromhell
from mwparserfromhell.nodes import Text, Wikilink

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_memory import watch  # noqa: E402
from bench.wikiextractor_compare import _PAGE, renamed_page  # noqa: E402
from pipelines.sample import fetch_sample  # noqa: E402

STAGES = ("extract", "vocab", "pretraining_data", "validate")
BEAM_ARGS = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
MAX_RSS_RATIO = 1.2  # goal: peak RSS at most 1.2x the smallest scale's
MIN_THROUGHPUT_RATIO = 0.9  # goal: throughput per core within 10% of the smallest scale's
_TEXT = re.compile(r"(<text\b[^>]*[^/]>)(.*?)(</text>)", re.S)
# A word of five letters or more, all lower-case but perhaps the first (not "ISBN", "__TOC__").
_WORD = re.compile(r"\b[A-Za-z][a-z]{4,}\b")


@dataclass
class Measurement:
    """One stage at one scale."""

    stage: str
    scale: int
    input_mb: float  # uncompressed XML for extract; the input directory on disk otherwise
    rows: int  # documents, vocabulary tokens, examples, examples validated
    wall_s: float
    cpu_s: float  # user + system of the whole process tree
    peak_rss_mb: float  # VmRSS summed over the tree, the largest sum
    peak_anon_mb: float  # RssAnon summed over the tree, the largest sum
    peak_file_mb: float  # RssFile (mapped files, droppable under pressure), likewise
    disk_mb: float  # the stage's output on disk

    @property
    def mb_per_core_s(self) -> float:
        return self.input_mb / self.cpu_s


# ---------------------------------------------------------------------------------------------
# The scaled input.


def respell(word: str, copy: int) -> str:
    """The word as copy `copy` spells it: unchanged for half the words, else a letter doubled."""
    h = zlib.crc32(f"{copy} {word}".encode())
    if h % 2:
        return word
    at = 1 + (h >> 1) % (len(word) - 2)
    return word[:at] + word[at] + word[at:]


def prose_parts(wikitext: str) -> list[tuple[bool, str]]:
    """The text cut into (is prose, piece); the pieces join back to the text. Prose is the
    top-level text and the shown text of links to articles (not File:, Category:...)."""
    parts = []
    for node in mwparserfromhell.parse(wikitext).nodes:
        if isinstance(node, Text):
            parts.append((True, str(node)))
        elif isinstance(node, Wikilink) and ":" not in str(node.title):
            if node.text is None:  # [[Title]] shows its title
                parts += [(False, "[["), (True, str(node.title)), (False, "]]")]
            else:
                parts += [(False, f"[[{node.title}|"), (True, str(node.text)), (False, "]]")]
        else:
            parts.append((False, str(node)))
    return parts


def copy_page(page: str, parts: list[tuple[bool, str]] | None, copy: int) -> str:
    """Copy `copy` of a page: new id and title; prose respelled unless it is a redirect."""
    page = renamed_page(page, copy)
    if parts is None:
        return page
    spelled: dict[str, str] = {}

    def change(m: re.Match) -> str:
        word = m[0]
        if word not in spelled:
            spelled[word] = respell(word, copy)
        return spelled[word]

    text = "".join(_WORD.sub(change, piece) if prose else piece for prose, piece in parts)
    return _TEXT.sub(lambda m: f"{m[1]}{escape(text)}{m[3]}", page, count=1)


def scaled_dump(source: Path, copies: int, target: Path, pages: int = 0) -> float:
    """Write `copies` copies of the dump's pages (the first `pages`, 0: all) to `target`
    (.xml.bz2); returns the MB of XML written."""
    with bz2.open(source, "rt", encoding="utf-8") as f:
        xml = f.read()
    matches = list(_PAGE.finditer(xml))
    head, tail = xml[: matches[0].start()], xml[matches[-1].end() :]
    originals = [m[0] for m in matches[: pages or None]]
    parts = []
    for page in originals:
        text = _TEXT.search(page)
        prose = text and "<redirect" not in page
        parts.append(prose_parts(unescape(text[2], {"&quot;": '"'})) if prose else None)
    written = 0
    with bz2.open(target, "wt", encoding="utf-8") as out:
        for piece in [head, *originals]:
            written += out.write(piece)
        for copy in range(1, copies):
            for page, page_parts in zip(originals, parts, strict=True):
                written += out.write(copy_page(page, page_parts, copy))
        written += out.write(tail)
    return written / 1e6  # characters; the sample's XML is nearly all ASCII


# ---------------------------------------------------------------------------------------------
# Running and measuring one stage.


def disk_mb(path: Path) -> float:
    """Blocks used on disk by a file or a directory tree, in MB."""
    if path.is_file():
        return path.stat().st_blocks * 512 / 1e6
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 1e6


def measure(argv: list[str], log: Path) -> tuple[float, float, dict[str, float]]:
    """Run `argv` to its end: wall s, CPU s of its process tree, peak memory sums in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        peak = watch(child)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"failed ({child.returncode}): {' '.join(argv)}\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, {key: kb / 1024 for key, kb in peak.items()}


def run_chain(work: Path, dump: Path, xml_mb: float, scale: int) -> list[Measurement]:
    """The four stages on one scaled dump, each measured."""
    documents, vocab, pretraining = work / "documents", work / "vocab", work / "pretraining"
    data = pretraining / "seq128"
    stats = data / "stats.json"
    stages = {
        "extract": (["--input", str(dump), "--output", str(documents)], xml_mb, documents),
        "vocab": (["--documents", str(documents), "--output", str(vocab)], None, vocab),
        "pretraining_data": (
            [
                "--documents",
                str(documents),
                "--vocab",
                str(vocab),
                "--output",
                str(pretraining),
                "--max-seq-lengths",
                "128",
            ],
            None,
            pretraining,
        ),  # fmt: skip
        "validate": (["--data", str(data), "--vocab", str(vocab)], None, stats),
    }
    inputs = {"vocab": documents, "pretraining_data": documents, "validate": data}
    results = []
    for stage, (args, input_mb, output) in stages.items():
        if input_mb is None:
            input_mb = disk_mb(inputs[stage])
        argv = [sys.executable, "-m", f"pipelines.{stage}", *args, *BEAM_ARGS]
        wall, cpu, peak = measure(argv, work / f"{stage}.log")
        results.append(
            Measurement(
                stage=stage, scale=scale, input_mb=input_mb, rows=output_rows(stage, output),
                wall_s=wall, cpu_s=cpu, peak_rss_mb=peak["VmRSS"],
                peak_anon_mb=peak["RssAnon"], peak_file_mb=peak["RssFile"],
                disk_mb=disk_mb(output),
            )
        )  # fmt: skip
        print(f"{scale}x {stage}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return results


def output_rows(stage: str, output: Path) -> int:
    """What the stage made: documents, vocabulary tokens, examples, or examples validated."""
    if stage == "vocab":
        return len((output / "vocab.txt").read_text(encoding="utf-8").splitlines())
    if stage == "pretraining_data":
        output = output / "seq128"
    if stage == "validate":
        return json.loads(output.read_text())["examples"]
    return json.loads((output / "manifest.json").read_text())["total_rows"]


# ---------------------------------------------------------------------------------------------
# Report.


def ratios(results: list[Measurement]) -> dict[tuple[str, int], tuple[float, float]]:
    """(peak RSS ratio, throughput per core ratio) of each run against the smallest scale."""
    base_scale = min(m.scale for m in results)
    base = {m.stage: m for m in results if m.scale == base_scale}
    return {
        (m.stage, m.scale): (
            m.peak_rss_mb / base[m.stage].peak_rss_mb,
            m.mb_per_core_s / base[m.stage].mb_per_core_s,
        )
        for m in results
    }


def margins(results: list[Measurement]) -> list[str]:
    """Throughput per core between consecutive scales: the extra input over the extra CPU,
    which leaves out what every run spends whatever its input (start-up, imports, Beam)."""
    lines = []
    for stage in STAGES:
        runs = [m for m in results if m.stage == stage]
        for small, large in itertools.pairwise(runs):
            if large.cpu_s > small.cpu_s:
                rate = (large.input_mb - small.input_mb) / (large.cpu_s - small.cpu_s)
                lines.append(
                    f"{stage} {small.scale}x -> {large.scale}x: {rate:.3f} MB/s per core "
                    "at the margin"
                )
    return lines


def table(results: list[Measurement]) -> str:
    """The markdown table, with the ratios and verdicts against the goals."""
    base = min(m.scale for m in results)
    lines = [
        f"| scale | stage | input MB | rows out | wall s | CPU s | MB/s per core | "
        f"peak RSS MB | anon MB | file MB | disk MB | RSS vs {base}x | MB/s per core vs {base}x "
        f"| memory <= {MAX_RSS_RATIO}x | throughput >= {MIN_THROUGHPUT_RATIO}x |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for m in results:
        rss, speed = ratios(results)[m.stage, m.scale]
        lines.append(
            f"| {m.scale}x | {m.stage} | {m.input_mb:.2f} | {m.rows:,} | {m.wall_s:.1f} | "
            f"{m.cpu_s:.1f} | {m.mb_per_core_s:.3f} | {m.peak_rss_mb:.0f} | "
            f"{m.peak_anon_mb:.0f} | {m.peak_file_mb:.0f} | {m.disk_mb:.1f} | {rss:.2f}x | "
            f"{speed:.2f}x | {verdict(rss <= MAX_RSS_RATIO)} | "
            f"{verdict(speed >= MIN_THROUGHPUT_RATIO)} |"
        )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def write_chart(results: list[Measurement], path: Path) -> bool:
    """Peak RSS and throughput per core against scale, a line per stage; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scales = sorted({m.scale for m in results})
    fig, (memory, speed) = plt.subplots(1, 2, figsize=(11, 4.5))
    for stage, color in zip(STAGES, ("C0", "C1", "C2", "C3"), strict=True):
        runs = [m for m in results if m.stage == stage]
        x = [m.scale for m in runs]
        memory.plot(x, [m.peak_rss_mb for m in runs], "o-", color=color, label=f"{stage} total")
        memory.plot(x, [m.peak_anon_mb for m in runs], "x--", color=color, label="anonymous")
        speed.plot(x, [m.mb_per_core_s for m in runs], "o-", color=color, label=stage)
    memory.set(title="peak RSS of the process tree", ylabel="MB", ylim=(0, None))
    speed.set(title="throughput per core", ylabel="input MB per CPU second", yscale="log")
    for ax in (memory, speed):
        ax.set(xlabel="copies of the sample dump", xscale="log")
        ax.set_xticks(scales, [f"{s}x" for s in scales])
        ax.set_xticks([], minor=True)
        ax.grid(alpha=0.3)
    memory.legend(fontsize="small", ncols=2)
    speed.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,4,16,64", help="copies of the dump per run")
    parser.add_argument("--pages", type=int, default=0, help="only the dump's first K pages")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep every scale's inputs, outputs")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--chart", type=Path, help="default: <workdir>/scale.png")
    args = parser.parse_args(argv)
    scales = sorted(int(s) for s in args.scales.split(","))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    source = fetch_sample()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    results: list[Measurement] = []
    for scale in scales:
        scale_dir = work / f"{scale}x"
        shutil.rmtree(scale_dir, ignore_errors=True)
        scale_dir.mkdir()
        dump = scale_dir / "dump.xml.bz2"
        xml_mb = scaled_dump(source, scale, dump, args.pages)
        results += run_chain(scale_dir, dump, xml_mb, scale)
        if not args.keep:
            shutil.rmtree(scale_dir)
    print()
    print(table(results))
    top = max(scales)
    for m in results:
        if m.scale == top and top != scales[0]:
            rss, speed = ratios(results)[m.stage, m.scale]
            print(
                f"{m.stage} at {top}x: peak RSS {rss:.2f}x ({verdict(rss <= MAX_RSS_RATIO)}), "
                f"throughput per core {speed:.2f}x ({verdict(speed >= MIN_THROUGHPUT_RATIO)})"
            )
    print("\n".join(margins(results)))
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in results], indent=1) + "\n")
    chart = args.chart or work / "scale.png"
    if write_chart(results, chart):
        print(f"chart: {chart}")
    else:
        print("no chart: matplotlib is not installed in this environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
