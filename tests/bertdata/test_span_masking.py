"""SpanBERT's span masking (Joshi et al. 2019): span lengths, whole words, the 15% budget and
one 80/10/10 choice per span, on thousands of sequences; the batch version equals the rule."""

from __future__ import annotations

import numpy as np
import pytest

from bertdata.masking import (
    MaskingConfig,
    MaskingVocab,
    mask_one,
    mask_sequence_groups,
    mask_sequences,
    span_length_cdf,
)

# Words of one piece, words of two or three pieces, and the specials.
TOKENS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    *[f"w{i}" for i in range(40)], "##a", "##b",
]  # fmt: skip
IDS = {t: i for i, t in enumerate(TOKENS)}
CLS, SEP, MASK = IDS["[CLS]"], IDS["[SEP]"], IDS["[MASK]"]
VOCAB = MaskingVocab.from_tokens(TOKENS)
SPAN = MaskingConfig(span_masking=True, max_predictions_per_seq=1000)


def long_sequences(n: int, words: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """n sequences [CLS] A [SEP] B [SEP] of `words` words each side; a fifth of the words have
    a '##' piece. Returns ids, offsets and each sequence's word starts."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        seq = [CLS]
        for _side in range(2):
            for _ in range(words):
                seq.append(IDS[f"w{rng.integers(40)}"])
                if rng.random() < 0.2:
                    seq.append(IDS["##a"] if rng.random() < 0.5 else IDS["##b"])
            seq.append(SEP)
        seqs.append(np.array(seq, dtype=np.uint16))
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs]))).astype(np.int64)
    return np.concatenate(seqs), offsets, seqs


def word_runs(seq: np.ndarray, positions: np.ndarray) -> list[int]:
    """Lengths in words of the runs of consecutive masked positions."""
    masked = np.zeros(len(seq), bool)
    masked[positions] = True
    runs, current = [], 0
    for i, token in enumerate(seq):
        if masked[i]:
            if not VOCAB.is_continuation[token]:
                current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


def test_the_truncated_geometric_has_the_papers_mean_of_3_8_words():
    cdf = span_length_cdf(SPAN)
    probabilities = np.diff(np.concatenate(([0.0], cdf)))
    assert len(cdf) == 10 and cdf[-1] == pytest.approx(1.0)
    assert (probabilities[1:] / probabilities[:-1]) == pytest.approx(np.full(9, 0.8))
    assert float((np.arange(1, 11) * probabilities).sum()) == pytest.approx(3.797, abs=0.001)


def test_spans_of_whole_words_fill_the_budget_with_the_papers_lengths():
    ids, offsets, seqs = long_sequences(400, 120)
    out = mask_sequences(ids, offsets, np.random.default_rng(1), VOCAB, SPAN)
    maskable = VOCAB.maskable[ids].sum()
    assert out.masked_lm_offsets[-1] / maskable == pytest.approx(0.15, abs=0.005)
    runs = []
    for s, seq in enumerate(seqs):
        positions = out.masked_lm_positions[out.masked_lm_offsets[s] : out.masked_lm_offsets[s + 1]]
        assert (VOCAB.maskable[seq[positions]]).all()
        # Whole words: a masked piece's word is masked from its first piece to its last.
        masked = np.zeros(len(seq), bool)
        masked[positions] = True
        for i in range(1, len(seq)):
            if VOCAB.is_continuation[seq[i]]:
                assert masked[i] == masked[i - 1], (s, i)
        runs += word_runs(seq, positions)
    runs = np.array(runs)
    # Runs are spans, or neighbouring spans run together. The drawn lengths average 3.8 words;
    # spans cut at the end of the budget or at a taken word make the runs a little shorter
    # (3.6 here), and one word 25% of the time (22% of drawn lengths); token masking: 1.1.
    assert 3.3 <= runs.mean() <= 4.5
    assert (runs == 1).mean() < 0.3
    token = mask_sequences(ids, offsets, np.random.default_rng(1), VOCAB, MaskingConfig())
    token_runs = np.concatenate(
        [
            word_runs(seq, token.masked_lm_positions[token.masked_lm_offsets[s] :
                                                     token.masked_lm_offsets[s + 1]])
            for s, seq in enumerate(seqs)
        ]
    )  # fmt: skip
    assert token_runs.mean() < 1.3


def test_one_80_10_10_choice_per_span():
    ids, offsets, seqs = long_sequences(400, 120, seed=2)
    out = mask_sequences(ids, offsets, np.random.default_rng(3), VOCAB, SPAN)
    original = out.masked_lm_ids
    now = out.input_ids[
        out.masked_lm_positions + np.repeat(offsets[:-1], np.diff(out.masked_lm_offsets))
    ]
    kind = np.where(now == MASK, 0, np.where(now == original, 2, 1))  # mask, random, kept
    # Per token: about 80/10/10 (a random token equal to the original counts as kept).
    shares = np.bincount(kind, minlength=3) / len(kind)
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    # Within a run of consecutive masked positions the choice changes only where two spans
    # meet: rarely, where with one choice per token it would change in most runs.
    positions = out.masked_lm_positions
    same_run = (np.diff(positions) == 1) & (
        np.diff(np.repeat(np.arange(len(seqs)), np.diff(out.masked_lm_offsets))) == 0
    )
    changes = (np.diff(kind) != 0) & same_run
    assert changes.sum() / same_run.sum() < 0.08


def test_the_batch_version_is_the_rule_one_sequence_after_another():
    ids, offsets, _ = long_sequences(30, 20, seed=4)
    config = MaskingConfig(span_masking=True, max_predictions_per_seq=6)
    batch = mask_sequences(ids, offsets, np.random.default_rng(5), VOCAB, config)
    rng = np.random.default_rng(5)
    for s in range(30):
        seq = ids[offsets[s] : offsets[s + 1]]
        out, positions, originals = mask_one(seq, rng, VOCAB, config)
        lo, hi = batch.masked_lm_offsets[s], batch.masked_lm_offsets[s + 1]
        assert (batch.masked_lm_positions[lo:hi] == positions).all()
        assert (batch.masked_lm_ids[lo:hi] == originals).all()
        assert (batch.input_ids[offsets[s] : offsets[s + 1]] == out).all()
        assert len(positions) <= 6  # the cap holds
    groups = mask_sequence_groups(
        ids, offsets, np.array([0, 10, 30]),
        [np.random.default_rng(5), np.random.default_rng(6)], VOCAB, config,
    )  # fmt: skip
    first = mask_sequences(
        ids[: offsets[10]], offsets[:11], np.random.default_rng(5), VOCAB, config
    )
    assert (
        groups.masked_lm_positions[: first.masked_lm_offsets[-1]] == first.masked_lm_positions
    ).all()


def test_words_never_cross_from_one_sequence_into_the_next():
    """Sequences that start with a word's continuation piece, right after another sequence's
    last word: the batch still masks each as the rule masks it alone."""
    ids, offsets, _ = long_sequences(12, 15, seed=8)
    pieces = [ids[offsets[s] + 1 : offsets[s + 1] - 1] for s in range(12)]  # no [CLS]/[SEP]
    pieces = [np.concatenate(([IDS["##a"]], p)).astype(np.uint16) for p in pieces]
    joined = np.concatenate(pieces)
    bounds = np.concatenate(([0], np.cumsum([len(p) for p in pieces]))).astype(np.int64)
    config = MaskingConfig(span_masking=True, max_predictions_per_seq=9)
    batch = mask_sequences(joined, bounds, np.random.default_rng(2), VOCAB, config)
    rng = np.random.default_rng(2)
    for s, seq in enumerate(pieces):
        out, positions, _ = mask_one(seq, rng, VOCAB, config)
        lo, hi = batch.masked_lm_offsets[s], batch.masked_lm_offsets[s + 1]
        assert (batch.masked_lm_positions[lo:hi] == positions).all()
        assert (batch.input_ids[bounds[s] : bounds[s + 1]] == out).all()


def test_a_sequence_with_nothing_to_mask():
    seq = np.array([CLS, SEP, SEP], dtype=np.uint16)
    out, positions, originals = mask_one(seq, np.random.default_rng(0), VOCAB, SPAN)
    assert (out == seq).all() and len(positions) == 0 and len(originals) == 0


def test_span_options_are_checked():
    with pytest.raises(ValueError, match="span_p"):
        MaskingConfig(span_masking=True, span_p=0.0).validate()
    with pytest.raises(ValueError, match="max_span_words"):
        MaskingConfig(span_masking=True, max_span_words=0).validate()
