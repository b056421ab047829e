"""The nine GLUE tasks, read from the TSV files of the standard GLUE distribution.

Files are tab-separated with quoting off (GLUE's sentences contain bare quote characters).
Each file has a header naming its columns, except CoLA's train.tsv and dev.tsv, which have
four unnamed columns (source, label, original label, sentence). A row whose field count
differs from the header's is malformed: in a training file it is skipped and counted (up to
`max_bad_train_fraction` of the rows, beyond which the file is taken to be the wrong one); in a
dev or test file it is an error, since skipping it would change the score or the submission.
A label outside the task's label set is always an error.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import Tensor

from model.metrics.glue import GLUE_METRICS, classification_metrics, regression_metrics
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

STSB_RANGE = (0.0, 5.0)  # similarity scores are 0 (unrelated) to 5 (equivalent)


@dataclass(frozen=True)
class TsvLayout:
    """Where a GLUE file keeps its fields: header names, or positions when it has no header."""

    text_a: str | int
    text_b: str | int | None = None
    label: str | int | None = None  # None in test files
    guid: str | int | None = None  # None: the id is "<split>-<line>"
    header: bool = True
    columns: int | None = None  # field count of a file without a header


@dataclass(frozen=True, kw_only=True)
class GlueOptions(TaskOptions):
    """How strictly GLUE files are read."""

    max_bad_train_fraction: float = 0.01  # malformed training rows skipped up to this share


class GlueProcessor(TaskProcessor):
    """A GLUE task: its files, layouts, label set and submission file names."""

    label_list: ClassVar[tuple[str, ...]] = ("0", "1")  # () for the regression task STS-B
    labelled_layout: ClassVar[TsvLayout]
    test_layout: ClassVar[TsvLayout]
    files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("train.tsv",),
        "dev": ("dev.tsv",),
        "test": ("test.tsv",),
    }
    submission_files: ClassVar[dict[str, str]]  # test split -> file name GLUE's server expects
    options_type = GlueOptions

    @property
    def labels(self) -> list[str]:
        return list(self.label_list)

    @property
    def regression(self) -> bool:
        return not self.label_list

    def read(self, data_dir: Path, split: str) -> SplitData[SentenceExample]:
        path = self.require_path(data_dir, split)
        is_test = split in self.test_splits
        layout = self.test_layout if is_test else self.labelled_layout
        examples: list[SentenceExample] = []
        malformed = blank = rows = 0
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if layout.header:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{path}: empty file, expected a header line")
                index, width = self._column_index(path, header, layout), len(header)
            else:
                index, width = {}, layout.columns
            for row in reader:
                line = reader.line_num
                if not row or row == [""]:
                    blank += 1
                    continue
                rows += 1
                if len(row) != width:
                    if split == "train":
                        malformed += 1
                        continue
                    raise DataError(
                        f"{path}:{line}: expected {width} tab-separated fields, found {len(row)}"
                    )
                examples.append(self._example(path, line, split, row, index, layout))
        if split == "train" and malformed > self.options.max_bad_train_fraction * max(rows, 1):
            raise DataError(
                f"{path}: {malformed} of {rows} rows do not have {width} fields; is this the "
                f"{self.display_name} file of the GLUE distribution?"
            )
        result = SplitData(
            name=split,
            source=str(path),
            examples=examples,
            has_labels=not is_test,
            skipped={"malformed_rows": malformed} if malformed else {},
            notes={"blank_lines": blank} if blank else {},
        )
        return check_not_empty(result)

    def _column_index(self, path: Path, header: list[str], layout: TsvLayout) -> dict[str, int]:
        wanted = [
            c for c in (layout.text_a, layout.text_b, layout.label, layout.guid) if c is not None
        ]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(
                f"{path}: header lacks column(s) {missing} that {self.display_name} needs; "
                f"found {header}"
            )
        return {name: header.index(name) for name in wanted}

    def _example(
        self,
        path: Path,
        line: int,
        split: str,
        row: list[str],
        index: dict[str, int],
        layout: TsvLayout,
    ) -> SentenceExample:
        def field(column: str | int | None) -> str | None:
            if column is None:
                return None
            return row[index[column]] if isinstance(column, str) else row[column]

        label = field(layout.label)
        if label is not None:
            label = self._check_label(path, line, label)
        guid = field(layout.guid)
        return SentenceExample(
            guid=guid if guid is not None else f"{split}-{line}",
            text_a=field(layout.text_a),
            text_b=field(layout.text_b),
            label=label,
            line=line,
        )

    def _check_label(self, path: Path, line: int, label: str) -> str | float:
        if not self.regression:
            if label not in self.label_list:
                raise DataError(
                    f"{path}:{line}: label {label!r} is not one of {list(self.label_list)}"
                )
            return label
        try:
            score = float(label)
        except ValueError:
            raise DataError(f"{path}:{line}: score {label!r} is not a number") from None
        low, high = STSB_RANGE
        if not (math.isfinite(score) and low <= score <= high):
            raise DataError(f"{path}:{line}: score {score} is outside [{low}, {high}]")
        return score

    def encode(
        self, split: SplitData, tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        labels = None if self.regression else self.labels
        return encode_sentences(split, tokenizer, max_seq_length, labels)

    def predict(self, split: SplitData, encoded: Encoded, logits: Tensor) -> list:
        return predict_sentences(logits, None if self.regression else self.labels)

    def score(self, split: SplitData, predictions: list) -> dict[str, float]:
        gold = [e.label for e in split.examples]
        if self.regression:
            return regression_metrics(predictions, gold)
        return classification_metrics(predictions, gold, GLUE_METRICS[self.name])

    def write_predictions(self, split: SplitData, predictions: list, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        if split.name in self.test_splits:
            # GLUE's server reads "index<TAB>prediction"; STS-B scores must lie in [0, 5].
            path = directory / self.submission_files[split.name]
            lines = ["index\tprediction"]
            for example, prediction in zip(split.examples, predictions, strict=True):
                lines.append(f"{example.guid}\t{self._format(prediction, clip=True)}")
        else:
            path = directory / f"{self.name}_{split.name}_predictions.tsv"
            lines = ["guid\tprediction\tlabel"]
            for example, prediction in zip(split.examples, predictions, strict=True):
                lines.append(f"{example.guid}\t{self._format(prediction)}\t{example.label}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [path]

    def _format(self, prediction: str | float, *, clip: bool = False) -> str:
        if not self.regression:
            return str(prediction)
        if clip:
            prediction = min(max(prediction, STSB_RANGE[0]), STSB_RANGE[1])
        return f"{prediction:.3f}"


class ColaProcessor(GlueProcessor):
    """CoLA: is the sentence grammatical? Matthews correlation."""

    name, display_name, head = "cola", "CoLA", "classification"
    primary_metric = "dev/mcc"
    # train.tsv/dev.tsv: source, label, original judgement, sentence (no header).
    labelled_layout = TsvLayout(text_a=3, label=1, header=False, columns=4)
    test_layout = TsvLayout(text_a="sentence", guid="index")
    submission_files = {"test": "CoLA.tsv"}


class Sst2Processor(GlueProcessor):
    """SST-2: sentence sentiment, positive (1) or negative (0). Accuracy."""

    name, display_name, head = "sst2", "SST-2", "classification"
    primary_metric = "dev/accuracy"
    labelled_layout = TsvLayout(text_a="sentence", label="label")
    test_layout = TsvLayout(text_a="sentence", guid="index")
    submission_files = {"test": "SST-2.tsv"}


class MrpcProcessor(GlueProcessor):
    """MRPC: are the two sentences paraphrases? F1 and accuracy."""

    name, display_name, head = "mrpc", "MRPC", "classification"
    primary_metric = "dev/f1"
    labelled_layout = TsvLayout(text_a="#1 String", text_b="#2 String", label="Quality")
    test_layout = TsvLayout(text_a="#1 String", text_b="#2 String", guid="index")
    submission_files = {"test": "MRPC.tsv"}


class StsbProcessor(GlueProcessor):
    """STS-B: similarity score 0-5 of a sentence pair (regression). Pearson and Spearman."""

    name, display_name, head = "stsb", "STS-B", "regression"
    label_list = ()
    primary_metric = "dev/spearman"
    labelled_layout = TsvLayout(text_a="sentence1", text_b="sentence2", label="score")
    test_layout = TsvLayout(text_a="sentence1", text_b="sentence2", guid="index")
    submission_files = {"test": "STS-B.tsv"}


class QqpProcessor(GlueProcessor):
    """QQP: are the two Quora questions duplicates? F1 and accuracy."""

    name, display_name, head = "qqp", "QQP", "classification"
    primary_metric = "dev/f1"
    labelled_layout = TsvLayout(text_a="question1", text_b="question2", label="is_duplicate")
    test_layout = TsvLayout(text_a="question1", text_b="question2", guid="id")
    submission_files = {"test": "QQP.tsv"}


class MnliProcessor(GlueProcessor):
    """MNLI: entailment, neutral or contradiction; matched and mismatched dev sets. Accuracy."""

    name, display_name, head = "mnli", "MNLI", "classification"
    label_list = ("contradiction", "entailment", "neutral")
    primary_metric = "dev_matched/accuracy"
    dev_splits = ("dev_matched", "dev_mismatched")
    # The diagnostic set (AX) is predicted with the MNLI model for the GLUE submission.
    test_splits = ("test_matched", "test_mismatched", "diagnostic")
    labelled_layout = TsvLayout(text_a="sentence1", text_b="sentence2", label="gold_label")
    test_layout = TsvLayout(text_a="sentence1", text_b="sentence2", guid="index")
    files = {
        "train": ("train.tsv",),
        "dev_matched": ("dev_matched.tsv",),
        "dev_mismatched": ("dev_mismatched.tsv",),
        "test_matched": ("test_matched.tsv",),
        "test_mismatched": ("test_mismatched.tsv",),
        "diagnostic": ("diagnostic.tsv", "../diagnostic/diagnostic.tsv"),
    }
    submission_files = {
        "test_matched": "MNLI-m.tsv",
        "test_mismatched": "MNLI-mm.tsv",
        "diagnostic": "AX.tsv",
    }


class QnliProcessor(GlueProcessor):
    """QNLI: does the sentence answer the question? Accuracy."""

    name, display_name, head = "qnli", "QNLI", "classification"
    label_list = ("entailment", "not_entailment")
    primary_metric = "dev/accuracy"
    labelled_layout = TsvLayout(text_a="question", text_b="sentence", label="label")
    test_layout = TsvLayout(text_a="question", text_b="sentence", guid="index")
    submission_files = {"test": "QNLI.tsv"}


class RteProcessor(GlueProcessor):
    """RTE: does sentence 1 entail sentence 2? Accuracy."""

    name, display_name, head = "rte", "RTE", "classification"
    label_list = ("entailment", "not_entailment")
    primary_metric = "dev/accuracy"
    labelled_layout = TsvLayout(text_a="sentence1", text_b="sentence2", label="label")
    test_layout = TsvLayout(text_a="sentence1", text_b="sentence2", guid="index")
    submission_files = {"test": "RTE.tsv"}


class WnliProcessor(GlueProcessor):
    """WNLI: Winograd NLI, entailment (1) or not (0). Accuracy."""

    name, display_name, head = "wnli", "WNLI", "classification"
    primary_metric = "dev/accuracy"
    labelled_layout = TsvLayout(text_a="sentence1", text_b="sentence2", label="label")
    test_layout = TsvLayout(text_a="sentence1", text_b="sentence2", guid="index")
    submission_files = {"test": "WNLI.tsv"}


GLUE_TASKS: dict[str, type[GlueProcessor]] = {
    "cola": ColaProcessor,
    "sst2": Sst2Processor,
    "mrpc": MrpcProcessor,
    "stsb": StsbProcessor,
    "qqp": QqpProcessor,
    "mnli": MnliProcessor,
    "qnli": QnliProcessor,
    "rte": RteProcessor,
    "wnli": WnliProcessor,
}
