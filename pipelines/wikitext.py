"""Wikitext to clean prose paragraphs, with mwparserfromhell.

What is kept and what is dropped:
- Dropped with their content: templates (infoboxes, citations, nested ones, parser functions),
  template arguments, tables (wiki `{| |}` and HTML), comments, magic words (`__TOC__`),
  file/image/media links with their captions (prefixes in FILE_PREFIXES), category links
  (CATEGORY_PREFIXES), language links (`[[de:...]]`, codes in LANGUAGE_CODES), unlabelled
  external links, and the tags in DROPPED_TAGS (<ref>, <references/>, <math>, <gallery>,
  <code>, <pre>, <syntaxhighlight>, ...).
- Kept as text: internal links ([[A|b]] -> b, [[A]] -> A, [[A|]] -> A without its
  parenthetical), other interwiki links (label or title), labels of external links, the
  inner text of every other HTML tag (<b>, <i>, <small>, <sup>, <sub>, <span>, <div>, ...:
  "km<sup>2</sup>" -> "km2"), HTML entities decoded, bold/italic quotes removed.
- List items (* # ; :) keep their text, one paragraph per item, so that a list never runs on
  into one long "sentence".
- Headings are dropped unless keep_headings=True, which keeps each as its own paragraph.
- Sections whose heading is in DROPPED_SECTIONS ("References", "External links", "See also",
  "Further reading", "Notes", ...) are dropped with their subsections: they hold lists of
  links and citations, not prose.
- Whitespace (NBSP included) collapses to single spaces; paragraphs without a letter or digit
  are dropped.
"""

from __future__ import annotations

import re

import mwparserfromhell
from mwparserfromhell.nodes import ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink
from mwparserfromhell.wikicode import Wikicode

# English names plus the localized names of the largest Wikipedias (de, fr, es, it, nl, pl,
# pt, ru, sv, ja, zh); compared lowercased.
FILE_PREFIXES = frozenset(
    "file image media datei bild fichier archivo imagen immagine afbeelding bestand plik "
    "grafika ficheiro arquivo imagem файл изображение fil bild ファイル 画像 文件 图像 檔案".split()
)
CATEGORY_PREFIXES = frozenset(
    "category kategorie catégorie categoría categoria categorie kategoria категория "
    "kategori カテゴリ 分类 分類".split()
)
# Codes of Wikipedia language editions: [[xx:Title]] is a link to the same article in
# another language, shown in the sidebar, not in the text.
LANGUAGE_CODES = frozenset(
    """aa ab ace ady af ak als alt am an ang ar arc ary arz as ast atj av avk awa ay az azb ba
    ban bar bat-smg bcl be be-tarask be-x-old bg bh bi bjn bm bn bo bpy br bs bug bxr ca
    cbk-zam cdo ce ceb ch cho chr chy ckb co cr crh cs csb cu cv cy da de din diq dsb dty dv
    dz ee el eml en eo es et eu ext fa ff fi fiu-vro fj fo fr frp frr fur fy ga gag gan gcr gd
    gl glk gn gom gor got gu gv ha hak haw he hi hif ho hr hsb ht hu hy hyw hz ia id ie ig ii
    ik ilo inh io is it iu ja jam jbo jv ka kaa kab kbd kbp kg ki kj kk kl km kn ko koi kr krc
    ks ksh ku kv kw ky la lad lb lbe lez lfn lg li lij lld lmo ln lo lrc lt ltg lv mad mai
    map-bms mdf mg mh mhr mi min mk ml mn mni mnw mr mrj ms mt mus mwl my myv mzn na nah nap
    nds nds-nl ne new ng nia nl nn no nov nqo nrm nso nv ny oc olo om or os pa pag pam pap pcd
    pdc pfl pi pih pl pms pnb pnt ps pt qu rm rmy rn ro roa-rup roa-tara ru rue rw sa sah sat
    sc scn sco sd se sg sh shn si simple sk skr sl sm smn sn so sq sr srn ss st stq su sv sw
    szl szy ta tay tcy te tet tg th ti tk tl tn to tpi tr trv ts tt tum tw ty tyv udm ug uk ur
    uz ve vec vep vi vls vo wa war wo wuu xal xh xmf yi yo za zea zh zh-classical zh-min-nan
    zh-yue zu""".split()
)
# Tags whose content is not prose; every other tag keeps its inner text.
DROPPED_TAGS = frozenset(
    "ref references math chem ce gallery timeline imagemap score graph pre source "
    "syntaxhighlight code hiero templatedata mapframe maplink inputbox categorytree "
    "table caption tr td th noinclude includeonly".split()
)
LIST_TAGS = frozenset(("li", "dt", "dd"))  # produced by the * # ; : list markers
# Headings (lowercased) of sections that are lists of links or citations, not prose.
DROPPED_SECTIONS = frozenset(
    (
        "references",
        "external links",
        "see also",
        "further reading",
        "notes",
        "footnotes",
        "citations",
        "sources",
        "bibliography",
        "works cited",
        "notes and references",
        "references and notes",
        "notes and citations",
        "explanatory notes",
        "general references",
        "other reading",
        "related articles",
    )
)
# Names (lowercased, "_" -> " ") of templates that mark a disambiguation page.
DISAMBIGUATION_TEMPLATES = frozenset(
    "disambiguation disambig disamb dab hndis geodis numberdis mathdab "
    "letter-numbercombdisambig".split()
)  # names ending in "disambiguation" ("Hospital disambiguation", ...) also count

_LIST_ITEM = "\x01"  # marks the start of a list item; cannot occur in XML 1.0 text
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\xa0]*\n")
_QUOTES = re.compile(r"'{2,}")  # bold / italic markup
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_LEFTOVER_MARKUP = re.compile(r"\{\{|\}\}|\[\[|\]\]")  # from markup too broken to parse
_TABLE_LINE = re.compile(r"^\s*(\{\||\|\}|\|-|\||!\s|!!)")  # a table the parser missed
_EMPTY_PARENS = re.compile(r"\(\s*[,;:.]*\s*\)")  # "( ; )" left by a removed template
_ORPHAN_PUNCT = re.compile(r"([.!?])\s+[,;:](?=\s)")  # "1990. {{As of|2008}}, sales"
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.!?])(?=\s|$)")
_LEADING_PUNCT = re.compile(r"^[,;:.]+\s+")  # "{{cite}}. First of a series..."
_WHITESPACE = re.compile(r"\s+")
_HAS_WORD = re.compile(r"\w")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")
_TEMPLATE_NAME = re.compile(r"\{\{\s*([^{}|\n]+?)\s*(?:\||\}\})")


def clean_wikitext(text: str, *, keep_headings: bool = False) -> list[str]:
    """Turn an article's wikitext into paragraphs of clean prose (see the module docstring)."""
    try:
        wikicode = mwparserfromhell.parse(text, skip_style_tags=True)
        rendered = _render_top_level(wikicode, keep_headings)
    except Exception:  # the parser gives up on some pathological markup; never fail a page
        rendered = _render_fallback(text)
    return _paragraphs(rendered)


def is_disambiguation(text: str) -> bool:
    """True when the wikitext carries a disambiguation template ({{disambiguation}}, {{dab}}...)."""
    for match in _TEMPLATE_NAME.finditer(text):
        name = match.group(1).lower().replace("_", " ").strip()
        name = name.removeprefix("template:").strip()
        if name in DISAMBIGUATION_TEMPLATES or name.endswith(("disambiguation", "disambig")):
            return True
    return False


def _render_top_level(wikicode: Wikicode, keep_headings: bool) -> str:
    """Render the page, skipping the sections listed in DROPPED_SECTIONS."""
    parts: list[str] = []
    skip_below_level = 0  # while > 0, drop everything until a heading at this level or higher
    for node in wikicode.nodes:
        if isinstance(node, Heading):
            title = _WHITESPACE.sub(" ", _render(node.title.nodes)).strip()
            if skip_below_level and node.level > skip_below_level:
                continue
            skip_below_level = 0
            if _QUOTES.sub("", title).strip(" :").lower() in DROPPED_SECTIONS:
                skip_below_level = node.level
            elif keep_headings:
                parts.append(f"\n\n{title}\n\n")
            else:
                parts.append("\n\n")
        elif not skip_below_level:
            parts.append(_render_node(node))
    return "".join(parts)


def _render(nodes: list) -> str:
    return "".join(_render_node(node) for node in nodes)


def _render_node(node) -> str:
    if isinstance(node, Text):
        return node.value
    if isinstance(node, Wikilink):
        return _render_wikilink(node)
    if isinstance(node, Tag):
        return _render_tag(node)
    if isinstance(node, HTMLEntity):
        try:
            return node.normalize()
        except ValueError:  # an entity the parser accepted but cannot decode
            return ""
    if isinstance(node, ExternalLink):
        return _render(node.title.nodes) if node.title is not None else ""
    if isinstance(node, Heading):  # a heading nested inside a tag: keep paragraph structure
        return "\n\n"
    return ""  # templates, template arguments, comments


def _render_wikilink(link: Wikilink) -> str:
    title = str(link.title).strip()
    leading_colon = title.startswith(":")  # [[:Category:X]] links to the page, shown inline
    title = title.lstrip(":").strip()
    prefix, colon, rest = title.partition(":")
    prefix = prefix.strip().lower()
    if colon and not leading_colon:
        if prefix in FILE_PREFIXES or prefix in CATEGORY_PREFIXES or prefix in LANGUAGE_CODES:
            return ""
    if link.text is not None:
        label = _render(link.text.nodes)
        if label.strip():
            return label
        # pipe trick: [[Paris (band)|]] shows "Paris", [[Help:Contents|]] shows "Contents"
        return _PARENTHETICAL.sub("", rest if colon else title).strip()
    shown = _render(link.title.nodes).strip().lstrip(":")  # decodes entities: [[OS&nbsp;X]]
    return shown.split("#", 1)[0] or shown.lstrip("#")


def _render_tag(tag: Tag) -> str:
    name = str(tag.tag).strip().lower()
    if name in LIST_TAGS and tag.wiki_markup:
        return _LIST_ITEM
    if name in DROPPED_TAGS:
        return ""
    if name == "br":
        return "\n"
    if name == "hr":
        return "\n\n"
    if tag.self_closing or tag.contents is None:
        return ""
    if name == "p":
        return f"\n\n{_render(tag.contents.nodes)}\n\n"
    return _render(tag.contents.nodes)


def _render_fallback(text: str) -> str:
    """A crude regex strip for the rare page that mwparserfromhell cannot parse."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S | re.I)
    text = re.sub(r"\[\[[^\[\]|]*\|([^\[\]]*)\]\]", r"\1", text)
    text = re.sub(r"<[^>]{0,200}>", "", text)
    return text


def _paragraphs(rendered: str) -> list[str]:
    """Split rendered text into paragraphs; normalise whitespace and drop markup debris."""
    rendered = _MAGIC_WORD.sub("", _QUOTES.sub("", rendered))
    paragraphs: list[str] = []
    for block in _PARAGRAPH_BREAK.split(rendered):
        current: list[str] = []
        for line in block.split("\n"):
            if _TABLE_LINE.match(line):
                continue
            if line.lstrip().startswith(_LIST_ITEM):
                _flush(current, paragraphs)  # each list item is a paragraph of its own
            current.append(line.replace(_LIST_ITEM, " "))
            if _LIST_ITEM in line:
                _flush(current, paragraphs)
        _flush(current, paragraphs)
    return paragraphs


def _flush(lines: list[str], paragraphs: list[str]) -> None:
    if not lines:
        return
    text = _LEFTOVER_MARKUP.sub("", " ".join(lines))
    text = _EMPTY_PARENS.sub("", text)
    text = _ORPHAN_PUNCT.sub(r"\1", text)
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()
    text = _LEADING_PUNCT.sub("", text)
    lines.clear()
    if _HAS_WORD.search(text):
        paragraphs.append(text)
