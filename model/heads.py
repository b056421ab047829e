"""Fine-tuning heads on BERT, and saving them as Hugging Face models.

Each head is the encoder plus one output layer, as the paper fine-tunes it, and computes its
loss when targets are given:
- SequenceClassifier: softmax on the pooled [CLS] vector (GLUE), or one output for regression.
- SpanQA: start and end logits per token (SQuAD).
- TokenClassifier: one softmax per token (NER; the task decides which tokens carry labels).
- MultipleChoice: one score per choice from its pooled [CLS] vector, softmax over choices (SWAG).

Parameter names match transformers' BertFor* classes (AlbertFor* for an encoder of ALBERT's
shape), so a saved directory (config.json + model.safetensors + vocab.txt) loads in
`transformers` as it is, and its encoder can start another fine-tuning run (e.g. RTE from an
MNLI model).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from model.bert import IGNORE_INDEX, BertModel, init_weights
from model.file_modes import publish_dir
from model.hf_checkpoint import (
    CONFIG_NAME,
    PYTORCH_NAME,
    SAFETENSORS_NAME,
    LoadReport,
    config_to_hf,
    hf_family,
    load_hf_state_dict,
    read_hf_config,
    to_hf_state_dict,
)

FINETUNE_KEY = "finetune"  # config.json entry that records the task a model was tuned for
# Prefixes of checkpoint tensors that belong to some head, not to the encoder.
HEAD_PREFIXES = ("classifier.", "qa_outputs.", "cls.", "heads.", "predictions.", "sop_classifier.")


class HeadOutput(NamedTuple):
    """What a head returns; loss is None without targets."""

    loss: Tensor | None
    logits: Tensor  # (B, labels), (B, 1), (B, T, 2), (B, T, labels) or (B, choices)


class SequenceClassifier(nn.Module):
    """Softmax over labels (or a single regression output) on the pooled [CLS] vector."""

    hf_architecture = "BertForSequenceClassification"
    uses_pooler = True

    def __init__(self, bert: BertModel, num_labels: int, *, regression: bool = False) -> None:
        super().__init__()
        if regression and num_labels != 1:
            raise ValueError("a regression head has exactly one output")
        self.bert = bert
        self.regression = regression
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(bert.config.hidden_size, num_labels)
        self.classifier.apply(partial(init_weights, std=bert.config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> HeadOutput:
        pooled = self.bert(input_ids, token_type_ids, attention_mask).pooled_output  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, labels)
        loss = None
        if labels is not None:
            if self.regression:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels)
        return HeadOutput(loss, logits)


class SpanQA(nn.Module):
    """Start and end logits per token: span score S·T_i + E·T_j, as in the paper."""

    hf_architecture = "BertForQuestionAnswering"
    uses_pooler = False

    def __init__(self, bert: BertModel, num_labels: int = 2) -> None:
        super().__init__()
        self.bert = bert
        self.qa_outputs = nn.Linear(bert.config.hidden_size, 2)
        self.qa_outputs.apply(partial(init_weights, std=bert.config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
    ) -> HeadOutput:
        sequence = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        logits = self.qa_outputs(sequence)  # (B, T, 2): start, end
        loss = None
        if start_positions is not None and end_positions is not None:
            start_loss = F.cross_entropy(logits[..., 0].float(), start_positions)
            end_loss = F.cross_entropy(logits[..., 1].float(), end_positions)
            loss = (start_loss + end_loss) / 2
        return HeadOutput(loss, logits)


class TokenClassifier(nn.Module):
    """A softmax over labels at every token; IGNORE_INDEX targets are not scored."""

    hf_architecture = "BertForTokenClassification"
    uses_pooler = False

    def __init__(self, bert: BertModel, num_labels: int) -> None:
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(bert.config.hidden_size, num_labels)
        self.classifier.apply(partial(init_weights, std=bert.config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> HeadOutput:
        sequence = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        logits = self.classifier(self.dropout(sequence))  # (B, T, labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return HeadOutput(loss, logits)


class MultipleChoice(nn.Module):
    """One score per choice from its pooled [CLS] vector; softmax over the choices."""

    hf_architecture = "BertForMultipleChoice"
    uses_pooler = True

    def __init__(self, bert: BertModel, num_labels: int = 1) -> None:
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(bert.config.hidden_size, 1)
        self.classifier.apply(partial(init_weights, std=bert.config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> HeadOutput:
        B, C, T = input_ids.shape

        def flat(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.reshape(B * C, T)

        pooled = self.bert(
            flat(input_ids), flat(token_type_ids), flat(attention_mask)
        ).pooled_output  # (B*C, H)
        logits = self.classifier(self.dropout(pooled)).view(B, C)  # (B, C)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return HeadOutput(loss, logits)


TaskModel = SequenceClassifier | SpanQA | TokenClassifier | MultipleChoice


def build_task_model(head: str, bert: BertModel, num_labels: int) -> TaskModel:
    """The head model for a task's head kind around `bert`."""
    if head == "classification":
        return SequenceClassifier(bert, num_labels)
    if head == "regression":
        return SequenceClassifier(bert, 1, regression=True)
    if head == "span":
        return SpanQA(bert)
    if head == "token":
        return TokenClassifier(bert, num_labels)
    if head == "choice":
        return MultipleChoice(bert)
    raise ValueError(f"unknown head kind {head!r}")


def read_checkpoint_tensors(directory: Path) -> tuple[dict[str, Tensor], Path]:
    """All tensors of a checkpoint directory (model.safetensors or pytorch_model.bin)."""
    for name in (SAFETENSORS_NAME, PYTORCH_NAME):
        path = directory / name
        if path.is_file():
            try:
                if name == SAFETENSORS_NAME:
                    return load_file(path, device="cpu"), path
                return torch.load(path, map_location="cpu", weights_only=True), path
            except Exception as error:  # truncated files raise library-specific errors
                raise ValueError(f"{path}: cannot read weights: {error}") from error
    raise FileNotFoundError(f"{directory}: no {SAFETENSORS_NAME} or {PYTORCH_NAME}")


def load_encoder(
    directory: str | os.PathLike[str], **config_overrides: Any
) -> tuple[BertModel, LoadReport]:
    """The BERT encoder of any checkpoint directory: pretrained, imported or fine-tuned.

    Head tensors (pretraining heads, or the output layer of another task) are left out, so a
    fine-tuned MNLI model starts RTE as easily as a pretrained one.
    """
    directory = Path(directory)
    config = read_hf_config(directory)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    config.validate()
    bert = BertModel(config)
    tensors, path = read_checkpoint_tensors(directory)
    encoder = {
        k: v
        for k, v in tensors.items()
        if not k.removeprefix("bert.").removeprefix("albert.").startswith(HEAD_PREFIXES)
    }
    report = load_hf_state_dict(bert, encoder, source=str(path))
    return bert, report


def hf_state_dict(model: TaskModel) -> dict[str, Tensor]:
    """Weights under transformers' BertFor* (or AlbertFor*) names."""
    encoder = to_hf_state_dict(model.bert)
    prefix = hf_family(model.bert.config)
    tensors = {
        f"{prefix}.{name}": tensor
        for name, tensor in encoder.items()
        if model.uses_pooler or not name.startswith("pooler.")
    }
    for name, tensor in model.state_dict().items():
        if not name.startswith("bert."):
            tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return tensors


def hf_config(
    model: TaskModel, head: str, labels: list[str], info: dict[str, Any]
) -> dict[str, Any]:
    """config.json for transformers' BertFor* (or AlbertFor*) class, with our task record under
    "finetune"."""
    config = config_to_hf(model.bert.config, architecture=model.hf_architecture, dtype="float32")
    if head in ("classification", "token"):
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config["label2id"] = {label: i for i, label in enumerate(labels)}
        if head == "classification":
            config["problem_type"] = "single_label_classification"
    elif head == "regression":
        config["id2label"] = {"0": "LABEL_0"}
        config["label2id"] = {"LABEL_0": 0}
        config["problem_type"] = "regression"
    config[FINETUNE_KEY] = info
    return config


def save_task_model(
    model: TaskModel,
    directory: str | os.PathLike[str],
    *,
    info: dict[str, Any],
    write_tokenizer: Any = None,
) -> Path:
    """Write a fine-tuned model as a transformers directory, replacing it atomically.

    `info` is the task's record (task, head, labels, options); `write_tokenizer(dir)` adds
    vocab.txt and tokenizer_config.json so the directory is a complete checkpoint.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(hf_state_dict(model), staging / SAFETENSORS_NAME, metadata={"format": "pt"})
        config = hf_config(model, info["head"], info.get("labels", []), info)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if write_tokenizer is not None:
            write_tokenizer(staging)
        publish_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_task_info(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The "finetune" record of a fine-tuned model directory."""
    path = Path(directory) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; is {directory} a model directory?") from None
    info = config.get(FINETUNE_KEY)
    if not isinstance(info, dict) or "head" not in info:
        raise ValueError(
            f"{path}: no '{FINETUNE_KEY}' record; this is not a model fine-tuned by model.finetune"
        )
    return info


def load_task_model(directory: str | os.PathLike[str]) -> tuple[TaskModel, dict[str, Any]]:
    """A fine-tuned model saved by save_task_model, and its task record."""
    directory = Path(directory)
    info = read_task_info(directory)
    bert, _ = load_encoder(directory)
    model = build_task_model(info["head"], bert, max(len(info.get("labels", [])), 1))
    tensors, path = read_checkpoint_tensors(directory)
    head = {k: v for k, v in tensors.items() if k.startswith(HEAD_PREFIXES)}
    missing, unexpected = model.load_state_dict(head, strict=False)
    missing = [k for k in missing if not k.startswith("bert.")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: head weights do not fit: missing {missing}, unexpected {unexpected}"
        )
    return model, info
