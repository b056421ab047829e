"""Wikitext parsers against our clean_wikitext: CPU time per MB of wikitext and leftover markup,
on the same article pages.

    .venv/bin/python bench/wikitext_parsers.py --side-python /tmp/wtp-venv/bin/python \
        [--side-python /tmp/wtp-venv-mwlib/bin/python] [--side-python /tmp/wtp-venv313/bin/python] \
        [--dump PATH] [--repeats 2] [--examples 2]

The alternatives run in virtual environments of their own, never in ours (each --side-python
runs every alternative it can import; an alternative already measured by an earlier one is
skipped):

    python3 -m venv /tmp/wtp-venv && /tmp/wtp-venv/bin/pip install wikitextparser \
        wikiextractor mwparserfromhell==0.7.2 wikicleaner mwtextextractor tree-sitter \
        tree-sitter-wikitext
    python3 -m venv /tmp/wtp-venv-mwlib && /tmp/wtp-venv-mwlib/bin/pip install mwlib
    python3.13 -m venv /tmp/wtp-venv313 && /tmp/wtp-venv313/bin/pip install wikiparse

What is measured, on the dump's article pages (namespace 0, not redirects; disambiguation
pages included), each page's wikitext given to each tool as a string, one process, one page
after another:
- CPU seconds (time.process_time of the process doing the work) per MB of wikitext (UTF-8),
  best of --repeats runs; one run only for a tool whose first run takes over 20 CPU s. Each
  tool is called once on a page before timing (imports, regex compilation, set-up).
- The reference, in this process: our clean_wikitext (mwparserfromhell parse + render +
  tidy), timed before and after the alternatives (best of all), so that a change in the
  machine's load between the two shows. Beside it, mwparserfromhell alone: its C tokenizer,
  its parse (tokens + node tree; default options and clean_wikitext's skip_style_tags=True),
  and parse(text).strip_code().
- Every alternative whose text comes out as a string: the ratio of its speed to
  clean_wikitext's and to WikiExtractor's per-page clean_text (measured in the same run), and
  leftover markup per 1,000 sentences: its text is split line by line into sentences by
  pipelines.sentences.split_sentences and counted by bench/wikiextractor_compare.py's
  count_leftover_markup (through its audit()); ours is clean_wikitext's paragraphs, split by
  the same function. Parsers that give a tree and no plain text (tree-sitter-wikitext, mwlib)
  are timed for the parse alone; tree-sitter-wikitext also with a small renderer written here,
  which applies clean_wikitext's drop/keep lists (DROPPED_TAGS, DROPPED_SECTIONS, file,
  category and language prefixes) to its tree, then with and without clean_wikitext's tidy
  step (pipelines.wikitext._paragraphs).
- How much of the same prose each tool keeps: the share of our sentences found, word for
  word, among the tool's sentences of the same page, and the other way round (a tool that
  keeps citations or tables as text, or drops list items, differs; so do quotes or spacing).
"""

from __future__ import annotations

import argparse
import gc
import html
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOW_RUN_S = 20.0  # a tool whose first timed run takes longer is not run again
REFERENCE = "ours: clean_wikitext (mwparserfromhell parse + render + tidy)"
WIKIEXTRACTOR = "WikiExtractor Extractor.clean_text (its CLI defaults: html_safe=True)"


def _no_text(_result) -> None:
    """For tools timed without output: drop the tree (never hold all pages' trees)."""
    return None


# --- timing, shared by this process and the side workers (standard library only) -----------


def time_tool(fn, pages: list[dict], repeats: int) -> tuple[float, list[str] | None, int, dict]:
    """(best CPU s over the runs, the texts of the last run or None, runs, {exception type:
    pages} of the last run).

    fn(page) returns the page's text, or None for a tool timed without output. A page on
    which the tool raises gets "" and is counted.
    """
    fn(pages[0])  # warm-up: imports, compiled regexes, one-time set-up
    best, texts, runs, failures = float("inf"), None, 0, {}
    while runs < repeats:
        gc.collect()
        out: list[str | None] = []
        failures = {}
        start = time.process_time()
        for page in pages:
            try:
                out.append(fn(page))
            except Exception as err:
                name = type(err).__name__
                failures[name] = failures.get(name, 0) + 1
                out.append("")
        best = min(best, time.process_time() - start)
        runs += 1
        texts = None if all(t is None for t in out) else [t or "" for t in out]
        if best > SLOW_RUN_S:
            break
    return best, texts, runs, failures


# --- the side worker: run with an alternative's python, imports only what it finds ---------


def _tree_sitter_tools(lists: dict[str, list[str]]) -> dict:
    import warnings

    import tree_sitter_wikitext
    from tree_sitter import Language, Parser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        parser = Parser(Language(tree_sitter_wikitext.language()))
    dropped_tags = frozenset(lists["DROPPED_TAGS"])
    dropped_sections = frozenset(lists["DROPPED_SECTIONS"])
    no_show = frozenset(
        lists["FILE_PREFIXES"] + lists["CATEGORY_PREFIXES"] + lists["LANGUAGE_CODES"]
    )
    skipped = {"template", "comment", "table", "medialink", "math", "heading_marker"}
    line_ends = {"paragraph", "unordered_list_item", "ordered_list_item", "definition_item"}

    def text(node) -> str:
        return node.text.decode("utf-8", "replace")

    def emit(node, out: list[str]) -> None:
        kind = node.type
        if kind in ("text", "page_name_segment", "entity"):  # entities inside text too
            out.append(html.unescape(text(node)))
        elif kind == "\n":
            out.append("\n")
        elif kind in skipped or kind.startswith("heading") or not node.is_named:
            return
        elif kind == "section":
            heading = next((c for c in node.children if c.type.startswith("heading")), None)
            if heading is not None:
                title = "".join(text(c) for c in heading.children if c.type == "text")
                if title.strip(" '").lower() in dropped_sections:
                    return
            for child in node.children:
                emit(child, out)
            out.append("\n\n")
        elif kind == "wikilink":
            page = next((c for c in node.children if c.type == "wikilink_page"), None)
            target = text(page).strip() if page is not None else ""
            prefix, colon, _ = target.partition(":")
            if colon and prefix.strip().lower() in no_show:
                return
            after_pipe = False
            label: list[str] = []
            for child in node.children:
                if child.type == "|":
                    after_pipe = True
                elif after_pipe:
                    emit(child, label)
            out.append("".join(label) if "".join(label).strip() else target.split("#")[0])
        elif kind == "external_link":
            for child in node.children:
                if child.type != "url":
                    emit(child, out)
        elif kind == "html_tag":
            name = next((c for c in node.children if c.type == "html_tag_name"), None)
            if name is not None and text(name).strip().lower() in dropped_tags:
                return
            for child in node.children:
                if child.type != "html_attribute":
                    emit(child, out)
        else:  # source_file, bold, italic, lists, ERROR, ...: the text inside
            for child in node.children:
                emit(child, out)
            if kind in line_ends:
                out.append("\n\n")  # a paragraph break, as clean_wikitext's render gives

    def render(page: dict) -> str:
        out: list[str] = []
        emit(parser.parse(page["text"].encode("utf-8")).root_node, out)
        return "".join(out)

    tools = {
        "tree-sitter-wikitext parse alone (C, concrete syntax tree)": (
            "tree-sitter-wikitext",
            lambda p: _no_text(parser.parse(p["text"].encode("utf-8"))),
        ),
        "tree-sitter-wikitext parse + renderer written here (our drop/keep lists, no tidy)": (
            "tree-sitter-wikitext",
            render,
        ),
    }
    try:  # clean_wikitext's last step, on the rendered text: what a switch would keep
        sys.path.insert(0, str(REPO))
        from pipelines.wikitext import _paragraphs
    except ImportError:  # pipelines.wikitext needs mwparserfromhell in this venv
        pass
    else:
        tools[
            "tree-sitter-wikitext parse + renderer written here + clean_wikitext's tidy "
            "(pipelines.wikitext._paragraphs)"
        ] = ("tree-sitter-wikitext", lambda p: "\n".join(_paragraphs(render(p))))
    tools["_tree_sitter_error_pages"] = parser
    return tools


def side_tools(lists: dict[str, list[str]]) -> dict:
    """label -> (package, fn) for every alternative this python can import."""
    tools: dict = {}
    try:
        import mwparserfromhell
    except ImportError:
        pass
    else:
        tools["mwparserfromhell.parse, in the side venv (check: same as in ours?)"] = (
            "mwparserfromhell",
            lambda p: _no_text(mwparserfromhell.parse(p["text"])),
        )
    try:
        import wikitextparser
    except ImportError:
        pass
    else:
        tools["wikitextparser.parse alone"] = (
            "wikitextparser",
            lambda p: _no_text(wikitextparser.parse(p["text"])),
        )
        tools["wikitextparser.parse(text).plain_text()"] = (
            "wikitextparser",
            lambda p: wikitextparser.parse(p["text"]).plain_text(),
        )
    try:
        from wikiextractor.extract import Extractor
    except ImportError:
        pass
    else:

        def wikiextractor(html_safe: bool):
            def run(p):
                extractor = Extractor(p["id"], "0", "", p["title"], [p["text"]])
                return "\n".join(extractor.clean_text(p["text"], html_safe=html_safe))

            return run

        tools[WIKIEXTRACTOR] = ("wikiextractor", wikiextractor(True))
        tools["WikiExtractor Extractor.clean_text(html_safe=False)"] = (
            "wikiextractor",
            wikiextractor(False),
        )
    try:
        import wikicleaner
    except ImportError:
        pass
    else:
        tools["wikicleaner.clean_article_text (Rust)"] = (
            "wikicleaner",
            lambda p: wikicleaner.clean_article_text(p["text"]),
        )
        tools["wikicleaner.clean_article_text + post_processing (joins lines)"] = (
            "wikicleaner",
            lambda p: wikicleaner.post_processing(wikicleaner.clean_article_text(p["text"])),
        )
    try:
        import logging

        logging.getLogger("mwtextextractor").setLevel(logging.ERROR)
        from mwtextextractor import get_body_text
    except ImportError:
        pass
    else:
        tools["mwtextextractor.get_body_text (one line a page)"] = (
            "mwtextextractor",
            lambda p: get_body_text(p["text"]),
        )
    try:
        tools.update(_tree_sitter_tools(lists))
    except ImportError:
        pass
    try:
        from mwlib.parser.refine.compat import parse_txt
    except ImportError:
        pass
    else:
        tools["mwlib parse_txt alone (no plain-text writer)"] = (
            "mwlib",
            lambda p: _no_text(parse_txt(p["text"], lang="en")),
        )
    try:
        os.environ.setdefault("LOGFIRE_IGNORE_NO_CONFIG", "1")
        import wikiparse
    except ImportError:
        pass
    else:

        def markdown_body(p):
            doc = wikiparse.parse_article(p["text"], title=p["title"]).serialize()
            if doc.startswith("---\n"):  # YAML front matter, then the Markdown body
                end = doc.find("\n---\n", 4)
                doc = doc[end + 5 :] if end >= 0 else doc
            return doc

        tools["wikiparse.parse_article(text).serialize() (Markdown body)"] = (
            "wikiparse",
            markdown_body,
        )
    return tools


def side_worker(pages_path: str, out_dir: str, repeats: int, skip: list[str]) -> None:
    """Time every importable alternative on the pages; texts to out_dir; JSON to stdout."""
    from importlib.metadata import version

    data = json.loads(Path(pages_path).read_text(encoding="utf-8"))
    pages = data["pages"]
    tools = side_tools(data["lists"])
    ts_parser = tools.pop("_tree_sitter_error_pages", None)
    results = {}
    for i, (label, (package, fn)) in enumerate(tools.items()):
        if label in skip:
            continue
        cpu, texts, runs, failures = time_tool(fn, pages, repeats)
        result = {
            "cpu_s": cpu,
            "runs": runs,
            "failures": failures,
            "package": f"{package} {version(package)}",
            "python": platform.python_version(),
        }
        if texts is not None:
            result["texts"] = f"{out_dir}/tool{i}.json"
            Path(result["texts"]).write_text(json.dumps(texts), encoding="utf-8")
        if ts_parser is not None and label.startswith("tree-sitter-wikitext parse alone"):
            result["pages_with_parse_errors"] = sum(
                ts_parser.parse(p["text"].encode("utf-8")).root_node.has_error for p in pages
            )
        results[label] = result
    print(json.dumps(results))


# --- this process: the reference, the side runs, the audit, the tables ----------------------


def article_pages(dump: Path) -> list:
    from pipelines.wikidump import WikiPage, iter_pages, open_dump

    with open(dump, "rb") as raw:
        return [
            p
            for p in iter_pages(open_dump(raw, str(dump)), str(dump))
            if isinstance(p, WikiPage) and p.namespace == 0 and not p.redirect
        ]


def reference_tools() -> dict:
    import mwparserfromhell
    from mwparserfromhell.parser._tokenizer import CTokenizer

    from pipelines.wikitext import clean_wikitext

    return {
        REFERENCE: lambda p: "\n".join(clean_wikitext(p["text"])),
        "mwparserfromhell C tokenizer alone": lambda p: _no_text(
            CTokenizer().tokenize(p["text"], 0, True)
        ),
        "mwparserfromhell.parse(text) (tokens + node tree)": lambda p: _no_text(
            mwparserfromhell.parse(p["text"])
        ),
        "mwparserfromhell.parse(text, skip_style_tags=True) (as clean_wikitext)": lambda p: (
            _no_text(mwparserfromhell.parse(p["text"], skip_style_tags=True))
        ),
        "mwparserfromhell.parse(text).strip_code()": lambda p: mwparserfromhell.parse(
            p["text"]
        ).strip_code(),
    }


def run_side(python: str, pages_path: Path, out_dir: Path, repeats: int, skip: list[str]):
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [python, __file__, "--worker", str(pages_path), str(out_dir), str(repeats)]
    argv += [arg for label in skip for arg in ("--skip", label)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGFIRE_IGNORE_NO_CONFIG": "1"}
    proc = subprocess.run(argv, cwd=out_dir, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"side run failed ({python}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sentences_by_line(text: str) -> list[str]:
    from pipelines.sentences import split_sentences

    return [s for line in text.split("\n") if line.strip() for s in split_sentences(line)]


def sentence_overlap(ours: dict, theirs: dict) -> tuple[float, float]:
    """(share of our sentences that theirs has too, share of theirs that ours has), sentence
    for sentence on the same page, whitespace collapsed: how much prose both keep alike."""
    ours_found = theirs_found = ours_total = theirs_total = 0
    for page_id, (_, our_sentences) in ours.items():
        a = [" ".join(s.split()) for s in our_sentences]
        b = [" ".join(s.split()) for s in theirs[page_id][1]]
        set_a, set_b = set(a), set(b)
        ours_found += sum(s in set_b for s in a)
        theirs_found += sum(s in set_a for s in b)
        ours_total, theirs_total = ours_total + len(a), theirs_total + len(b)
    return ours_found / max(ours_total, 1), theirs_found / max(theirs_total, 1)


def main(argv: list[str] | None = None) -> int:
    # Long on purpose, like bench/wikiextractor_compare.py: options, the pages, the
    # reference, the side runs, the audit and the tables, top to bottom.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--side-python",
        action="append",
        default=[],
        help="python of a venv with alternatives installed (repeatable; see above)",
    )
    parser.add_argument("--dump", type=Path, default=None, help="default: the sample dump")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--examples", type=int, default=2, help="leftover examples per tool")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--skip", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--max-pages", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # run by a side python: standard library and the alternatives only
        side_worker(args.worker[0], args.worker[1], int(args.worker[2]), args.skip)
        return 0

    sys.path.insert(0, str(REPO))
    import mwparserfromhell

    from bench.wikiextractor_compare import ALL_PATTERNS, LEFTOVER_PATTERNS, audit, pick_examples
    from pipelines import wikitext

    if not args.side_python:
        print("note: no --side-python given: only ours and mwparserfromhell", file=sys.stderr)
    if args.dump is None:
        from pipelines.sample import fetch_sample

        args.dump = fetch_sample()
    pages = [{"id": p.page_id, "title": p.title, "text": p.text} for p in article_pages(args.dump)][
        : args.max_pages
    ]
    megabytes = sum(len(p["text"].encode("utf-8")) for p in pages) / 1e6
    lists = {
        name: sorted(getattr(wikitext, name))
        for name in (
            "DROPPED_TAGS",
            "DROPPED_SECTIONS",
            "FILE_PREFIXES",
            "CATEGORY_PREFIXES",
            "LANGUAGE_CODES",
        )
    }

    results: dict[str, dict] = {}
    texts: dict[str, list[str]] = {}
    reference_runs: list[float] = []
    for label, fn in reference_tools().items():
        cpu, out, runs, failures = time_tool(fn, pages, args.repeats)
        results[label] = {
            "cpu_s": cpu,
            "runs": runs,
            "failures": failures,
            "package": f"mwparserfromhell {mwparserfromhell.__version__} (ours)",
            "python": platform.python_version(),
        }
        if label == REFERENCE:
            reference_runs.append(cpu)
        if out is not None:
            texts[label] = out

    with tempfile.TemporaryDirectory(prefix="wikitext-parsers-") as tmp_name:
        tmp = Path(tmp_name)
        pages_path = tmp / "pages.json"
        pages_path.write_text(json.dumps({"pages": pages, "lists": lists}), encoding="utf-8")
        for k, python in enumerate(args.side_python):
            side = run_side(python, pages_path, tmp / f"side{k}", args.repeats, list(results))
            for label, result in side.items():
                if "texts" in result:
                    texts[label] = json.loads(Path(result.pop("texts")).read_text("utf-8"))
                results[label] = result

    # The reference again, after the alternatives: the load on a shared machine moves.
    cpu, _, _, _ = time_tool(reference_tools()[REFERENCE], pages, args.repeats)
    reference_runs.append(cpu)
    results[REFERENCE]["cpu_s"] = min(reference_runs)

    # Leftover markup, each tool on the same pages, all counted here.
    page_ids = [p["id"] for p in pages]
    audits, overlaps = {}, {}
    ours_docs = None
    for label, out in texts.items():  # ours: one paragraph a line; theirs: lines as they are
        docs = {
            p["id"]: (p["title"], sentences_by_line(t)) for p, t in zip(pages, out, strict=True)
        }
        audits[label] = audit(docs, page_ids)
        ours_docs = ours_docs or docs  # the reference comes first
        overlaps[label] = sentence_overlap(ours_docs, docs)

    ref_cpu = results[REFERENCE]["cpu_s"]
    wx_cpu = results.get(WIKIEXTRACTOR, {}).get("cpu_s")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}; best of {args.repeats} by CPU time"
    )
    print(
        f"pages: {args.dump.name}: {len(pages)} article pages (namespace 0, no redirects), "
        f"{megabytes:.2f} MB of wikitext (UTF-8)"
    )
    print(
        f"clean_wikitext CPU s, before the alternatives / after: "
        f"{reference_runs[0]:.2f} / {reference_runs[1]:.2f}"
    )
    print()
    print(
        "| tool | package (python) | CPU s | CPU s / MB | speed vs clean_wikitext "
        "| speed vs WikiExtractor clean_text | markup /1k sent. | markup + debris /1k sent. "
        "| sentences | of ours also theirs | of theirs also ours |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, result in results.items():
        cpu = result["cpu_s"]
        vs_wx = f"{wx_cpu / cpu:.2f}x" if wx_cpu else "-"
        cells = ["-"] * 5
        if label in audits:
            a = audits[label]
            markup = sum(a.counts[k] for k in LEFTOVER_PATTERNS)
            both = sum(a.counts[k] for k in ALL_PATTERNS)
            cells = [f"{1000 * markup / a.sentences:.2f}", f"{1000 * both / a.sentences:.2f}"]
            cells.append(f"{a.sentences:,}")
            cells += [f"{100 * share:.0f}%" for share in overlaps[label]]
        notes = []
        if result["runs"] < args.repeats:
            notes.append(f"{result['runs']} run")
        if result["failures"]:
            raised = ", ".join(f"{n} on {k} pages" for n, k in result["failures"].items())
            notes.append(f"raised {raised}")
        if "pages_with_parse_errors" in result:
            notes.append(f"ERROR nodes in {result['pages_with_parse_errors']} pages")
        name = label + (f" ({'; '.join(notes)})" if notes else "")
        print(
            f"| {name} | {result['package']} ({result['python']}) | {cpu:.2f} "
            f"| {cpu / megabytes:.2f} | {ref_cpu / cpu:.2f}x | {vs_wx} | "
            + " | ".join(cells)
            + " |"
        )

    print("\nleftover markup per 1,000 sentences, by pattern (patterns with any count):\n")
    labels = list(audits)
    shown = [k for k in ALL_PATTERNS if any(audits[lb].counts[k] for lb in labels)]
    print("| tool | " + " | ".join(k.replace("|", "\\|") for k in shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for label in labels:
        a = audits[label]
        print(
            f"| {label} | "
            + " | ".join(f"{1000 * a.counts[k] / a.sentences:.2f}" for k in shown)
            + " |"
        )
    for label in labels:
        examples = pick_examples(audits[label].examples, args.examples)
        if examples:
            print(f"\nexamples, {label}:")
            for title, pattern, context in examples:
                print(f"- {title} [{pattern}]: `{context}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
