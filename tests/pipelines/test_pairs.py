"""Pair building for next-sentence prediction: exact plans from a scripted rng, and rates."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipelines.pretraining.pairs import (
    PairGroup,
    PairPlan,
    create_pair_plans,
    pack_pair_groups,
    pack_pairs,
    pair_plan_array,
    plans_to_array,
    random_next_span,
    random_next_spans,
    sentence_bounds,
    split_long_sentences,
    target_length,
    truncate_seq_pair,
    truncate_seq_pairs,
    truncated_lengths,
)
from schemas.pretraining import IS_NEXT, NOT_NEXT

CLS, SEP = 101, 102


class ScriptedRandom(random.Random):
    """A random.Random whose random() returns the given values in order (and fails after)."""

    def __init__(self, values: list[float]):
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        if not self.values:
            raise AssertionError("the function drew more numbers than the test scripted")
        return self.values.pop(0)


def plans(bounds, rng, max_num_tokens=25, num_documents=5, doc_rank=2, short_seq_prob=0.1):
    return create_pair_plans(
        list(bounds),
        rng,
        max_num_tokens=max_num_tokens,
        short_seq_prob=short_seq_prob,
        num_documents=num_documents,
        doc_rank=doc_rank,
    )


def test_the_plan_array_holds_the_same_pairs_as_the_plans():
    rng = np.random.default_rng(5)
    for seed in range(200):
        bounds = sentence_bounds(rng.integers(1, 26, rng.integers(1, 40))).tolist()
        options = {"max_num_tokens": 25, "short_seq_prob": 0.3, "num_documents": 9}
        expected = plans_to_array(
            create_pair_plans(bounds, random.Random(seed), doc_rank=seed % 9, **options)
        )
        got = pair_plan_array(bounds, random.Random(seed), doc_rank=seed % 9, **options)
        assert got.dtype == expected.dtype and got.tolist() == expected.tolist()


def test_sentence_bounds_are_cumulative_offsets():
    assert sentence_bounds(np.array([3, 1, 4])).tolist() == [0, 3, 4, 8]


def test_split_long_sentences_cuts_balanced_pieces_and_counts_them():
    bounds = sentence_bounds(np.array([10, 25, 4, 7]))
    split, count = split_long_sentences(bounds, 8)
    assert count == 2
    # 25 tokens -> 4 pieces of 6 or 7; 10 -> 5 + 5; the short ones stay whole.
    assert split.tolist() == [0, 5, 10, 16, 22, 28, 35, 39, 46]
    unchanged, none = split_long_sentences(bounds, 25)
    assert none == 0 and unchanged.tolist() == bounds.tolist()


def test_a_chunk_of_sentences_up_to_the_target_becomes_an_isnext_pair():
    # Four sentences of 10 tokens, budget 25: target 25, the chunk is 3 sentences (30 tokens).
    rng = ScriptedRandom([0.5, 0.7, 0.6, 0.05, 0.5, 0.3, 0.6, 0.25])
    result = plans([0, 10, 20, 30, 40], rng)
    assert result[0] == PairPlan(0, 20, 20, 30, -1, 0.0, 0)  # A = s0 s1, B = s2 (IsNext)
    # Then a short target (0.05 < 0.1): 2 + int(0.5 * 24) = 14 tokens; one sentence left,
    # NotNext (0.3 < 0.5): B from rank int(0.6 * 4) = 2, shifted past this document's rank 2.
    assert result[1] == PairPlan(30, 40, 0, 0, 3, 0.25, 14 - 10)
    assert len(result) == 2 and rng.values == []


def test_notnext_puts_the_unused_sentences_back_and_isnext_at_the_end_borrows_a():
    rng = ScriptedRandom([0.9, 0.2, 0.99, 0.0, 0.5, 0.9, 0.9, 0.3])
    result = plans([0, 10, 20, 30], rng)
    # Chunk s0..s2, NotNext, A = s0 s1 (a_end 1 + int(0.99 * 2)); s2 goes back.
    assert result[0] == PairPlan(0, 20, 0, 0, 0, 0.5, 25 - 20)
    # s2 alone draws IsNext at the document's end: s1 becomes A, s2 is B.
    assert result[1] == PairPlan(10, 20, 20, 30, -1, 0.0, 0)
    assert len(result) == 2


def test_a_single_sentence_chunk_that_draws_isnext_takes_the_next_sentence_as_b():
    # Target 2 (short): the chunk is s0 alone; IsNext (0.9) pulls s1 in as B.
    rng = ScriptedRandom([0.05, 0.0, 0.9, 0.4])
    result = plans([0, 20, 30], rng)
    assert result == [PairPlan(0, 20, 20, 30, -1, 0.0, 0)]


def test_a_one_sentence_document_gives_no_pair_and_one_document_is_an_error():
    assert plans([0, 12], random.Random(1)) == []
    with pytest.raises(ValueError, match="only one"):
        plans([0, 5, 10], random.Random(1), num_documents=1, doc_rank=0)


def test_notnext_is_half_of_the_pairs_even_when_every_chunk_is_one_sentence():
    # Every sentence fills the budget alone: the reference would make all of them NotNext.
    rng = random.Random(7)
    labels = []
    for _ in range(400):
        bounds = sentence_bounds(np.full(6, 25))
        labels += [p.next_sentence_label for p in plans(bounds, rng, short_seq_prob=0.0)]
    share = np.mean(np.array(labels) == NOT_NEXT)
    assert len(labels) > 1500
    assert abs(share - 0.5) < 0.04


def test_random_documents_are_uniform_over_the_others_and_never_this_one():
    rng = random.Random(3)
    ranks = []
    for _ in range(3000):
        bounds = sentence_bounds(np.full(8, 5))
        ranks += [p.random_doc_rank for p in plans(bounds, rng, num_documents=6, doc_rank=4)]
    counts = np.bincount([r for r in ranks if r >= 0], minlength=6)
    assert counts[4] == 0
    others = counts[[0, 1, 2, 3, 5]]
    expected = others.sum() / 5
    assert np.all(np.abs(others - expected) < 5 * np.sqrt(expected))


def test_target_length_is_short_with_short_seq_prob_and_uniform_in_2_to_max():
    rng = random.Random(11)
    targets = np.array([target_length(rng, 125, 0.1) for _ in range(20000)])
    short = targets[targets < 125]
    assert abs(len(short) / len(targets) - 0.1 * 123 / 124) < 0.01
    assert short.min() >= 2 and targets.max() == 125
    assert abs(short.mean() - (2 + 124) / 2) < 3
    assert all(target_length(rng, 125, 0.0) == 125 for _ in range(100))


def test_random_next_span_takes_whole_sentences_from_a_random_start():
    bounds = [0, 5, 12, 20, 26]
    assert random_next_span(bounds, 0.5, 10) == (12, 26)  # s2 (8) is short of 10: add s3
    assert random_next_span(bounds, 0.5, 1) == (12, 20)
    assert random_next_span(bounds, 0.99, 100) == (20, 26)  # the document ends first
    assert random_next_span(bounds, 0.0, -3) == (0, 5)  # at least one sentence


def test_random_next_spans_equal_one_span_at_a_time():
    rng = np.random.default_rng(3)
    docs = []
    for _ in range(60):
        lengths = rng.integers(1, 40, rng.integers(1, 30))
        docs.append(np.concatenate([[0], np.cumsum(lengths)]))
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    doc = rng.integers(0, len(docs), 5000)
    start = rng.random(5000)
    target = rng.integers(-20, 300, 5000)
    s, e = random_next_spans(np.concatenate(docs), offsets, doc, start, target)
    expected = [
        random_next_span(docs[d].tolist(), r, t)
        for d, r, t in zip(doc.tolist(), start.tolist(), target.tolist(), strict=True)
    ]
    assert list(zip(s.tolist(), e.tolist(), strict=True)) == expected


def _one_token_at_a_time(len_a, len_b, max_num_tokens):
    while len_a + len_b > max_num_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def test_truncated_lengths_match_removing_one_token_at_a_time_from_the_longer():
    grid = [(a, b) for a in range(1, 40) for b in range(1, 40)]
    for max_num_tokens in (2, 7, 20, 25):
        new_a, new_b = truncated_lengths(
            np.array([a for a, _ in grid]), np.array([b for _, b in grid]), max_num_tokens
        )
        expected = [_one_token_at_a_time(a, b, max_num_tokens) for a, b in grid]
        assert list(zip(new_a.tolist(), new_b.tolist(), strict=True)) == expected


def test_truncation_removes_from_front_or_back_with_a_fair_coin_per_token():
    rng = np.random.default_rng(5)
    n = 20000
    cut = truncate_seq_pairs(np.full(n, 100), np.full(n, 10), 60, rng)
    assert set(cut.a_length.tolist()) == {50} and set(cut.b_length.tolist()) == {10}
    assert cut.b_front.max() == 0
    # 50 coins per pair: mean 25, variance 12.5, as tokens removed one at a time would give.
    assert abs(cut.a_front.mean() - 25) < 0.1
    assert abs(cut.a_front.var() - 12.5) < 0.6


def test_truncate_seq_pair_keeps_a_contiguous_slice_of_each_segment():
    a, b = np.arange(100, 130), np.arange(200, 210)
    kept_a, kept_b = truncate_seq_pair(a, b, 25, np.random.default_rng(0))
    assert len(kept_a) == 15 and kept_b.tolist() == b.tolist()
    assert kept_a.tolist() == list(range(kept_a[0], kept_a[0] + 15))
    again_a, _ = truncate_seq_pair(a, b, 25, np.random.default_rng(0))
    assert again_a.tolist() == kept_a.tolist()  # the same seed, the same cut


def test_pack_pairs_lays_out_cls_a_sep_b_sep_with_b_from_the_random_document():
    doc = np.arange(1000, 1040, dtype=np.uint16)  # 4 sentences of 10
    planned = plans_to_array(
        [PairPlan(0, 10, 10, 20, -1, 0.0, 0), PairPlan(20, 30, 0, 0, 3, 0.1, 5)]
    )
    other = np.array([7, 8, 9], dtype=np.uint16)
    batch = pack_pairs(
        doc, planned, [other], np.random.default_rng(0), max_num_tokens=25, cls_id=CLS, sep_id=SEP
    )
    first = batch.input_ids[batch.offsets[0] : batch.offsets[1]].tolist()
    second = batch.input_ids[batch.offsets[1] : batch.offsets[2]].tolist()
    assert first == [CLS, *range(1000, 1010), SEP, *range(1010, 1020), SEP]
    assert second == [CLS, *range(1020, 1030), SEP, 7, 8, 9, SEP]
    assert batch.segment_a_lengths.tolist() == [10, 10]
    assert batch.next_sentence_labels.tolist() == [IS_NEXT, NOT_NEXT]
    assert batch.input_ids.dtype == np.uint16


def test_pack_pairs_truncates_to_the_budget():
    doc = np.arange(60, dtype=np.int32)
    planned = plans_to_array([PairPlan(0, 40, 40, 60, -1, 0.0, 0)])
    batch = pack_pairs(
        doc, planned, [], np.random.default_rng(2), max_num_tokens=25, cls_id=CLS, sep_id=SEP
    )
    ids = batch.input_ids.tolist()
    assert len(ids) == 28 and ids[0] == CLS and ids[-1] == SEP
    a_len = int(batch.segment_a_lengths[0])
    assert (a_len, len(ids) - a_len - 3) == (13, 12)
    a, b = ids[1 : 1 + a_len], ids[2 + a_len : -1]
    assert a == list(range(a[0], a[0] + 13)) and 0 <= a[0] <= 27
    assert b == list(range(b[0], b[0] + 12)) and 40 <= b[0] <= 48


def test_pack_pairs_refuses_missing_random_segments():
    planned = plans_to_array([PairPlan(0, 5, 0, 0, 1, 0.5, 5)])
    with pytest.raises(ValueError, match="1 NotNext pairs but 0"):
        pack_pairs(
            np.arange(10), planned, [], np.random.default_rng(0),
            max_num_tokens=25, cls_id=CLS, sep_id=SEP,
        )  # fmt: skip


def test_pack_pair_groups_equals_pack_pairs_group_by_group():
    """Packing many documents' pairs at once gives each group's own result and leaves each
    group's rng where packing that group alone leaves it."""
    gen = np.random.default_rng(11)
    docs = [np.arange(100 * d, 100 * d + 80, dtype=np.uint16) for d in range(3)]
    groups = []
    for g in range(7):
        doc = g % 3
        bounds = sentence_bounds(gen.integers(1, 15, 8)).tolist()
        bounds = [b for b in bounds if b <= 80]
        planned = plans_to_array(plans(bounds, random.Random(g), max_num_tokens=20))
        randoms = [
            np.full(int(gen.integers(1, 30)), 9000 + g, np.uint16)
            for _ in range(int((planned["random_doc_rank"] >= 0).sum()))
        ]
        groups.append((doc, planned, randoms, g))
    groups.insert(3, (1, plans_to_array([]), [], 99))  # a duplicate that planned no pair
    together = pack_pair_groups(
        docs,
        [PairGroup(d, p, r, np.random.default_rng(seed)) for d, p, r, seed in groups],
        max_num_tokens=20, cls_id=CLS, sep_id=SEP,
    )  # fmt: skip
    alone = [
        pack_pairs(
            docs[d], p, r, np.random.default_rng(s), max_num_tokens=20, cls_id=CLS, sep_id=SEP
        )
        for d, p, r, s in groups
    ]
    assert together.input_ids.tolist() == np.concatenate([b.input_ids for b in alone]).tolist()
    assert np.diff(together.offsets).tolist() == [n for b in alone for n in np.diff(b.offsets)]
    for name in ("segment_a_lengths", "next_sentence_labels"):
        expected = np.concatenate([getattr(b, name) for b in alone]).tolist()
        assert getattr(together, name).tolist() == expected
    assert len(together.offsets) - 1 == sum(len(p) for _, p, _, _ in groups) > 20
