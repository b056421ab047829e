"""CoNLL-2003 named entities from the shared task's column files, scored as conlleval scores them.

Each non-blank line is a word with its columns (word, POS, chunk, NER tag: the tag is the last
column, the word the first); a blank line ends a sentence and "-DOCSTART-" lines separate
documents. The original files use IOB1 tags; many copies use BIO (IOB2). Both are read
(`scheme` checks one of them strictly) and converted to BIO for training. The model labels the
first sub-token of each word; the other sub-tokens carry no target. A sentence longer than the
model's window is split between words into several windows, so every word gets a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from model.metrics.conlleval import OUTSIDE, evaluate, iob1_to_bio, split_tag
from model.tasks.base import (
    IGNORE_INDEX,
    DataError,
    Encoded,
    SplitData,
    TaskOptions,
    TaskProcessor,
    check_not_empty,
    pad_rows,
)
from model.tasks.tokenize import CheckpointTokenizer

ENTITY_TYPES = ("PER", "ORG", "LOC", "MISC")
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True, kw_only=True)
class ConllOptions(TaskOptions):
    """Which tagging scheme the files use."""

    scheme: Literal["auto", "iob1", "bio"] = "auto"  # auto: IOB1 or BIO, not checked

    def __post_init__(self) -> None:
        if self.scheme not in ("auto", "iob1", "bio"):
            raise ValueError(f"scheme must be auto, iob1 or bio, got {self.scheme!r}")


@dataclass(frozen=True, kw_only=True)
class NerExample:
    """One sentence: its words and their tags as the file gives them."""

    guid: str  # "<split>-<first line>"
    words: tuple[str, ...]
    tags: tuple[str, ...] | None  # None when the file has no tag column
    line: int  # line of the first word

    @property
    def bio_tags(self) -> list[str]:
        return iob1_to_bio(self.tags) if self.tags is not None else []


@dataclass(frozen=True)
class WordWindow:
    """Which words of a sentence a feature holds and where their first sub-tokens are."""

    example: int
    first_word: int
    positions: tuple[int, ...]  # input position of each word's first sub-token


class Conll2003Processor(TaskProcessor):
    """CoNLL-2003 English NER: PER, ORG, LOC, MISC. Entity-level F1 (conlleval)."""

    name, display_name, head = "conll2003", "CoNLL-2003 NER", "token"
    primary_metric = "dev/f1"
    options_type = ConllOptions
    files = {
        "train": ("train.txt", "eng.train"),
        "dev": ("valid.txt", "dev.txt", "eng.testa"),
        "test": ("test.txt", "eng.testb"),
    }

    @property
    def labels(self) -> list[str]:
        return [OUTSIDE] + [f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I")]

    def read(self, data_dir: Path, split: str) -> SplitData[NerExample]:
        path = self.require_path(data_dir, split)
        examples: list[NerExample] = []
        words: list[str] = []
        tags: list[str] = []
        first_line = 0
        tagged: bool | None = None
        documents = 0

        def end_sentence() -> None:
            if words:
                examples.append(
                    NerExample(
                        guid=f"{split}-{first_line}",
                        words=tuple(words),
                        tags=tuple(tags) if tagged else None,
                        line=first_line,
                    )
                )
            words.clear()
            tags.clear()

        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    end_sentence()
                    continue
                if fields[0] == DOCSTART:
                    end_sentence()
                    documents += 1
                    continue
                if tagged is None:
                    tagged = len(fields) > 1
                if tagged != (len(fields) > 1):
                    raise DataError(
                        f"{path}:{number}: {len(fields)} column(s), but earlier lines "
                        f"{'have' if tagged else 'lack'} a tag column"
                    )
                if not words:
                    first_line = number
                words.append(fields[0])
                if tagged:
                    tags.append(self._check_tag(path, number, fields[-1], tags))
        end_sentence()
        split_data = SplitData(
            name=split,
            source=str(path),
            examples=examples,
            has_labels=bool(tagged),
            notes={"documents": documents},
        )
        return check_not_empty(split_data)

    def _check_tag(self, path: Path, number: int, tag: str, previous: list[str]) -> str:
        try:
            prefix, entity_type = split_tag(tag)
        except ValueError as error:
            raise DataError(f"{path}:{number}: {error}") from None
        if prefix != OUTSIDE and entity_type not in ENTITY_TYPES:
            raise DataError(
                f"{path}:{number}: tag {tag!r} has entity type {entity_type!r}, not one of "
                f"{list(ENTITY_TYPES)}"
            )
        prev_prefix, prev_type = split_tag(previous[-1]) if previous else (OUTSIDE, "")
        continues = prev_prefix != OUTSIDE and prev_type == entity_type
        scheme = self.options.scheme
        if scheme == "bio" and prefix == "I" and not continues:
            raise DataError(
                f"{path}:{number}: {tag} starts an entity, which BIO does not allow (IOB1 "
                "does); use the task option scheme=iob1 or scheme=auto"
            )
        if scheme == "iob1" and prefix == "B" and not continues:
            raise DataError(
                f"{path}:{number}: {tag} does not follow an entity of type {entity_type}, which "
                "IOB1 requires of B- tags; use the task option scheme=bio or scheme=auto"
            )
        return tag

    def encode(
        self, split: SplitData[NerExample], tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        label_id = {label: i for i, label in enumerate(self.labels)}
        encodings = tokenizer.encode_words([list(e.words) for e in split.examples])
        budget = max_seq_length - 2
        input_ids, labels, example_index = [], [], []
        meta: list[WordWindow] = []
        stats = {"words_without_pieces": 0, "words_truncated": 0, "split_sentences": 0}
        for i, (example, encoding) in enumerate(zip(split.examples, encodings, strict=True)):
            pieces: list[list[int]] = [[] for _ in example.words]
            for token_id, word in zip(encoding.ids, encoding.word_ids, strict=True):
                pieces[word].append(token_id)
            for word_pieces in pieces:
                if not word_pieces:  # e.g. a word of only control characters: keep a slot
                    word_pieces.append(tokenizer.unk_id)
                    stats["words_without_pieces"] += 1
                if len(word_pieces) > budget:
                    del word_pieces[budget:]
                    stats["words_truncated"] += 1
            tag_ids = [label_id[t] for t in example.bio_tags] if split.has_labels else []
            windows = _pack_words([len(p) for p in pieces], budget)
            stats["split_sentences"] += len(windows) > 1
            for first, last in windows:
                ids, row_labels, positions = [tokenizer.cls_id], [IGNORE_INDEX], []
                for w in range(first, last):
                    positions.append(len(ids))
                    ids += pieces[w]
                    row_labels += [tag_ids[w] if tag_ids else IGNORE_INDEX]
                    row_labels += [IGNORE_INDEX] * (len(pieces[w]) - 1)
                ids.append(tokenizer.sep_id)
                row_labels.append(IGNORE_INDEX)
                input_ids.append(ids)
                labels.append(row_labels)
                example_index.append(i)
                meta.append(WordWindow(i, first, tuple(positions)))
        inputs = {
            "input_ids": pad_rows(input_ids, max_seq_length, tokenizer.pad_id),
            "token_type_ids": pad_rows([[0] * len(r) for r in input_ids], max_seq_length),
            "attention_mask": pad_rows([[1] * len(r) for r in input_ids], max_seq_length),
        }
        targets = {}
        if split.has_labels:
            targets["labels"] = pad_rows(labels, max_seq_length, IGNORE_INDEX)
        return Encoded(
            inputs=inputs,
            targets=targets,
            example_index=torch.tensor(example_index, dtype=torch.long),
            meta=meta,
            stats=stats,
        )

    def predict(self, split: SplitData[NerExample], encoded: Encoded, logits: Tensor) -> list:
        """BIO tags per sentence from the logits (N, T, labels) at each word's first sub-token."""
        predictions: list[list[str]] = [[] for _ in split.examples]
        best = logits.argmax(dim=-1)  # (N, T)
        for f, window in enumerate(encoded.meta):
            row = best[f].tolist()
            predictions[window.example] += [self.labels[row[p]] for p in window.positions]
        return predictions

    def score(self, split: SplitData[NerExample], predictions: list) -> dict[str, float]:
        result = evaluate([e.bio_tags for e in split.examples], predictions)
        scores = {
            "f1": result.overall.f1,
            "precision": result.overall.precision,
            "recall": result.overall.recall,
            "accuracy": result.accuracy,
        }
        return scores | {f"f1_{t}": s.f1 for t, s in result.by_type.items()}

    def write_predictions(
        self, split: SplitData[NerExample], predictions: list, directory: Path
    ) -> list[Path]:
        """conlleval's input: word, gold tag (if known), predicted tag; blank between sentences."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}_{split.name}_predictions.txt"
        lines = []
        for example, predicted in zip(split.examples, predictions, strict=True):
            gold = example.bio_tags or [None] * len(example.words)
            for word, g, p in zip(example.words, gold, predicted, strict=True):
                lines.append(f"{word} {p}" if g is None else f"{word} {g} {p}")
            lines.append("")
        path.write_text("\n".join(lines), encoding="utf-8")
        return [path]


def _pack_words(piece_counts: list[int], budget: int) -> list[tuple[int, int]]:
    """(first, end) word ranges, each holding at most `budget` pieces, filled greedily."""
    windows = []
    first, used = 0, 0
    for w, count in enumerate(piece_counts):
        if used + count > budget and w > first:
            windows.append((first, w))
            first, used = w, 0
        used += count
    windows.append((first, len(piece_counts)))
    return windows
