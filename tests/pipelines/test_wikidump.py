"""Streaming dump reader: plain / bz2 / multistream, redirects, bad pages, broken streams."""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path

import pytest

from pipelines.wikidump import (
    DumpReadError,
    MalformedPage,
    WikiPage,
    iter_pages,
    open_dump,
)
from pipelines.wikitext import clean_wikitext

HEADER = (
    '<mediawiki xmlns="http://www.mediawiki.org/xml/export-{version}/" version="{version}">\n'
    "  <siteinfo><sitename>Wikipedia</sitename></siteinfo>\n"
)
FOOTER = "</mediawiki>\n"


def page_xml(
    page_id: int,
    title: str,
    text: str,
    *,
    ns: str = "0",
    redirect: str | None = None,
) -> str:
    """One <page> element as a dump writes it (text is XML-escaped by the caller)."""
    redirect_xml = f'<redirect title="{redirect}" />' if redirect else ""
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
        f"    {redirect_xml}\n    <revision>\n      <id>{page_id * 100}</id>\n"
        f"      <contributor><username>U</username><id>7</id></contributor>\n"
        f'      <text xml:space="preserve">{text}</text>\n    </revision>\n  </page>\n'
    )


def dump_xml(*pages: str, version: str = "0.10") -> str:
    return HEADER.format(version=version) + "".join(pages) + FOOTER


def read_all(stream, source="test.xml", stats=None):
    return list(iter_pages(open_dump(stream, source), source, stats=stats))


def three_pages() -> str:
    return dump_xml(
        page_xml(1, "Alpha", "'''Alpha''' is a [[letter]] &amp; a sign."),
        page_xml(2, "Beta (letter)", "#REDIRECT [[Beta]]", redirect="Beta"),
        page_xml(3, "Talk:Alpha", "Discussion.", ns="1"),
    )


def test_plain_xml_yields_pages_with_fields_redirects_and_namespaces(tmp_path):
    path = tmp_path / "dump.xml"
    path.write_text(three_pages(), encoding="utf-8")
    with open_dump(path) as stream:
        pages = list(iter_pages(stream, "dump.xml"))
    assert pages == [
        WikiPage("1", "Alpha", 0, False, "'''Alpha''' is a [[letter]] & a sign."),
        WikiPage("2", "Beta (letter)", 0, True, "#REDIRECT [[Beta]]"),
        WikiPage("3", "Talk:Alpha", 1, False, "Discussion."),
    ]


def test_page_id_is_the_page_id_not_the_revision_or_contributor_id():
    pages = read_all(io.BytesIO(three_pages().encode()))
    assert [p.page_id for p in pages] == ["1", "2", "3"]


def test_page_with_several_revisions_keeps_the_last_text():
    two_revisions = page_xml(1, "Alpha", "old").replace(
        "    </revision>\n", "    </revision>\n    <revision><text>new</text></revision>\n"
    )
    (page,) = read_all(io.BytesIO(dump_xml(two_revisions).encode()))
    assert page.text == "new"


def test_other_export_versions_parse_the_same():
    data = three_pages().replace("export-0.10", "export-0.11").replace('"0.10"', '"0.11"')
    pages = read_all(io.BytesIO(data.encode()))
    assert [p.title for p in pages] == ["Alpha", "Beta (letter)", "Talk:Alpha"]


def test_bz2_file_is_detected_by_magic_bytes_not_name(tmp_path):
    path = tmp_path / "dump.xml"  # no .bz2 suffix on purpose
    path.write_bytes(bz2.compress(three_pages().encode()))
    with open_dump(path) as stream:
        assert [p.title for p in iter_pages(stream, "dump.xml")] == [
            "Alpha",
            "Beta (letter)",
            "Talk:Alpha",
        ]


def test_gzip_file_and_missing_file(tmp_path):
    path = tmp_path / "dump.xml.gz"
    path.write_bytes(gzip.compress(three_pages().encode()))
    with open_dump(path) as stream:
        assert len(list(iter_pages(stream, path.name))) == 3
    with pytest.raises(DumpReadError, match="nowhere.xml.bz2"):
        open_dump(tmp_path / "nowhere.xml.bz2")


def test_multistream_bz2_reads_every_stream():
    xml = three_pages()
    cut = xml.index("  <page>\n    <title>Beta")  # two streams: page 1, pages 2 and 3
    data = bz2.compress(xml[:cut].encode()) + bz2.compress(xml[cut:].encode())
    pages = read_all(io.BytesIO(data))
    assert [p.title for p in pages] == ["Alpha", "Beta (letter)", "Talk:Alpha"]


def test_stream_without_seek_or_peek_is_sniffed():
    class ReadOnly(io.RawIOBase):
        """A pipe-like stream: read only, tiny reads."""

        def __init__(self, data: bytes):
            self._data = data

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(2, len(buffer), len(self._data))
            buffer[:n], self._data = self._data[:n], self._data[n:]
            return n

    pages = read_all(ReadOnly(bz2.compress(three_pages().encode())))
    assert len(pages) == 3


def test_malformed_pages_are_reported_and_reading_continues():
    no_text = "  <page><title>NoText</title><ns>0</ns><id>5</id><revision/></page>\n"
    no_title = "  <page><ns>0</ns><id>6</id><revision><text>x</text></revision></page>\n"
    data = dump_xml(
        page_xml(1, "First", "one"),
        no_text,
        page_xml(4, "BadNs", "two", ns="zero"),
        no_title,
        page_xml(7, "Last", "three"),
    )
    stats: dict[str, int] = {}
    pages = read_all(io.BytesIO(data.encode()), "bad.xml", stats)
    assert pages[0].title == "First" and pages[4].title == "Last"
    assert pages[1] == MalformedPage("bad.xml", 1, "NoText", "missing <text>")
    assert pages[2] == MalformedPage("bad.xml", 2, "BadNs", "bad <ns> 'zero'")
    assert pages[3] == MalformedPage("bad.xml", 3, None, "missing <title>")
    assert stats["pages"] == 5 and stats["malformed_pages"] == 3


def test_truncated_bz2_yields_earlier_pages_then_names_file_count_and_title(tmp_path):
    body = "".join(page_xml(i, f"Page {i}", f"Text {i}. " * 400) for i in range(1, 101))
    compressed = bz2.compress(dump_xml(body).encode(), compresslevel=1)  # 100 kB blocks
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    seen: list[str] = []
    with open_dump(path) as stream:
        with pytest.raises(DumpReadError) as error:
            for page in iter_pages(stream, "cut.xml.bz2"):
                seen.append(page.title)
    assert seen and seen == [f"Page {i}" for i in range(1, len(seen) + 1)]
    assert len(seen) < 100
    message = str(error.value)
    assert "cut.xml.bz2" in message
    assert f"after {len(seen)} pages" in message
    assert repr(seen[-1]) in message


def test_broken_xml_yields_earlier_pages_then_raises():
    data = dump_xml(page_xml(1, "Good", "fine")) + "<page><title>Oops</ns>"
    data = data.replace(FOOTER, "")
    stream = iter_pages(io.BytesIO(data.encode()), "broken.xml")
    assert next(stream).title == "Good"
    with pytest.raises(DumpReadError, match=r"broken\.xml.*after 1 pages.*'Good'"):
        next(stream)


def test_xml_that_just_stops_raises():
    data = dump_xml(page_xml(1, "Good", "fine"), page_xml(2, "Cut", "half"))
    data = data[: data.index("<title>Cut") + 20]
    stream = iter_pages(io.BytesIO(data.encode()), "short.xml")
    assert next(stream).title == "Good"
    with pytest.raises(DumpReadError, match="short.xml"):
        next(stream)


def test_invalid_utf8_is_replaced_counted_and_the_page_kept():
    data = dump_xml(page_xml(1, "Caf\u00e9", "bad \xff\xfe bytes"), page_xml(2, "Next", "ok"))
    raw = data.encode("utf-8").replace("\xff\xfe".encode(), b"\xff\xfe")
    stats: dict[str, int] = {}
    pages = read_all(io.BytesIO(raw), stats=stats)
    assert [p.title for p in pages] == ["Caf\u00e9", "Next"]
    assert pages[0].text == "bad \ufffd\ufffd bytes"
    assert stats["invalid_utf8_bytes"] == 2


def test_multibyte_character_split_across_reads_is_not_invalid(monkeypatch):
    import pipelines.wikidump as wikidump

    monkeypatch.setattr(wikidump, "_READ_SIZE", 7)  # force reads that cut characters
    stats: dict[str, int] = {}
    text = "\u00e9t\u00e9 \u6f22\u5b57 \U0001f600 " * 20
    pages = read_all(io.BytesIO(dump_xml(page_xml(1, "Mots", text)).encode()), stats=stats)
    assert pages[0].text == text
    assert stats["invalid_utf8_bytes"] == 0


def test_real_sample_dump(sample_dump: Path):
    stats: dict[str, int] = {}
    with open_dump(sample_dump) as stream:
        pages = list(iter_pages(stream, sample_dump.name, stats=stats))
    assert len(pages) == 206 and stats["malformed_pages"] == 0
    assert sum(page.redirect for page in pages) == 100
    assert {page.namespace for page in pages} == {0, 4}
    anarchism = next(page for page in pages if page.title == "Anarchism")
    assert anarchism.page_id == "12" and not anarchism.redirect
    paragraphs = clean_wikitext(anarchism.text)
    assert len(paragraphs) > 40
    assert paragraphs[0].startswith("Anarchism is a political philosophy")
    prose = "\n".join(paragraphs)
    for debris in ("{{", "}}", "[[", "]]", "<ref", "</", "{|", "|}", "''", "&nbsp;", "&amp;"):
        assert debris not in prose, debris
