"""SpanBERT's span-boundary objective: slots against a plain reference, the head, the loss."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from model.bert import IGNORE_INDEX, BertModel, Unpadding
from model.config import BertConfig, bert_tiny
from model.span_boundary import (
    MAX_SPAN_TOKENS,
    SpanBoundaryHead,
    SpanSlots,
    span_boundary_loss,
    span_slots,
)

PAD, CLS, SEP, MASK, FIRST_WORD = 0, 2, 3, 4, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def padded_gather(sequence_output: Tensor):
    """gather(positions (B, P)) -> (B, P, H) over (B, T, H) encoder outputs."""

    def gather(positions: Tensor) -> Tensor:
        index = positions.unsqueeze(-1).expand(-1, -1, sequence_output.size(-1))
        return sequence_output.gather(1, index)

    return gather


def reference_slots(positions, labels, attention_mask, max_span_tokens=MAX_SPAN_TOKENS):
    """Plain Python: per slot (left, right, offset) where its span has real boundaries, else
    None."""
    result = []
    for pos_row, label_row, mask_row in zip(positions, labels, attention_mask, strict=True):
        length = sum(mask_row)
        masked = {p for p, y in zip(pos_row, label_row, strict=True) if y != IGNORE_INDEX}
        row = []
        for p, y in zip(pos_row, label_row, strict=True):
            if y == IGNORE_INDEX:
                row.append(None)
                continue
            first = p
            while first - 1 in masked:
                first -= 1
            last = p
            while last + 1 in masked:
                last += 1
            left, right = first - 1, last + 1
            if left < 0 or right >= length:
                row.append(None)
            else:
                row.append((left, right, min(p - first, max_span_tokens - 1)))
        result.append(row)
    return result


def random_batch(rng: random.Random):
    """Random real lengths, random masked runs (some at either end of the real tokens), unused and
    IGNORE_INDEX slots, shuffled slot order; as (positions, labels, attention_mask) lists."""
    B, T = rng.randint(1, 4), rng.randint(2, 24)
    lengths = [rng.randint(1, T) for _ in range(B)]
    rows = []
    for length in lengths:
        rate = rng.choice([0.1, 0.3, 0.6, 0.9])
        # [CLS] (0) is never masked in the data; masking it here too checks a span with no left
        first = rng.choice([0, 1, 1, 1])
        slots = [
            (p, rng.randint(FIRST_WORD, 50)) for p in range(first, length) if rng.random() < rate
        ]
        # unused slots point at [CLS]; a few IGNORE_INDEX slots point at real tokens
        slots += [(0, IGNORE_INDEX)] * rng.randint(0, 3)
        slots += [(rng.randrange(length), IGNORE_INDEX) for _ in range(rng.randint(0, 2))]
        rng.shuffle(slots)
        rows.append(slots)
    P = max(1, *(len(r) for r in rows))
    positions = [[p for p, _ in r] + [0] * (P - len(r)) for r in rows]
    labels = [[y for _, y in r] + [IGNORE_INDEX] * (P - len(r)) for r in rows]
    attention_mask = [[1] * n + [0] * (T - n) for n in lengths]
    return positions, labels, attention_mask


def slots_of(positions, labels, attention_mask, **kwargs) -> SpanSlots:
    return span_slots(
        torch.tensor(positions), torch.tensor(labels), torch.tensor(attention_mask), **kwargs
    )


@pytest.mark.parametrize("max_span_tokens", [MAX_SPAN_TOKENS, 3])
def test_span_slots_match_a_plain_reference_on_random_masks(max_span_tokens):
    rng = random.Random(max_span_tokens)
    valid_seen = invalid_real_seen = 0
    for _ in range(300):
        positions, labels, attention_mask = random_batch(rng)
        slots = slots_of(positions, labels, attention_mask, max_span_tokens=max_span_tokens)
        expected = reference_slots(positions, labels, attention_mask, max_span_tokens)
        T = len(attention_mask[0])
        for field in slots:
            assert field.shape == (len(positions), len(positions[0]))
        for name in ("left", "right", "offset"):
            assert getattr(slots, name).dtype == torch.long
        # every value is safe to gather, even at invalid slots
        assert slots.left.min() >= 0 and slots.right.max() < T
        for b, row in enumerate(expected):
            for p, want in enumerate(row):
                assert slots.valid[b, p].item() == (want is not None), (positions, labels, b, p)
                if want is not None:
                    got = (slots.left[b, p].item(), slots.right[b, p].item())
                    assert (*got, slots.offset[b, p].item()) == want
                    valid_seen += 1
                elif labels[b][p] != IGNORE_INDEX:
                    invalid_real_seen += 1
    # the random masks exercised both kinds of real slot
    assert valid_seen > 500 and invalid_real_seen > 100


def test_offsets_count_from_the_first_token_and_adjacent_spans_merge():
    # [CLS] a b c d e f [SEP] [PAD] [PAD]; masked: 2,3 and 4,5 (two spans drawn side by side,
    # which the data cannot tell from one) and 7, the last real token (8 is padding).
    attention_mask = [[1] * 8 + [0] * 2]
    positions = [[5, 2, 7, 4, 3, 0]]
    labels = [[15, 12, 17, 14, 13, IGNORE_INDEX]]
    slots = slots_of(positions, labels, attention_mask)
    assert slots.valid.tolist() == [[True, True, False, True, True, False]]
    valid = slots.valid[0]
    assert slots.left[0][valid].tolist() == [1, 1, 1, 1]
    assert slots.right[0][valid].tolist() == [6, 6, 6, 6]
    assert slots.offset[0][valid].tolist() == [3, 0, 2, 1]


def test_a_span_after_cls_uses_cls_and_one_before_sep_uses_sep():
    # [CLS] x x [SEP] y [SEP]: [CLS] and [SEP] are real tokens, so both spans count.
    slots = slots_of([[1, 2, 4]], [[10, 11, 12]], [[1, 1, 1, 1, 1, 1]])
    assert slots.valid.tolist() == [[True, True, True]]
    assert slots.left.tolist() == [[0, 0, 3]]
    assert slots.right.tolist() == [[3, 3, 5]]


def small_config(**overrides) -> BertConfig:
    """H 32, 2 layers, no dropout."""
    sizes = dict(vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return bert_tiny(**{**sizes, **dropout, **overrides})


@pytest.mark.parametrize("embedding_size", [None, 16])
def test_head_gives_vocabulary_logits_for_bert_and_albert_widths(embedding_size):
    config = small_config(embedding_size=embedding_size)
    head = SpanBoundaryHead(config)
    B, P, H, E, V = 3, 5, config.hidden_size, config.embedding_width, config.vocab_size
    left, right = torch.randn(B, P, H), torch.randn(B, P, H)
    offset = torch.randint(0, 2 * MAX_SPAN_TOKENS, (B, P))  # past the table: clipped
    logits = head(left, right, offset, torch.randn(V, E))
    assert logits.shape == (B, P, V)
    assert torch.isfinite(logits).all()
    assert head.dense2.out_features == E


def random_case(seed: int):
    """A batch with padding and masked runs, encoder-like outputs, head and embeddings."""
    torch.manual_seed(seed)
    config = small_config()
    positions = [[2, 3, 6, 0], [1, 4, 5, 7], [3, 0, 0, 0]]
    labels = [[7, 8, 9, IGNORE_INDEX], [10, 11, 12, 13], [14, IGNORE_INDEX, IGNORE_INDEX, -100]]
    attention_mask = [[1] * 9, [1] * 8 + [0], [1] * 5 + [0] * 4]
    head = SpanBoundaryHead(config)
    hidden = torch.randn(3, 9, config.hidden_size, requires_grad=True)
    word_embeddings = torch.randn(config.vocab_size, config.embedding_width, requires_grad=True)
    return head, hidden, word_embeddings, positions, labels, attention_mask


def test_loss_is_the_cross_entropy_over_the_valid_slots():
    head, hidden, word_embeddings, positions, labels, attention_mask = random_case(0)
    slots = slots_of(positions, labels, attention_mask)
    out = span_boundary_loss(
        head, padded_gather(hidden), slots, torch.tensor(labels), word_embeddings
    )

    expected = reference_slots(positions, labels, attention_mask)
    losses, correct = [], 0
    for b, row in enumerate(expected):
        for p, want in enumerate(row):
            if want is None:
                continue
            left, right, offset = want
            logits = head(hidden[b, left], hidden[b, right], torch.tensor(offset), word_embeddings)
            losses.append(-F.log_softmax(logits, dim=-1)[labels[b][p]])
            correct += int(logits.argmax() == labels[b][p])
    # valid: 2, 3, 6 (row 0); 1, 4, 5 (row 1); 3 (row 2). Row 1's 7 is its last real token.
    assert len(losses) == out.count.item() == slots.valid.sum().item() == 7
    torch.testing.assert_close(out.loss, torch.stack(losses).mean())
    assert out.correct.item() == correct
    assert out.loss.dtype == torch.float32 and out.count.dtype == torch.long


def test_loss_is_zero_not_nan_when_no_slot_is_valid():
    head, hidden, word_embeddings, positions, _, attention_mask = random_case(1)
    labels = torch.full((3, 4), IGNORE_INDEX)
    slots = slots_of(positions, labels.tolist(), attention_mask)
    out = span_boundary_loss(head, padded_gather(hidden), slots, labels, word_embeddings)
    assert out.loss.item() == 0.0 and out.count.item() == 0 and out.correct.item() == 0
    out.loss.backward()
    assert torch.isfinite(hidden.grad).all() and not hidden.grad.any()


def test_gradients_reach_the_head_and_only_the_boundary_tokens():
    head, hidden, word_embeddings, positions, labels, attention_mask = random_case(2)
    slots = slots_of(positions, labels, attention_mask)
    span_boundary_loss(
        head, padded_gather(hidden), slots, torch.tensor(labels), word_embeddings
    ).loss.backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert word_embeddings.grad.abs().sum() > 0
    touched = hidden.grad.abs().sum(-1) > 0  # (B, T)
    boundaries = torch.zeros_like(touched)
    rows = torch.arange(3).unsqueeze(1).expand_as(slots.valid)
    for side in (slots.left, slots.right):
        boundaries[rows[slots.valid], side[slots.valid]] = True
    assert boundaries.any()
    assert torch.equal(touched, boundaries)  # the span's own tokens get nothing from the SBO


def test_unpadded_encoder_gives_the_padded_loss():
    torch.manual_seed(3)
    config = small_config()
    model, head = BertModel(config).eval(), SpanBoundaryHead(config)
    _, _, _, positions, labels, attention_mask = random_case(3)
    attention_mask = torch.tensor(attention_mask)
    input_ids = torch.randint(FIRST_WORD, config.vocab_size, attention_mask.shape)
    input_ids = input_ids * attention_mask
    slots = slots_of(positions, labels, attention_mask.tolist())
    word_embeddings = model.embeddings.word_embeddings.weight
    labels = torch.tensor(labels)

    padded = model(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    unpadding = Unpadding.from_attention_mask(attention_mask)
    real = model(input_ids, attention_mask=attention_mask, unpadding=unpadding).last_hidden_state

    def unpadded_gather(positions: Tensor) -> Tensor:
        return unpadding.gather(real, positions)

    want = span_boundary_loss(head, padded_gather(padded), slots, labels, word_embeddings)
    got = span_boundary_loss(head, unpadded_gather, slots, labels, word_embeddings)
    assert real.dim() == 2 and want.count.item() == 7
    torch.testing.assert_close(got.loss, want.loss)
    assert got.correct.item() == want.correct.item() and got.count.item() == want.count.item()


def test_slots_and_loss_trace_as_one_static_graph():
    head, hidden, word_embeddings, positions, labels, attention_mask = random_case(4)
    labels, positions = torch.tensor(labels), torch.tensor(positions)
    attention_mask = torch.tensor(attention_mask)

    def sbo(hidden, positions, labels, attention_mask):
        slots = span_slots(positions, labels, attention_mask)
        return span_boundary_loss(head, padded_gather(hidden), slots, labels, word_embeddings)

    eager = sbo(hidden, positions, labels, attention_mask)
    # fullgraph: a host sync (.item()) or a data-dependent shape (nonzero) would raise here
    traced = torch.compile(sbo, backend="eager", fullgraph=True, dynamic=False)
    out = traced(hidden, positions, labels, attention_mask)
    torch.testing.assert_close(out.loss, eager.loss)
    assert out.count.item() == eager.count.item()


# The learning test: words 5..5+WORDS-1; one span per sequence whose tokens copy its left
# boundary at even offsets and its right boundary at odd ones, so that the boundaries and the
# offset determine every token and nothing else in the sequence does.
WORDS, SEQ, MAX_SPAN = 10, 16, 3


def uniform_int(low: int, high: Tensor, generator: torch.Generator) -> Tensor:
    """One integer in [low, high[b]) per row b."""
    return low + (torch.rand(high.shape, generator=generator) * (high - low)).long()


def boundary_copy_batch(batch_size: int, generator: torch.Generator):
    """(input_ids, attention_mask, masked_lm_positions, masked_lm_labels) of the toy task."""
    B, T = batch_size, SEQ
    n = torch.randint(8, T - 1, (B,), generator=generator)  # words 1..n, [SEP] at n + 1
    length = torch.randint(1, MAX_SPAN + 1, (B,), generator=generator)
    start = uniform_int(2, n - length + 1, generator)  # left boundary a word, right one too
    tokens = torch.randint(FIRST_WORD, FIRST_WORD + WORDS, (B, T), generator=generator)
    rows = torch.arange(B)
    left, right = tokens[rows, start - 1], tokens[rows, start + length]
    k = torch.arange(MAX_SPAN).expand(B, MAX_SPAN)  # place in the span
    used = k < length.unsqueeze(1)  # (B, MAX_SPAN)
    positions = torch.where(used, start.unsqueeze(1) + k, 0)
    labels = torch.where(k % 2 == 0, left.unsqueeze(1), right.unsqueeze(1))
    labels = torch.where(used, labels, IGNORE_INDEX)
    input_ids = tokens.clone()
    input_ids[rows.unsqueeze(1).expand_as(used)[used], positions[used]] = MASK
    t = torch.arange(T).expand(B, T)
    input_ids[:, 0] = CLS
    input_ids[t == (n + 1).unsqueeze(1)] = SEP
    attention_mask = (t <= (n + 1).unsqueeze(1)).long()
    return input_ids * attention_mask, attention_mask, positions, labels


def test_encoder_and_head_learn_tokens_from_their_span_boundaries():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = small_config(vocab_size=FIRST_WORD + WORDS, max_position_embeddings=SEQ)
    model, head = BertModel(config), SpanBoundaryHead(config, max_span_tokens=8)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3e-3)

    def sbo(batch):
        input_ids, attention_mask, positions, labels = batch
        hidden = model(input_ids, attention_mask=attention_mask).last_hidden_state
        slots = span_slots(positions, labels, attention_mask)
        word_embeddings = model.embeddings.word_embeddings.weight
        return span_boundary_loss(head, padded_gather(hidden), slots, labels, word_embeddings)

    held_out = boundary_copy_batch(256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = sbo(held_out)
    for _ in range(300):
        loss = sbo(boundary_copy_batch(32, generator)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = sbo(held_out)

    labels = held_out[3][held_out[3] != IGNORE_INDEX]
    baseline = labels.bincount().max().item() / labels.numel()  # always the commonest word
    accuracy = after.correct.item() / after.count.item()
    assert after.count.item() == labels.numel()  # every toy span has real boundaries
    assert after.loss.item() < 0.25 * before.loss.item()
    assert accuracy > max(0.9, baseline + 0.5)
