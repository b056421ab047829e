"""SpanBERT's span-boundary objective (SBO; Joshi et al., 2019, section 3.2).

Each token x_i of a masked span x_s..x_e is predicted from the encoder's vectors at the span's
two boundary tokens, x_{s-1} and x_{e+1} (the unmasked tokens just outside it), and a learned
embedding of its place inside the span, p_{i-s} (0-based here, 1-based in the paper):
    h0 = [x_{s-1}; x_{e+1}; p_{i-s}]                (3H)
    h1 = LayerNorm(GELU(W1 h0 + b1))                (H)
    y  = LayerNorm(GELU(W2 h1 + b2))                (E)
y goes through the decoder tied to the word embeddings, with a bias of its own, as the
masked-LM head does. The pretraining loss is the MLM loss plus this one.

The data records masked positions, not span ids, so a span here is a maximal run of consecutive
masked positions: two spans drawn side by side count as one, with the outer boundaries of both.
A slot counts only when both boundaries are real tokens of its sequence ([CLS] and [SEP] are
real); a run that ends at the last real token, or just before padding, has no right boundary.
Everything keeps static shapes (no host sync, no nonzero()), for torch.compile.

SpanBertForPreTraining is BERT's pretraining model with this head beside the MLM head
(objective.span_boundary in model.pretrain). transformers has no class for the head: exports
are BERT's, the head's weights in SPAN_BOUNDARY_FILE beside them, which resumed runs read.

Shapes: B batch, T sequence length, P masked slots per sequence, H hidden size, E embedding
width (H unless factorised, ALBERT), V vocabulary size, R real tokens in the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from model.bert import (
    IGNORE_INDEX,
    BertForPreTraining,
    Unpadding,
    gather_positions,
    init_weights,
)
from model.config import BertConfig

# Relative-position embeddings of the head: places in a span at or past the last one share it.
# Spans are at most 10 words (bertdata/masking.py), rarely more than 64 word pieces even when
# neighbouring spans merge.
MAX_SPAN_TOKENS = 64


class SpanSlots(NamedTuple):
    """Where each masked slot's span boundaries are; (B, P) each.

    left, right and offset are in range at every slot (safe to gather), but mean something only
    where valid is True.
    """

    left: Tensor  # long: position of the unmasked token just before the slot's span
    right: Tensor  # long: position of the unmasked token just after it
    offset: Tensor  # long: the slot's place in its span, 0-based, at most max_span_tokens - 1
    valid: Tensor  # bool: a real slot whose span has both boundaries among the real tokens


def span_slots(
    masked_lm_positions: Tensor,
    masked_lm_labels: Tensor,
    attention_mask: Tensor,
    max_span_tokens: int = MAX_SPAN_TOKENS,
) -> SpanSlots:
    """Span boundaries of the (B, P) masked slots of a (B, T) batch.

    Spans are the maximal runs of consecutive masked positions of a sequence; slots labelled
    IGNORE_INDEX mask nothing and are never valid. The order of the slots does not matter.
    """
    B, T = attention_mask.shape
    device = masked_lm_positions.device
    real_token = attention_mask.bool()  # (B, T)
    positions = masked_lm_positions.clamp(0, T - 1)  # (B, P)
    real_slot = masked_lm_labels != IGNORE_INDEX  # (B, P)
    # Add rather than write: several unused slots may point at the same position.
    hits = torch.zeros(B, T, dtype=torch.long, device=device)
    hits = hits.scatter_add(1, positions, real_slot.long())  # (B, T)
    masked = hits > 0  # (B, T)

    t = torch.arange(T, device=device).expand(B, T)  # (B, T)
    # The last unmasked position at or before t (-1 if none), the first at or after it (T).
    before = torch.where(masked, -1, t).cummax(dim=1).values  # (B, T)
    after = torch.where(masked, -T, -t).flip(1).cummax(dim=1).values.flip(1).neg()  # (B, T)
    left = before.gather(1, positions)  # (B, P)
    right = after.gather(1, positions)  # (B, P)

    inside = (left >= 0) & (right < T)  # (B, P)
    left, right = left.clamp(0, T - 1), right.clamp(0, T - 1)
    valid = (
        real_slot
        & real_token.gather(1, positions)  # the slot itself is a real token
        & inside
        & real_token.gather(1, right)  # the right boundary is not padding
    )
    offset = (positions - left - 1).clamp(0, max_span_tokens - 1)  # (B, P)
    return SpanSlots(left, right, offset, valid)


class SpanBoundaryHead(nn.Module):
    """The SBO's two-layer feed-forward network, then the decoder tied to the word embeddings.

    W2 maps to the embeddings' width E (H in BERT), which the tied decoder (V, E) needs.
    """

    def __init__(self, config: BertConfig, max_span_tokens: int = MAX_SPAN_TOKENS) -> None:
        super().__init__()
        H, E, eps = config.hidden_size, config.embedding_width, config.layer_norm_eps
        self.max_span_tokens = max_span_tokens
        self.position_embeddings = nn.Embedding(max_span_tokens, H)
        self.dense1 = nn.Linear(3 * H, H)
        self.layer_norm1 = nn.LayerNorm(H, eps=eps)
        self.dense2 = nn.Linear(H, E)
        self.layer_norm2 = nn.LayerNorm(E, eps=eps)
        self.activation = nn.GELU()  # the paper's GeLU, whatever the encoder's hidden_act is
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self, left: Tensor, right: Tensor, offset: Tensor, word_embeddings: Tensor
    ) -> Tensor:
        """Boundary vectors (B, P, H), (B, P, H) and offsets (B, P) -> logits (B, P, V);
        word_embeddings is (V, E)."""
        position = self.position_embeddings(offset.clamp(0, self.max_span_tokens - 1))  # (B, P, H)
        h = torch.cat([left, right, position], dim=-1)  # (B, P, 3H)
        h = self.layer_norm1(self.activation(self.dense1(h)))  # (B, P, H)
        h = self.layer_norm2(self.activation(self.dense2(h)))  # (B, P, E)
        return F.linear(h, word_embeddings, self.decoder_bias)  # (B, P, V)


class SpanBoundaryLoss(NamedTuple):
    """What span_boundary_loss returns: () tensors."""

    loss: Tensor  # float32: mean cross-entropy over the valid slots (0 when there are none)
    correct: Tensor  # long: valid slots whose token was predicted right
    count: Tensor  # long: valid slots


def span_boundary_loss(
    head: SpanBoundaryHead,
    gather: Callable[[Tensor], Tensor],
    slots: SpanSlots,
    masked_lm_labels: Tensor,
    word_embeddings: Tensor,
) -> SpanBoundaryLoss:
    """The SBO loss over the (B, P) slots, with static shapes.

    `gather(positions (B, P')) -> (B, P', H)`: the encoder's vectors at positions of the padded
    batch (a gather over (B, T, H) outputs, or Unpadding.gather over (R, H) ones). The head runs
    on all B x P slots; the invalid ones add nothing.
    """
    P = slots.left.size(1)
    boundaries = gather(torch.cat([slots.left, slots.right], dim=1))  # (B, 2P, H)
    left, right = boundaries.split(P, dim=1)  # 2 x (B, P, H)
    logits = head(left, right, slots.offset, word_embeddings).flatten(0, 1)  # (B*P, V)
    valid = slots.valid.flatten()  # (B*P,)
    labels = torch.where(valid, masked_lm_labels.flatten(), IGNORE_INDEX)  # (B*P,)
    count = valid.sum()
    loss = F.cross_entropy(
        logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum"
    ) / count.clamp(min=1)
    correct = ((logits.argmax(dim=-1) == labels) & valid).sum()
    return SpanBoundaryLoss(loss, correct, count)


# The head's weights beside a checkpoint's transformers files (which have no place for them):
# a resumed run needs them; fine-tuning and transformers ignore the file.
SPAN_BOUNDARY_FILE = "span_boundary.safetensors"


class SpanBertLoss(NamedTuple):
    """What SpanBertForPreTraining.pretraining_loss returns: () tensors. The first six fields
    are BERT's PreTrainingLoss's (loss now with the SBO loss added); then the SBO's."""

    loss: Tensor  # mlm_loss + sbo_loss (+ nsp_loss when NSP counts)
    mlm_loss: Tensor
    nsp_loss: Tensor
    mlm_correct: Tensor
    mlm_count: Tensor
    nsp_correct: Tensor
    sbo_loss: Tensor  # mean cross-entropy over the slots with both boundaries
    sbo_correct: Tensor  # long
    sbo_count: Tensor  # long


class SpanBertForPreTraining(BertForPreTraining):
    """BERT's pretraining model with SpanBERT's span-boundary head beside the MLM head: the
    encoder, heads and export are BERT's; the head only trains."""

    objective_weights = {"sbo": 1.0}  # read only: loss = BERT's + SBO's

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.span_boundary_head = SpanBoundaryHead(config)

    def pretraining_loss(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor,
        masked_lm_positions: Tensor,
        masked_lm_labels: Tensor,
        next_sentence_label: Tensor,
        unpadding: Unpadding | None = None,
        nsp: bool = True,
    ) -> SpanBertLoss:
        """BERT's loss (BertForPreTraining.pretraining_loss) plus the SBO loss, from one pass
        of the encoder; static shapes."""
        sequence_output, pooled_output, _ = self.bert(
            input_ids, token_type_ids, attention_mask, unpadding=unpadding
        )
        bert = self.heads_loss(sequence_output, pooled_output, masked_lm_positions,
                               masked_lm_labels, next_sentence_label, unpadding, nsp)  # fmt: skip
        if unpadding is None:
            gather = partial(gather_positions, sequence_output)
        else:
            gather = partial(unpadding.gather, sequence_output)
        slots = span_slots(masked_lm_positions, masked_lm_labels, attention_mask)
        word_embeddings = self.bert.embeddings.word_embeddings.weight  # (V, E)
        sbo = span_boundary_loss(
            self.span_boundary_head, gather, slots, masked_lm_labels, word_embeddings
        )
        return SpanBertLoss(bert.loss + sbo.loss, *bert[1:], sbo.loss, sbo.correct, sbo.count)


def span_boundary_bytes(model: SpanBertForPreTraining) -> bytes:
    """The head's weights as a safetensors file's bytes (SPAN_BOUNDARY_FILE)."""
    state = model.span_boundary_head.state_dict()
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()})


def load_span_boundary(model: SpanBertForPreTraining, directory: str | os.PathLike[str]) -> bool:
    """Load the head from `directory`/SPAN_BOUNDARY_FILE; False (the head left as it is) when
    the directory has none, e.g. a BERT export to go on from with the SBO."""
    path = Path(directory) / SPAN_BOUNDARY_FILE
    if not path.is_file():
        return False
    model.span_boundary_head.load_state_dict(load_file(path))
    return True
