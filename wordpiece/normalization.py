"""BERT's basic tokenizer as `tokenizers` components, exact to the reference implementation.

`tokenizers.normalizers.BertNormalizer` and `BertPreTokenizer` differ from the reference
(google-research/bert, and its Python port `transformers`' BertTokenizerLegacy) on a few
characters: the final sigma of upper-case Greek words, NFC composition, unassigned code
points, marks and punctuation that its older Unicode tables do not know, and part of CJK
Extension E. So the normalizer here is a sequence of plain steps whose character classes are
computed from Python's `unicodedata`, the same tables the reference reads. They are written
into tokenizer.json as explicit code point ranges, so a saved tokenizer keeps behaving the
same whatever version of `tokenizers` loads it.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

from tokenizers import Regex, normalizers, pre_tokenizers

UNICODE_VERSION = unicodedata.unidata_version  # the tables the character classes come from
CAPITAL_SIGMA = "\u03a3"
FINAL_SIGMA = "\u03c2"
_SURROGATES = range(0xD800, 0xE000)
_CJK_RANGES = (  # the reference's "Chinese character" blocks
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk(char: str) -> bool:
    """True for a CJK ideograph, which the basic tokenizer makes a word of its own."""
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_punctuation(char: str) -> bool:
    """True for a character the basic tokenizer splits off: ASCII non-alphanumerics and P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_removed(char: str) -> bool:
    """True for a character that text cleaning deletes: NUL, U+FFFD and control/format/unassigned."""
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char).startswith("C")


def is_whitespace(char: str) -> bool:
    """True for a character that text cleaning turns into a space."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _all_chars() -> Iterable[str]:
    return (chr(cp) for cp in range(0x110000) if cp not in _SURROGATES)


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class of exactly these characters, as compact code point ranges."""
    ranges: list[list[int]] = []
    for cp in sorted(ord(c) for c in chars):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = (f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in ranges)
    return "[" + "".join(parts) + "]"


@functools.cache
def _classes() -> dict[str, str]:
    """Regex classes of every character set the basic tokenizer uses, from unicodedata."""
    removed, spaces, punctuation, cjk, marks, ignorable, cased = [], [], [], [], [], [], []
    for char in _all_chars():
        if is_removed(char):
            removed.append(char)
            continue  # removed before any later step could see it
        if is_whitespace(char):
            spaces.append(char)
            continue
        category = unicodedata.category(char)
        if is_punctuation(char):
            punctuation.append(char)
        if is_cjk(char):
            cjk.append(char)
        if category == "Mn":
            marks.append(char)
        # Python's str.lower() puts a final sigma after "cased case-ignorable*" unless
        # "case-ignorable* cased" follows; it exposes neither property, so probe them.
        if (char + CAPITAL_SIGMA).lower()[-1] == FINAL_SIGMA:
            cased.append(char)
        elif ("A" + char + CAPITAL_SIGMA).lower()[-1] == FINAL_SIGMA:
            ignorable.append(char)
    # str.split() also breaks at these (line and paragraph separators), which survive cleaning.
    separators = [
        c for c in _all_chars() if c.isspace() and not is_removed(c) and not is_whitespace(c)
    ]
    return {
        "removed": _char_class(removed),
        "spaces": _char_class(spaces),
        "separators": _char_class([" ", *separators]),
        "punctuation": _char_class(punctuation),
        "punctuation_or_cjk": _char_class(punctuation + cjk),
        "marks": _char_class(marks),
        "ignorable": _char_class(ignorable),
        "cased": _char_class(cased),
    }


@functools.cache
def _normalization_fixups() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Literal (from, to) replacements where the library's NFD or NFC disagrees with Python's."""
    nfd, nfc = normalizers.NFD(), normalizers.NFC()
    before_nfd: list[tuple[str, str]] = []
    after_nfc: list[tuple[str, str]] = []
    for char in _all_chars():
        decomposition = unicodedata.decomposition(char)
        if not decomposition or decomposition.startswith("<"):
            continue  # only canonical decompositions matter to NFC and NFD
        if is_removed(char):
            continue
        expected = unicodedata.normalize("NFD", char)
        if nfd.normalize_str(char) != expected:
            before_nfd.append((char, expected))
        got = nfc.normalize_str(expected)
        if got != unicodedata.normalize("NFC", expected):
            after_nfc.append((got, unicodedata.normalize("NFC", expected)))
    return before_nfd, after_nfc


def bert_normalizer(*, lowercase: bool, strip_accents: bool) -> normalizers.Normalizer:
    """Text cleaning, NFC, lower-casing and accent stripping exactly as the reference does them."""
    classes = _classes()
    before_nfd, after_nfc = _normalization_fixups()
    steps = [
        normalizers.Replace(Regex(classes["removed"]), ""),
        normalizers.Replace(Regex(classes["spaces"]), " "),
        normalizers.NFC(),
        *(normalizers.Replace(old, new) for old, new in after_nfc),
    ]
    if lowercase:
        ignorable, cased = classes["ignorable"], classes["cased"]
        final_sigma = f"(?<={cased}{ignorable}*){CAPITAL_SIGMA}(?!{ignorable}*{cased})"
        steps += [normalizers.Replace(Regex(final_sigma), FINAL_SIGMA), normalizers.Lowercase()]
    if strip_accents:
        steps += [
            *(normalizers.Replace(old, new) for old, new in before_nfd),
            normalizers.NFD(),
            normalizers.Replace(Regex(classes["marks"]), ""),
        ]
    return normalizers.Sequence(steps)


@functools.cache
def isolation_table(*, tokenize_chinese_chars: bool) -> dict[int, str]:
    """str.translate table that puts spaces around what the basic tokenizer splits off."""
    return {
        ord(c): f" {c} "
        for c in _all_chars()
        if not is_removed(c) and (is_punctuation(c) or (tokenize_chinese_chars and is_cjk(c)))
    }


def bert_pre_tokenizer(*, tokenize_chinese_chars: bool) -> pre_tokenizers.PreTokenizer:
    """Split at whitespace, then make every punctuation mark (and CJK ideograph) its own word."""
    classes = _classes()
    isolated = classes["punctuation_or_cjk" if tokenize_chinese_chars else "punctuation"]
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(classes["separators"] + "+"), behavior="removed"),
            pre_tokenizers.Split(Regex(isolated), behavior="isolated"),
        ]
    )
