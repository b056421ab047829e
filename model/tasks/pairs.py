"""Single sentences and sentence pairs: the examples, features and predictions of GLUE-like tasks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.tasks.base import Encoded, SplitData, pad_rows
from model.tasks.tokenize import CheckpointTokenizer


@dataclass(frozen=True, kw_only=True)
class SentenceExample:
    """One sentence or sentence pair with its label (None in a test file)."""

    guid: str  # the id predictions are written under: the file's index column, or the line
    text_a: str
    text_b: str | None  # None for single-sentence tasks
    label: str | float | None  # a label name, a score (regression), or None
    line: int  # line (or row) of the file it came from, for error messages


def encode_sentences(
    split: SplitData[SentenceExample],
    tokenizer: CheckpointTokenizer,
    max_seq_length: int,
    labels: list[str] | None,
) -> Encoded:
    """[CLS] A [SEP] B [SEP] features; targets are label ids, or float scores if labels is None."""
    examples = split.examples
    encodings_a = tokenizer.encode_texts([e.text_a for e in examples])
    pair_rows = [i for i, e in enumerate(examples) if e.text_b is not None]
    encodings_b = dict(
        zip(pair_rows, tokenizer.encode_texts([examples[i].text_b for i in pair_rows]), strict=True)
    )
    input_ids, token_type_ids = [], []
    truncated = 0
    for i, encoding in enumerate(encodings_a):
        b = encodings_b.get(i)
        ids, types, cut = tokenizer.frame_pair(
            encoding.ids, b.ids if b is not None else None, max_seq_length
        )
        input_ids.append(ids)
        token_type_ids.append(types)
        truncated += cut
    inputs = {
        "input_ids": pad_rows(input_ids, max_seq_length, tokenizer.pad_id),
        "token_type_ids": pad_rows(token_type_ids, max_seq_length),
        "attention_mask": pad_rows([[1] * len(ids) for ids in input_ids], max_seq_length),
    }
    targets: dict[str, Tensor] = {}
    if split.has_labels:
        if labels is None:
            targets["labels"] = torch.tensor(
                [float(e.label) for e in examples], dtype=torch.float32
            )
        else:
            label_id = {name: i for i, name in enumerate(labels)}
            targets["labels"] = torch.tensor(
                [label_id[e.label] for e in examples], dtype=torch.long
            )
    return Encoded(
        inputs=inputs,
        targets=targets,
        example_index=torch.arange(len(examples)),
        stats={"truncated_examples": truncated},
    )


def predict_sentences(logits: Tensor, labels: list[str] | None) -> list[str] | list[float]:
    """Label names (argmax), or the regression output when labels is None."""
    if labels is None:
        return [float(v) for v in logits.reshape(-1).tolist()]
    return [labels[i] for i in logits.argmax(dim=-1).tolist()]
