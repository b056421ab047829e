"""Sentence splitting (blingfire, chosen by bench/sentence_splitters.py), long-sentence cuts,
and what a line break inside a text means (a paragraph break, or a hard wrap)."""

from __future__ import annotations

import re

import blingfire

# blingfire ends a sentence after an initial or a title that starts the next sentence
# ("... 1817. St. Stephens was ...", "... ecclesia. R. S. P. Beekes rejected ...");
# such a fragment is glued back onto the sentence that follows it.
_LEADING_FRAGMENT = re.compile(
    r"(?:[A-Z]|Dr|Mr|Mrs|Ms|Mme|Mlle|Messrs|Prof|St|Mt|Ft|Gen|Brig|Col|Lt|Maj|Capt|Cmdr"
    r"|Adm|Sgt|Cpl|Pvt|Gov|Sen|Rep|Pres|Rev|Fr|Msgr|Hon|Sir)\."
)
_HAS_WORD = re.compile(r"\w")
_WHITESPACE = re.compile(r"\s*")  # str.isspace() characters, as str.strip() removes
_WHITESPACE_RUN = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """The text with each run of whitespace as one space, stripped: " ".join(text.split()).

    Without the list of words that split() builds: a 50 MB line has about 8 million.
    """
    return _WHITESPACE_RUN.sub(" ", text).strip()


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph of prose into sentences: stripped, in order, no empty strings."""
    pieces = [s.strip() for s in blingfire.text_to_sentences(paragraph).split("\n")]
    sentences: list[str] = []
    leading: list[str] = []  # initials / titles waiting for the sentence they belong to
    for piece in pieces:
        if not piece:
            continue
        if not _HAS_WORD.search(piece) and sentences and not leading:
            sentences[-1] = f"{sentences[-1]} {piece}"  # stray punctuation, e.g. "." or ")"
        elif _LEADING_FRAGMENT.fullmatch(piece) or not _HAS_WORD.search(piece):
            leading.append(piece)
        else:
            sentences.append(" ".join([*leading, piece]))
            leading.clear()
    if leading:  # the paragraph ended on the fragment: it stands alone after all
        sentences.append(" ".join(leading))
    return sentences


def split_long_sentence(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence into pieces of at most max_chars characters, stripped, in order.

    Each cut falls at the last whitespace within the first max_chars + 1 characters of what
    is left, so words stay whole; a run with no whitespace in that window (a URL, a long
    chemical name) is cut hard at max_chars. A sentence that fits comes back alone.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    text = sentence.strip()
    # A position walks through the text; slicing off "what is left" at every cut copied the
    # rest each time, quadratic in the sentence (a 6 MB line took 26 s, 50 MB never ended).
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        cut = _cut_at(text[start : start + max_chars + 1], max_chars)
        pieces.append(text[start : start + cut].rstrip())
        start = _WHITESPACE.match(text, start + cut).end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _cut_at(window: str, max_chars: int) -> int:
    """Where to cut a window of max_chars + 1 characters: its last whitespace after the
    first character, else max_chars (a hard cut)."""
    for i in range(max_chars, 0, -1):
        if window[i].isspace():
            return i
    return max_chars


# ---------------------------------------------------------------------------------------------
# Line breaks: a paragraph break, or a hard wrap (news wires, e-mail, Gutenberg: about 65-80
# characters a line). Taken as paragraph breaks, wrapped lines give sentence fragments.

LINE_BREAKS = ("paragraph", "space", "auto")
# A line that ends a sentence: . ! ? : ; maybe followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?:;][\"'\u201d\u2019)\]]*$")
MIN_WRAPPED_LINES = 3  # fewer lines inside paragraphs tell nothing about a wrap
MIN_WRAP_WIDTH = 30  # shorter "full" lines are a list or verse, not a wrap
FULL_LINE = 0.75  # a wrapped line fills at least this fraction of the width...
FULL_LINES = 0.75  # ...in at least this fraction of the lines inside paragraphs
OPEN_LINES = 0.6  # and at least this fraction ends without sentence punctuation


def line_blocks(lines: list[str]) -> list[list[str]]:
    """The lines, stripped, grouped into blocks that blank lines separate."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        line = line.strip()
        if line:
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def is_hard_wrapped(blocks: list[list[str]]) -> bool:
    """Whether the lines look wrapped at a fixed width: the lines inside paragraphs (each but
    the last of its block) mostly fill the width and mostly end without sentence punctuation.
    One sentence per line, or one paragraph per line, ends nearly every line on punctuation."""
    inner = sorted((line for block in blocks for line in block[:-1]), key=len)
    if len(inner) < MIN_WRAPPED_LINES:
        return False
    width = len(inner[int(0.9 * (len(inner) - 1))])  # a stray long line does not set it
    if width < MIN_WRAP_WIDTH:
        return False
    full = sum(FULL_LINE * width <= len(line) <= width for line in inner)
    open_ended = sum(not _SENTENCE_END.search(line) for line in inner)
    return full >= FULL_LINES * len(inner) and open_ended >= OPEN_LINES * len(inner)


def _joins_lines(blocks: list[list[str]], line_breaks: str) -> bool:
    if line_breaks not in LINE_BREAKS:
        raise ValueError(f"line_breaks must be one of {LINE_BREAKS}, got {line_breaks!r}")
    if line_breaks == "auto":
        return is_hard_wrapped(blocks)
    return line_breaks == "space"


def text_paragraphs(text: str, line_breaks: str) -> tuple[list[str], bool]:
    """The paragraphs of a text (a JSONL or Parquet record), and whether lines were joined.

    "paragraph": every line is a paragraph. "space": a line break inside a block of lines
    is a space, a blank line a paragraph break. "auto": "space" where is_hard_wrapped says
    so, else "paragraph".
    """
    lines = text.splitlines()
    blocks = line_blocks(lines)
    if not _joins_lines(blocks, line_breaks):
        return [line for line in lines if line.strip()], False
    return [" ".join(block) for block in blocks], any(len(block) > 1 for block in blocks)


def document_sentences(lines: list[str], line_breaks: str) -> tuple[list[str], bool]:
    """The sentences of a plain-text document (its lines, no blank one among them), and
    whether lines were joined. "paragraph": every line is a sentence (google-research/bert's
    format). "space", and "auto" where is_hard_wrapped says so: the lines are one paragraph,
    split into sentences."""
    if not _joins_lines([lines], line_breaks):
        return lines, False
    return split_sentences(" ".join(line.strip() for line in lines)), len(lines) > 1
