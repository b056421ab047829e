"""Your own sentence or sentence-pair classification or regression data.

Put train, dev and (optionally) test files in one directory, named train.jsonl / dev.jsonl /
test.jsonl (or .csv, .tsv, .parquet), and say which fields hold the texts and the label:

    --task custom --task-option text_a=premise --task-option text_b=hypothesis \
        --task-option label=gold --task-option kind=classification

The label set is the sorted set of training labels unless `labels` lists it (in id order); a
dev or test label outside it is an error. A test file without the label field is predicted only.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from model.metrics.glue import accuracy, macro_f1, regression_metrics
from model.tasks.base import (
    DataError,
    Encoded,
    SplitData,
    TaskOptions,
    TaskProcessor,
    check_not_empty,
)
from model.tasks.pairs import SentenceExample, encode_sentences, predict_sentences
from model.tasks.tokenize import CheckpointTokenizer

FORMATS = ("jsonl", "csv", "tsv", "parquet")


@dataclass(frozen=True, kw_only=True)
class CustomOptions(TaskOptions):
    """Where the texts and labels are, and what kind of target the label is."""

    text_a: str = "text"  # field of the sentence (the first one of a pair)
    text_b: str | None = None  # field of the second sentence; None for single sentences
    label: str = "label"  # field of the label: a class name, or a number for regression
    id: str | None = None  # field of an example id for the predictions; None: the row number
    kind: Literal["classification", "regression"] = "classification"
    labels: str | None = None  # comma-separated label set in id order; None: from train
    format: Literal["auto", "jsonl", "csv", "tsv", "parquet"] = "auto"  # auto: by extension

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"kind must be classification or regression, got {self.kind!r}")
        if self.format not in ("auto", *FORMATS):
            raise ValueError(f"format must be auto or one of {FORMATS}, got {self.format!r}")


class CustomProcessor(TaskProcessor):
    """Sentence(-pair) classification or regression from JSONL, CSV/TSV or Parquet files."""

    name, display_name = "custom", "custom"
    options_type = CustomOptions

    def __init__(self, options: CustomOptions | None = None) -> None:
        super().__init__(options)
        self._labels = self.options.labels.split(",") if self.options.labels else None

    @property
    def head(self) -> str:  # type: ignore[override]
        return self.options.kind

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        return "dev/accuracy" if self.options.kind == "classification" else "dev/spearman"

    @property
    def labels(self) -> list[str]:
        if self.options.kind == "regression":
            return []
        if self._labels is None:
            raise DataError("the label set is not known yet: read the train split first")
        return list(self._labels)

    def finetune_info(self) -> dict[str, Any]:
        info = super().finetune_info()
        if self.options.kind == "classification":
            # A saved model must know its label ids without re-reading the training file.
            info["options"]["labels"] = ",".join(self.labels)
        return info

    def split_files(self, split: str) -> tuple[str, ...]:
        formats = FORMATS if self.options.format == "auto" else (self.options.format,)
        return tuple(f"{split}.{extension}" for extension in formats)

    def read(self, data_dir: Path, split: str) -> SplitData[SentenceExample]:
        path = self.require_path(data_dir, split)
        o = self.options
        examples = []
        labelled = True
        for number, record in _records(path):
            for name in (o.text_a, o.text_b, o.id):
                if name is not None and name not in record:
                    raise DataError(
                        f"{path}: row {number} has no field {name!r}; it has {sorted(record)}"
                    )
            if number == 1 and o.label not in record and split == "test":
                labelled = False
            label = record.get(o.label) if labelled else None
            if labelled and label is None:
                raise DataError(f"{path}: row {number} has no value in label field {o.label!r}")
            texts = [record[o.text_a], record[o.text_b] if o.text_b else ""]
            if any(not isinstance(t, str) for t in texts):
                raise DataError(f"{path}: row {number}: the text fields must hold strings")
            examples.append(
                SentenceExample(
                    guid=str(record[o.id]) if o.id else str(number),
                    text_a=texts[0],
                    text_b=texts[1] if o.text_b else None,
                    label=self._label(path, number, label) if labelled else None,
                    line=number,
                )
            )
        split_data = check_not_empty(
            SplitData(name=split, source=str(path), examples=examples, has_labels=labelled)
        )
        if split == "train" and o.kind == "classification" and self._labels is None:
            self._labels = sorted({e.label for e in examples})
            if len(self._labels) < 2:
                raise DataError(f"{path}: every training example has label {self._labels}")
        if o.kind == "classification" and labelled:
            known = set(self.labels)
            for e in examples:
                if e.label not in known:
                    raise DataError(
                        f"{path}: row {e.line}: label {e.label!r} is not one of {self.labels}"
                    )
        return split_data

    def _label(self, path: Path, number: int, value: Any) -> str | float:
        if self.options.kind == "classification":
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: row {number}: label {value!r} is not a number") from None
        if not math.isfinite(score):
            raise DataError(f"{path}: row {number}: label {value!r} is not finite")
        return score

    def encode(
        self, split: SplitData, tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        labels = self.labels if self.options.kind == "classification" else None
        return encode_sentences(split, tokenizer, max_seq_length, labels)

    def predict(self, split: SplitData, encoded: Encoded, logits: Tensor) -> list:
        labels = self.labels if self.options.kind == "classification" else None
        return predict_sentences(logits, labels)

    def score(self, split: SplitData, predictions: list) -> dict[str, float]:
        gold = [e.label for e in split.examples]
        if self.options.kind == "regression":
            return regression_metrics(predictions, gold)
        return {
            "accuracy": 100.0 * accuracy(predictions, gold),
            "macro_f1": 100.0 * macro_f1(predictions, gold, self.labels),
        }

    def write_predictions(self, split: SplitData, predictions: list, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}_{split.name}_predictions.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for example, prediction in zip(split.examples, predictions, strict=True):
                row = {"id": example.guid, "prediction": prediction}
                if example.label is not None:
                    row["label"] = example.label
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return [path]


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1, record) of a JSONL, CSV/TSV or Parquet file."""
    suffix = path.suffix.lstrip(".")
    if suffix == "jsonl":
        with open(path, encoding="utf-8") as f:
            number = 0
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                number += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:{line_number}: not valid JSON ({error})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{line_number}: expected a JSON object")
                yield number, record
    elif suffix in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="," if suffix == "csv" else "\t")
            for number, record in enumerate(reader, start=1):
                if None in record or None in record.values():
                    raise DataError(
                        f"{path}:{reader.line_num}: field count differs from the header's"
                    )
                yield number, record
    elif suffix == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"{path}: cannot read Parquet ({error})") from error
        yield from enumerate(table.to_pylist(), start=1)
    else:
        raise DataError(f"{path}: unknown format {suffix!r}; use one of {FORMATS}")
