"""BERT model configuration and the named sizes from the paper and Turc et al. (2019)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Activations the model knows, by their Hugging Face names (model/bert.py maps them to modules).
HIDDEN_ACTIVATIONS = ("gelu", "gelu_new", "relu")


# The integer fields that set the weights' shapes.
SHAPE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)


@dataclass(kw_only=True)
class BertConfig:
    """Shape and regularisation of a BERT encoder with its pretraining heads."""

    vocab_size: int = 30522  # WordPiece vocabulary size (bert-base-uncased has 30,522)
    hidden_size: int = 768  # H: width of every token vector
    num_hidden_layers: int = 12  # L: number of Transformer layers
    num_attention_heads: int = 12  # A: heads per layer; hidden_size must divide evenly
    intermediate_size: int = 3072  # feed-forward inner width, 4H in the paper
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and every sub-layer output
    attention_probs_dropout_prob: float = 0.1  # dropout on attention weights (training only)
    max_position_embeddings: int = 512  # longest sequence; learned position table size
    type_vocab_size: int = 2  # segment ids: 0 for sentence A, 1 for sentence B
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon used by the original TF code
    initializer_range: float = 0.02  # std of the normal init of weights
    pad_token_id: int = 0  # id of [PAD]; its embedding row starts at zero
    hidden_act: str = "gelu"  # "gelu" is the exact erf GELU of the original BERT
    # Left-to-right (causal) attention, as Hugging Face's flag of the same name; the pooled
    # vector is then the last real token's, the only one that has seen the whole input. Only
    # the paper's "LTR & No NSP" ablation (Table 5) trains such a model.
    is_decoder: bool = False
    # ALBERT (Lan et al., 2019). embedding_size: E, the width of the token, position and
    # segment embeddings, projected to H before the first layer; the masked-LM head maps H back
    # to E for the tied decoder. None: E = H with no projection, as in BERT.
    embedding_size: int | None = None
    # Cross-layer parameter sharing: one layer's weights applied num_hidden_layers times
    # (ALBERT's "all-shared"); the function of L layers with the parameters of one.
    share_layers: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        for name in (*SHAPE_FIELDS, "pad_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"BertConfig.{name} must be an int, got {value!r}")
            if value < (0 if name == "pad_token_id" else 1):
                raise ValueError(f"BertConfig.{name} must be positive, got {value}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"BertConfig.{name} must be a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"BertConfig.{name} must be a number, got {value!r}")
            if not value > 0.0:
                raise ValueError(f"BertConfig.{name} must be > 0, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(
                f"BertConfig.pad_token_id ({self.pad_token_id}) must be < vocab_size "
                f"({self.vocab_size})"
            )
        for name in ("is_decoder", "share_layers"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"BertConfig.{name} must be a bool, got {getattr(self, name)!r}")
        E = self.embedding_size
        if E is not None and (not isinstance(E, int) or isinstance(E, bool) or E < 1):
            raise ValueError(f"BertConfig.embedding_size must be None or positive, got {E!r}")
        if self.share_layers and E is None:
            raise ValueError(
                "BertConfig.share_layers needs embedding_size (ALBERT's factorised embedding); "
                f"set embedding_size={self.hidden_size} to share layers without factorising"
            )
        if self.is_albert and self.is_decoder:
            raise ValueError("BertConfig.is_decoder is for BERT shapes: unset embedding_size")
        if self.hidden_act not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act must be one of {HIDDEN_ACTIVATIONS}, "
                f"got {self.hidden_act!r}"
            )

    @property
    def embedding_width(self) -> int:
        """E: embedding_size, or hidden_size when the embeddings are not factorised."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    @property
    def is_albert(self) -> bool:
        """Whether the model has ALBERT's shape (an embedding projection, maybe shared layers):
        such models are saved as Hugging Face ALBERT checkpoints."""
        return self.embedding_size is not None

    @property
    def distinct_layers(self) -> int:
        """Layers with weights of their own: 1 when shared, else num_hidden_layers."""
        return 1 if self.share_layers else self.num_hidden_layers

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, JSON-serialisable."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        """Build from a dict made by to_dict(); unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"BertConfig has no field(s) {unknown}")
        return cls(**values)


def _preset(sizes: dict[str, Any], overrides: dict[str, Any]) -> BertConfig:
    return BertConfig(**(sizes | overrides))


def _sizes(layers: int, hidden: int, heads: int) -> dict[str, int]:
    return {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
    }


def bert_tiny(**overrides: Any) -> BertConfig:
    """L=2, H=128, A=2: for tests and CPU demos (Turc et al.)."""
    return _preset(_sizes(2, 128, 2), overrides)


def bert_mini(**overrides: Any) -> BertConfig:
    """L=4, H=256, A=4 (Turc et al.)."""
    return _preset(_sizes(4, 256, 4), overrides)


def bert_small(**overrides: Any) -> BertConfig:
    """L=4, H=512, A=8 (Turc et al.)."""
    return _preset(_sizes(4, 512, 8), overrides)


def bert_medium(**overrides: Any) -> BertConfig:
    """L=8, H=512, A=8 (Turc et al.)."""
    return _preset(_sizes(8, 512, 8), overrides)


def bert_base(**overrides: Any) -> BertConfig:
    """BERT-base: L=12, H=768, A=12, 110M parameters."""
    return _preset(_sizes(12, 768, 12), overrides)


def bert_large(**overrides: Any) -> BertConfig:
    """BERT-large: L=24, H=1024, A=16, 340M parameters."""
    return _preset(_sizes(24, 1024, 16), overrides)


def bert_l3_h768_a12(**overrides: Any) -> BertConfig:
    """L=3, H=768, A=12 (paper, Table 6)."""
    return _preset(_sizes(3, 768, 12), overrides)


def bert_l6_h768_a3(**overrides: Any) -> BertConfig:
    """L=6, H=768, A=3 (paper, Table 6)."""
    return _preset(_sizes(6, 768, 3), overrides)


def bert_l6_h768_a12(**overrides: Any) -> BertConfig:
    """L=6, H=768, A=12 (paper, Table 6)."""
    return _preset(_sizes(6, 768, 12), overrides)


def bert_l12_h1024_a16(**overrides: Any) -> BertConfig:
    """L=12, H=1024, A=16 (paper, Table 6)."""
    return _preset(_sizes(12, 1024, 16), overrides)


PRESETS: dict[str, Callable[..., BertConfig]] = {
    "bert_tiny": bert_tiny,
    "bert_mini": bert_mini,
    "bert_small": bert_small,
    "bert_medium": bert_medium,
    "bert_base": bert_base,
    "bert_large": bert_large,
    "bert_l3_h768_a12": bert_l3_h768_a12,
    "bert_l6_h768_a3": bert_l6_h768_a3,
    "bert_l6_h768_a12": bert_l6_h768_a12,
    "bert_l12_h1024_a16": bert_l12_h1024_a16,
}
