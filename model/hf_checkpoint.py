"""Hugging Face interop: config.json and weight names to and from our BERT, in one place.

Reads `BertModel` checkpoints (no prefix), `BertForPreTraining` ones ("bert." prefix plus
"cls.predictions.*" / "cls.seq_relationship.*") and old ones with LayerNorm gamma/beta names.
A model with ALBERT's shape (config.embedding_size set, maybe shared layers) is read and written
as `AlbertModel` / `AlbertForPreTraining` ("albert." prefix, "predictions.*",
"sop_classifier.*"): one layer group per distinct layer, one layer per group.
Writes config.json + model.safetensors that `transformers` loads with no missing or unexpected
weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from model.bert import BertForPreTraining, BertModel
from model.config import SHAPE_FIELDS, BertConfig
from model.file_modes import apply_umask

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"

# Fields that change the weights' shapes or the function computed. Dropout, init range and the
# pad id may differ between a checkpoint and the model it is loaded into.
ARCHITECTURE_FIELDS = (
    *SHAPE_FIELDS,
    "embedding_size",
    "share_layers",
    "layer_norm_eps",
    "hidden_act",
)

# Buffers HF checkpoints may carry that hold no learned state.
_IGNORED_HF_KEYS = {"embeddings.position_ids", "embeddings.token_type_ids"}
# HF stores the tied decoder matrix and bias under these names in some checkpoints.
_HF_DECODER = {"bert": "cls.predictions.decoder", "albert": "predictions.decoder"}

# Our BertForPreTraining.heads names -> HF BertForPreTraining and AlbertForPreTraining names.
_HEAD_NAMES = {
    "bert": {
        "heads.transform": "cls.predictions.transform.dense",
        "heads.transform_layer_norm": "cls.predictions.transform.LayerNorm",
        "heads.seq_relationship": "cls.seq_relationship",
    },
    "albert": {
        "heads.transform": "predictions.dense",
        "heads.transform_layer_norm": "predictions.LayerNorm",
        "heads.seq_relationship": "sop_classifier.classifier",
    },
}
_DECODER_BIAS = {"bert": "cls.predictions.bias", "albert": "predictions.bias"}

# Our Layer's parameters -> HF's, relative to one layer of each family.
_LAYER_NAMES = {
    "bert": {
        "attention.out_proj": "attention.output.dense",
        "attention_layer_norm": "attention.output.LayerNorm",
        "intermediate": "intermediate.dense",
        "output": "output.dense",
        "output_layer_norm": "output.LayerNorm",
    },
    "albert": {
        "attention.out_proj": "attention.dense",
        "attention_layer_norm": "attention.LayerNorm",
        "intermediate": "ffn",
        "output": "ffn_output",
        "output_layer_norm": "full_layer_layer_norm",
    },
}


def hf_family(config: BertConfig) -> str:
    """ "albert" for a model with ALBERT's shape, else "bert": the HF model_type and prefix."""
    return "albert" if config.is_albert else "bert"


def _hf_layer(config: BertConfig, layer: int) -> str:
    if config.is_albert:
        return f"encoder.albert_layer_groups.{layer}.albert_layers.0"
    return f"encoder.layer.{layer}"


def _head_names(family: str) -> dict[str, str]:
    names = {
        f"{ours}.{kind}": f"{hf}.{kind}"
        for ours, hf in _HEAD_NAMES[family].items()
        for kind in ("weight", "bias")
    }
    return names | {"heads.decoder_bias": _DECODER_BIAS[family]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadReport:
    """What a load did beyond copying matching tensors."""

    source: str  # the weights file read
    missing_keys: tuple[str, ...]  # our parameters the checkpoint lacked: left freshly initialised
    unexpected_keys: tuple[str, ...]  # checkpoint tensors (HF names) the model has no place for


class LoadedCheckpoint(NamedTuple):
    """A model built from a checkpoint and the report of how its weights were filled."""

    model: BertModel | BertForPreTraining
    report: LoadReport


def config_from_hf(hf_config: dict[str, Any]) -> BertConfig:
    """Our BertConfig from a Hugging Face BERT or ALBERT config.json dict; unsupported variants
    (other model types, ALBERT with layer groups of more than one layer) raise."""
    model_type = hf_config.get("model_type", "bert")
    if model_type not in ("bert", "albert"):
        raise ValueError(f"config model_type must be 'bert' or 'albert', got {model_type!r}")
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"config position_embedding_type must be 'absolute', got {position_type!r}"
        )
    if hf_config.get("add_cross_attention"):
        raise ValueError("config add_cross_attention must be false: there is no decoder stack")
    values = {
        field.name: hf_config[field.name]
        for field in dataclasses.fields(BertConfig)
        if hf_config.get(field.name) is not None and field.name != "share_layers"
    }
    if model_type == "bert":
        values.pop("embedding_size", None)
        return BertConfig(**values)
    layers = hf_config.get("num_hidden_layers", 12)
    groups, inner = hf_config.get("num_hidden_groups", 1), hf_config.get("inner_group_num", 1)
    if inner != 1 or groups not in (1, layers):
        raise ValueError(
            f"ALBERT config with num_hidden_groups={groups}, inner_group_num={inner}: only one "
            f"layer per group, and 1 or num_hidden_layers ({layers}) groups, are supported"
        )
    values.setdefault("embedding_size", 128)  # AlbertConfig's default
    values.setdefault("hidden_act", "gelu_new")  # AlbertConfig's default
    return BertConfig(**values, share_layers=groups == 1 and layers > 1)


def config_to_hf(
    config: BertConfig, *, architecture: str = "BertForPreTraining", dtype: str = "float32"
) -> dict[str, Any]:
    """A Hugging Face config.json dict for our config: BERT, or ALBERT for ALBERT's shape
    (`architecture` is then renamed, e.g. BertForPreTraining -> AlbertForPreTraining)."""
    values = config.to_dict()
    del values["embedding_size"], values["share_layers"]
    family = {}
    if config.is_albert:
        architecture = "Albert" + architecture.removeprefix("Bert")
        del values["is_decoder"]
        family = {
            "embedding_size": config.embedding_size,
            "num_hidden_groups": config.distinct_layers,
            "inner_group_num": 1,
            "classifier_dropout_prob": config.hidden_dropout_prob,
        }
    return {
        "architectures": [architecture],
        "model_type": hf_family(config),
        **values,
        **family,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": dtype,
    }


def _hf_encoder_names(config: BertConfig) -> dict[str, str]:
    """Our BertModel parameter names -> HF BertModel (or AlbertModel) names, except the fused
    qkv."""
    family = hf_family(config)
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.layer_norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.layer_norm.bias": "embeddings.LayerNorm.bias",
    }
    pooler = "pooler" if config.is_albert else "pooler.dense"
    for kind in ("weight", "bias"):
        names[f"pooler.dense.{kind}"] = f"{pooler}.{kind}"
        if config.is_albert:
            names[f"embeddings.projection.{kind}"] = f"encoder.embedding_hidden_mapping_in.{kind}"
    for i in range(config.distinct_layers):
        for ours, hf in _LAYER_NAMES[family].items():
            for kind in ("weight", "bias"):
                names[f"encoder.layers.{i}.{ours}.{kind}"] = f"{_hf_layer(config, i)}.{hf}.{kind}"
    return names


def _hf_qkv_names(config: BertConfig, layer: int, kind: str) -> tuple[str, str, str]:
    prefix = _hf_layer(config, layer) + (".attention" if config.is_albert else ".attention.self")
    return tuple(f"{prefix}.{part}.{kind}" for part in ("query", "key", "value"))


def to_hf_state_dict(model: BertModel | BertForPreTraining) -> dict[str, Tensor]:
    """Our weights under HF names: BertModel names, or BertForPreTraining ones with heads.

    The tied decoder matrix is left out, as transformers' own save_pretrained does.
    """
    pretraining = isinstance(model, BertForPreTraining)
    bert = model.bert if pretraining else model
    config = bert.config
    prefix = hf_family(config) + "." if pretraining else ""
    ours = bert.state_dict()
    out = {prefix + hf: ours[name] for name, hf in _hf_encoder_names(config).items()}
    for i in range(config.distinct_layers):
        for kind in ("weight", "bias"):
            parts = ours[f"encoder.layers.{i}.attention.qkv.{kind}"].chunk(3, dim=0)
            for hf, part in zip(_hf_qkv_names(config, i, kind), parts, strict=True):
                out[prefix + hf] = part
    if pretraining:
        heads = model.state_dict()
        out.update({hf: heads[name] for name, hf in _head_names(hf_family(config)).items()})
    # safetensors refuses views that share storage (the qkv chunks), so every tensor is copied.
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in out.items()}


def _normalise_hf_key(key: str) -> str:
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    return key.removeprefix("bert.").removeprefix("albert.")


def load_hf_state_dict(
    model: BertModel | BertForPreTraining, hf_state_dict: dict[str, Tensor], *, source: str
) -> LoadReport:
    """Copy HF-named tensors into our model; pooler and heads may be absent (left as they are).

    Raises ValueError naming `source` and the tensor on a shape mismatch, on encoder weights
    missing from the checkpoint, or on encoder weights the model has no place for.
    """
    # Long on purpose: the name mapping, the tied decoder, HF's three q/k/v tensors fused
    # into our one, then the checks; they share `hf` (what is left unclaimed) and `take`, and
    # read as one page in that order.
    pretraining = isinstance(model, BertForPreTraining)
    config = model.config
    family = hf_family(config)
    prefix = "bert." if pretraining else ""  # our BertForPreTraining's name for its encoder
    hf = {}
    for key, tensor in hf_state_dict.items():
        hf.setdefault(_normalise_hf_key(key), tensor)
    for key in _IGNORED_HF_KEYS:
        hf.pop(key, None)

    expected = model.state_dict()
    loaded: dict[str, Tensor] = {}
    not_found: list[str] = []

    def take(ours: str, hf_name: str, expected_shape: torch.Size) -> Tensor | None:
        tensor = hf.pop(hf_name, None)
        if tensor is None:
            not_found.append(ours)
        elif tensor.shape != expected_shape:
            raise ValueError(
                f"{source}: tensor {hf_name} has shape {tuple(tensor.shape)}, "
                f"but the model (config {_shape_fields(config)}) needs {tuple(expected_shape)}"
            )
        return tensor

    names = {prefix + ours: hf_name for ours, hf_name in _hf_encoder_names(config).items()}
    if pretraining:
        names.update(_head_names(family))
        decoder_bias = _HF_DECODER[family] + ".bias"
        if _DECODER_BIAS[family] not in hf and decoder_bias in hf:
            hf[_DECODER_BIAS[family]] = hf[decoder_bias]
        hf.pop(decoder_bias, None)
        decoder = hf.pop(_HF_DECODER[family] + ".weight", None)
        embeddings = hf.get("embeddings.word_embeddings.weight")
        if decoder is not None and embeddings is not None and not torch.equal(decoder, embeddings):
            raise ValueError(
                f"{source}: {_HF_DECODER[family]}.weight differs from the word embeddings; "
                "only checkpoints with a tied MLM decoder are supported"
            )
    for ours, hf_name in names.items():
        tensor = take(ours, hf_name, expected[ours].shape)
        if tensor is not None:
            loaded[ours] = tensor
    for i in range(config.distinct_layers):
        for kind in ("weight", "bias"):
            ours = f"{prefix}encoder.layers.{i}.attention.qkv.{kind}"
            part_shape = (config.hidden_size,) + expected[ours].shape[1:]
            parts = [take(ours, name, part_shape) for name in _hf_qkv_names(config, i, kind)]
            if all(part is not None for part in parts):
                loaded[ours] = torch.cat(parts, dim=0)
    missing = sorted(set(not_found))  # a fused qkv is listed once, not per part
    unexpected = sorted(hf)

    # Pooler and heads may be trained from scratch; a hole in the encoder is a broken checkpoint.
    optional = (f"{prefix}pooler.", "heads.")
    broken = [name for name in missing if not name.startswith(optional)]
    if broken:
        raise ValueError(
            f"{source}: checkpoint lacks encoder weights for {len(broken)} parameter(s), "
            f"e.g. {broken[:3]} (does config.json match the weights?)"
        )
    extra = [name for name in unexpected if name.startswith(("embeddings.", "encoder."))]
    if extra:
        raise ValueError(
            f"{source}: checkpoint has encoder weights the model has no place for, e.g. "
            f"{extra[:3]} (does config.json match the weights?)"
        )

    model.load_state_dict(loaded, strict=False)
    report = LoadReport(
        source=source, missing_keys=tuple(missing), unexpected_keys=tuple(unexpected)
    )
    if missing:
        logger.warning(
            "%s: %d parameter(s) not in the checkpoint were freshly initialised: %s",
            source,
            len(missing),
            ", ".join(missing),
        )
    if unexpected:
        logger.warning(
            "%s: %d checkpoint tensor(s) were not used: %s",
            source,
            len(unexpected),
            ", ".join(unexpected),
        )
    return report


def _shape_fields(config: BertConfig) -> str:
    names = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")
    return ", ".join(f"{name}={getattr(config, name)}" for name in names)


def read_hf_config(directory: str | os.PathLike[str]) -> BertConfig:
    """Our BertConfig from `directory`/config.json."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME} in the checkpoint directory")
    try:
        hf_config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(hf_config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    try:
        return config_from_hf(hf_config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


def _read_hf_weights(directory: Path) -> tuple[dict[str, Tensor], Path]:
    safetensors_path = directory / SAFETENSORS_NAME
    pytorch_path = directory / PYTORCH_NAME
    try:
        if safetensors_path.is_file():
            return load_file(safetensors_path, device="cpu"), safetensors_path
        if pytorch_path.is_file():
            state = torch.load(pytorch_path, map_location="cpu", weights_only=True)
            return state, pytorch_path
    except Exception as error:  # corrupt or truncated files raise library-specific errors
        path = safetensors_path if safetensors_path.is_file() else pytorch_path
        raise ValueError(f"{path}: cannot read weights: {error}") from error
    raise FileNotFoundError(
        f"{directory}: no {SAFETENSORS_NAME} or {PYTORCH_NAME} in the checkpoint directory"
    )


def load_hf_weights(
    model: BertModel | BertForPreTraining, directory: str | os.PathLike[str]
) -> LoadReport:
    """Load an HF checkpoint directory into an existing model whose architecture must match."""
    directory = Path(directory)
    checkpoint_config = read_hf_config(directory)
    for name in ARCHITECTURE_FIELDS:
        theirs, ours = getattr(checkpoint_config, name), getattr(model.config, name)
        if theirs != ours:
            raise ValueError(
                f"{directory / CONFIG_NAME}: config mismatch: {name} is {theirs!r} in the "
                f"checkpoint but {ours!r} in the model"
            )
    state, path = _read_hf_weights(directory)
    return load_hf_state_dict(model, state, source=str(path))


def load_hf_checkpoint(
    directory: str | os.PathLike[str],
    *,
    for_pretraining: bool,
    config: BertConfig | None = None,
) -> LoadedCheckpoint:
    """Build BertForPreTraining (or BertModel) from an HF checkpoint directory.

    `config` overrides config.json (e.g. other dropout) but must agree on ARCHITECTURE_FIELDS.
    Heads absent from the checkpoint are freshly initialised; the report lists them.
    """
    if config is None:
        config = read_hf_config(directory)
    model = BertForPreTraining(config) if for_pretraining else BertModel(config)
    return LoadedCheckpoint(model, load_hf_weights(model, directory))


def save_hf_checkpoint(
    model: BertModel | BertForPreTraining,
    directory: str | os.PathLike[str],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write config.json + model.safetensors with HF names, atomically; returns the directory.

    `extra_files` (name -> bytes), e.g. the vocabulary's vocab.txt and tokenizer.json, are
    written with them, so that the directory is complete the moment it appears."""
    directory = Path(directory)
    pretraining = isinstance(model, BertForPreTraining)
    bert = model.bert if pretraining else model
    dtype = str(bert.embeddings.word_embeddings.weight.dtype).removeprefix("torch.")
    hf_config = config_to_hf(
        model.config,
        architecture="BertForPreTraining" if pretraining else "BertModel",
        dtype=dtype,
    )  # AlbertForPreTraining or AlbertModel for ALBERT's shape
    tensors = to_hf_state_dict(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent)
    )
    try:
        save_file(tensors, staging / SAFETENSORS_NAME, metadata={"format": "pt"})
        extra = dict(extra_files or {})
        for name, data in extra.items():
            (staging / name).write_bytes(data)
        (staging / CONFIG_NAME).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        apply_umask(staging)  # mkdtemp and safetensors make 0700 and 0600
        if directory.is_dir() and any(directory.iterdir()):
            # Replace file by file, config last: it names the weights that are already in place.
            for name in (*extra, SAFETENSORS_NAME, CONFIG_NAME):
                os.replace(staging / name, directory / name)
            staging.rmdir()
        else:
            os.replace(staging, directory)  # rename(2) also replaces an empty directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
