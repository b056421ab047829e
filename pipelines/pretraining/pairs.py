"""Sentence pairs for next-sentence prediction, built as the BERT paper describes, or for
ALBERT's sentence-order prediction.

Pure functions with an explicit rng. A document is its token ids and the boundaries of its
sentences; a pair is planned as token spans (`create_pair_plans`), a NotNext pair's B is then
taken from another document (`random_next_span`), and over-long pairs are truncated
(`truncate_seq_pairs`) and packed as `[CLS] A [SEP] B [SEP]` (`pack_pairs`).

Sentence order (Lan et al. 2019, "ALBERT", section 3.1): every pair is planned as an IsNext
pair is, A and B consecutive segments of one document, and a fair coin swaps them; a swapped
pair is packed `[CLS] B [SEP] A [SEP]` with label SWAPPED, the others in order with IN_ORDER.

Where this differs from google-research/bert's create_pretraining_data.py, and why:
- the shorter target length (probability short_seq_prob) is drawn for every pair, not once per
  document, so a long document does not give all-short or all-long pairs;
- the IsNext/NotNext coin is fair: a chunk of one sentence that draws IsNext takes the next
  sentence as B (or, at the document's end, the previous sentence as A) instead of being forced
  to NotNext, which made more than half the pairs NotNext;
- B of a NotNext pair is drawn uniformly from every other document of the corpus, and never
  from the same document (the reference retries 10 times, then uses whatever it drew);
- sentences longer than a pair's token budget are cut into balanced pieces first, instead of
  losing everything past the budget to truncation.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from typing import NamedTuple

import numpy as np

from bertdata.masking import gather_runs
from schemas.pretraining import IS_NEXT, NOT_NEXT, SWAPPED

SPECIAL_TOKENS_PER_PAIR = 3  # [CLS], [SEP], [SEP]


class PairPlan(NamedTuple):
    """One pair before truncation: token spans of A and B in their documents."""

    a_start: int  # first token of segment A in its document
    a_end: int  # one past the last token of A
    b_start: int  # IsNext: B's span in the same document; NotNext: 0 until B is drawn
    b_end: int
    random_doc_rank: int  # NotNext: rank of B's document among all documents; -1 for IsNext
    random_start: float  # NotNext: B starts at this fraction of that document's sentences
    b_target_length: int  # NotNext: B takes whole sentences until it has this many tokens
    swapped: bool = False  # sentence order: packed as [CLS] B [SEP] A [SEP]

    @property
    def next_sentence_label(self) -> int:
        """The label column's value: IS_NEXT / NOT_NEXT, or with sentence order IN_ORDER /
        SWAPPED."""
        if self.swapped:
            return SWAPPED
        return IS_NEXT if self.random_doc_rank < 0 else NOT_NEXT


PLAN_DTYPE = np.dtype(
    [
        ("a_start", np.int64),
        ("a_end", np.int64),
        ("b_start", np.int64),
        ("b_end", np.int64),
        ("random_doc_rank", np.int64),
        ("random_start", np.float64),
        ("b_target_length", np.int64),
        ("swapped", np.bool_),
    ]
)


def plans_to_array(plans: list[PairPlan]) -> np.ndarray:
    """Plans as one structured array (PLAN_DTYPE): compact to ship between workers."""
    return np.array(plans, dtype=PLAN_DTYPE) if plans else np.zeros(0, dtype=PLAN_DTYPE)


def sentence_bounds(sentence_lengths: np.ndarray) -> np.ndarray:
    """Token offsets where each sentence starts, plus the total: (num_sentences + 1,) int64."""
    bounds = np.zeros(len(sentence_lengths) + 1, dtype=np.int64)
    np.cumsum(sentence_lengths, out=bounds[1:])
    return bounds


def split_long_sentences(bounds: np.ndarray, max_tokens: int) -> tuple[np.ndarray, int]:
    """Cut sentences longer than max_tokens into balanced pieces; returns bounds and the count cut."""
    lengths = np.diff(bounds)
    long = np.flatnonzero(lengths > max_tokens)
    if len(long) == 0:
        return bounds, 0
    cuts = []
    for s in long:
        start, length = int(bounds[s]), int(lengths[s])
        pieces = -(-length // max_tokens)
        cuts.extend(start + (k * length) // pieces for k in range(1, pieces))
    return np.union1d(bounds, np.asarray(cuts, dtype=np.int64)), len(long)


def target_length(rng: random.Random, max_num_tokens: int, short_seq_prob: float) -> int:
    """Tokens a pair aims for: the maximum, or with short_seq_prob a uniform length in [2, max]."""
    # Short pairs reduce the mismatch between pretraining and fine-tuning on short inputs.
    if rng.random() < short_seq_prob:
        return 2 + int(rng.random() * (max_num_tokens - 1))
    return max_num_tokens


def create_pair_plans(bounds: list[int], rng: random.Random, **options) -> list[PairPlan]:
    """Pairs of one document as PairPlans (`pair_plan_rows`, which says what the options are)."""
    return [PairPlan(*row) for row in pair_plan_rows(bounds, rng, **options)]


def pair_plan_array(bounds: list[int], rng: random.Random, **options) -> np.ndarray:
    """`create_pair_plans` as one structured array (PLAN_DTYPE), without a PairPlan per pair."""
    rows = pair_plan_rows(bounds, rng, **options)
    return np.array(rows, dtype=PLAN_DTYPE) if rows else np.zeros(0, dtype=PLAN_DTYPE)


def pair_plan_rows(
    bounds: list[int],
    rng: random.Random,
    *,
    max_num_tokens: int,
    short_seq_prob: float,
    num_documents: int,
    doc_rank: int,
    sentence_order: bool = False,
) -> list[tuple]:
    """Pairs of one document: contiguous sentences packed into A and B up to a target length,
    as plain tuples of PairPlan's fields (this loop runs once per pair of the corpus).

    `bounds` are the sentence boundaries (see `sentence_bounds`), every sentence non-empty and
    at most max_num_tokens long. A document of one sentence gives no pair: it has no IsNext
    pair, and giving it only NotNext pairs would bias the labels. `doc_rank` is this document's
    rank among `num_documents`; a NotNext pair names the rank of B's document, never its own.

    With `sentence_order` (ALBERT) no pair is NotNext: each is planned as an IsNext pair and a
    fair coin swaps it; the corpus may then be one document. Without it the draws are the ones
    NSP has always made, so its data stays byte for byte the same.
    """
    num_sentences = len(bounds) - 1
    if num_sentences < 2:
        return []
    if num_documents < 2 and not sentence_order:
        raise ValueError("a NotNext pair needs another document, and the corpus has only one")
    draw = rng.random
    others = num_documents - 1
    rows: list[tuple] = []
    add = rows.append
    start = 0
    while start < num_sentences:
        target = target_length(rng, max_num_tokens, short_seq_prob)
        # The chunk is the sentences from `start` up to the first that reaches the target.
        end = min(bisect_left(bounds, bounds[start] + target, start + 1), num_sentences)
        is_random_next = not sentence_order and draw() < 0.5
        if not is_random_next and end - start == 1:
            # IsNext needs a B: the next sentence, or at the document's end the previous one.
            if end < num_sentences:
                end += 1
            else:
                start -= 1
        num_chunk = end - start
        a_end = start + 1 if num_chunk == 1 else start + 1 + int(draw() * (num_chunk - 1))
        a0, a1 = bounds[start], bounds[a_end]
        if is_random_next:
            rank = int(draw() * others)
            rank += rank >= doc_rank  # skip this document: uniform over the others
            add((a0, a1, 0, 0, rank, draw(), target - (a1 - a0), False))
            # The chunk's sentences after A were not used: they start the next pair.
            start = a_end
        else:
            # Sentence order: the same two segments, their order swapped on a fair coin.
            swapped = sentence_order and draw() < 0.5
            add((a0, a1, a1, bounds[end], -1, 0.0, 0, swapped))
            start = end
    return rows


def random_next_span(
    bounds: list[int], random_start: float, b_target_length: int
) -> tuple[int, int]:
    """B of a NotNext pair in its document: whole sentences from a random one, up to the target."""
    num_sentences = len(bounds) - 1
    first = int(random_start * num_sentences)
    end = min(bisect_left(bounds, bounds[first] + b_target_length, first + 1), num_sentences)
    return bounds[first], bounds[end]


def random_next_spans(
    bounds: np.ndarray,
    doc_offsets: np.ndarray,
    doc: np.ndarray,
    random_start: np.ndarray,
    b_target_length: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`random_next_span` for many pairs at once. Document j's boundaries are
    bounds[doc_offsets[j] : doc_offsets[j + 1]]; pair i takes B from document doc[i].
    Returns B's token (start, end) per pair."""
    bounds = np.asarray(bounds, dtype=np.int64)
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    doc = np.asarray(doc, dtype=np.int64)
    b_target_length = np.asarray(b_target_length, dtype=np.int64)
    if len(doc) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = doc_offsets[doc]
    num_sentences = doc_offsets[doc + 1] - starts - 1
    first = (np.asarray(random_start, dtype=np.float64) * num_sentences).astype(np.int64)
    # One search over every document: each one's boundaries raised above the previous one's
    # by more than any target, so the concatenation is sorted and no search crosses documents.
    step = np.zeros(len(doc_offsets) - 1, dtype=np.int64)
    step[1:] = bounds[doc_offsets[1:-1] - 1] + np.abs(b_target_length).max() + 1
    lifted = bounds + np.repeat(np.cumsum(step), np.diff(doc_offsets))
    value = lifted[starts + first] + b_target_length
    end = np.searchsorted(lifted, value, side="left") - starts
    end = np.minimum(np.maximum(end, first + 1), num_sentences)
    return bounds[starts + first], bounds[starts + end]


def truncated_lengths(
    len_a: np.ndarray, len_b: np.ndarray, max_num_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lengths after removing tokens one at a time from the longer segment (B on ties)."""
    len_a = np.asarray(len_a, dtype=np.int64)
    len_b = np.asarray(len_b, dtype=np.int64)
    excess = np.maximum(len_a + len_b - max_num_tokens, 0)
    diff = len_a - len_b
    # If one segment is longer by at least the excess, only it loses tokens; otherwise both
    # end level, A keeping the odd token (B loses first on a tie).
    only_a = diff >= excess
    only_b = -diff >= excess
    half_up = -(-max_num_tokens // 2)
    new_a = np.where(only_a, len_a - excess, np.where(only_b, len_a, half_up))
    new_b = np.where(only_a, len_b, np.where(only_b, len_b - excess, max_num_tokens - half_up))
    return new_a, new_b


class Truncation(NamedTuple):
    """Where each pair's segments keep their tokens, relative to the untruncated segments."""

    a_front: np.ndarray  # tokens removed from the front of A
    a_length: np.ndarray  # tokens of A kept
    b_front: np.ndarray
    b_length: np.ndarray


def truncate_seq_pairs(
    len_a: np.ndarray, len_b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
) -> Truncation:
    """Truncate pairs to max_num_tokens: the longer segment loses a token from its front or
    back at random (a fair coin per token), until the pair fits.

    The coins are drawn as one binomial count per segment, which has the distribution of the
    token-at-a-time procedure; it keeps the front/back randomness so the model does not learn
    that segments always end (or start) at a sentence boundary.
    """
    len_a = np.asarray(len_a, dtype=np.int64)
    len_b = np.asarray(len_b, dtype=np.int64)
    new_a, new_b = truncated_lengths(len_a, len_b, max_num_tokens)
    a_front = rng.binomial(len_a - new_a, 0.5)
    b_front = rng.binomial(len_b - new_b, 0.5)
    return Truncation(a_front, new_a, b_front, new_b)


def truncate_seq_pair(
    tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One pair, truncated as `truncate_seq_pairs` does."""
    t = truncate_seq_pairs(
        np.array([len(tokens_a)]), np.array([len(tokens_b)]), max_num_tokens, rng
    )
    a0, b0 = int(t.a_front[0]), int(t.b_front[0])
    return tokens_a[a0 : a0 + int(t.a_length[0])], tokens_b[b0 : b0 + int(t.b_length[0])]


class PairBatch(NamedTuple):
    """Packed pairs `[CLS] A [SEP] B [SEP]` (`[CLS] B [SEP] A [SEP]` when swapped),
    concatenated: one row per pair."""

    input_ids: np.ndarray  # (total tokens,) the pairs one after another
    offsets: np.ndarray  # (num_pairs + 1,) int64: pair i is input_ids[offsets[i]:offsets[i+1]]
    segment_a_lengths: np.ndarray  # (num_pairs,) int64, tokens of the first packed segment
    next_sentence_labels: np.ndarray  # (num_pairs,) uint8, IS_NEXT/NOT_NEXT or IN_ORDER/SWAPPED


def pack_pairs(
    doc_tokens: np.ndarray,
    plans: np.ndarray,
    random_b: list[np.ndarray],
    rng: np.random.Generator,
    *,
    max_num_tokens: int,
    cls_id: int,
    sep_id: int,
) -> PairBatch:
    """Truncate and pack one document's planned pairs.

    `plans` is a PLAN_DTYPE array; `random_b` holds, in order, the B tokens of its NotNext
    pairs (as `random_next_span` cut them from their documents).
    """
    return pack_pair_groups(
        [doc_tokens],
        [PairGroup(0, plans, random_b, rng)],
        max_num_tokens=max_num_tokens,
        cls_id=cls_id,
        sep_id=sep_id,
    )


class PairGroup(NamedTuple):
    """One document's planned pairs (one duplicate) and the rng that truncates them."""

    doc: int  # index into the documents given to pack_pair_groups
    plans: np.ndarray  # PLAN_DTYPE
    random_b: list[np.ndarray]  # B tokens of the NotNext pairs, in order
    rng: np.random.Generator


def pack_pair_groups(
    docs: list[np.ndarray],
    groups: list[PairGroup],
    *,
    max_num_tokens: int,
    cls_id: int,
    sep_id: int,
) -> PairBatch:
    """`pack_pairs` of each group, concatenated, with the same output and the same draws from
    each group's rng; one set of array operations for all groups, which is what makes it fast.

    A swapped pair (sentence order) is truncated as it would be in order, with the same draws,
    then packed B first: truncation does not depend on the coin.
    """
    for g in groups:
        num_random = int((g.plans["random_doc_rank"] >= 0).sum())
        if len(g.random_b) != num_random:
            raise ValueError(f"{num_random} NotNext pairs but {len(g.random_b)} random B segments")
    plans = np.concatenate([g.plans for g in groups])
    num = len(plans)
    is_random = plans["random_doc_rank"] >= 0
    swapped = plans["swapped"]
    if (swapped & is_random).any():
        raise ValueError("a NotNext pair cannot be swapped: sentence order has no NotNext pairs")
    # One buffer holds the documents, every random B, then [CLS] and [SEP]; spans index it.
    random_b = [b for g in groups for b in g.random_b]
    dtype = docs[0].dtype
    buffer = np.concatenate([*docs, *random_b, np.array([cls_id, sep_id], dtype=dtype)])
    cls_at = len(buffer) - 2
    doc_len = np.fromiter(map(len, docs), np.int64, len(docs))
    doc_at = np.cumsum(doc_len) - doc_len
    random_len = np.fromiter(map(len, random_b), np.int64, len(random_b))
    random_at = int(doc_len.sum()) + np.cumsum(random_len) - random_len
    group_size = np.fromiter((len(g.plans) for g in groups), np.int64, len(groups))
    base = np.repeat(doc_at[[g.doc for g in groups]], group_size)
    a_start = plans["a_start"] + base
    b_start = plans["b_start"] + base
    b_len = plans["b_end"] - plans["b_start"]
    b_start[is_random] = random_at
    b_len[is_random] = random_len
    a_len = plans["a_end"] - plans["a_start"]
    # Each group truncated with its own rng, as pack_pairs would (truncate_seq_pairs: the
    # lengths for all at once, then each group's coins); the spans stay vectorized.
    new_a, new_b = truncated_lengths(a_len, b_len, max_num_tokens)
    cut_a, cut_b = a_len - new_a, b_len - new_b
    bounds = np.cumsum(group_size) - group_size
    fronts = [
        (g.rng.binomial(cut_a[lo : lo + n], 0.5), g.rng.binomial(cut_b[lo : lo + n], 0.5))
        for g, lo, n in zip(groups, bounds.tolist(), group_size.tolist(), strict=True)
    ]
    a_front, b_front = (np.concatenate(field) for field in zip(*fronts, strict=True))
    first_start, first_len = a_start + a_front, new_a
    second_start, second_len = b_start + b_front, new_b
    if swapped.any():  # sentence order: B packed first
        first_start, second_start = (
            np.where(swapped, second_start, first_start),
            np.where(swapped, first_start, second_start),
        )
        first_len, second_len = (
            np.where(swapped, second_len, first_len),
            np.where(swapped, first_len, second_len),
        )
    # Five runs per pair: [CLS], first segment, [SEP], second segment, [SEP].
    ones = np.ones(num, np.int64)
    starts = np.stack(
        [np.full(num, cls_at), first_start, np.full(num, cls_at + 1), second_start,
         np.full(num, cls_at + 1)],
        axis=1,
    ).ravel()  # fmt: skip
    lengths = np.stack([ones, first_len, ones, second_len, ones], axis=1).ravel()
    input_ids = buffer[gather_runs(starts, lengths)]
    offsets = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(new_a + new_b + SPECIAL_TOKENS_PER_PAIR, out=offsets[1:])
    labels = np.where(is_random, NOT_NEXT, IS_NEXT).astype(np.uint8)
    labels[swapped] = SWAPPED
    return PairBatch(input_ids, offsets, first_len, labels)
