"""Masked-LM predictions as the BERT paper describes: pure functions with an explicit rng.

`mask_one` is the rule, one sequence at a time, written to be read: the specification. The
data stage masks millions of sequences with `mask_sequence_groups`, the same rule in array
operations over many sequences at once; given the same rng, both draw the same numbers in the
same order and give the same output (tests/bertdata/test_masking.py). The trainer's dynamic
masking uses `mask_one`.

Of the tokens that may be masked (every token but [CLS], [SEP], [PAD], [UNK] and [MASK]),
masked_lm_prob are chosen, at most max_predictions_per_seq; each chosen token becomes [MASK]
80% of the time, a random token 10% (never a special or [unused] token), and stays 10%.

Where this differs from google-research/bert, and why:
- the number to predict is masked_lm_prob of the maskable tokens (not of all tokens including
  [CLS]/[SEP]), rounded at random so that its expectation is exactly masked_lm_prob
  (round() pushes short sequences well above 15%, and max(1, ...) more so);
- the random replacement is never [PAD], [CLS], [SEP], [MASK], [UNK] or [unusedN];
- with whole-word masking, the 80/10/10 choice is made once per word, so a word is either all
  [MASK], all random, or left whole (the reference decides per piece).

Span masking (SpanBERT, Joshi et al. 2019, section 3.1) is an option: spans of whole words,
their lengths in words drawn from a geometric distribution (p 0.2) truncated at 10 words (mean
3.8), each starting at a word drawn uniformly, until masked_lm_prob of the tokens is chosen;
the 80/10/10 choice is made once per span. `mask_spans_one` is its rule.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from bertdata.tokens import BRACKETED, CONTINUATION_PREFIX, MASK, SPECIAL_TOKENS


@dataclass(frozen=True, kw_only=True)
class MaskingConfig:
    """How many tokens to predict and how to corrupt them."""

    masked_lm_prob: float = 0.15  # share of the maskable tokens to predict
    max_predictions_per_seq: int = 20  # cap per sequence (20 at length 128, 80 at 512)
    whole_word_mask: bool = False  # choose whole words (a piece and its '##' continuations)
    mask_token_prob: float = 0.8  # share of chosen tokens (or words) replaced with [MASK]
    random_token_prob: float = 0.1  # share replaced with a random token; the rest stay
    span_masking: bool = False  # SpanBERT: spans of whole words, one 80/10/10 choice per span
    span_p: float = 0.2  # span lengths in words ~ Geometric(span_p), truncated at max_span_words
    max_span_words: int = 10

    def validate(self) -> None:
        """Raise ValueError naming the first option out of range."""
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if self.max_predictions_per_seq < 1:
            raise ValueError(
                f"max_predictions_per_seq must be at least 1, got {self.max_predictions_per_seq}"
            )
        if not 0.0 < self.span_p <= 1.0 or self.max_span_words < 1:
            raise ValueError(
                f"span_p must be in (0, 1] and max_span_words at least 1, got {self.span_p} "
                f"and {self.max_span_words}"
            )
        if not (
            0.0 <= self.mask_token_prob
            and 0.0 <= self.random_token_prob
            and self.mask_token_prob + self.random_token_prob <= 1.0
        ):
            raise ValueError(
                "mask_token_prob and random_token_prob must be non-negative with a sum <= 1, "
                f"got {self.mask_token_prob} and {self.random_token_prob}"
            )


@dataclass(frozen=True)
class MaskingVocab:
    """What masking needs to know about a vocabulary."""

    mask_id: int
    maskable: np.ndarray  # (vocab_size,) bool: may be chosen for prediction
    random_token_ids: np.ndarray  # ids a chosen token may be replaced with (no special tokens)
    is_continuation: np.ndarray  # (vocab_size,) bool: a '##' piece that continues a word

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> MaskingVocab:
        """From the vocabulary's tokens in id order (the lines of vocab.txt)."""
        index = {t: i for i, t in enumerate(tokens)}
        missing = [t for t in SPECIAL_TOKENS if t not in index]
        if missing:
            raise ValueError(f"vocabulary lacks the special token(s) {', '.join(missing)}")
        maskable = np.ones(len(tokens), dtype=bool)
        maskable[[index[t] for t in SPECIAL_TOKENS]] = False
        # [CLS], [unused7], ...: never a random replacement
        bracketed = np.fromiter((bool(BRACKETED.match(t)) for t in tokens), bool, len(tokens))
        continuation = (t.startswith(CONTINUATION_PREFIX) for t in tokens)
        return cls(
            mask_id=index[MASK],
            maskable=maskable,
            random_token_ids=np.flatnonzero(maskable & ~bracketed),
            is_continuation=np.fromiter(continuation, bool, len(tokens)),
        )


class MaskedBatch(NamedTuple):
    """Sequences after masking, and what the model must predict, one row per sequence."""

    input_ids: np.ndarray  # (total tokens,) masked copies of the sequences
    masked_lm_positions: np.ndarray  # (total predictions,) int64, ascending within a sequence
    masked_lm_offsets: np.ndarray  # (num_sequences + 1,) int64, rows of the two arrays above
    masked_lm_ids: np.ndarray  # (total predictions,) original ids


def num_to_predict(
    num_maskable: np.ndarray, u: np.ndarray, masked_lm_prob: float, max_predictions: int
) -> np.ndarray:
    """masked_lm_prob of the maskable tokens, rounded down or up at random (by uniform `u`)
    so that the expectation is exact, capped at max_predictions."""
    count = np.floor(num_maskable * masked_lm_prob + u).astype(np.int64)
    return np.minimum(np.minimum(count, num_maskable), max_predictions)


def mask_one(
    input_ids: np.ndarray, rng: np.random.Generator, vocab: MaskingVocab, config: MaskingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masked ids, positions, original ids) of one sequence: the rule, in the order of draws.

    1. u ~ U[0, 1): the count to predict is floor(maskable * masked_lm_prob + u), at most the
       maskable tokens and max_predictions_per_seq.
    2. One key ~ U[0, 1) per candidate (a maskable token, or a whole word), in position order;
       candidates are taken by ascending key (a uniform random order): every token, or each
       word that still fits in what is left of the count.
    3. One decision ~ U[0, 1) per chosen token (per chosen word with whole words, in position
       order): below mask_token_prob [MASK]; below that plus random_token_prob a random token;
       else the token stays.
    4. One integer per random replacement, in position order: an index into random_token_ids.
    """
    if config.span_masking:
        return mask_spans_one(input_ids, rng, vocab, config)
    maskable = vocab.maskable[input_ids]
    num_maskable = int(maskable.sum())
    u = rng.random(1)[0]
    count = int(num_to_predict(np.array([num_maskable]), np.array([u]), config.masked_lm_prob,
                               config.max_predictions_per_seq)[0])  # fmt: skip
    if config.whole_word_mask:
        continues = vocab.is_continuation[input_ids] & np.concatenate(([False], maskable[:-1]))
        word_start = maskable & ~continues
        starts = np.flatnonzero(word_start)
        word_len = np.bincount((np.cumsum(word_start) - 1)[maskable], minlength=len(starts))
        keys = rng.random(len(starts))
        need, words = count, []
        for w in np.argsort(keys, kind="stable"):
            if need == 0:
                break
            if word_len[w] <= need:
                words.append(int(w))
                need -= int(word_len[w])
        words = np.sort(np.asarray(words, dtype=np.int64))
        chosen = gather_runs(starts[words], word_len[words])
        decision = np.repeat(rng.random(len(words)), word_len[words])
    else:
        candidates = np.flatnonzero(maskable)
        keys = rng.random(len(candidates))
        chosen = np.sort(candidates[np.argsort(keys, kind="stable")[:count]])
        decision = rng.random(len(chosen))
    return _corrupt_one(input_ids, chosen, decision, rng, vocab, config)


def span_length_cdf(config: MaskingConfig) -> np.ndarray:
    """P(length <= k words), k = 1..max_span_words, of the truncated geometric distribution."""
    return np.array(_span_length_cdf(config.span_p, config.max_span_words))


@lru_cache(maxsize=8)
def _span_length_cdf(p: float, max_words: int) -> tuple[float, ...]:
    k = np.arange(1, max_words + 1)
    weights = p * (1.0 - p) ** (k - 1)
    return tuple((np.cumsum(weights) / weights.sum()).tolist())


def _words(
    input_ids: np.ndarray, vocab: MaskingVocab, seq_starts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first token, length in tokens, run) of each word: a maskable piece and the '##' pieces
    that continue it. A run is a stretch of maskable tokens: a span never crosses [SEP].
    `seq_starts` (of several sequences one after another) start a word and a run each."""
    maskable = vocab.maskable[input_ids]
    after_maskable = np.concatenate(([False], maskable[:-1]))
    if seq_starts is not None:
        after_maskable[seq_starts] = False
    word_start = maskable & ~(vocab.is_continuation[input_ids] & after_maskable)
    starts = np.flatnonzero(word_start)
    lengths = np.bincount((np.cumsum(word_start) - 1)[maskable], minlength=len(starts))
    run_start = maskable & ~after_maskable
    runs = (np.cumsum(run_start) - 1)[starts]
    return starts, lengths.astype(np.int64), runs


def mask_spans_one(
    input_ids: np.ndarray,
    rng: np.random.Generator,
    vocab: MaskingVocab,
    config: MaskingConfig,
    words: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Span masking of one sequence, in the order of draws:

    1. u ~ U[0, 1): the count of tokens to predict, as for token masking.
    2. Until the count is reached, or after 4 draws per word (plus 10) without reaching it,
       one attempt draws two numbers: r ~ U[0, 1) for the length in words (the truncated
       geometric's quantile) and an integer for the first word, uniform over the words. From
       a first word not taken yet, the span takes that many words, stopping early at a word
       taken already, at the end of the run of maskable tokens, or at a word that no longer
       fits in what is left of the count (as SpanBERT's own code cuts its last span).
    3. One decision ~ U[0, 1) per taken span, in position order: [MASK], random or kept for
       all of its tokens.
    4. One integer per random replacement, in position order: an index into random_token_ids.

    `words` is `_words(input_ids, vocab)` when the caller has it already.
    """
    starts, lengths, runs = _words(input_ids, vocab) if words is None else words
    u = rng.random(1)[0]
    count = int(num_to_predict(np.array([int(lengths.sum())]), np.array([u]),
                               config.masked_lm_prob, config.max_predictions_per_seq)[0])  # fmt: skip
    # The loop runs once per attempt of every sequence: Python lists and bisect, not numpy
    # scalars, keep it cheap (the draws are the same either way).
    cdf = _span_length_cdf(config.span_p, config.max_span_words)
    word_tokens, word_runs = lengths.tolist(), runs.tolist()
    num_words = len(word_tokens)
    taken = bytearray(num_words)
    spans: list[tuple[int, int, int]] = []  # (first word, words, tokens)
    need, attempts = count, 4 * num_words + 10
    random, integers = rng.random, rng.integers
    while need > 0 and attempts > 0:
        attempts -= 1
        words = bisect_right(cdf, random()) + 1
        first = int(integers(0, num_words))
        last, end, run, tokens = first, min(first + words, num_words), word_runs[first], 0
        while (
            last < end
            and not taken[last]
            and word_runs[last] == run
            and word_tokens[last] <= need - tokens
        ):
            tokens += word_tokens[last]
            last += 1
        if last > first:
            need -= tokens
            taken[first:last] = b"\x01" * (last - first)
            spans.append((first, last - first, tokens))
    spans.sort()
    chosen_words = np.flatnonzero(np.frombuffer(taken, dtype=np.uint8))
    chosen = gather_runs(starts[chosen_words], lengths[chosen_words])
    span_tokens = np.array([t for _, _, t in spans], dtype=np.int64)
    decision = np.repeat(rng.random(len(spans)), span_tokens)
    return _corrupt_one(input_ids, chosen, decision, rng, vocab, config)


def _corrupt_one(input_ids, chosen, decision, rng, vocab, config):
    """(masked ids, positions, original ids) of one sequence: [MASK] where decision <
    mask_token_prob, a random token where below that plus random_token_prob (one integer
    drawn per such position, in position order), else the token stays."""
    out = input_ids.copy()
    to_mask = decision < config.mask_token_prob
    random_below = config.mask_token_prob + config.random_token_prob
    to_random = (decision >= config.mask_token_prob) & (decision < random_below)
    out[chosen[to_mask]] = vocab.mask_id
    picks = rng.integers(0, len(vocab.random_token_ids), int(to_random.sum()))
    out[chosen[to_random]] = vocab.random_token_ids[picks]
    return out, chosen, input_ids[chosen]


def gather_runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the runs [start, start + length), one after another."""
    total = int(lengths.sum())
    run_at = np.cumsum(lengths) - lengths
    return np.repeat(starts - run_at, lengths) + np.arange(total, dtype=np.int64)


def mask_sequences(
    input_ids: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    vocab: MaskingVocab,
    config: MaskingConfig,
) -> MaskedBatch:
    """Choose and corrupt masked-LM predictions in a batch of sequences (see the module doc)."""
    return mask_sequence_groups(
        input_ids, offsets, np.array([0, len(offsets) - 1]), [rng], vocab, config
    )


def mask_sequence_groups(
    input_ids: np.ndarray,
    offsets: np.ndarray,
    group_offsets: np.ndarray,
    rngs: list[np.random.Generator],
    vocab: MaskingVocab,
    config: MaskingConfig,
) -> MaskedBatch:
    """`mask_sequences` of each group of sequences with its own rng, concatenated.

    Group g is sequences group_offsets[g] to group_offsets[g + 1]. The output, and what each
    rng draws, are those of one `mask_sequences` call per group; the work is done in one set
    of array operations for all groups, with only the draws made group by group (span masking:
    one sequence at a time, `mask_spans_one`).
    """
    if config.span_masking:
        return _mask_span_groups(input_ids, offsets, group_offsets, rngs, vocab, config)
    if config.whole_word_mask:
        return _concat_batches(
            input_ids,
            offsets,
            [
                _mask_whole_words(
                    input_ids[offsets[lo] : offsets[hi]],
                    offsets[lo : hi + 1] - offsets[lo],
                    rng,
                    vocab,
                    config,
                )
                for lo, hi, rng in zip(group_offsets[:-1], group_offsets[1:], rngs, strict=True)
            ],
        )
    num_seqs = len(offsets) - 1
    maskable = vocab.maskable[input_ids]
    candidates = np.flatnonzero(maskable)
    num_maskable = _count_per_seq(offsets, maskable, len(candidates))
    candidate_offsets = _offsets(num_maskable)
    group_candidates = candidate_offsets[group_offsets]
    u = np.empty(num_seqs)
    keys = np.empty(len(candidates))
    for g, rng in enumerate(rngs):
        s0, s1 = group_offsets[g], group_offsets[g + 1]
        c0, c1 = group_candidates[g], group_candidates[g + 1]
        u[s0:s1] = rng.random(s1 - s0)
        keys[c0:c1] = rng.random(c1 - c0)
    counts = num_to_predict(num_maskable, u, config.masked_lm_prob, config.max_predictions_per_seq)
    chosen = _smallest_keys(candidate_offsets, keys, counts, candidates)
    chosen_offsets = _offsets(counts)
    group_chosen = chosen_offsets[group_offsets]
    decision = _per_group(rngs, np.diff(group_chosen), lambda rng, n: rng.random(n))
    masked_ids, originals = _corrupt(
        input_ids, chosen, decision, _group_draws(rngs, group_chosen), vocab, config
    )
    return MaskedBatch(
        masked_ids, chosen - np.repeat(offsets[:-1], counts), chosen_offsets, originals
    )


def _count_per_seq(offsets: np.ndarray, mask: np.ndarray, total: int) -> np.ndarray:
    """Per sequence, its positions where mask is True; counted from the few where it is not."""
    if total * 2 < len(mask):
        return np.diff(np.searchsorted(np.flatnonzero(mask), offsets))
    return np.diff(offsets) - np.diff(np.searchsorted(np.flatnonzero(~mask), offsets))


def _per_group(rngs: list[np.random.Generator], sizes, draw) -> np.ndarray:
    """draw(rng, n) with each group's rng and size, concatenated in group order."""
    parts = [draw(rng, int(n)) for rng, n in zip(rngs, sizes, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _group_draws(rngs: list[np.random.Generator], offsets: np.ndarray):
    """draw(high, chosen_mask): for each group, its rng's integers in [0, high) for the
    chosen items among the group's items (offsets), concatenated."""

    def draw(high: int, chosen: np.ndarray) -> np.ndarray:
        running = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(chosen, out=running[1:])
        per_group = running[offsets[1:]] - running[offsets[:-1]]
        return _per_group(rngs, per_group, lambda rng, n: rng.integers(0, high, n))

    return draw


def _concat_batches(input_ids, offsets, batches: list[MaskedBatch]) -> MaskedBatch:
    if not batches:
        return MaskedBatch(input_ids.copy(), np.zeros(0, np.int64), np.zeros(1, np.int64),
                           input_ids[:0])  # fmt: skip
    counts = np.concatenate([np.diff(b.masked_lm_offsets) for b in batches])
    return MaskedBatch(
        np.concatenate([b.input_ids for b in batches]),
        np.concatenate([b.masked_lm_positions for b in batches]),
        _offsets(counts),
        np.concatenate([b.masked_lm_ids for b in batches]),
    )


def _smallest_keys(
    item_offsets: np.ndarray, keys: np.ndarray, counts: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """Per sequence, the `count` items with the smallest keys (a uniform random subset), sorted.

    Sequence s holds items item_offsets[s] to item_offsets[s + 1]; keys are uniform in [0, 1).
    Only keys below a bound per sequence are ranked: the `count` smallest of n keys lie below
    (count + 4 sqrt(count) + 4) / n unless a rare draw puts fewer there, and such a sequence
    ranks all its keys. The result is exact either way; the bound leaves about a quarter of
    the keys to rank.
    """
    if len(items) == 0 or counts.max(initial=0) == 0:
        return np.zeros(0, dtype=np.int64)
    num_per_seq = np.diff(item_offsets)
    bound = (counts + 4.0 * np.sqrt(counts) + 4.0) / np.maximum(num_per_seq, 1)
    pick = np.flatnonzero(keys < np.repeat(bound, num_per_seq))
    below = np.diff(np.searchsorted(pick, item_offsets))
    short = below < counts
    if short.any():
        bound[short] = np.inf
        pick = np.flatnonzero(keys < np.repeat(bound, num_per_seq))
        below = np.diff(np.searchsorted(pick, item_offsets))
    return _below_kth_key(below, keys[pick], counts, items[pick])


def _key_matrix(num_per_seq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Keys as a (sequences, most items) matrix, padded with inf."""
    first = np.cumsum(num_per_seq) - num_per_seq
    width = int(num_per_seq.max())
    at = np.arange(len(keys)) + np.repeat(np.arange(len(num_per_seq)) * width - first, num_per_seq)
    matrix = np.full(len(num_per_seq) * width, np.inf)
    matrix[at] = keys
    return matrix.reshape(len(num_per_seq), width)


def _below_kth_key(num_per_seq, keys, counts, items) -> np.ndarray:
    """`_smallest_keys` as the items whose key is at most their sequence's count-th smallest
    (already in order); where keys tie there, `_rank_keys` decides."""
    matrix = _key_matrix(num_per_seq, keys)
    k = min(int(counts.max()), matrix.shape[1])
    lowest = np.partition(matrix, k - 1, axis=1)[:, :k]
    lowest.sort(axis=1)
    kth = lowest[np.arange(len(counts)), np.maximum(counts, 1) - 1]
    kth[counts == 0] = -np.inf
    chosen = items[keys <= np.repeat(kth, num_per_seq)]
    if len(chosen) != counts.sum():
        return _rank_keys(num_per_seq, matrix, counts, items)
    return chosen


def _rank_keys(num_per_seq, matrix, counts, items) -> np.ndarray:
    """`_smallest_keys` by ranking the keys of the matrix: exact whatever the ties."""
    first = np.cumsum(num_per_seq) - num_per_seq
    k = min(int(counts.max()), matrix.shape[1])
    smallest = np.argpartition(matrix, k - 1, axis=1)[:, :k]  # (S, k), unordered
    ranked = np.take_along_axis(
        smallest, np.argsort(np.take_along_axis(matrix, smallest, 1), axis=1), 1
    )
    take = np.arange(k)[None, :] < counts[:, None]  # (S, k)
    rows = np.nonzero(take)[0]
    return np.sort(items[first[rows] + ranked[take]])


def _corrupt(input_ids, chosen, decision, draw, vocab, config):
    """Replace the chosen positions: [MASK] if decision < p_mask, random if < p_mask + p_random.

    draw(high, to_random) gives the random replacements' indices (see _group_draws)."""
    out = input_ids.copy()
    originals = input_ids[chosen]
    to_mask = decision < config.mask_token_prob
    to_random = ~to_mask & (decision < config.mask_token_prob + config.random_token_prob)
    out[chosen[to_mask]] = vocab.mask_id
    picks = draw(len(vocab.random_token_ids), to_random)
    out[chosen[to_random]] = vocab.random_token_ids[picks]
    return out, originals


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _mask_whole_words(input_ids, offsets, rng, vocab, config) -> MaskedBatch:
    """Whole-word masking: words (a piece and its '##' continuations) are chosen in random
    order while they fit in the count to predict; one 80/10/10 choice per word."""
    num_seqs = len(offsets) - 1
    maskable = vocab.maskable[input_ids]
    # A word starts at a maskable token that is not a continuation of a maskable token before it.
    continues = vocab.is_continuation[input_ids] & np.concatenate(([False], maskable[:-1]))
    continues[offsets[:-1]] = False
    word_start = maskable & ~continues
    lengths = np.diff(offsets)
    seq_of_token = np.repeat(np.arange(num_seqs), lengths)
    num_maskable = np.bincount(seq_of_token[maskable], minlength=num_seqs)
    counts = num_to_predict(
        num_maskable, rng.random(num_seqs), config.masked_lm_prob, config.max_predictions_per_seq
    )
    starts = np.flatnonzero(word_start)
    # Word w covers starts[w] up to the next start or the next unmaskable token.
    word_len = np.zeros(len(starts), dtype=np.int64)
    if len(starts):
        run_id = np.cumsum(word_start) - 1
        word_len = np.bincount(run_id[maskable], minlength=len(starts))
    word_seq = seq_of_token[starts]
    first_word = np.searchsorted(word_seq, np.arange(num_seqs + 1))
    keys = rng.random(len(starts))
    picked: list[int] = []
    for s in range(num_seqs):
        lo, hi = first_word[s], first_word[s + 1]
        need = int(counts[s])
        words_of_seq = []
        for w in lo + np.argsort(keys[lo:hi], kind="stable"):
            if need == 0:
                break
            if word_len[w] <= need:
                words_of_seq.append(int(w))
                need -= int(word_len[w])
        picked.extend(sorted(words_of_seq))
    words = np.asarray(picked, dtype=np.int64)
    lens = word_len[words]
    chosen = gather_runs(starts[words], lens)
    decision = np.repeat(rng.random(len(words)), lens)
    draw = _group_draws([rng], np.array([0, len(chosen)]))
    masked_ids, originals = _corrupt(input_ids, chosen, decision, draw, vocab, config)
    per_seq = np.bincount(seq_of_token[chosen], minlength=num_seqs)
    positions = chosen - offsets[seq_of_token[chosen]]
    return MaskedBatch(masked_ids, positions, _offsets(per_seq), originals)


def _mask_span_groups(input_ids, offsets, group_offsets, rngs, vocab, config) -> MaskedBatch:
    """Span masking of each sequence in turn, with its group's rng; the words of all sequences
    are found at once."""
    starts, lengths, runs = _words(input_ids, vocab, offsets[:-1][offsets[:-1] < len(input_ids)])
    bounds = np.searchsorted(starts, offsets).tolist()  # words of sequence s: bounds[s:s+2]
    outs, positions, originals, counts = [], [], [], []
    for lo, hi, rng in zip(group_offsets[:-1], group_offsets[1:], rngs, strict=True):
        for s in range(lo, hi):
            at, w0, w1 = offsets[s], bounds[s], bounds[s + 1]
            seq = input_ids[at : offsets[s + 1]]
            words = (starts[w0:w1] - at, lengths[w0:w1], runs[w0:w1])
            out, chosen, original = mask_spans_one(seq, rng, vocab, config, words)
            outs.append(out)
            positions.append(chosen)
            originals.append(original)
            counts.append(len(chosen))
    if not outs:
        return _concat_batches(input_ids, offsets, [])
    return MaskedBatch(
        np.concatenate(outs),
        np.concatenate(positions).astype(np.int64),
        _offsets(np.asarray(counts, dtype=np.int64)),
        np.concatenate(originals),
    )
