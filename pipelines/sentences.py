"""Sentence splitting (blingfire, chosen by bench/sentence_splitters.py) and long-sentence cuts."""

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
    rest = sentence.strip()
    pieces: list[str] = []
    while len(rest) > max_chars:
        cut = max_chars  # hard cut unless a whitespace is found below
        for i in range(max_chars, 0, -1):
            if rest[i].isspace():
                cut = i
                break
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces
