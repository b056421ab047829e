"""Streaming reader for MediaWiki XML dumps (plain, .bz2 incl. multistream, or .gz)."""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from xml.parsers import expat

_READ_SIZE = 1 << 20  # decompressed bytes per read: memory stays flat whatever the dump size
_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"
# surrogateescape turns each undecodable byte into one lone surrogate in this range
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class WikiPage:
    """One <page> of a dump: the text of its last revision, with namespace and redirect flag."""

    page_id: str  # the page's <id> (not the revision's)
    title: str
    namespace: int  # 0 = articles
    redirect: bool  # True when the page has a <redirect> element
    text: str  # raw wikitext of the last <revision>; "" for a deleted revision text


@dataclass(frozen=True)
class MalformedPage:
    """A <page> that lacks a required field or has a bad one; counted and skipped by callers."""

    source: str  # the dump's name, as given to iter_pages
    index: int  # 0-based ordinal of the <page> in the file
    title: str | None  # None when the page has no <title>
    reason: str  # e.g. "missing <text>", "bad <ns> 'x'"


class DumpReadError(Exception):
    """The dump stopped being readable (truncated compression, broken XML)."""

    def __init__(self, source: str, pages_read: int, last_title: str | None, cause: str):
        self.source = source
        self.pages_read = pages_read
        self.last_title = last_title
        super().__init__(
            f"{source}: dump unreadable after {pages_read} pages "
            f"(last good title: {last_title!r}): {cause}"
        )


class _PrefixedReader(io.RawIOBase):
    """A raw stream that replays the sniffed magic bytes, then reads on from the inner stream."""

    def __init__(self, prefix: bytes, inner: BinaryIO):
        self._prefix = prefix
        self._inner = inner  # the caller's stream: never closed here

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_dump(path_or_fileobj: str | os.PathLike | BinaryIO, source: str | None = None) -> BinaryIO:
    """Open a dump for reading, decompressing bzip2 (multistream too) or gzip by magic bytes.

    A path is opened here and closed with the result; a stream passed in stays the caller's
    (any readable binary stream works, e.g. one opened by Beam's FileSystems on gs://).
    `source` only names the dump in errors.
    """
    if not hasattr(path_or_fileobj, "read"):
        path = os.fspath(path_or_fileobj)
        try:
            with open(path, "rb") as raw:
                head = raw.read(len(_BZ2_MAGIC))
        except OSError as err:
            raise DumpReadError(source or path, 0, None, f"cannot open: {err}") from err
        if head.startswith(_BZ2_MAGIC):
            return bz2.BZ2File(path)  # reads concatenated streams, i.e. multistream dumps
        if head.startswith(_GZIP_MAGIC):
            return gzip.GzipFile(path)
        return open(path, "rb", buffering=_READ_SIZE)
    raw = path_or_fileobj
    try:
        head = b""
        while len(head) < len(_BZ2_MAGIC):
            chunk = raw.read(len(_BZ2_MAGIC) - len(head))
            if not chunk:
                break
            head += chunk
    except OSError as err:
        raise DumpReadError(source or repr(raw), 0, None, f"cannot read: {err}") from err
    # the magic bytes are consumed; replay them so any stream works, seekable or not
    stream = io.BufferedReader(_PrefixedReader(head, raw), _READ_SIZE)
    if head.startswith(_BZ2_MAGIC):
        return bz2.BZ2File(stream)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream)
    return stream


class _PageCollector:
    """Expat handlers that turn element events into WikiPage / MalformedPage records."""

    def __init__(self, source: str):
        self.source = source
        self.stack: list[str] = []  # local names of the open elements
        self.ready: list[WikiPage | MalformedPage] = []  # pages completed since the last drain
        self.page_index = 0
        self._reset()

    def _reset(self) -> None:
        self.fields: dict[str, str] = {}  # title / ns / id / text of the page being read
        self.redirect = False
        self.capture: list[str] | None = None  # character data of the field being read
        self.capture_depth = 0  # depth of the element whose text is captured

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition("}")[2]
        self.stack.append(local)
        depth = len(self.stack)
        if local == "page":
            self._reset()
        elif depth >= 2 and self.stack[-2] == "page":
            if local in ("title", "ns", "id"):
                self.capture, self.capture_depth = [], depth
            elif local == "redirect":
                self.redirect = True
        elif local == "text" and depth >= 3 and self.stack[-2] == "revision":
            # a later revision's text replaces an earlier one's
            self.capture, self.capture_depth = [], depth

    def end(self, name: str) -> None:
        depth = len(self.stack)
        local = self.stack.pop()
        if self.capture is not None and depth == self.capture_depth:
            self.fields[local] = "".join(self.capture)
            self.capture = None
        elif local == "page":
            self.ready.append(self._finish_page())
            self.page_index += 1

    def chars(self, data: str) -> None:
        if self.capture is not None:
            self.capture.append(data)

    def _finish_page(self) -> WikiPage | MalformedPage:
        title = self.fields.get("title")
        missing = [f"<{key}>" for key in ("title", "ns", "id", "text") if key not in self.fields]
        reason = f"missing {', '.join(missing)}" if missing else None
        namespace = 0
        if reason is None:
            try:
                namespace = int(self.fields["ns"].strip())
            except ValueError:
                reason = f"bad <ns> {self.fields['ns']!r}"
        if reason is None and not title.strip():
            reason = "empty <title>"
        if reason is not None:
            return MalformedPage(self.source, self.page_index, title, reason)
        return WikiPage(
            page_id=self.fields["id"].strip(),
            title=title,
            namespace=namespace,
            redirect=self.redirect,
            text=self.fields["text"],
        )


def iter_pages(
    fileobj: BinaryIO, source: str, *, stats: dict[str, int] | None = None
) -> Iterator[WikiPage | MalformedPage]:
    """Yield every <page> of an (already decompressed) dump stream, in file order.

    Tags match whatever the export namespace version. Pages lacking <title>, <ns>, <id> or
    <text>, or with a non-integer <ns>, come out as MalformedPage and reading goes on. Bytes
    that are not UTF-8 become U+FFFD, one per byte, counted in stats["invalid_utf8_bytes"].
    When the stream breaks (truncated compression, broken XML), the pages before the break
    are yielded and DumpReadError is raised. `stats` (optional) is updated in place with
    "pages", "malformed_pages" and "invalid_utf8_bytes".
    """
    if stats is None:
        stats = {}
    for key in ("pages", "malformed_pages", "invalid_utf8_bytes"):
        stats.setdefault(key, 0)
    collector = _PageCollector(source)
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.chars
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    pages_read = 0
    last_title: str | None = None
    # read1 returns what one underlying read gives, so data decompressed before a
    # truncation is not lost inside a buffered read that then fails
    read = getattr(fileobj, "read1", fileobj.read)

    def drain() -> Iterator[WikiPage | MalformedPage]:
        nonlocal pages_read, last_title
        ready, collector.ready = collector.ready, []
        for page in ready:
            pages_read += 1
            stats["pages"] += 1
            if isinstance(page, MalformedPage):
                stats["malformed_pages"] += 1
            else:
                last_title = page.title
            yield page

    while True:
        try:
            data = read(_READ_SIZE)
        except (EOFError, OSError) as err:  # truncated or corrupt compressed stream
            yield from drain()
            raise DumpReadError(source, pages_read, last_title, str(err)) from err
        text = decoder.decode(data, final=not data)
        if _ESCAPED_BYTE.search(text):
            text, replaced = _ESCAPED_BYTE.subn("\ufffd", text)
            stats["invalid_utf8_bytes"] += replaced
        try:
            parser.Parse(text, not data)
        except expat.ExpatError as err:
            yield from drain()
            raise DumpReadError(source, pages_read, last_title, f"XML error: {err}") from err
        yield from drain()
        if not data:
            return
