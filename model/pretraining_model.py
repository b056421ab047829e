"""The model a pretraining run trains: BERT's (masked LM and a sentence head), with SpanBERT's
span-boundary head when asked, or ELECTRA's (a generator and the discriminator one
fine-tunes), chosen by the objective; and the few
things the trainer does that differ between the two: build, save, load, the encoder the
health checks probe, and the model sizes the memory check adds up.

Every model's pretraining_loss takes the same batch and returns BERT's six figures first
(model/electra.py ElectraLoss, model/span_boundary.py SpanBertLoss), then its own as
<task>_loss, <task>_correct, <task>_count, so that the training step, evaluation and logs serve
all of them (model/pretrain.py, objective_figures).
"""

from __future__ import annotations

import os
from pathlib import Path

from model.bert import BertForPreTraining, BertModel
from model.config import BertConfig
from model.electra import ElectraForPreTraining, generator_config
from model.hf_checkpoint import (
    ARCHITECTURE_FIELDS,
    load_electra_checkpoint,
    load_hf_weights,
    save_electra_checkpoint,
    save_hf_checkpoint,
)
from model.span_boundary import (
    SPAN_BOUNDARY_FILE,
    SpanBertForPreTraining,
    load_span_boundary,
    span_boundary_bytes,
)
from model.train_config import ObjectiveConfig

PretrainingModel = BertForPreTraining | ElectraForPreTraining


def build_pretraining_model(config: BertConfig, objective: ObjectiveConfig) -> PretrainingModel:
    """The objective's model with fresh weights (from torch's global generator)."""
    if objective.name != "electra":
        return (
            SpanBertForPreTraining(config)
            if objective.span_boundary
            else BertForPreTraining(config)
        )
    if config.share_layers or config.is_decoder:
        raise ValueError(
            "objective.name=electra: ELECTRA's discriminator has neither shared layers nor "
            "causal attention (unset model.share_layers / model.is_decoder)"
        )
    if config.embedding_size == config.hidden_size:
        raise ValueError("objective.name=electra: unset model.embedding_size or make it narrower")
    return ElectraForPreTraining(
        config,
        generator_config(config, objective.generator_width),
        discriminator_weight=objective.discriminator_weight,
    )


def encoder_of(model: PretrainingModel) -> BertModel:
    """The encoder fine-tuning takes from the run: BERT's, or ELECTRA's discriminator."""
    return model.discriminator if isinstance(model, ElectraForPreTraining) else model.bert


def model_configs(model: PretrainingModel) -> list[BertConfig]:
    """The configs of the encoders that train: one, or ELECTRA's discriminator and generator."""
    if isinstance(model, ElectraForPreTraining):
        return [model.config, model.generator_config]
    return [model.config]


def save_pretraining_model(
    model: PretrainingModel,
    directory: str | os.PathLike[str],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """The model in transformers' layout: BertForPreTraining (AlbertForPreTraining), or the
    discriminator as ElectraForPreTraining with the generator in generator/; SpanBERT's
    span-boundary head in SPAN_BOUNDARY_FILE beside the BERT files."""
    if isinstance(model, ElectraForPreTraining):
        return save_electra_checkpoint(model, directory, extra_files)
    if isinstance(model, SpanBertForPreTraining):
        extra_files = dict(extra_files or {}) | {SPAN_BOUNDARY_FILE: span_boundary_bytes(model)}
    return save_hf_checkpoint(model, directory, extra_files)


def load_pretraining_weights(
    model: PretrainingModel, directory: str | os.PathLike[str]
) -> list[str]:
    """Load what save_pretraining_model wrote into a model of the same shape; ValueError (or
    FileNotFoundError) naming what differs. Returns the parts the directory lacked, left as
    they were: SpanBERT's head when the directory is a BERT model's."""
    if not isinstance(model, ElectraForPreTraining):
        load_hf_weights(model, directory)
        if isinstance(model, SpanBertForPreTraining) and not load_span_boundary(model, directory):
            return [f"span-boundary head ({SPAN_BOUNDARY_FILE})"]
        return []
    try:
        saved = load_electra_checkpoint(directory)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (is it an ELECTRA run's?)") from None
    pairs = (("discriminator", saved.config, model.config),
             ("generator", saved.generator_config, model.generator_config))  # fmt: skip
    for which, theirs, ours in pairs:
        for name in ARCHITECTURE_FIELDS:  # what load_hf_weights compares for BERT
            a, b = getattr(theirs, name), getattr(ours, name)
            if a != b:
                raise ValueError(
                    f"{directory}: config mismatch: the {which}'s {name} is {a!r} in the "
                    f"checkpoint but {b!r} in the model"
                )
    # ELECTRA has no pooler: ours keep their (unused, frozen) weights.
    state = {k: v for k, v in saved.state_dict().items() if ".pooler." not in k}
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(".pooler." in name for name in missing), missing
    return []
