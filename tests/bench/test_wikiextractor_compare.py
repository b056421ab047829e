"""bench/wikiextractor_compare.py: the leftover-markup audit counts what it claims."""

import bz2

import pytest

from bench.wikiextractor_compare import (
    ALL_PATTERNS,
    COPY_ID_OFFSET,
    count_leftover_markup,
    scaled_dump,
)
from pipelines.wikidump import iter_pages, open_dump


def test_one_template_one_link_one_ref():
    counts = count_leftover_markup("{{cite}} and [[a|b]] and <ref>")
    assert counts == {"template {{ }}": 1, "link [[ ]]": 1, "reference <ref>": 1}


def test_clean_prose_has_no_leftovers():
    text = "Anarchism is a political philosophy (see below). It's 5 < 6 and 7 > 2; a|b."
    assert count_leftover_markup(text) == {}


@pytest.mark.parametrize(
    ("text", "pattern", "count"),
    [
        ("{| class=wikitable\n|-\n| a || b\n|}", "table {| |} || |-", 4),
        ("x <ref name=a/> y <ref>z</ref>", "reference <ref>", 3),
        ("<!-- hidden -->", "HTML comment <!-- -->", 2),
        ("km<sup>2</sup> and <br/>", "HTML tag <x>", 3),
        ("AT&amp;T &#160; &nbsp;", "HTML entity &x;", 3),
        ("thumb|250px|A caption", "file/category link", 2),
        ("{{Infobox | name = X }}", "template {{ }}", 1),
        ("File:Map.png and Category:Anarchism", "file/category link", 2),
        ("an unclosed {{Infobox\nand }} later", "template {{ }}", 2),
        ("[[unclosed\nand ]] later", "link [[ ]]", 2),
        ("see [http://example.org the site]", "external link [http", 1),
        ("'''Bold''' and ''italic''", "bold/italic ''", 4),
        ("__TOC__ __NOTOC__", "magic word __X__", 2),
        ("== History ==", "heading ==", 2),
        ("Andorra (;, ) and Albania ( ; , ) and ()", "empty parentheses ( )", 3),
        ("Algae (; singular alga) and Angola (, Kikongo)", "parenthesis opened by ; or , ", 2),
    ],
)
def test_each_pattern(text, pattern, count):
    assert pattern in ALL_PATTERNS
    assert count_leftover_markup(text) == {pattern: count}


def test_a_piece_of_text_counts_once():
    # a reference is not also an HTML tag; a link's pipe is not a table cell
    counts = count_leftover_markup("<ref name=x>[[a|b]]</ref>")
    assert counts == {"reference <ref>": 2, "link [[ ]]": 1}


XML = """<mediawiki>
  <siteinfo><sitename>W</sitename></siteinfo>
  <page>
    <title>Alpha</title>
    <ns>0</ns>
    <id>12</id>
    <revision><id>99</id><text xml:space="preserve">Alpha is a letter.</text></revision>
  </page>
  <page>
    <title>Beta</title>
    <ns>0</ns>
    <id>13</id>
    <redirect title="Alpha" />
    <revision><id>98</id><text xml:space="preserve">#REDIRECT [[Alpha]]</text></revision>
  </page>
</mediawiki>
"""


def test_scaled_dump_copies_pages_under_new_ids_and_titles(tmp_path):
    source = tmp_path / "d.xml.bz2"
    source.write_bytes(bz2.compress(XML.encode()))

    out = scaled_dump(source, 3, tmp_path / "s.xml.bz2")
    with open(out, "rb") as raw:
        pages = list(iter_pages(open_dump(raw, "s"), "s"))
    assert [p.page_id for p in pages] == [
        "12",
        "13",
        str(12 + COPY_ID_OFFSET),
        str(13 + COPY_ID_OFFSET),
        str(12 + 2 * COPY_ID_OFFSET),
        str(13 + 2 * COPY_ID_OFFSET),
    ]
    assert pages[2].title == "Alpha (copy 1)"
    assert pages[2].text == "Copy 1 of this page.\n\nAlpha is a letter."
    assert pages[3].redirect and pages[3].text == "#REDIRECT [[Alpha]]"
