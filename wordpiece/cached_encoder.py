"""Token ids of many sentences at once, remembering the pieces of words and chunks.

A corpus repeats its words: joining remembered ids is several times cheaper than running the
whole tokenizer over every sentence. A sentence of printable ASCII (92% of the sample's) is
split into words here and each word's WordPiece ids are remembered. Other sentences are cut
at spaces into chunks ("word", "word,", "Ångström"), whose ids are remembered: a chunk seen
before costs a lookup; a new printable-ASCII chunk goes through the word path; only the rest
goes through the tokenizer. With BERT's uncased options, such a sentence's ASCII letters are
lower-cased before it is cut, so "Ångström" and "ÅNGSTRöM" share one remembered chunk.

The ids are exactly the tokenizer's ids for the whole sentence:
- An ASCII space is a hard boundary for every step of BERT's tokenizer
  (wordpiece.normalization): text cleaning keeps it, no canonical composition involves it, it
  is neither cased nor case-ignorable (the final-sigma rule does not look across it), the
  pre-tokenizer splits at it, and no special token contains one. Other white space (tabs,
  no-break spaces...) stays inside a chunk, which the tokenizer handles as it would inside
  the sentence.
- In printable ASCII, cleaning, NFC and accent stripping change nothing, every character that
  is not a letter, digit or space is punctuation (a word of its own), and lower-casing is
  str.lower(). Such a text's words are its runs of letters and digits and its single
  punctuation marks, and their pieces are WordPiece's, from the tokenizer's own model. Text
  that could hold a special token typed in it ("[MASK]") takes the other path.
- BERT's uncased normalizer (lower-casing and accent stripping) ends in the same text whether
  an ASCII letter comes in upper or lower case: cleaning and spacing ignore case, accent
  stripping removes whatever marks NFC composed with the letter, and a lower-case ASCII letter
  is as cased as an upper-case one for the final-sigma rule (tests/wordpiece/
  test_cached_encoder.py checks every ASCII letter with every combining mark). Without accent
  stripping it does not hold ("H" + U+0331 stays two characters, "h" + U+0331 composes to
  "ẖ"), and the case is kept. Special tokens are matched before normalization, so text that
  could hold one is left as it is.
"""

from __future__ import annotations

import array
import itertools
import re
import string
from collections.abc import Sequence

from tokenizers import Tokenizer

DEFAULT_MAX_CHUNKS = 1 << 19  # about 60 MB of chunks and their ids
DEFAULT_MAX_WORDS = 1 << 18
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9 ]")  # spaces separate, nothing more
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class CachedEncoder:
    """Encodes sentences to packed token ids ('H' uint16 or 'i' int32, native byte order).

    `lowercase` and `accents_stripped` are the tokenizer's options
    (wordpiece.tokenizer.TokenizerOptions); lowercase None turns off the ASCII path, for a
    tokenizer that is not BERT's. When a cache is full it keeps what
    it holds (frequent chunks come early) and new chunks are encoded each time they appear:
    memory stays bounded whatever the corpus, and what the caches hold changes only the speed.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        typecode: str,
        lowercase: bool | None,
        accents_stripped: bool = False,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        max_words: int = DEFAULT_MAX_WORDS,
    ):
        if typecode not in ("H", "i"):
            raise ValueError(f"typecode must be 'H' (uint16) or 'i' (int32), not {typecode!r}")
        added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
        if any(" " in t for t in added):
            raise ValueError("a special token contains a space; chunks would split it")
        self.tokenizer = tokenizer
        self.typecode = typecode
        self.itemsize = array.array(typecode).itemsize
        self.lowercase = lowercase
        # ASCII letters' case changes nothing (see the module doc)
        self.fold_ascii_case = lowercase is True and accents_stripped
        self.max_chunks = max_chunks
        self.max_words = max_words
        starts = sorted({t[0] for t in added if t})
        # finds a character that may start a special token typed in the text
        self._special_start = re.compile("|".join(map(re.escape, starts)) or r"(?!)").search
        self._chunks: dict[str, bytes] = {}
        self._words: dict[str, bytes] = {}
        self.chunks_seen = 0  # distinct chunks per call, summed (sentences not all ASCII)
        self.chunks_new = 0  # of those, not in the cache
        self.words_seen = 0  # words of printable ASCII text
        self.words_new = 0  # of those, not in the cache

    def encode(self, sentences: Sequence[str]) -> list[bytes]:
        """The packed ids of each sentence, without special tokens."""
        if self.lowercase is None:
            return self._encode_chunked(sentences)
        out: list[bytes | None] = []
        others: list[int] = []
        for i, sentence in enumerate(sentences):
            if self._ascii_path(sentence):
                out.append(self._encode_ascii(sentence))
            else:
                out.append(None)
                others.append(i)
        if others:
            texts = [sentences[i] for i in others]
            if self.fold_ascii_case:
                special = self._special_start
                texts = [t if special(t) else t.translate(_ASCII_LOWER) for t in texts]
            chunked = self._encode_chunked(texts)
            for i, ids in zip(others, chunked, strict=True):
                out[i] = ids
        return out  # type: ignore[return-value]

    def _ascii_path(self, text: str) -> bool:
        return text.isascii() and text.isprintable() and self._special_start(text) is None

    def _encode_chunked(self, sentences: Sequence[str]) -> list[bytes]:
        chunked = [s.split(" ") for s in sentences]
        cache = self._chunks
        distinct = set(itertools.chain.from_iterable(chunked))
        missing = [c for c in distinct if c not in cache]
        self.chunks_seen += len(distinct)
        self.chunks_new += len(missing)
        if not missing:
            lookup = cache.__getitem__
        else:
            new = self._encode_chunks(missing)
            room = self.max_chunks - len(cache)
            if len(new) <= room:
                cache.update(new)
                lookup = cache.__getitem__
            else:
                cache.update(itertools.islice(new.items(), max(room, 0)))
                get, get_new = cache.get, new.get

                def lookup(chunk: str) -> bytes:
                    return get(chunk) or get_new(chunk, b"")

        return [b"".join(map(lookup, chunks)) for chunks in chunked]

    def _encode_chunks(self, chunks: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        slow: list[str] = []
        for chunk in chunks:
            if self.lowercase is not None and self._ascii_path(chunk):
                out[chunk] = self._encode_ascii(chunk)
            else:
                slow.append(chunk)
        if slow:
            pack = self.typecode
            encodings = self.tokenizer.encode_batch_fast(slow, add_special_tokens=False)
            for chunk, e in zip(slow, encodings, strict=True):
                out[chunk] = array.array(pack, e.ids).tobytes()
        return out

    def _encode_ascii(self, text: str) -> bytes:
        """Printable ASCII without special tokens: its words' remembered pieces."""
        words = _ASCII_WORDS.findall(text.lower() if self.lowercase else text)
        self.words_seen += len(words)
        # A word always has at least one piece ([UNK] if nothing else): None means not seen.
        pieces = list(map(self._words.get, words))
        if None in pieces:
            get, new = self._words.get, self._new_word  # a word new here twice: encoded once
            pieces = [p or get(w) or new(w) for p, w in zip(pieces, words, strict=True)]
        return b"".join(pieces)

    def _new_word(self, word: str) -> bytes:
        self.words_new += 1
        ids = array.array(self.typecode, [p.id for p in self.tokenizer.model.tokenize(word)])
        packed = ids.tobytes()
        if len(self._words) < self.max_words:
            self._words[word] = packed
        return packed
