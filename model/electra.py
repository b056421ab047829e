"""ELECTRA (Clark et al., 2020): replaced-token detection, and its Hugging Face form.

A small generator (a BERT encoder with a masked-LM head) predicts the tokens at the masked
slots of a batch; its samples replace them. The discriminator (a BERT encoder with one logit per
token) tells, for every real token, whether it is the original. The two share their token,
position and segment embeddings (and the embeddings' LayerNorm); each projects them to its own
width when that differs. The loss is the generator's MLM loss plus 50 times the discriminator's
mean binary cross-entropy (the paper's lambda). A sampled token equal to the original counts as
original, as in the paper. The generator gets no gradient through its samples.

The discriminator is the model one fine-tunes: it is saved as `ElectraForPreTraining`, the
generator beside it as `ElectraForMaskedLM` (model/hf_checkpoint.py writes both).
Shapes: B batch, T tokens, P masked slots, V vocabulary, H / Hg discriminator / generator width,
E embedding width.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.bert import (
    ACTIVATIONS,
    IGNORE_INDEX,
    BertModel,
    Unpadding,
    gather_positions,
    init_weights,
)
from model.config import BertConfig

# The paper's weight of the discriminator's loss (lambda, section 3).
DISCRIMINATOR_WEIGHT = 50.0
# The paper's best generator width for its small and base models: 1/4 to 1/2 of the
# discriminator's (section 3.2, Figure 3); 1/4 is its ELECTRA-Small and -Base choice.
GENERATOR_WIDTH = 0.25


def generator_config(discriminator: BertConfig, width: float = GENERATOR_WIDTH) -> BertConfig:
    """The generator's config: the discriminator's depth, `width` times its hidden size, heads
    and feed-forward size, over embeddings as wide as the discriminator's (shared)."""
    if not 0.0 < width <= 1.0:
        raise ValueError(f"generator width must be in (0, 1], got {width}")
    hidden = max(1, round(discriminator.hidden_size * width))
    heads = max(1, round(discriminator.num_attention_heads * width))
    while hidden % heads:
        heads -= 1
    return dataclasses.replace(
        discriminator,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=max(1, round(discriminator.intermediate_size * width)),
        # the shared embeddings' width; projected to the generator's only when they differ
        embedding_size=None
        if hidden == discriminator.embedding_width
        else discriminator.embedding_width,
        share_layers=False,
    )


class GeneratorHead(nn.Module):
    """Transform Hg -> E, GELU, LayerNorm, then the decoder tied to the word embeddings."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        E = config.embedding_width
        self.transform = nn.Linear(config.hidden_size, E)
        self.activation = nn.GELU()  # ELECTRA's generator head uses GELU whatever hidden_act is
        self.layer_norm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """(..., Hg) -> vocabulary logits (..., V); word_embeddings is (V, E)."""
        h = self.layer_norm(self.activation(self.transform(hidden)))
        return F.linear(h, word_embeddings, self.decoder_bias)


class DiscriminatorHead(nn.Module):
    """Dense H -> H, activation, then one logit per token: replaced (> 0) or original."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]()
        self.prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., H) -> (...) logits."""
        return self.prediction(self.activation(self.dense(hidden))).squeeze(-1)


class ElectraLoss(NamedTuple):
    """What ElectraForPreTraining.pretraining_loss returns: () tensors. The first six fields
    are BERT's PreTrainingLoss's, so that the trainer sums either: mlm_* are the generator's,
    and nsp_* are zero (ELECTRA has no sentence task); rtd_* are the discriminator's
    replaced-token detection."""

    loss: Tensor  # mlm_loss + discriminator_weight * rtd_loss
    mlm_loss: Tensor  # the generator's mean cross-entropy over the real masked slots
    nsp_loss: Tensor  # zero
    mlm_correct: Tensor  # long: masked tokens the generator predicted right
    mlm_count: Tensor  # long: real masked slots
    nsp_correct: Tensor  # long zero
    rtd_loss: Tensor  # the discriminator's mean binary cross-entropy over the real tokens
    rtd_correct: Tensor  # long: real tokens the discriminator classified right
    rtd_count: Tensor  # long: real tokens
    replaced_count: Tensor  # long: tokens the samples changed


class ElectraOutput(NamedTuple):
    """What ElectraForPreTraining returns for fill-mask and inspection (no sampling)."""

    mlm_logits: Tensor  # the generator's (B, P, V) at masked_lm_positions, else (B, T, V)
    replaced_logits: Tensor  # the discriminator's (B, T) on the input as given


class ElectraForPreTraining(nn.Module):
    """Generator and discriminator with shared embeddings, and ELECTRA's loss."""

    def __init__(
        self,
        config: BertConfig,
        generator: BertConfig | None = None,
        *,
        discriminator_weight: float = DISCRIMINATOR_WEIGHT,
    ) -> None:
        super().__init__()
        self.discriminator_weight = discriminator_weight
        generator = generator_config(config) if generator is None else generator
        if generator.embedding_width != config.embedding_width:
            raise ValueError(
                f"the generator's embeddings ({generator.embedding_width}) must be as wide as "
                f"the discriminator's ({config.embedding_width}): they are shared"
            )
        self.config, self.generator_config = config, generator
        self.discriminator = BertModel(config)
        self.discriminator_head = DiscriminatorHead(config)
        self.generator = BertModel(generator)
        self.generator_head = GeneratorHead(generator)
        for head, std in ((self.discriminator_head, config.initializer_range),
                          (self.generator_head, generator.initializer_range)):  # fmt: skip
            head.apply(partial(init_weights, std=std))
        shared, own = self.discriminator.embeddings, self.generator.embeddings
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings",
                     "layer_norm"):  # fmt: skip
            setattr(own, name, getattr(shared, name))
        # ELECTRA has no pooler: ours are frozen, so that they count in no parameter total,
        # no optimizer and no DDP bucket (which would wait for their gradients).
        for bert in (self.discriminator, self.generator):
            bert.pooler.requires_grad_(False)

    @property
    def objective_weights(self) -> dict[str, float]:
        """The weight of the discriminator's loss, as model.pretrain's evaluation reads it."""
        return {"rtd": self.discriminator_weight}

    @property
    def word_embeddings(self) -> Tensor:
        return self.discriminator.embeddings.word_embeddings.weight  # (V, E)

    def generator_logits(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """The generator's vocabulary logits (B, T, V) at every position."""
        hidden = self.generator(input_ids, token_type_ids, attention_mask).last_hidden_state
        return self.generator_head(hidden, self.word_embeddings)

    def discriminator_logits(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """The discriminator's replaced-token logits (B, T)."""
        hidden = self.discriminator(input_ids, token_type_ids, attention_mask).last_hidden_state
        return self.discriminator_head(hidden)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        masked_lm_positions: Tensor | None = None,
    ) -> ElectraOutput:
        """The generator's logits (at the masked positions, when given) and the
        discriminator's on the same input: what fill-mask probes and inspection read."""
        g_hidden = self.generator(input_ids, token_type_ids, attention_mask).last_hidden_state
        if masked_lm_positions is not None:
            g_hidden = gather_positions(g_hidden, masked_lm_positions)  # (B, P, Hg)
        return ElectraOutput(
            self.generator_head(g_hidden, self.word_embeddings),
            self.discriminator_logits(input_ids, token_type_ids, attention_mask),
        )

    def pretraining_loss(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor,
        masked_lm_positions: Tensor,
        masked_lm_labels: Tensor,
        next_sentence_label: Tensor | None = None,
        unpadding: Unpadding | None = None,
        nsp: bool = False,
        generator: torch.Generator | None = None,
    ) -> ElectraLoss:
        """ELECTRA's loss on a masked batch (B, T) with (B, P) masked slots; static shapes
        (no host sync, compilable), with BertForPreTraining.pretraining_loss's arguments.

        Slots labelled IGNORE_INDEX must point at a position no real slot uses (the data's
        point at 0, [CLS]). `next_sentence_label` is not used and `nsp` must be False.
        `generator` (a torch.Generator on the batch's device) draws the samples; without
        it, torch's global generator does, which the trainer seeds per micro-batch.
        With `unpadding` both encoders skip the padding tokens, as BERT's does.
        """
        if nsp:
            raise ValueError("ELECTRA has no sentence task: call with nsp=False")
        real_slot = masked_lm_labels != IGNORE_INDEX  # (B, P)
        g_hidden = self.generator(
            input_ids, token_type_ids, attention_mask, unpadding=unpadding
        ).last_hidden_state  # (B, T, Hg) or (R, Hg)
        if unpadding is None:
            at_slots = gather_positions(g_hidden, masked_lm_positions)  # (B, P, Hg)
        else:
            at_slots = unpadding.gather(g_hidden, masked_lm_positions)  # (B, P, Hg)
        logits = self.generator_head(at_slots, self.word_embeddings).float()  # (B, P, V)
        mlm_count = real_slot.sum()
        mlm_loss = F.cross_entropy(
            logits.flatten(0, 1), masked_lm_labels.flatten(), ignore_index=IGNORE_INDEX,
            reduction="sum",
        ) / mlm_count.clamp(min=1)  # fmt: skip
        mlm_correct = ((logits.argmax(-1) == masked_lm_labels) & real_slot).sum()

        with torch.no_grad():  # sample from the generator: the discriminator's input
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-9, 1 - 1e-9)))
            sampled = (logits + gumbel).argmax(-1)  # (B, P)
            at_positions = input_ids.gather(1, masked_lm_positions)  # (B, P)
            labels = torch.where(real_slot, masked_lm_labels, at_positions)
            original = input_ids.scatter(1, masked_lm_positions, labels)  # (B, T)
            corrupted = input_ids.scatter(
                1, masked_lm_positions, torch.where(real_slot, sampled, at_positions)
            )
            replaced = (corrupted != original) & attention_mask.bool()  # (B, T)

        d_hidden = self.discriminator(
            corrupted, token_type_ids, attention_mask, unpadding=unpadding
        ).last_hidden_state
        d_logits = self.discriminator_head(d_hidden).float()  # (B, T) or (R,)
        if unpadding is None:
            real = attention_mask.bool()  # (B, T)
            target = replaced
        else:  # every row is a real token
            target = unpadding.unpad(replaced)  # (R,)
            real = torch.ones_like(target)
        rtd_count = real.sum()
        rtd_loss = (
            F.binary_cross_entropy_with_logits(d_logits, target.float(), reduction="none") * real
        ).sum() / rtd_count.clamp(min=1)
        rtd_correct = (((d_logits > 0) == target) & real).sum()
        zero = mlm_loss.new_zeros(())
        return ElectraLoss(
            mlm_loss + self.discriminator_weight * rtd_loss,
            mlm_loss,
            zero,
            mlm_correct,
            mlm_count,
            torch.zeros_like(mlm_count),
            rtd_loss,
            rtd_correct,
            rtd_count,
            replaced.sum(),
        )
