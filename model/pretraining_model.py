"""The model a pretraining run trains: BERT's (masked LM and a sentence head) or ELECTRA's
(a generator and the discriminator one fine-tunes), chosen by objective.name; and the few
things the trainer does that differ between the two: build, save, load, the encoder the
health checks probe, and the model sizes the memory check adds up.

Both models' pretraining_loss take the same batch and return the same first six figures
(model/electra.py, ElectraLoss), so that the training step, evaluation and logs serve both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from model.bert import BertForPreTraining, BertModel
from model.config import BertConfig
from model.electra import ElectraForPreTraining, generator_config
from model.hf_checkpoint import (
    load_electra_checkpoint,
    load_hf_weights,
    save_electra_checkpoint,
    save_hf_checkpoint,
)
from model.train_config import ObjectiveConfig

PretrainingModel = BertForPreTraining | ElectraForPreTraining


def build_pretraining_model(config: BertConfig, objective: ObjectiveConfig) -> PretrainingModel:
    """The objective's model with fresh weights (from torch's global generator)."""
    if objective.name != "electra":
        return BertForPreTraining(config)
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
    discriminator as ElectraForPreTraining with the generator in generator/."""
    if isinstance(model, ElectraForPreTraining):
        return save_electra_checkpoint(model, directory, extra_files)
    return save_hf_checkpoint(model, directory, extra_files)


def load_pretraining_weights(model: PretrainingModel, directory: str | os.PathLike[str]) -> None:
    """Load what save_pretraining_model wrote into a model of the same shape; ValueError (or
    FileNotFoundError) naming what differs."""
    if not isinstance(model, ElectraForPreTraining):
        load_hf_weights(model, directory)
        return
    try:
        saved = load_electra_checkpoint(directory)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (is it an ELECTRA run's?)") from None
    pairs = (("discriminator", saved.config, model.config),
             ("generator", saved.generator_config, model.generator_config))  # fmt: skip
    for which, theirs, ours in pairs:
        for field in dataclasses.fields(BertConfig):
            if field.name.endswith("dropout_prob"):
                continue
            a, b = getattr(theirs, field.name), getattr(ours, field.name)
            if a != b:
                raise ValueError(
                    f"{directory}: config mismatch: the {which}'s {field.name} is {a!r} in "
                    f"the checkpoint but {b!r} in the model"
                )
    # ELECTRA has no pooler: ours keep their (unused, frozen) weights.
    state = {k: v for k, v in saved.state_dict().items() if ".pooler." not in k}
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(".pooler." in name for name in missing), missing
