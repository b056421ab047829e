"""What every fine-tuning task provides, and the encoded tensors the trainer consumes.

A task (one processor class, as in google-research/bert's run_classifier.py) reads its
splits from the files a benchmark distributes, turns examples into fixed-length features,
turns the model's logits back into one prediction per example, scores them with the
benchmark's official metric and writes predictions in the benchmark's submission format.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import Tensor

from model.tasks.tokenize import CheckpointTokenizer

HeadKind = Literal["classification", "regression", "span", "token", "choice"]
IGNORE_INDEX = -100  # label of a position that carries no target (padding, later sub-tokens)

E = TypeVar("E")


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and the record."""


@dataclass(frozen=True, kw_only=True)
class Grid:
    """Hyperparameters to try; every combination is one fine-tuning run per seed."""

    learning_rates: tuple[float, ...]  # peak AdamW learning rate after warm-up
    batch_sizes: tuple[int, ...]  # training examples per optimizer step
    epochs: tuple[int, ...]  # passes over the training set

    def __post_init__(self) -> None:
        for name in ("learning_rates", "batch_sizes", "epochs"):
            values = getattr(self, name)
            if not values or any(v <= 0 for v in values):
                raise ValueError(f"grid {name} must be a non-empty list of positive values")

    def configurations(self) -> list[tuple[float, int, int]]:
        """(learning_rate, batch_size, epochs) in a fixed order."""
        return [
            (lr, batch, epochs)
            for lr in self.learning_rates
            for batch in self.batch_sizes
            for epochs in self.epochs
        ]


# The paper's fine-tuning grid (Appendix A.3): 3 x 2 x 3 = 18 configurations.
PAPER_GRID = Grid(learning_rates=(5e-5, 3e-5, 2e-5), batch_sizes=(16, 32), epochs=(2, 3, 4))


@dataclass(kw_only=True)
class SplitData(Generic[E]):
    """The examples of one split, where they came from, and what was skipped and why."""

    name: str  # "train", "dev", "dev_matched", "test", ...
    source: str  # the file read
    examples: list[E]
    has_labels: bool  # False for test files without gold labels
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records skipped
    notes: dict[str, int] = field(default_factory=dict)  # other counts worth reporting


@dataclass(kw_only=True)
class Encoded:
    """Features of one split as padded tensors, and how they map back to examples."""

    inputs: dict[str, Tensor]  # input_ids, token_type_ids, attention_mask: (N, T) or (N, C, T)
    targets: dict[str, Tensor]  # training targets (labels, start/end positions); may be empty
    example_index: Tensor  # (N,) the example each feature was made from
    meta: list[Any] = field(default_factory=list)  # per-feature data for post-processing
    stats: dict[str, int] = field(default_factory=dict)  # counts from encoding (truncations)

    def __len__(self) -> int:
        return self.example_index.numel()

    def to(self, device: torch.device) -> Encoded:
        """The same features with their tensors on `device` (one copy instead of one per batch)."""
        return Encoded(
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            targets={k: v.to(device) for k, v in self.targets.items()},
            example_index=self.example_index,
            meta=self.meta,
            stats=self.stats,
        )

    def batch(
        self, index: Tensor, *, with_targets: bool, length_multiple: int = 1
    ) -> dict[str, Tensor]:
        """Rows `index`, cut to the longest sequence among them (rounded up to a multiple).

        Sequences are padded at the end, so the cut only drops positions that are padding in
        every row; a batch without padding gets attention_mask None (the fused attention path).
        """
        mask = self.inputs["attention_mask"][index]
        length = int(mask.sum(-1).max())
        length = min(mask.size(-1), math.ceil(length / length_multiple) * length_multiple)
        out = {k: v[index][..., :length] for k, v in self.inputs.items()}
        if bool(out["attention_mask"].all()):
            out["attention_mask"] = None
        if with_targets:
            for key, target in self.targets.items():
                target = target[index]
                # Per-token targets (B, T) are cut like the inputs; per-sequence ones are not.
                out[key] = target[..., :length] if target.shape == mask.shape else target
        return out


def pad_rows(rows: Sequence[Sequence[int]], length: int, value: int = 0) -> Tensor:
    """(len(rows), length) long tensor of the rows, right-padded with `value`."""
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """Options a task accepts on top of the common ones; tasks subclass this."""


class TaskProcessor(ABC):
    """One benchmark task: its files, labels, features, predictions and metrics."""

    name: ClassVar[str]  # registry key, e.g. "mrpc"
    display_name: ClassVar[str]  # as the paper writes it, e.g. "MRPC"
    head: ClassVar[HeadKind]  # which output layer sits on BERT
    primary_metric: ClassVar[str]  # "split/metric" that the grid search maximises on dev
    max_seq_length: ClassVar[int] = 128  # default sequence length of the features
    default_grid: ClassVar[Grid] = PAPER_GRID
    dev_splits: ClassVar[tuple[str, ...]] = ("dev",)
    test_splits: ClassVar[tuple[str, ...]] = ("test",)
    options_type: ClassVar[type[TaskOptions]] = TaskOptions
    files: ClassVar[dict[str, tuple[str, ...]]] = {}  # split -> file names, by preference

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options if options is not None else self.options_type()
        if not isinstance(self.options, self.options_type):
            raise TypeError(f"{self.name} takes {self.options_type.__name__}, got {options!r}")

    @property
    def labels(self) -> list[str]:
        """Label names in id order; empty for regression and span tasks."""
        return []

    def split_path(self, data_dir: Path, split: str) -> Path | None:
        """The file that holds `split` under data_dir, or None if there is none."""
        for name in self.split_files(split):
            path = Path(data_dir) / name
            if path.is_file():
                return path
        return None

    def split_files(self, split: str) -> tuple[str, ...]:
        """File names that may hold `split`, in order of preference (default: `files`)."""
        if split not in self.files:
            raise DataError(f"{self.name} has no split {split!r}; it has {sorted(self.files)}")
        return self.files[split]

    def require_path(self, data_dir: Path, split: str) -> Path:
        path = self.split_path(data_dir, split)
        if path is None:
            names = " or ".join(self.split_files(split))
            raise DataError(f"{data_dir}: no {split} file for {self.name} (expected {names})")
        return path

    @abstractmethod
    def read(self, data_dir: Path, split: str) -> SplitData:
        """Read one split; raises DataError naming the file and record on bad input."""

    @abstractmethod
    def encode(
        self, split: SplitData, tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        """Features (with targets when the split has labels) of every example."""

    @abstractmethod
    def predict(self, split: SplitData, encoded: Encoded, logits: Tensor) -> list[Any]:
        """One prediction per example from the logits of every feature (N, ...)."""

    @abstractmethod
    def score(self, split: SplitData, predictions: list[Any]) -> dict[str, float]:
        """The official metrics of the predictions, in percent."""

    @abstractmethod
    def write_predictions(
        self, split: SplitData, predictions: list[Any], directory: Path
    ) -> list[Path]:
        """Write predictions (submission format for test splits); returns the files written."""

    def finetune_info(self) -> dict[str, Any]:
        """What a saved fine-tuned model records about its task."""
        return {
            "task": self.name,
            "head": self.head,
            "labels": self.labels,
            "options": dataclasses.asdict(self.options),
        }


def check_not_empty(split: SplitData) -> SplitData:
    """Raise DataError if a split holds no examples."""
    if not split.examples:
        raise DataError(f"{split.source}: the {split.name} split holds no examples")
    return split
