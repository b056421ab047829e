"""Learn a WordPiece vocabulary from word counts, deterministically, in memory bounded by them.

The algorithm is the one `tokenizers`' WordPieceTrainer runs (byte-pair-encoding merges on
characters, where every piece after the first of a word carries the ## prefix), written here
because that trainer cannot take word counts and its result changes from run to run when
pairs tie. Here ties go to the pair whose two tokens sort first, so the same counts always
give the same vocabulary.

1. Words longer than `max_input_chars_per_word` are dropped: BERT turns them into [UNK].
2. The alphabet is the `limit_alphabet` most frequent characters; a word holding any other
   character is dropped too, since greedy WordPiece turns it into [UNK] whatever we learn.
3. The vocabulary starts with the special tokens, every alphabet character, and its ## form
   unless the basic tokenizer always splits that character off (punctuation, CJK).
4. Then, until the vocabulary is full or no pair occurs `min_frequency` times: merge the most
   frequent adjacent pair of pieces in all words and add the merged piece.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from wordpiece.normalization import is_cjk, is_punctuation
from wordpiece.tokenizer import MAX_INPUT_CHARS_PER_WORD
from wordpiece.vocab_file import CONTINUATION_PREFIX, special_tokens_layout


class VocabSizeError(ValueError):
    """The requested vocabulary cannot hold the special tokens and the alphabet."""


class EmptyCorpusError(ValueError):
    """There are no words to learn a vocabulary from."""


@dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """What to learn: size and limits of the vocabulary."""

    vocab_size: int = 30522  # all tokens, special and reserved included, as in bert-base-uncased
    min_frequency: int = 2  # a pair is merged only if it occurs at least this often
    limit_alphabet: int = 1000  # the most frequent characters; words with others become [UNK]
    num_unused: int = 0  # reserved [unusedN] tokens a user may repurpose later
    max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD  # longer: [UNK], not learned
    tokenize_chinese_chars: bool = True  # CJK ideographs are words of their own: no ## form

    def __post_init__(self) -> None:
        minimum = len(special_tokens_layout(self.num_unused)) + 1
        if self.vocab_size < minimum:
            raise VocabSizeError(
                f"vocab_size {self.vocab_size} leaves no room beside the special and "
                f"{self.num_unused} reserved tokens; use at least {minimum}"
            )
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency must be at least 1, got {self.min_frequency}")
        if self.limit_alphabet < 1:
            raise ValueError(f"limit_alphabet must be at least 1, got {self.limit_alphabet}")
        if self.max_input_chars_per_word < 1:
            raise ValueError(
                f"max_input_chars_per_word must be at least 1, got {self.max_input_chars_per_word}"
            )


@dataclass(frozen=True)
class LearnedVocab:
    """A learned vocabulary in id order, and what the learner saw and did."""

    tokens: list[str]
    stats: dict[str, int | str] = field(default_factory=dict)


def continues_words(char: str, *, tokenize_chinese_chars: bool) -> bool:
    """True if `char` can follow another character inside a word, so it needs a ## form."""
    if is_punctuation(char):
        return False
    return not (tokenize_chinese_chars and is_cjk(char))


def learn_vocab(
    word_counts: Mapping[str, int] | Iterable[tuple[str, int]], config: LearnerConfig
) -> LearnedVocab:
    """The WordPiece vocabulary of word counts (words as the basic tokenizer splits them)."""
    items = word_counts.items() if isinstance(word_counts, Mapping) else word_counts
    counts: Counter[str] = Counter()
    for word, count in items:
        if word and count > 0:
            counts[word] += count
    if not counts:
        raise EmptyCorpusError(
            "no words to learn a vocabulary from: the documents hold no text (or all of them "
            "were held out for the quality report)"
        )
    stats: dict[str, int | str] = {
        "distinct_words": len(counts),
        "words": sum(counts.values()),
    }
    too_long = [w for w in counts if len(w) > config.max_input_chars_per_word]
    stats["distinct_words_too_long"] = len(too_long)
    stats["words_too_long"] = sum(counts.pop(w) for w in too_long)

    char_counts: Counter[str] = Counter()
    for word, count in counts.items():
        for char in word:
            char_counts[char] += count
    ranked = sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    alphabet = sorted(char for char, _ in ranked[: config.limit_alphabet])
    stats["characters_seen"] = len(char_counts)
    stats["alphabet_size"] = len(alphabet)
    known = set(alphabet)
    outside = [w for w in counts if not known.issuperset(w)]
    stats["distinct_words_outside_alphabet"] = len(outside)
    stats["words_outside_alphabet"] = sum(counts.pop(w) for w in outside)

    tokens = special_tokens_layout(config.num_unused)
    tokens += alphabet
    tokens += [
        CONTINUATION_PREFIX + char
        for char in alphabet
        if continues_words(char, tokenize_chinese_chars=config.tokenize_chinese_chars)
    ]
    if config.vocab_size < len(tokens):
        special = len(special_tokens_layout(config.num_unused))
        raise VocabSizeError(
            f"vocab_size {config.vocab_size} is smaller than the {special} special and reserved "
            f"tokens plus the {len(tokens) - special} single-character tokens of the "
            f"{len(alphabet)}-character alphabet; raise vocab_size (--vocab-size) to at least {len(tokens)} "
            "or lower limit_alphabet (--limit-alphabet)"
        )
    stats["merges"] = _merge(tokens, counts, config)
    stats["learned_tokens"] = len(tokens) - len(special_tokens_layout(config.num_unused))
    stats["vocab_size"] = len(tokens)
    stats["stopped_by"] = "vocab_size" if len(tokens) >= config.vocab_size else "min_frequency"
    return LearnedVocab(tokens=tokens, stats=stats)


def _merge(tokens: list[str], counts: Mapping[str, int], config: LearnerConfig) -> int:
    """Append merged pieces to `tokens` until it is full; returns the number of merges done."""
    token_id = {token: i for i, token in enumerate(tokens)}
    words = sorted(counts)
    weights = [counts[w] for w in words]
    pieces = [[token_id[w[0]], *(token_id[CONTINUATION_PREFIX + c] for c in w[1:])] for w in words]
    stride = config.vocab_size + 1  # pair key a * stride + b; ids stay below vocab_size

    pair_count: defaultdict[int, int] = defaultdict(int)
    pair_words: defaultdict[int, list[int]] = defaultdict(list)  # may repeat or be stale
    for w, seq in enumerate(pieces):
        for left, right in pairwise(seq):
            key = left * stride + right
            pair_count[key] += weights[w]
            pair_words[key].append(w)

    def entry(key: int, count: int) -> tuple[int, str, str, int]:
        # Most frequent first; on a tie, the pair whose tokens sort first.
        return (-count, tokens[key // stride], tokens[key % stride], key)

    heap = [entry(key, count) for key, count in pair_count.items()]
    heapq.heapify(heap)
    merges = 0
    while heap and len(tokens) < config.vocab_size:
        negative, _, _, key = heapq.heappop(heap)
        count = pair_count.get(key, 0)
        if count != -negative:
            # A count that fell is queued again; one that rose was queued when it rose.
            if 0 < count < -negative:
                heapq.heappush(heap, entry(key, count))
            continue
        if count < config.min_frequency:
            break
        left, right = divmod(key, stride)
        merged = tokens[left] + tokens[right][len(CONTINUATION_PREFIX) :]
        new = token_id.get(merged)
        if new is None:  # the same piece can come from two different pairs
            new = token_id[merged] = len(tokens)
            tokens.append(merged)
        delta: defaultdict[int, int] = defaultdict(int)
        for w in set(pair_words.pop(key)):
            old_seq = pieces[w]
            new_seq = _apply(old_seq, left, right, new)
            if new_seq is None:
                continue
            weight = weights[w]
            for a, b in pairwise(old_seq):
                delta[a * stride + b] -= weight
            for a, b in pairwise(new_seq):
                pair = a * stride + b
                delta[pair] += weight
                if a == new or b == new:  # only pairs with the new piece are new to the word
                    pair_words[pair].append(w)
            pieces[w] = new_seq
        for pair, change in delta.items():
            if change == 0:
                continue
            total = pair_count[pair] + change
            if total:
                pair_count[pair] = total
            else:
                del pair_count[pair]
            if change > 0:
                heapq.heappush(heap, entry(pair, total))
        merges += 1
    return merges


def _apply(seq: list[int], left: int, right: int, merged: int) -> list[int] | None:
    """`seq` with each (left, right) replaced by `merged`, left to right; None if none occurs."""
    out: list[int] = []
    i, n, found = 0, len(seq), False
    while i < n:
        if i + 1 < n and seq[i] == left and seq[i + 1] == right:
            out.append(merged)
            i += 2
            found = True
        else:
            out.append(seq[i])
            i += 1
    return out if found else None
