"""Wikitext cleaning on real-looking markup, and disambiguation detection."""

from __future__ import annotations

import pytest

from pipelines.wikitext import clean_wikitext, is_disambiguation

ARTICLE = """{{Short description|Political philosophy}}
{{Infobox country
| name = Freedonia
| capital = {{nowrap|[[Fredville]]}}
| population = {{formatnum:{{#expr: 1000 * 5}}}}
}}
'''Freedonia''' is a [[country|fictional country]] in [[Europe]].<ref name="a">{{cite web |url=http://x.org |title=Src}}</ref> It has {{convert|5|km}} of coast.<ref name="a"/>
[[File:Flag.svg|thumb|250px|The flag, designed by [[John Smith (artist)|John Smith]] in [[1900]]]]

It exports ''cheese'' and '''''wine'''''.<!-- hidden comment --> See [http://example.org the official site] or http://bare.example.org.
__TOC__
== History ==
In [[1848]], the king<ref>Plain ref with [[link]].</ref> signed a treaty.

{| class="wikitable"
|-
! Year !! Event
|-
| 1848 || Treaty
|}

=== Modern era ===
Today it is a republic.&nbsp;Its motto is &quot;Hail&quot; &amp; &#8220;more&#8221;.

== See also ==
* [[Sylvania]]
* [[Marx Brothers]]

== References ==
{{reflist}}
<references/>

== External links ==
* [http://freedonia.example Official site]

[[Category:Fictional countries]]
[[de:Freedonia]]
[[fr:Freedonia]]
"""


@pytest.fixture(scope="module")
def cleaned() -> list[str]:
    return clean_wikitext(ARTICLE)


def test_article_becomes_clean_paragraphs(cleaned):
    assert cleaned == [
        "Freedonia is a fictional country in Europe. It has of coast.",
        "It exports cheese and wine. See the official site or.",
        "In 1848, the king signed a treaty.",
        'Today it is a republic. Its motto is "Hail" & \u201cmore\u201d.',
    ]


@pytest.mark.parametrize(
    "debris",
    ["{{", "}}", "[[", "]]", "<ref", "cite", "Src", "|", "''", "&", "__TOC__", "http"],
)
def test_no_markup_debris(cleaned, debris):
    prose = "\n".join(cleaned).replace(" & ", " and ")  # the one decoded &amp; is prose
    assert debris not in prose


def test_infobox_file_caption_category_and_language_links_dropped(cleaned):
    prose = "\n".join(cleaned)
    for dropped in ("Fredville", "flag", "John Smith", "Fictional countries", "de:", "fr:"):
        assert dropped not in prose


def test_reference_sections_dropped_with_their_lists(cleaned):
    prose = "\n".join(cleaned)
    assert "Sylvania" not in prose and "Marx Brothers" not in prose
    assert "Official site" not in prose


def test_headings_dropped_by_default_and_kept_as_paragraphs_on_request(cleaned):
    assert "History" not in "\n".join(cleaned)
    with_headings = clean_wikitext(ARTICLE, keep_headings=True)
    assert with_headings[2:6] == [
        "History",
        "In 1848, the king signed a treaty.",
        "Modern era",
        'Today it is a republic. Its motto is "Hail" & \u201cmore\u201d.',
    ]
    assert "See also" not in with_headings and "References" not in with_headings


def test_subsection_of_dropped_section_is_dropped_but_next_section_kept():
    text = (
        "Intro.\n== Notes ==\n=== Sub notes ===\nA note.\n== Legacy ==\nIt lasted.\n"
        "== Further reading ==\n* A book.\n"
    )
    assert clean_wikitext(text) == ["Intro.", "It lasted."]


def test_links_labels_pipe_trick_anchors_and_link_trails():
    text = (
        "[[Paris|The capital]], [[Paris (band)|]], [[Rome]]s, [[#History|history]], "
        "[[:Category:Cities|city list]], [[wikt:anarchy|anarchy]] and [[OS&nbsp;X]]."
    )
    assert clean_wikitext(text) == [
        "The capital, Paris, Romes, history, city list, anarchy and OS X."
    ]


def test_nested_templates_and_links_inside_templates_leave_nothing():
    text = "A {{lang|fr|{{nowrap|[[Paris]] {{small|x}}}}}} B {{#if:{{{1|}}}|yes|no}} C."
    assert clean_wikitext(text) == ["A B C."]


def test_html_tags_keep_formatting_text_and_drop_code_math_gallery():
    text = (
        "Area: 5 km<sup>2</sup>, <small>roughly</small> <span style='x'>so</span>"
        "<math>x^2</math><code>rm -rf</code>.<br/>Next line.\n"
        "<gallery>\nA.jpg|caption\n</gallery>\n"
        "<pre>preformatted</pre>"
    )
    assert clean_wikitext(text) == ["Area: 5 km2, roughly so. Next line."]


def test_list_items_keep_text_one_paragraph_each():
    text = "Kinds:\n* First [[kind]]\n# Second kind\n; Term : its definition\nAfter the list."
    assert clean_wikitext(text) == [
        "Kinds:",
        "First kind",
        "Second kind",
        "Term its definition",
        "After the list.",
    ]


def test_paragraphs_split_on_blank_lines_and_lines_join_within():
    text = "One line\ncontinues here.\n\n\n  Second   paragraph\t here.  \n\n"
    assert clean_wikitext(text) == ["One line continues here.", "Second paragraph here."]


def test_punctuation_orphaned_by_removed_templates_is_removed():
    text = (
        "Ada Lovelace ({{IPA|x}}; {{lang|en|y}}) was a mathematician. {{As of|2008}}, "
        "her notes are famous in the U.S., and in Washington, D.C., too."
    )
    assert clean_wikitext(text) == [
        "Ada Lovelace was a mathematician. her notes are famous in the U.S., "
        "and in Washington, D.C., too."
    ]


@pytest.mark.parametrize(
    "odd",
    [
        "",
        "{{",
        "}}}}",
        "[[",
        "[[File:x.jpg|[[",
        "{| unclosed table\n| cell",
        "<ref>never closed",
        "'''''",
        "<div><span>",
        "== ==",
        "&#xZZZZ; &bogus;",
        "{{" * 200 + "x" + "}}" * 200,
        "[[" * 200 + "x" + "]]" * 200,
    ],
)
def test_odd_markup_never_raises(odd):
    result = clean_wikitext(odd)
    assert isinstance(result, list) and all(isinstance(p, str) and p for p in result)
    for debris in ("{{", "}}", "[[", "]]"):
        assert all(debris not in p for p in result)


def test_unclosed_table_lines_are_dropped():
    assert clean_wikitext("Prose here.\n\n{| class=x\n|-\n| cell\n") == ["Prose here."]


@pytest.mark.parametrize(
    "text",
    [
        "'''Mercury''' may refer to:\n* [[Mercury (planet)]]\n{{disambiguation}}",
        "{{Disambiguation|geo}}",
        "{{disambig}}",
        "{{DAB}}",
        "{{ hndis | name=Smith }}",
        "{{geodis}}",
        "{{Hospital disambiguation}}",
        "{{Template:Disambiguation}}",
    ],
)
def test_disambiguation_pages_detected(text):
    assert is_disambiguation(text)


@pytest.mark.parametrize(
    "text",
    [
        "{{About|the planet|other uses|Mercury (disambiguation)}} Mercury is a planet.",
        "A [[disambiguation]] page is not this one.",
        "He was {{Disambiguation needed|date=May 2016}} a painter.",
        "{{Infobox planet}}",
    ],
)
def test_articles_are_not_disambiguation(text):
    assert not is_disambiguation(text)
