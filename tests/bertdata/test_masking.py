"""Masked-LM predictions: exact behaviour on small inputs, rates on thousands of sequences."""

from __future__ import annotations

import numpy as np
import pytest

from bertdata.masking import (
    MaskingConfig,
    MaskingVocab,
    _smallest_keys,
    mask_one,
    mask_sequence_groups,
    mask_sequences,
    num_to_predict,
)

# A small BERT-layout vocabulary: specials, reserved slots, words and '##' pieces.
TOKENS = [
    "[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "sat", "on", "mat", "play", "##ing", "##ed", "un", "##believ", "##able",
    "[", "]", ".", "dog", "ran", "far",
]  # fmt: skip
IDS = {t: i for i, t in enumerate(TOKENS)}
PAD, UNK, CLS, SEP, MASK = (IDS[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
SPECIAL = {PAD, UNK, CLS, SEP, MASK, IDS["[unused0]"], IDS["[unused1]"]}
VOCAB = MaskingVocab.from_tokens(TOKENS)


def sequence(a: list[str], b: list[str]) -> list[int]:
    return [CLS, *(IDS[t] for t in a), SEP, *(IDS[t] for t in b), SEP]


def batch(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs]))).astype(np.int64)
    return np.concatenate([np.array(s, dtype=np.uint16) for s in seqs]), offsets


def random_batch(rng: np.random.Generator, n: int, words=range(7, 24)) -> tuple:
    seqs = []
    for _ in range(n):
        a, b = rng.integers(1, 60), rng.integers(1, 60)
        seqs.append([CLS, *rng.choice(list(words), a), SEP, *rng.choice(list(words), b), SEP])
    return batch(seqs)


def test_vocab_facts_come_from_the_tokens():
    assert VOCAB.mask_id == MASK
    assert not VOCAB.maskable[[PAD, UNK, CLS, SEP, MASK]].any()
    assert VOCAB.maskable[IDS["[unused0]"]]  # never in text, but not special to masking
    pool = set(VOCAB.random_token_ids.tolist())
    assert pool.isdisjoint(SPECIAL) and {IDS["["], IDS["]"], IDS["cat"]} <= pool
    assert VOCAB.is_continuation[[IDS["##ing"], IDS["##able"]]].all()
    assert not VOCAB.is_continuation[IDS["play"]]
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        MaskingVocab.from_tokens([t for t in TOKENS if t != "[MASK]"])


def test_config_refuses_out_of_range_options():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="masked_lm_prob"):
            MaskingConfig(masked_lm_prob=bad).validate()
    with pytest.raises(ValueError, match="max_predictions_per_seq"):
        MaskingConfig(max_predictions_per_seq=0).validate()
    with pytest.raises(ValueError, match="sum <= 1"):
        MaskingConfig(mask_token_prob=0.9, random_token_prob=0.2).validate()


def test_num_to_predict_rounds_at_random_to_an_exact_expectation_and_caps():
    u = np.random.default_rng(0).random(100000)
    counts = num_to_predict(np.full(100000, 3), u, 0.15, 20)
    assert set(counts.tolist()) == {0, 1}
    assert abs(counts.mean() - 0.45) < 0.005  # round() would give 0 every time
    assert num_to_predict(np.array([500]), np.array([0.99]), 0.15, 80).tolist() == [75]
    assert num_to_predict(np.array([600]), np.array([0.0]), 0.15, 80).tolist() == [80]
    assert num_to_predict(np.array([1]), np.array([0.99]), 0.9, 20).tolist() == [1]


def test_all_mask_tokens_when_mask_token_prob_is_one():
    ids, offsets = batch([sequence(["the", "cat", "sat"] * 10, ["on", "the", "mat"] * 10)])
    config = MaskingConfig(masked_lm_prob=0.5, mask_token_prob=1.0, random_token_prob=0.0)
    out = mask_sequences(ids, offsets, np.random.default_rng(1), VOCAB, config)
    pos = out.masked_lm_positions
    assert len(pos) == 20  # min(cap 20, 0.5 * 60)
    assert np.all(np.diff(pos) > 0)
    assert not np.isin(pos, [0, 31, 62]).any()  # never [CLS] or either [SEP]
    assert np.all(out.input_ids[pos] == MASK)
    assert out.masked_lm_ids.tolist() == ids[pos].tolist()
    untouched = np.setdiff1d(np.arange(len(ids)), pos)
    assert out.input_ids[untouched].tolist() == ids[untouched].tolist()
    assert out.masked_lm_offsets.tolist() == [0, 20]


def test_random_replacements_are_never_special_tokens():
    ids, offsets = random_batch(np.random.default_rng(2), 300)
    config = MaskingConfig(mask_token_prob=0.0, random_token_prob=1.0)
    out = mask_sequences(ids, offsets, np.random.default_rng(3), VOCAB, config)
    replaced = out.input_ids[
        np.repeat(offsets[:-1], np.diff(out.masked_lm_offsets)) + out.masked_lm_positions
    ]
    assert len(replaced) > 1000
    assert not np.isin(replaced, list(SPECIAL)).any()
    # Uniform over the pool of 17 ordinary tokens.
    counts = np.bincount(replaced, minlength=len(TOKENS))[VOCAB.random_token_ids]
    assert counts.min() > 0.7 * counts.mean()


def test_unk_and_specials_in_the_text_are_never_chosen():
    ids, offsets = batch([[CLS, UNK, UNK, IDS["cat"], SEP, UNK, IDS["dog"], SEP]] * 200)
    out = mask_sequences(
        ids, offsets, np.random.default_rng(4), VOCAB, MaskingConfig(masked_lm_prob=0.9)
    )
    assert set(out.masked_lm_ids.tolist()) <= {IDS["cat"], IDS["dog"]}


def test_same_seed_same_masks_other_seed_other_masks():
    ids, offsets = random_batch(np.random.default_rng(5), 20)
    config = MaskingConfig()
    a = mask_sequences(ids, offsets, np.random.default_rng(6), VOCAB, config)
    b = mask_sequences(ids, offsets, np.random.default_rng(6), VOCAB, config)
    c = mask_sequences(ids, offsets, np.random.default_rng(7), VOCAB, config)
    assert a.input_ids.tolist() == b.input_ids.tolist()
    assert a.masked_lm_positions.tolist() == b.masked_lm_positions.tolist()
    assert a.masked_lm_positions.tolist() != c.masked_lm_positions.tolist()


def test_rates_on_thousands_of_sequences():
    ids, offsets = random_batch(np.random.default_rng(8), 5000)
    out = mask_sequences(ids, offsets, np.random.default_rng(9), VOCAB, MaskingConfig())
    maskable = int(VOCAB.maskable[ids].sum())
    masked = len(out.masked_lm_ids)
    assert abs(masked / maskable - 0.15) < 0.003
    seq = np.repeat(np.arange(5000), np.diff(out.masked_lm_offsets))
    now = out.input_ids[offsets[seq] + out.masked_lm_positions]
    as_mask = np.mean(now == MASK)
    kept = np.mean(now == out.masked_lm_ids)
    assert abs(as_mask - 0.8) < 0.01
    # A random token equals the original 1 time in 17 here, so "kept" gains a little.
    assert abs(kept - (0.1 + 0.1 / 17)) < 0.01
    assert abs(1 - as_mask - kept - 0.1 * 16 / 17) < 0.01
    # Every position of a sequence is equally likely: first and last words of A alike.
    relative = out.masked_lm_positions
    assert abs(np.mean(relative == 1) - np.mean(relative == 2)) < 0.01


def test_the_cap_holds_per_sequence():
    ids, offsets = batch([sequence(["cat"] * 200, ["dog"] * 200)] * 5)
    out = mask_sequences(
        ids, offsets, np.random.default_rng(0), VOCAB, MaskingConfig(max_predictions_per_seq=7)
    )
    assert np.diff(out.masked_lm_offsets).tolist() == [7] * 5


def test_the_chosen_items_are_those_with_the_smallest_keys_even_after_unlikely_draws():
    # Only keys under a bound are ranked; a sequence whose draws put fewer than its count
    # there must still get its exact smallest keys (here: keys pushed close to 1).
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 140, 400)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    keys = rng.random(int(offsets[-1]))
    for s in (5, 17, 300):
        keys[offsets[s] : offsets[s + 1]] = 1 - keys[offsets[s] : offsets[s + 1]] * 1e-3
    counts = np.minimum(rng.integers(0, 25, len(sizes)), sizes)
    counts[[5, 17, 300]] = np.minimum(20, sizes[[5, 17, 300]])
    items = np.arange(len(keys)) * 3
    expected = []
    for s, n in enumerate(counts.tolist()):
        lo, hi = offsets[s], offsets[s + 1]
        expected += sorted(items[lo:hi][np.argsort(keys[lo:hi])[:n]].tolist())
    assert _smallest_keys(offsets, keys, counts, items).tolist() == expected


def test_tied_keys_still_give_each_sequence_its_count_of_smallest_keys():
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 60, 300)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    keys = rng.integers(0, 4, int(offsets[-1])) / 4.0  # four values: ties everywhere
    counts = np.minimum(rng.integers(0, 20, len(sizes)), sizes)
    items = np.arange(len(keys))
    chosen = _smallest_keys(offsets, keys, counts, items)
    seq = np.searchsorted(offsets, chosen, side="right") - 1
    assert np.bincount(seq, minlength=len(sizes)).tolist() == counts.tolist()
    assert np.all(np.diff(chosen) > 0)
    for s in range(len(sizes)):
        mine = keys[chosen[seq == s]]
        rest = np.setdiff1d(np.arange(offsets[s], offsets[s + 1]), chosen)
        assert len(mine) == 0 or len(rest) == 0 or mine.max() <= keys[rest].min()


def _words(ids: np.ndarray) -> list[list[int]]:
    """Positions of each word (a piece and its '##' continuations) of one sequence."""
    words: list[list[int]] = []
    for i, t in enumerate(ids.tolist()):
        if not VOCAB.maskable[t]:
            continue
        if VOCAB.is_continuation[t] and words and words[-1][-1] == i - 1:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def test_whole_word_masking_masks_every_piece_with_one_choice_per_word():
    rng = np.random.default_rng(10)
    words_a = [["play", "##ing"], ["un", "##believ", "##able"], ["cat"], ["dog", "##ed"]]
    words_b = [["play", "##ed"], ["mat"], ["un", "##believ", "##able"]]
    seqs = []
    for _ in range(2000):
        a = [t for k in rng.integers(0, len(words_a), 8) for t in words_a[k]]
        b = [t for k in rng.integers(0, len(words_b), 6) for t in words_b[k]]
        seqs.append(sequence(a, b))
    ids, offsets = batch(seqs)
    out = mask_sequences(
        ids, offsets, np.random.default_rng(11), VOCAB, MaskingConfig(whole_word_mask=True)
    )
    fates = {"mask": 0, "kept": 0, "random": 0}
    for s in range(len(seqs)):
        seq = ids[offsets[s] : offsets[s + 1]]
        now = out.input_ids[offsets[s] : offsets[s + 1]]
        chosen = set(
            out.masked_lm_positions[
                out.masked_lm_offsets[s] : out.masked_lm_offsets[s + 1]
            ].tolist()
        )
        assert len(chosen) <= 20
        for word in _words(seq):
            hit = [p in chosen for p in word]
            assert all(hit) or not any(hit), "a word is masked whole or not at all"
            if all(hit):
                if all(now[p] == MASK for p in word):
                    fates["mask"] += 1
                elif all(now[p] == seq[p] for p in word):
                    fates["kept"] += 1
                else:
                    assert not any(now[p] == MASK for p in word), "one choice per word"
                    fates["random"] += 1
    total = sum(fates.values())
    assert total > 4000
    assert abs(fates["mask"] / total - 0.8) < 0.02
    assert abs(fates["kept"] / total - 0.1) < 0.02
    maskable = int(VOCAB.maskable[ids].sum())
    assert abs(len(out.masked_lm_ids) / maskable - 0.15) < 0.01


def test_whole_word_masking_counts_pieces_against_the_number_to_predict():
    # A word of 3 pieces and a word of 1: 2 or 3 to predict (0.7 of 4 maskable, rounded).
    # A 3-piece word fits only when 3 remain; a word is never cut to fit.
    ids, offsets = batch([sequence(["un", "##believ", "##able"], ["cat"])] * 400)
    config = MaskingConfig(masked_lm_prob=0.7, whole_word_mask=True)
    out = mask_sequences(ids, offsets, np.random.default_rng(12), VOCAB, config)
    outcomes = {
        tuple(out.masked_lm_positions[out.masked_lm_offsets[s] : out.masked_lm_offsets[s + 1]])
        for s in range(400)
    }
    assert outcomes == {(5,), (1, 2, 3)}


@pytest.mark.parametrize("whole_word", [False, True], ids=["tokens", "whole-words"])
def test_groups_with_their_own_rngs_equal_one_call_per_group(whole_word):
    """Masking many (document, duplicate) groups at once changes neither the result nor what
    each group's rng draws: the next draw after masking is the same too."""
    gen = np.random.default_rng(21)
    sizes = [5, 0, 1, 12, 3, 8]  # a group may be empty
    empty = (np.zeros(0, np.uint16), np.zeros(1, np.int64))
    parts = [random_batch(gen, n) if n else empty for n in sizes]
    parts[2] = batch([sequence([], [])])  # nothing maskable in this group
    ids = np.concatenate([p[0] for p in parts])
    lengths = np.concatenate([np.diff(p[1]) for p in parts])
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    group_offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    config = MaskingConfig(whole_word_mask=whole_word, max_predictions_per_seq=6)
    rngs = [np.random.default_rng(100 + g) for g in range(len(sizes))]
    together = mask_sequence_groups(ids, offsets, group_offsets, rngs, VOCAB, config)
    alone_rngs = [np.random.default_rng(100 + g) for g in range(len(sizes))]
    alone = [
        mask_sequences(p[0], p[1], r, VOCAB, config) for p, r in zip(parts, alone_rngs, strict=True)
    ]
    assert together.input_ids.tolist() == np.concatenate([a.input_ids for a in alone]).tolist()
    for name in ("masked_lm_positions", "masked_lm_ids"):
        assert getattr(together, name).tolist() == [x for a in alone for x in getattr(a, name)]
    counts = [n for a in alone for n in np.diff(a.masked_lm_offsets)]
    assert np.diff(together.masked_lm_offsets).tolist() == counts and sum(counts) > 10
    assert [r.random() for r in rngs] == [r.random() for r in alone_rngs]


@pytest.mark.parametrize("whole_word", [False, True], ids=["tokens", "whole-words"])
@pytest.mark.parametrize("mix", [(0.8, 0.1), (0.0, 1.0), (0.5, 0.0)], ids=str)
def test_the_array_version_equals_the_rule_one_sequence_at_a_time(whole_word, mix):
    """mask_one is the specification; the data stage's mask_sequences, given each sequence's
    rng, gives the same masks and leaves each rng in the same state."""
    gen = np.random.default_rng(7)
    ids, offsets = random_batch(gen, 40)
    config = MaskingConfig(
        whole_word_mask=whole_word,
        max_predictions_per_seq=5,
        mask_token_prob=mix[0],
        random_token_prob=mix[1],
    )
    chosen_total = 0
    for s in range(len(offsets) - 1):
        seq = ids[offsets[s] : offsets[s + 1]]
        rule_rng, array_rng = np.random.default_rng(s), np.random.default_rng(s)
        masked, positions, originals = mask_one(seq, rule_rng, VOCAB, config)
        array = mask_sequences(seq, np.array([0, len(seq)]), array_rng, VOCAB, config)
        assert masked.tolist() == array.input_ids.tolist()
        assert positions.tolist() == array.masked_lm_positions.tolist()
        assert originals.tolist() == array.masked_lm_ids.tolist()
        assert rule_rng.random() == array_rng.random()
        chosen_total += len(positions)
    assert chosen_total > 40  # the sequences were long enough to mask something
