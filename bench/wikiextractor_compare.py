"""Our wiki extraction against WikiExtractor (the tool NVIDIA's BERT recipe uses): speed per
core and leftover markup, on the same dump.

    .venv/bin/python bench/wikiextractor_compare.py --wikiextractor-python /tmp/wxvenv/bin/python \
        [--dump PATH] [--copies 4] [--repeats 2]

WikiExtractor runs in a virtual environment of its own, never in ours:

    python3.11 -m venv /tmp/wxvenv && /tmp/wxvenv/bin/pip install wikiextractor
    /tmp/wxvenv/bin/pip install wikitextparser   # optional: one more parser in the breakdown

Three measurements:
- Speed: both command lines on one dump (the sample, or `--copies` changed copies of its pages
  under new ids and titles, so that start-up costs weigh less), one process each for the work
  (ours: DirectRunner in_memory, 1 worker; theirs: --processes 1, which adds a reader and a
  writer process). CPU seconds of each process tree (getrusage of the children) and wall time;
  MB of uncompressed XML per CPU second, and the ratio ours / theirs.
- Leftover markup: in the text of the pages both tools kept (matched by page id), markup that
  survived extraction, per 1,000 sentences; both texts are split into sentences by
  pipelines.sentences.split_sentences (theirs line by line, ours is already split).
- Where the time goes: per-document work alone, in one process, on the article pages of the
  dump: XML reading, mwparserfromhell's tokenizer, its whole parse (tokenizer + tree), our
  clean_wikitext (parse + render + tidy), sentence splitting; and, in WikiExtractor's
  environment, its per-page clean_text and wikitextparser's plain_text on the same texts.
"""

from __future__ import annotations

import argparse
import bz2
import gc
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.sentences import split_sentences  # noqa: E402

COPY_ID_OFFSET = 100_000_000  # copy k of page n gets id n + k * offset: no clash with real ids
VENV_HINT = (
    "make it with: python3.11 -m venv /tmp/wxvenv && /tmp/wxvenv/bin/pip install wikiextractor"
)

# One alternation, tried left to right at each position, so a piece of text counts once:
# "<ref>" is a reference, not also an HTML tag; "[[a|b]]" is a link, not also a pipe.
LEFTOVER_PATTERNS: dict[str, str] = {
    "template {{ }}": r"\{\{[^{}\n]*\}\}|\{\{|\}\}",
    "table {| |} || |-": r"\{\||\|\}|\|\||(?m:^[ \t]*\|-)|(?m:^[ \t]*!)|!!",
    "reference <ref>": r"(?i:</?ref\b[^<>\n]*>|<references\b[^<>\n]*>)",
    "HTML comment <!-- -->": r"<!--|-->",
    "HTML tag <x>": r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>",
    "HTML entity &x;": r"&(?:[A-Za-z]+|#[0-9]+|#[xX][0-9A-Fa-f]+);",
    "file/category link": (
        r"\b(?:File|Image|Category|Media):|(?<![^|\n])[ \t]*(?:thumb|thumbnail|frameless"
        r"|upright(?:=[0-9.]+)?|[0-9]+(?:x[0-9]+)?px)[ \t]*\|"
    ),
    "link [[ ]]": r"\[\[[^\[\]\n]*\]\]|\[\[|\]\]",
    "external link [http": r"\[(?:https?:)?//",
    "bold/italic ''": r"'{2,}",
    "magic word __X__": r"__[A-Z]+__",
    "heading ==": r"={2,}",
}
# Not markup itself, but what removed templates leave: "Algae ({{IPAc-en|...}}; singular"
# -> "Algae (; singular", and "Asia ({{IPA|...}})" -> "Asia ()".
DEBRIS_PATTERNS: dict[str, str] = {
    "empty parentheses ( )": r"\((?:\s*[,;:.])*\s*\)",
    "parenthesis opened by ; or , ": r"\(\s*[,;]",
}
ALL_PATTERNS = {**LEFTOVER_PATTERNS, **DEBRIS_PATTERNS}
_GROUP_NAMES = {f"p{i}": name for i, name in enumerate(ALL_PATTERNS)}
_LEFTOVER = re.compile("|".join(f"(?P<p{i}>{rx})" for i, rx in enumerate(ALL_PATTERNS.values())))


def count_leftover_markup(text: str) -> Counter[str]:
    """How many pieces of each leftover-markup pattern (LEFTOVER_PATTERNS, DEBRIS_PATTERNS)
    the text holds; each piece of text counts under one pattern at most."""
    return Counter(_GROUP_NAMES[m.lastgroup] for m in _LEFTOVER.finditer(text))


def leftover_examples(text: str, context: int = 50) -> list[tuple[str, str]]:
    """(pattern, the match with `context` characters around it) for every leftover piece."""
    found = []
    for m in _LEFTOVER.finditer(text):
        start, end = max(0, m.start() - context), min(len(text), m.end() + context)
        found.append((_GROUP_NAMES[m.lastgroup], text[start:end].replace("\n", " / ")))
    return found


# --- the dump -------------------------------------------------------------------------------

_PAGE = re.compile(r"[ \t]*<page>.*?</page>\n?", re.S)
_PAGE_ID = re.compile(r"(<page>.*?<id>)(\d+)(</id>)", re.S)  # the page's <id>, before <revision>
_TITLE = re.compile(r"<title>(.*?)</title>")
_TEXT_OPEN = re.compile(r"(<text\b[^>]*[^/]>)")


def renamed_page(page: str, copy: int) -> str:
    """Copy `copy` of a page's XML under a new id (+ copy * COPY_ID_OFFSET) and the title
    "<title> (copy k)"; the text as it was."""
    page = _PAGE_ID.sub(lambda m: f"{m[1]}{int(m[2]) + copy * COPY_ID_OFFSET}{m[3]}", page, count=1)
    return _TITLE.sub(lambda m: f"<title>{m[1]} (copy {copy})</title>", page, count=1)


def scaled_dump(source: Path, copies: int, target: Path) -> Path:
    """The dump's pages `copies` times over, as .xml.bz2. Copy 0 is the original; copy k > 0
    has new page ids, titles ending "(copy k)" and, for non-redirects, the paragraph
    "Copy k of this page." in front of the text, so no tool sees a duplicate."""
    with bz2.open(source, "rt", encoding="utf-8") as f:
        xml = f.read()
    pages = list(_PAGE.finditer(xml))
    head, tail = xml[: pages[0].start()], xml[pages[-1].end() :]
    parts = [head]
    for k in range(copies):
        for match in pages:
            page = match.group(0)
            if k:
                page = renamed_page(page, k)
                if "<redirect" not in page:
                    page = _TEXT_OPEN.sub(
                        lambda m, k=k: f"{m.group(1)}Copy {k} of this page.\n\n", page, 1
                    )
            parts.append(page)
    parts.append(tail)
    with bz2.open(target, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("".join(parts))
    return target


def xml_megabytes(dump: Path) -> float:
    with bz2.open(dump) as f:
        return sum(len(chunk) for chunk in iter(lambda: f.read(1 << 22), b"")) / 1e6


# --- whole runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTime:
    wall_s: float
    cpu_s: float  # user + system of the whole process tree


def timed(argv: list[str], env: dict[str, str] | None = None) -> RunTime:
    """Run a command to its end; wall time and the CPU time of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return RunTime(wall, cpu)


def ours_argv(dump: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.extract",
        "--input",
        str(dump),
        "--output",
        str(out),
        "--num-shards",
        "1",
        "--direct_running_mode",
        "in_memory",
        "--direct_num_workers",
        "1",
    ]


def theirs_argv(wx_python: str, dump: Path, out: Path) -> list[str]:
    # NVIDIA's bertPrep.py runs WikiExtractor with -b 100M --processes N -o OUT and its other
    # defaults (templates expanded, --html-safe on, <doc> output; recalled, not checked
    # here); --json carries the same text, one JSON object a page.
    return [
        wx_python,
        "-m",
        "wikiextractor.WikiExtractor",
        "--json",
        "-b",
        "100M",
        "--processes",
        "1",
        "-q",
        "-o",
        str(out),
        str(dump),
    ]


def best_run(argv_for, out_root: Path, repeats: int, env=None) -> tuple[RunTime, Path]:
    runs = []
    for i in range(repeats):
        out = out_root / f"run{i}"
        runs.append((timed(argv_for(out), env), out))
    return min(runs, key=lambda r: r[0].cpu_s)


def read_ours(out: Path) -> dict[str, tuple[str, list[str]]]:
    """page id -> (title, sentences) from our documents output."""
    from pipelines.arrow_shards import read_manifest, read_shard
    from schemas.documents import DOCUMENTS

    manifest, _ = read_manifest(str(out))
    docs = {}
    for info in manifest.shards:
        table = read_shard(str(out), info, DOCUMENTS)
        for row in table.select(["original_id", "title", "sentences"]).to_pylist():
            docs[row["original_id"]] = (row["title"], row["sentences"])
    return docs


def read_theirs(out: Path) -> dict[str, tuple[str, list[str]]]:
    """page id -> (title, sentences) from WikiExtractor's --json output, split line by line."""
    docs = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            sentences = [s for para in record["text"].split("\n") for s in split_sentences(para)]
            docs[record["id"]] = (record["title"], sentences)
    return docs


# --- the markup audit -----------------------------------------------------------------------


@dataclass
class Audit:
    pages: int
    sentences: int
    chars: int
    counts: Counter
    examples: list[tuple[str, str, str]]  # (title, pattern, context)


def audit(docs: dict[str, tuple[str, list[str]]], page_ids: list[str]) -> Audit:
    """Leftover markup in the given pages' sentences."""
    counts: Counter[str] = Counter()
    examples = []
    sentences = chars = 0
    for page_id in page_ids:
        title, page_sentences = docs[page_id]
        text = "\n".join(page_sentences)
        sentences += len(page_sentences)
        chars += len(text)
        counts.update(count_leftover_markup(text))
        examples.extend((title, pattern, ctx) for pattern, ctx in leftover_examples(text))
    return Audit(len(page_ids), sentences, chars, counts, examples)


def pick_examples(examples: list[tuple[str, str, str]], n: int) -> list[tuple[str, str, str]]:
    """Up to n examples, one per pattern first (in order of appearance), then more."""
    chosen, seen = [], set()
    for ex in examples:
        if ex[1] not in seen:
            chosen.append(ex)
            seen.add(ex[1])
    for ex in examples:
        if len(chosen) >= n:
            break
        if ex not in chosen:
            chosen.append(ex)
    return chosen[:n]


# --- per-document work ----------------------------------------------------------------------


OUR_STEPS = (
    "read + decompress XML (all pages)",
    "clean_wikitext (parse + render + tidy)",
    "split_sentences",
)


def article_pages(dump: Path) -> list:
    from pipelines.wikidump import WikiPage, iter_pages, open_dump
    from pipelines.wikitext import is_disambiguation

    with open(dump, "rb") as raw:
        return [
            p
            for p in iter_pages(open_dump(raw, str(dump)), str(dump))
            if isinstance(p, WikiPage)
            and p.namespace == 0
            and not p.redirect
            and not is_disambiguation(p.text)
        ]


def cpu_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def our_breakdown(dump: Path, repeats: int) -> tuple[dict[str, float], list]:
    """CPU seconds of each step of our per-document work, one process, no Beam."""
    import mwparserfromhell
    from mwparserfromhell.parser._tokenizer import CTokenizer

    from pipelines.wikidump import iter_pages, open_dump
    from pipelines.wikitext import clean_wikitext

    pages = article_pages(dump)
    texts = [p.text for p in pages]

    def read_xml():
        with open(dump, "rb") as raw:
            for _ in iter_pages(open_dump(raw, str(dump)), str(dump)):
                pass

    paragraphs = [clean_wikitext(t) for t in texts]

    # Each step drops its results page by page: holding 98 parse trees alive made the cyclic
    # garbage collector walk them again and again (parse timed 2x slower than clean_wikitext).
    def each(fn, items):
        def run():
            for item in items:
                fn(item)

        return run

    steps = {
        "read + decompress XML (all pages)": read_xml,
        "mwparserfromhell C tokenizer alone": each(
            lambda t: CTokenizer().tokenize(t, 0, True), texts
        ),
        "mwparserfromhell.parse (tokens + node tree)": each(
            lambda t: mwparserfromhell.parse(t, skip_style_tags=True), texts
        ),
        "clean_wikitext (parse + render + tidy)": each(clean_wikitext, texts),
        "split_sentences": each(split_sentences, [p for ps in paragraphs for p in ps]),
    }
    return {name: cpu_seconds(fn, repeats) for name, fn in steps.items()}, pages


_THEIR_BREAKDOWN = textwrap.dedent(
    """
    import json, sys, time
    from wikiextractor.extract import Extractor
    pages = json.load(open(sys.argv[1], encoding="utf-8"))
    repeats = int(sys.argv[2])
    def best(fn):
        out = float("inf")
        for _ in range(repeats):
            start = time.process_time(); fn(); out = min(out, time.process_time() - start)
        return out
    def wikiextractor_clean():
        for page_id, title, text in pages:
            Extractor(page_id, "0", "", title, [text]).clean_text(text)
    def each(fn):
        def run():
            for _, _, text in pages:
                fn(text)
        return run
    result = {"WikiExtractor clean_text (per page, no template definitions)": best(wikiextractor_clean)}
    try:
        import wikitextparser
    except ImportError:
        pass
    else:
        result["wikitextparser parse + plain_text"] = best(
            each(lambda t: wikitextparser.parse(t).plain_text()))
        result["wikitextparser parse alone"] = best(each(wikitextparser.parse))
    print(json.dumps(result))
    """
)


def their_breakdown(wx_python: str, pages: list, repeats: int, tmp: Path) -> dict[str, float]:
    """CPU seconds of WikiExtractor's (and wikitextparser's) per-page work on the same texts."""
    path = tmp / "pages.json"
    path.write_text(json.dumps([(p.page_id, p.title, p.text) for p in pages]), encoding="utf-8")
    proc = subprocess.run(
        [wx_python, "-c", _THEIR_BREAKDOWN, str(path), str(repeats)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"WikiExtractor breakdown failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    # Long on purpose: the comparison as one script, top to bottom: options, the dump, both
    # extractors' runs, the counts and the table.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--wikiextractor-python",
        required=True,
        help=f"python of a venv with wikiextractor installed ({VENV_HINT})",
    )
    parser.add_argument("--dump", type=Path, default=None, help="default: the sample dump")
    parser.add_argument("--copies", type=int, default=4, help="copies of its pages (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--examples", type=int, default=5, help="examples shown per tool")
    args = parser.parse_args(argv)
    wx_python = args.wikiextractor_python
    if (
        not Path(wx_python).is_file()
        or subprocess.run([wx_python, "-c", "import wikiextractor"], capture_output=True).returncode
    ):
        print(f"error: {wx_python} cannot import wikiextractor; {VENV_HINT}", file=sys.stderr)
        return 2
    if args.dump is None:
        from pipelines.sample import fetch_sample

        args.dump = fetch_sample()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dump = args.dump
        if args.copies > 1:
            dump = scaled_dump(args.dump, args.copies, tmp / f"scaled-{args.copies}x.xml.bz2")
        xml_mb, bz2_mb = xml_megabytes(dump), dump.stat().st_size / 1e6

        ours, ours_out = best_run(lambda o: ours_argv(dump, o), tmp / "ours", args.repeats, env)
        theirs, theirs_out = best_run(
            lambda o: theirs_argv(wx_python, dump, o), tmp / "theirs", args.repeats, env
        )
        ours_docs, theirs_docs = read_ours(ours_out), read_theirs(theirs_out)

        breakdown, pages = our_breakdown(args.dump, args.repeats)
        breakdown.update(their_breakdown(wx_python, pages, args.repeats, tmp))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}; best of {args.repeats} by CPU time"
    )
    print(f"dump: {args.dump.name} x{args.copies} copies: {bz2_mb:.2f} MB bz2, {xml_mb:.2f} MB XML")
    print()
    print("| tool | wall s | CPU s | MB XML / CPU s | MB XML / wall s | documents |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, run, docs in (
        ("ours (pipelines.extract, 1 worker)", ours, ours_docs),
        ("WikiExtractor (--processes 1)", theirs, theirs_docs),
    ):
        print(
            f"| {name} | {run.wall_s:.2f} | {run.cpu_s:.2f} | {xml_mb / run.cpu_s:.2f} "
            f"| {xml_mb / run.wall_s:.2f} | {len(docs)} |"
        )
    print(
        f"\nspeed per core, ours / WikiExtractor: {theirs.cpu_s / ours.cpu_s:.2f}x "
        f"(wall: {theirs.wall_s / ours.wall_s:.2f}x)"
    )

    originals = [i for i in ours_docs if i.isdigit() and int(i) < COPY_ID_OFFSET]
    shared = sorted((i for i in originals if i in theirs_docs), key=int)
    only_theirs = [
        i for i in theirs_docs if int(i) < COPY_ID_OFFSET and i not in ours_docs
    ]  # pages we drop: disambiguation, too short, ...
    ours_audit, theirs_audit = audit(ours_docs, shared), audit(theirs_docs, shared)
    print(
        f"\nleftover markup in the {len(shared)} pages both kept (copy 0; "
        f"{len(only_theirs)} more only in WikiExtractor's output), per 1,000 sentences:\n"
    )
    print(
        "| pattern | ours count | ours /1k sent. | WikiExtractor count | WikiExtractor /1k sent. |"
    )
    print("|---|---:|---:|---:|---:|")
    for pattern in ALL_PATTERNS:
        a, b = ours_audit.counts[pattern], theirs_audit.counts[pattern]
        cell = pattern.replace("|", "\\|")  # a | inside a markdown table cell
        print(
            f"| {cell} | {a} | {1000 * a / ours_audit.sentences:.2f} | {b} "
            f"| {1000 * b / theirs_audit.sentences:.2f} |"
        )
    for label, keys in (("all markup", LEFTOVER_PATTERNS), ("markup + debris", ALL_PATTERNS)):
        a = sum(ours_audit.counts[k] for k in keys)
        b = sum(theirs_audit.counts[k] for k in keys)
        print(
            f"| **{label}** | {a} | {1000 * a / ours_audit.sentences:.2f} | {b} "
            f"| {1000 * b / theirs_audit.sentences:.2f} |"
        )
    print(
        f"| (sentences / MB of text) | {ours_audit.sentences} / {ours_audit.chars / 1e6:.2f} "
        f"| | {theirs_audit.sentences} / {theirs_audit.chars / 1e6:.2f} | |"
    )
    for label, result in (("ours", ours_audit), ("WikiExtractor", theirs_audit)):
        print(f"\nexamples, {label}:")
        for title, pattern, context in pick_examples(result.examples, args.examples):
            print(f"- {title} [{pattern}]: `{context}`")

    print("\nper-document work alone, CPU s on the sample's article pages:\n")
    print(
        f"| step ({len(pages)} pages, {sum(len(p.text) for p in pages) / 1e6:.2f} M chars) | CPU s |"
    )
    print("|---|---:|")
    for name, seconds in breakdown.items():
        print(f"| {name} | {seconds:.2f} |")
    ours_alone = sum(breakdown[k] for k in OUR_STEPS)
    sample_mb = xml_megabytes(args.dump)
    print(
        f"\nour per-document functions alone ({' + '.join(OUR_STEPS)}): "
        f"{sample_mb / ours_alone:.2f} MB XML / CPU s; the whole job: {xml_mb / ours.cpu_s:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
