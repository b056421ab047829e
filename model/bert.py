"""BERT (Devlin et al., 2018): a post-LayerNorm Transformer encoder with MLM and NSP heads.

Shapes: B batch, T sequence length, H hidden size, nh heads, hs head size, I intermediate size,
V vocabulary size, P masked slots per sequence, N real masked tokens in the batch,
R real (not padding) tokens in the batch.
The file is single-device and plain; compile, autocast and data parallelism are applied outside.

For training, `Unpadding` lets every layer but attention run on the R real tokens only, and
`BertForPreTraining.pretraining_loss` keeps every shape static (for torch.compile).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import BertConfig

# Hugging Face activation names -> modules; "gelu" is the exact erf form BERT uses.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}

# Label value of a masked-LM slot that holds no prediction (padding), as in PyTorch and HF.
IGNORE_INDEX = -100


class Unpadding(NamedTuple):
    """Where the real tokens of a padded (B, T) batch are, so that layers skip the padding.

    Embeddings, projections, feed-forward and LayerNorm run on (R, H); attention pads back to
    (B, T) around the fused kernel, which is where the padding mask (and dropout) apply.
    """

    token_index: Tensor  # (R,) long: flat index b * T + t of every real token, ascending
    batch_size: int  # B
    seq_length: int  # T

    @classmethod
    def from_attention_mask(cls, attention_mask: Tensor) -> Unpadding:
        """From a (B, T) mask. nonzero() waits for the device, so loaders build it ahead."""
        B, T = attention_mask.shape
        return cls(attention_mask.flatten().nonzero().squeeze(1), B, T)

    def pad(self, x: Tensor) -> Tensor:
        """(R, ...) -> (B, T, ...), zeros at padding."""
        B, T = self.batch_size, self.seq_length
        flat = x.new_zeros((B * T, *x.shape[1:])).index_copy(0, self.token_index, x)
        return flat.view(B, T, *x.shape[1:])

    def unpad(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (R, ...)."""
        return x.flatten(0, 1).index_select(0, self.token_index)

    def gather(self, x: Tensor, positions: Tensor) -> Tensor:
        """Vectors of the real tokens (R, H) at (B, P) positions of the padded batch -> (B, P, H).

        A position that holds padding gets row 0 (slots labelled IGNORE_INDEX may point anywhere).
        """
        B, T = self.batch_size, self.seq_length
        index = self.token_index
        row_of = torch.zeros(B * T, dtype=index.dtype, device=index.device)
        row_of = row_of.index_copy(0, index, torch.arange(index.numel(), device=index.device))
        flat = positions + T * torch.arange(B, device=positions.device).unsqueeze(1)  # (B, P)
        return x[row_of[flat]]  # (B, P, H)


class Embeddings(nn.Module):
    """Token + segment + learned position embeddings, then LayerNorm and dropout; with a
    factorised embedding (config.embedding_size, ALBERT) they are E wide and projected to H."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        E = config.embedding_width
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.layer_norm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.projection = (
            None if config.embedding_size is None else nn.Linear(E, config.hidden_size)
        )

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor, unpadding: Unpadding | None = None
    ) -> Tensor:
        T = input_ids.size(1)
        if unpadding is None:
            position_ids = torch.arange(T, device=input_ids.device)  # (T,)
        else:
            index = unpadding.token_index  # (R,)
            input_ids = input_ids.flatten().index_select(0, index)  # (R,)
            token_type_ids = token_type_ids.flatten().index_select(0, index)  # (R,)
            position_ids = index % T  # (R,)
        x = (
            self.word_embeddings(input_ids)  # (B, T, E) or (R, E)
            + self.token_type_embeddings(token_type_ids)  # (B, T, E) or (R, E)
            + self.position_embeddings(position_ids)  # (T, E) broadcast over B, or (R, E)
        )
        x = self.dropout(self.layer_norm(x))  # (B, T, E) or (R, E)
        return x if self.projection is None else self.projection(x)  # (B, T, H) or (R, H)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused SDPA and an output projection; the mask decides
    what each query sees (every real token, or the ones before it for a left-to-right model)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(H, 3 * H)  # query, key and value in one matmul
        self.out_proj = nn.Linear(H, H)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(
        self, x: Tensor, key_mask: Tensor | None, unpadding: Unpadding | None = None
    ) -> Tensor:
        qkv = self.qkv(x)  # (B, T, 3H) or (R, 3H)
        if unpadding is not None:
            qkv = unpadding.pad(qkv)  # (B, T, 3H)
        B, T, H = qkv.size(0), qkv.size(1), x.size(-1)
        nh, hs = self.num_heads, H // self.num_heads
        q, k, v = qkv.split(H, dim=2)  # 3 x (B, T, H)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, H)  # (B, T, H)
        if unpadding is not None:
            y = unpadding.unpad(y)  # (R, H)
        return self.out_proj(y)  # (B, T, H) or (R, H)


class Layer(nn.Module):
    """One post-LayerNorm Transformer layer: attention then feed-forward, each residual + LN."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        H, eps = config.hidden_size, config.layer_norm_eps
        self.attention = SelfAttention(config)
        self.attention_layer_norm = nn.LayerNorm(H, eps=eps)
        self.intermediate = nn.Linear(H, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]()
        self.output = nn.Linear(config.intermediate_size, H)
        self.output_layer_norm = nn.LayerNorm(H, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, x: Tensor, key_mask: Tensor | None, unpadding: Unpadding | None = None
    ) -> Tensor:
        attention = self.attention(x, key_mask, unpadding)  # (B, T, H) or (R, H)
        x = self.attention_layer_norm(x + self.dropout(attention))  # (B, T, H) or (R, H)
        h = self.activation(self.intermediate(x))  # (B, T, I) or (R, I)
        return self.output_layer_norm(x + self.dropout(self.output(h)))  # (B, T, H) or (R, H)


class Encoder(nn.Module):
    """A stack of layers; optionally returns the input and every layer's output.

    With config.share_layers there is one Layer, applied num_hidden_layers times (ALBERT).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.distinct_layers))
        self.num_layers = config.num_hidden_layers

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None,
        output_hidden_states: bool = False,
        unpadding: Unpadding | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        hidden_states = [x] if output_hidden_states else None
        for i in range(self.num_layers):
            x = self.layers[i % len(self.layers)](x, key_mask, unpadding)  # (B, T, H) or (R, H)
            if hidden_states is not None:
                hidden_states.append(x)
        return x, tuple(hidden_states) if hidden_states is not None else None


class Pooler(nn.Module):
    """Dense + tanh on the final [CLS] vector, the sentence representation NSP uses."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output: Tensor) -> Tensor:
        """(B, T', H) -> (B, H) from the first vector: [CLS], or what BertModel put there."""
        return torch.tanh(self.dense(sequence_output[:, 0]))  # (B, H)


class BertOutput(NamedTuple):
    """What BertModel returns."""

    last_hidden_state: Tensor  # (B, T, H); (R, H) with unpadding
    pooled_output: Tensor  # (B, H): Pooler on [CLS]
    hidden_states: tuple[Tensor, ...] | None  # L+1 of (B, T, H): embeddings, then each layer


def init_weights(module: nn.Module, std: float) -> None:
    """Initialise one module as BERT does: normal(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PreTrainingHeads):
        nn.init.zeros_(module.decoder_bias)


class BertModel(nn.Module):
    """The BERT encoder: embeddings, L layers and the [CLS] pooler."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
        unpadding: Unpadding | None = None,
    ) -> BertOutput:
        """Encode (B, T) token ids; attention_mask (B, T) is 1/True for real tokens, 0 for padding.

        With `unpadding` (which needs attention_mask), the hidden states are (R, H): the real
        tokens only, in unpadding.token_index order.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
        if input_ids.size(1) > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {input_ids.size(1)} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if unpadding is not None and attention_mask is None:
            raise ValueError("unpadding needs the attention_mask it was made from")
        # Padded keys are hidden from every query; padded queries still get (unused) outputs.
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        T = input_ids.size(1)
        pooled_position = torch.zeros_like(input_ids[:, :1])  # (B, 1): [CLS]
        if self.config.is_decoder:  # left to right: token t sees tokens 0..t only
            causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()  # (T, T)
            key_mask = causal if key_mask is None else key_mask & causal  # (B, 1, T, T)
            if attention_mask is None:
                pooled_position = torch.full_like(pooled_position, T - 1)
            else:  # the last real token, the only one that has seen the whole input
                pooled_position = attention_mask.long().sum(1, keepdim=True).clamp(min=1) - 1
        x = self.embeddings(input_ids, token_type_ids, unpadding)  # (B, T, H) or (R, H)
        x, hidden_states = self.encoder(x, key_mask, output_hidden_states, unpadding)
        if unpadding is None:
            pooled = gather_positions(x, pooled_position)  # (B, 1, H)
        else:
            pooled = unpadding.gather(x, pooled_position)  # (B, 1, H)
        return BertOutput(x, self.pooler(pooled), hidden_states)


class PreTrainingHeads(nn.Module):
    """Masked-LM head (transform, then decoder tied to the word embeddings) and NSP head.

    The transform maps H to the embeddings' width E (H in BERT), which the tied decoder needs.
    The NSP head is also ALBERT's sentence-order head: the data's labels say which task it is.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        H, E = config.hidden_size, config.embedding_width
        self.transform = nn.Linear(H, E)
        self.transform_activation = ACTIVATIONS[config.hidden_act]()
        self.transform_layer_norm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        # The decoder matrix is the word-embedding matrix (passed in); only the bias is its own.
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.seq_relationship = nn.Linear(H, 2)

    def mlm_logits(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """Vocabulary logits (..., V) for hidden vectors (..., H); word_embeddings is (V, E)."""
        h = self.transform_layer_norm(self.transform_activation(self.transform(hidden)))
        return F.linear(h, word_embeddings, self.decoder_bias)  # (..., V)

    def nsp_logits(self, pooled_output: Tensor) -> Tensor:
        """IsNext (0) / NotNext (1) logits (B, 2) from the pooled [CLS] vector (B, H)."""
        return self.seq_relationship(pooled_output)


class PreTrainingLoss(NamedTuple):
    """What BertForPreTraining.pretraining_loss returns: scalars, all () tensors."""

    loss: Tensor  # mlm_loss + nsp_loss, as in the paper
    mlm_loss: Tensor  # mean cross-entropy over the real masked tokens (0 when there are none)
    nsp_loss: Tensor  # mean cross-entropy over the B sequences
    mlm_correct: Tensor  # long: masked tokens predicted right
    mlm_count: Tensor  # long: real masked tokens in the batch
    nsp_correct: Tensor  # long: sequences whose NSP label was predicted right


class PreTrainingOutput(NamedTuple):
    """What BertForPreTraining returns; the loss and count fields are None without labels.

    mlm_logits is (N, V), one row per real masked slot in row-major (b, p) order, when
    masked_lm_labels is given; without labels it is (B, P, V), or (B, T, V) when
    masked_lm_positions is None.
    """

    loss: Tensor | None  # mlm_loss + nsp_loss (whichever are present), as in the paper
    mlm_loss: Tensor | None  # mean cross-entropy over the N real masked tokens
    nsp_loss: Tensor | None  # mean cross-entropy over the B sequences
    mlm_logits: Tensor  # (N, V) with labels, else (B, P, V) or (B, T, V)
    nsp_logits: Tensor  # (B, 2)
    mlm_correct: Tensor | None  # () long: masked tokens predicted right
    mlm_count: Tensor | None  # () long: N, real masked tokens in the batch
    nsp_correct: Tensor | None  # () long: sequences whose NSP label was predicted right


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM and next-sentence-prediction heads and the paper's loss."""

    # The weight of each objective its loss adds to BERT's, by task name (<task>_loss):
    # none here; SpanBERT's and ELECTRA's models name theirs.
    objective_weights: dict[str, float] = {}  # read only

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.heads = PreTrainingHeads(config)
        self.heads.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        masked_lm_positions: Tensor | None = None,
        masked_lm_labels: Tensor | None = None,
        next_sentence_label: Tensor | None = None,
    ) -> PreTrainingOutput:
        """Run the heads on (B, P) masked positions, or on all T positions when they are None.

        masked_lm_labels is (B, P) (or (B, T)) with IGNORE_INDEX at slots that hold no
        prediction; the decoder runs only on the other slots. next_sentence_label is (B,).
        """
        sequence_output, pooled_output, _ = self.bert(input_ids, token_type_ids, attention_mask)
        if masked_lm_positions is None:
            hidden = sequence_output  # (B, T, H)
        else:
            hidden = gather_positions(sequence_output, masked_lm_positions)  # (B, P, H)
        word_embeddings = self.bert.embeddings.word_embeddings.weight  # (V, E), the tied decoder

        mlm_loss = mlm_correct = mlm_count = None
        if masked_lm_labels is None:
            mlm_logits = self.heads.mlm_logits(hidden, word_embeddings)  # (B, P, V)
        else:
            real = masked_lm_labels != IGNORE_INDEX  # (B, P)
            labels = masked_lm_labels[real]  # (N,)
            mlm_logits = self.heads.mlm_logits(hidden[real], word_embeddings)  # (N, V)
            mlm_count = real.sum()
            # Sum over tokens / count: the batch mean, and 0 (not NaN) when nothing is masked.
            mlm_loss = F.cross_entropy(mlm_logits, labels, reduction="sum") / mlm_count.clamp(min=1)
            mlm_correct = (mlm_logits.argmax(dim=-1) == labels).sum()

        nsp_logits = self.heads.nsp_logits(pooled_output)  # (B, 2)
        nsp_loss = nsp_correct = None
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits, next_sentence_label)
            nsp_correct = (nsp_logits.argmax(dim=-1) == next_sentence_label).sum()

        if mlm_loss is not None and nsp_loss is not None:
            loss = mlm_loss + nsp_loss
        else:
            loss = mlm_loss if mlm_loss is not None else nsp_loss
        return PreTrainingOutput(
            loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits, mlm_correct, mlm_count, nsp_correct
        )

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
    ) -> PreTrainingLoss:
        """The paper's loss for training, with only static shapes (no host sync, compilable).

        The decoder runs on all B x P slots, slots labelled IGNORE_INDEX add nothing to the
        loss; forward() instead runs it on the real slots alone, a data-dependent shape.
        With `unpadding` every layer but attention skips the padding tokens. Without `nsp`
        (the paper's "No NSP" ablation) the loss is the MLM loss alone; the NSP head still
        runs, with zero weight, so that every parameter takes part as DDP expects.
        """
        sequence_output, pooled_output, _ = self.bert(
            input_ids, token_type_ids, attention_mask, unpadding=unpadding
        )
        return self.heads_loss(sequence_output, pooled_output, masked_lm_positions,
                               masked_lm_labels, next_sentence_label, unpadding, nsp)  # fmt: skip

    def heads_loss(
        self,
        sequence_output: Tensor,
        pooled_output: Tensor,
        masked_lm_positions: Tensor,
        masked_lm_labels: Tensor,
        next_sentence_label: Tensor,
        unpadding: Unpadding | None = None,
        nsp: bool = True,
    ) -> PreTrainingLoss:
        """pretraining_loss's heads on the encoder's outputs: (B, T, H), or (R, H) with
        `unpadding`, and the pooled (B, H)."""
        if unpadding is None:
            hidden = gather_positions(sequence_output, masked_lm_positions)  # (B, P, H)
        else:
            hidden = unpadding.gather(sequence_output, masked_lm_positions)  # (B, P, H)
        word_embeddings = self.bert.embeddings.word_embeddings.weight  # (V, E), the tied decoder
        mlm_logits = self.heads.mlm_logits(hidden.flatten(0, 1), word_embeddings)  # (B*P, V)
        labels = masked_lm_labels.flatten()  # (B*P,)
        real = labels != IGNORE_INDEX  # (B*P,)
        mlm_count = real.sum()
        mlm_loss = F.cross_entropy(
            mlm_logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum"
        ) / mlm_count.clamp(min=1)
        mlm_correct = ((mlm_logits.argmax(dim=-1) == labels) & real).sum()
        nsp_logits = self.heads.nsp_logits(pooled_output)  # (B, 2)
        nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label)
        nsp_correct = (nsp_logits.argmax(dim=-1) == next_sentence_label).sum()
        loss = mlm_loss + (nsp_loss if nsp else 0.0 * nsp_loss)
        return PreTrainingLoss(loss, mlm_loss, nsp_loss, mlm_correct, mlm_count, nsp_correct)


def gather_positions(sequence_output: Tensor, positions: Tensor) -> Tensor:
    """(B, T, H) vectors at (B, P) positions -> (B, P, H)."""
    index = positions.unsqueeze(-1).expand(-1, -1, sequence_output.size(-1))  # (B, P, H)
    return torch.gather(sequence_output, 1, index)
