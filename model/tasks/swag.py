"""SWAG: pick the most plausible of four endings, from the CSV files of the SWAG release.

Each ending makes one sequence [CLS] sent1 [SEP] sent2 + ending [SEP]; the model scores each
from its [CLS] vector and a softmax runs over the four scores, as in the paper.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from model.metrics.glue import accuracy
from model.tasks.base import (
    DataError,
    Encoded,
    Grid,
    SplitData,
    TaskProcessor,
    check_not_empty,
    pad_rows,
)
from model.tasks.tokenize import CheckpointTokenizer

NUM_ENDINGS = 4
ENDINGS = tuple(f"ending{i}" for i in range(NUM_ENDINGS))


@dataclass(frozen=True, kw_only=True)
class ChoiceExample:
    """A context and its candidate endings."""

    guid: str  # the row's id column, or "<split>-<line>"
    context: str  # sent1: the first sentence
    start: str  # sent2: the beginning of the second sentence, which every ending continues
    endings: tuple[str, ...]
    label: int | None  # index of the right ending; None in the test file


class SwagProcessor(TaskProcessor):
    """SWAG (Zellers et al., 2018): grounded commonsense inference. Accuracy."""

    name, display_name, head = "swag", "SWAG", "choice"
    primary_metric = "dev/accuracy"
    default_grid = Grid(learning_rates=(2e-5,), batch_sizes=(16,), epochs=(3,))  # the paper's
    files = {"train": ("train.csv",), "dev": ("val.csv", "dev.csv"), "test": ("test.csv",)}

    @property
    def labels(self) -> list[str]:
        return [str(i) for i in range(NUM_ENDINGS)]

    def read(self, data_dir: Path, split: str) -> SplitData[ChoiceExample]:
        path = self.require_path(data_dir, split)
        labelled = split != "test"
        examples = []
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file, expected a header line")
            needed = ["sent1", "sent2", *ENDINGS] + (["label"] if labelled else [])
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(f"{path}: header lacks column(s) {missing}; found {header}")
            column = {name: header.index(name) for name in needed}
            # The release's first column is an unnamed row id; fold-ind identifies the video clip.
            id_column = (
                0 if header[0] == "" else header.index("fold-ind") if "fold-ind" in header else None
            )
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{line}: expected {len(header)} comma-separated fields, found {len(row)}"
                    )
                label = None
                if labelled:
                    raw = row[column["label"]]
                    if raw not in {str(i) for i in range(NUM_ENDINGS)}:
                        raise DataError(
                            f"{path}:{line}: label {raw!r} is not an ending index 0-{NUM_ENDINGS - 1}"
                        )
                    label = int(raw)
                examples.append(
                    ChoiceExample(
                        guid=row[id_column] if id_column is not None else f"{split}-{line}",
                        context=row[column["sent1"]],
                        start=row[column["sent2"]],
                        endings=tuple(row[column[e]] for e in ENDINGS),
                        label=label,
                    )
                )
        return check_not_empty(
            SplitData(name=split, source=str(path), examples=examples, has_labels=labelled)
        )

    def encode(
        self, split: SplitData[ChoiceExample], tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        examples = split.examples
        contexts = tokenizer.encode_texts([e.context for e in examples])
        continuations = tokenizer.encode_texts(
            [f"{e.start} {ending}".strip() for e in examples for ending in e.endings]
        )
        input_ids, token_type_ids = [], []
        truncated = 0
        for i, context in enumerate(contexts):
            for j in range(NUM_ENDINGS):
                ending = continuations[i * NUM_ENDINGS + j]
                ids, types, cut = tokenizer.frame_pair(context.ids, ending.ids, max_seq_length)
                input_ids.append(ids)
                token_type_ids.append(types)
                truncated += cut
        shape = (len(examples), NUM_ENDINGS, max_seq_length)
        inputs = {
            "input_ids": pad_rows(input_ids, max_seq_length, tokenizer.pad_id).view(shape),
            "token_type_ids": pad_rows(token_type_ids, max_seq_length).view(shape),
            "attention_mask": pad_rows([[1] * len(r) for r in input_ids], max_seq_length).view(
                shape
            ),
        }
        targets = {}
        if split.has_labels:
            targets["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
        return Encoded(
            inputs=inputs,
            targets=targets,
            example_index=torch.arange(len(examples)),
            stats={"truncated_sequences": truncated},
        )

    def predict(self, split: SplitData, encoded: Encoded, logits: Tensor) -> list[int]:
        return logits.argmax(dim=-1).tolist()

    def score(self, split: SplitData[ChoiceExample], predictions: list) -> dict[str, float]:
        return {"accuracy": 100.0 * accuracy(predictions, [e.label for e in split.examples])}

    def write_predictions(
        self, split: SplitData[ChoiceExample], predictions: list, directory: Path
    ) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}_{split.name}_predictions.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "prediction", "label"])
            for example, prediction in zip(split.examples, predictions, strict=True):
                writer.writerow(
                    [example.guid, prediction, "" if example.label is None else example.label]
                )
        return [path]
