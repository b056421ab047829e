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
from model.electra import ElectraForPreTraining
from model.file_modes import apply_umask, publish_dir

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


def _hf_layer(family: str, layer: int) -> str:
    if family == "albert":
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
    """Our BertConfig from a Hugging Face BERT, ALBERT or ELECTRA config.json dict; unsupported
    variants (other model types, ALBERT with layer groups of more than one layer, ELECTRA with
    embeddings narrower than its layers) raise.

    An ELECTRA discriminator (or generator) whose embeddings are as wide as its layers is a
    BERT encoder without a pooler: it loads as one, the pooler freshly initialised, and
    fine-tunes and saves as BERT."""
    model_type = hf_config.get("model_type", "bert")
    if model_type not in ("bert", "albert", "electra"):
        raise ValueError(
            f"config model_type must be 'bert', 'albert' or 'electra', got {model_type!r}"
        )
    if model_type == "electra" and hf_config.get("embedding_size") not in (
        None,
        hf_config.get("hidden_size", 768),
    ):
        raise ValueError(
            f"ELECTRA config with embedding_size {hf_config['embedding_size']} < hidden_size "
            f"{hf_config.get('hidden_size')} (ELECTRA-Small's shape): only ELECTRA encoders "
            "whose embeddings are as wide as their layers load as BERT encoders here"
        )
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
    if model_type in ("bert", "electra"):
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


def _hf_encoder_names(config: BertConfig, family: str | None = None) -> dict[str, str]:
    """Our BertModel parameter names -> HF BertModel (AlbertModel, ElectraModel) names, except
    the fused qkv. ELECTRA's encoder is BERT's without a pooler, its projection (when the
    embeddings are narrower) named embeddings_project."""
    family = family or hf_family(config)
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.layer_norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.layer_norm.bias": "embeddings.LayerNorm.bias",
    }
    pooler = {"albert": "pooler", "bert": "pooler.dense", "electra": None}[family]
    projection = {"albert": "encoder.embedding_hidden_mapping_in", "electra": "embeddings_project"}
    for kind in ("weight", "bias"):
        if pooler:
            names[f"pooler.dense.{kind}"] = f"{pooler}.{kind}"
        if config.embedding_size is not None and family in projection:
            names[f"embeddings.projection.{kind}"] = f"{projection[family]}.{kind}"
    layer_names = _LAYER_NAMES["albert" if family == "albert" else "bert"]
    for i in range(config.distinct_layers):
        for ours, hf in layer_names.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layers.{i}.{ours}.{kind}"] = f"{_hf_layer(family, i)}.{hf}.{kind}"
    return names


def _hf_qkv_names(family: str, layer: int, kind: str) -> tuple[str, str, str]:
    prefix = _hf_layer(family, layer) + (".attention" if family == "albert" else ".attention.self")
    return tuple(f"{prefix}.{part}.{kind}" for part in ("query", "key", "value"))


def encoder_to_hf(
    bert: BertModel, family: str | None = None, prefix: str = ""
) -> dict[str, Tensor]:
    """The encoder's tensors under HF names (`family`: bert, albert or electra; default: the
    config's), each name after `prefix`; the tensors are views, not copies."""
    config = bert.config
    family = family or hf_family(config)
    ours = bert.state_dict()
    out = {prefix + hf: ours[name] for name, hf in _hf_encoder_names(config, family).items()}
    for i in range(config.distinct_layers):
        for kind in ("weight", "bias"):
            parts = ours[f"encoder.layers.{i}.attention.qkv.{kind}"].chunk(3, dim=0)
            for hf, part in zip(_hf_qkv_names(family, i, kind), parts, strict=True):
                out[prefix + hf] = part
    return out


def to_hf_state_dict(model: BertModel | BertForPreTraining) -> dict[str, Tensor]:
    """Our weights under HF names: BertModel names, or BertForPreTraining ones with heads.

    The tied decoder matrix is left out, as transformers' own save_pretrained does.
    """
    pretraining = isinstance(model, BertForPreTraining)
    bert = model.bert if pretraining else model
    config = bert.config
    out = encoder_to_hf(bert, prefix=hf_family(config) + "." if pretraining else "")
    if pretraining:
        heads = model.state_dict()
        out.update({hf: heads[name] for name, hf in _head_names(hf_family(config)).items()})
    return copied(out)


def copied(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies: safetensors refuses views that share storage (the qkv chunks)."""
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}


def _normalise_hf_key(key: str) -> str:
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    return key.removeprefix("bert.").removeprefix("albert.").removeprefix("electra.")


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
            parts = [take(ours, name, part_shape) for name in _hf_qkv_names(family, i, kind)]
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


# ELECTRA (model/electra.py): the discriminator as ElectraForPreTraining, the generator beside
# it (GENERATOR_DIR) as ElectraForMaskedLM; both hold the shared embeddings.
GENERATOR_DIR = "generator"
_ELECTRA_DISCRIMINATOR_HEAD = {
    "discriminator_head.dense": "discriminator_predictions.dense",
    "discriminator_head.prediction": "discriminator_predictions.dense_prediction",
}
_ELECTRA_GENERATOR_HEAD = {
    "generator_head.transform": "generator_predictions.dense",
    "generator_head.layer_norm": "generator_predictions.LayerNorm",
}


def electra_config_to_hf(config: BertConfig, *, architecture: str, dtype: str) -> dict[str, Any]:
    """config.json of transformers' ELECTRA classes for one of the two encoders."""
    if config.share_layers or config.is_decoder:
        raise ValueError("ELECTRA's classes have neither shared layers nor causal attention")
    if config.embedding_size == config.hidden_size:
        raise ValueError(
            "ELECTRA projects the embeddings only when they are narrower: unset embedding_size "
            "or make it differ from hidden_size"
        )
    values = config.to_dict()
    for name in ("embedding_size", "share_layers", "is_decoder"):
        del values[name]
    return {
        "architectures": [architecture],
        "model_type": "electra",
        **values,
        "embedding_size": config.embedding_width,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": dtype,
    }


def _with_heads(module: torch.nn.Module, names: dict[str, str]) -> dict[str, Tensor]:
    state = module.state_dict()
    return {f"{hf}.{kind}": state[f"{ours}.{kind}"] for ours, hf in names.items()
            for kind in ("weight", "bias")}  # fmt: skip


def electra_to_hf(model: ElectraForPreTraining) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(discriminator, generator) tensors under transformers' ELECTRA names (copies)."""
    discriminator = encoder_to_hf(model.discriminator, "electra", "electra.")
    discriminator |= _with_heads(model, _ELECTRA_DISCRIMINATOR_HEAD)
    generator = encoder_to_hf(model.generator, "electra", "electra.")
    generator |= _with_heads(model, _ELECTRA_GENERATOR_HEAD)
    generator["generator_lm_head.bias"] = model.generator_head.decoder_bias
    return copied(discriminator), copied(generator)


def _encoder_from_hf(
    bert: BertModel, tensors: dict[str, Tensor], prefix: str, source: str
) -> dict[str, Tensor]:
    """Our encoder's state dict from ELECTRA-named tensors; a missing tensor is an error."""
    config = bert.config
    names = {ours: prefix + hf for ours, hf in _hf_encoder_names(config, "electra").items()}
    missing = sorted(hf for hf in names.values() if hf not in tensors)
    qkv = {
        f"encoder.layers.{i}.attention.qkv.{kind}": [
            prefix + name for name in _hf_qkv_names("electra", i, kind)
        ]
        for i in range(config.distinct_layers)
        for kind in ("weight", "bias")
    }
    missing += sorted(n for parts in qkv.values() for n in parts if n not in tensors)
    if missing:
        raise ValueError(f"{source}: no tensor {missing[0]} (and {len(missing) - 1} more)")
    state = {ours: tensors[hf] for ours, hf in names.items()}
    state |= {ours: torch.cat([tensors[n] for n in parts]) for ours, parts in qkv.items()}
    return state


def save_electra_checkpoint(
    model: ElectraForPreTraining,
    directory: str | os.PathLike[str],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """The discriminator (ElectraForPreTraining) in `directory`, the generator
    (ElectraForMaskedLM) in `directory`/generator, each with `extra_files`; atomically."""
    directory = Path(directory)
    dtype = str(model.word_embeddings.dtype).removeprefix("torch.")
    discriminator, generator = electra_to_hf(model)
    configs = (
        electra_config_to_hf(model.config, architecture="ElectraForPreTraining", dtype=dtype),
        electra_config_to_hf(model.generator_config, architecture="ElectraForMaskedLM",
                             dtype=dtype),
    )  # fmt: skip
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent)
    )
    try:
        for where, tensors, config in zip(
            (staging, staging / GENERATOR_DIR), (discriminator, generator), configs, strict=True
        ):
            where.mkdir(exist_ok=True)
            save_file(tensors, where / SAFETENSORS_NAME, metadata={"format": "pt"})
            for name, data in (extra_files or {}).items():
                (where / name).write_bytes(data)
            (where / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        publish_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def load_electra_checkpoint(directory: str | os.PathLike[str]) -> ElectraForPreTraining:
    """An ElectraForPreTraining from save_electra_checkpoint's directory (or transformers')."""
    directory = Path(directory)
    configs, tensors = [], []
    for where in (directory, directory / GENERATOR_DIR):
        path = where / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; an ELECTRA checkpoint has both models")
        hf_config = json.loads(path.read_text(encoding="utf-8"))
        if hf_config.get("model_type") != "electra":
            raise ValueError(f"{path}: model_type must be 'electra'")
        values = {
            f.name: hf_config[f.name]
            for f in dataclasses.fields(BertConfig)
            if hf_config.get(f.name) is not None and f.name not in ("share_layers", "is_decoder")
        }
        if values.get("embedding_size") == values.get("hidden_size"):
            values.pop("embedding_size")
        configs.append(BertConfig(**values))
        tensors.append(_read_hf_weights(where))
    model = ElectraForPreTraining(configs[0], configs[1])
    (d, d_path), (g, g_path) = tensors
    state = {
        f"discriminator.{k}": v
        for k, v in _encoder_from_hf(model.discriminator, d, "electra.", str(d_path)).items()
    }
    state |= {
        f"generator.{k}": v
        for k, v in _encoder_from_hf(model.generator, g, "electra.", str(g_path)).items()
    }
    heads = {**_ELECTRA_DISCRIMINATOR_HEAD, **_ELECTRA_GENERATOR_HEAD}
    for ours, hf in heads.items():
        source = d if ours.startswith("discriminator") else g
        for kind in ("weight", "bias"):
            state[f"{ours}.{kind}"] = source[f"{hf}.{kind}"]
    state["generator_head.decoder_bias"] = g["generator_lm_head.bias"]
    shared = [k for k in state if k.startswith("generator.embeddings.") and ".projection." not in k]
    for key in shared:  # one set of tables, held by both files
        if not torch.equal(state.pop(key), state["discriminator" + key.removeprefix("generator")]):
            raise ValueError(f"{g_path}: the generator's {key} differs from the discriminator's")
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The poolers are not ELECTRA's (fresh); the generator's shared tables were loaded above.
    left = [k for k in missing if not k.startswith(("discriminator.pooler.", "generator.pooler."))
            and k not in shared]  # fmt: skip
    if left or unexpected:
        raise ValueError(
            f"{directory}: weights do not fit: missing {left}, unexpected {unexpected}"
        )
    return model
