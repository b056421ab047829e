"""SQuAD v1.1 and v2.0: question answering as span prediction over the official JSON files.

A context longer than the window is covered by overlapping windows ("doc spans"), each
[CLS] question [SEP] context piece [SEP]; window starts are `doc_stride` tokens apart, as in
google-research/bert's run_squad.py. A token seen by several windows is judged only by the
window where it has the most context on both sides. Answers map to tokens through the
tokenizer's character offsets, and predicted spans map back by slicing the original context,
so an answer aligned with token boundaries round-trips exactly.

Training examples whose answer text is not at its answer_start offset are counted and skipped
(google-research/bert logs and skips them too); in dev files they are only counted, since
the evaluation reads nothing but the answer texts. v2.0: an unanswerable question targets
[CLS]; at prediction time the null score (start and end at [CLS]) minus the best span score
is the no-answer score, and the threshold above which "" is predicted is the one that
maximises F1 on dev (reported with the scores).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from model.metrics.squad_eval import best_threshold, evaluate_v1, evaluate_v2, raw_scores_v2
from model.tasks.base import (
    DataError,
    Encoded,
    Grid,
    SplitData,
    TaskOptions,
    TaskProcessor,
    check_not_empty,
    pad_rows,
)
from model.tasks.tokenize import CheckpointTokenizer


@dataclass(frozen=True, kw_only=True)
class SquadOptions(TaskOptions):
    """How contexts are windowed and answers chosen."""

    doc_stride: int = 128  # tokens between the starts of consecutive windows over one context
    max_query_length: int = 64  # question tokens kept; longer questions are cut
    max_answer_length: int = 30  # longest answer predicted, in tokens
    n_best_size: int = 20  # best start and end positions considered in each window

    def __post_init__(self) -> None:
        for name in ("doc_stride", "max_query_length", "max_answer_length", "n_best_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SQuAD option {name} must be at least 1")


@dataclass(frozen=True, kw_only=True)
class SquadExample:
    """One question about one paragraph."""

    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character offset in context) of gold answers
    is_impossible: bool  # v2.0: the paragraph does not answer the question


@dataclass(frozen=True)
class Window:
    """One window over a context, and where its tokens sit in the input and in the text."""

    example: int  # index of the example in its split
    context_start: int  # index (in the context's tokens) of the window's first context token
    length: int  # context tokens in the window
    input_offset: int  # input position of the window's first context token
    max_context: tuple[bool, ...]  # per window token: is this its best-context window?
    offsets: list[tuple[int, int]]  # character span of every context token (shared per context)

    def char_span(self, start: int, end: int) -> tuple[int, int]:
        """Characters of the context covered by input positions start..end (inclusive)."""
        first = self.context_start + start - self.input_offset
        last = self.context_start + end - self.input_offset
        return self.offsets[first][0], self.offsets[last][1]

    def holds(self, position: int) -> bool:
        return self.input_offset <= position < self.input_offset + self.length


@dataclass
class SquadPrediction:
    """The best non-empty answer of a question, and how much the model prefers no answer."""

    text: str  # best span's text; "" when no span qualifies
    null_score_diff: float  # null score minus best span score (v2.0's no-answer score)
    nbest: list[dict[str, Any]] = field(default_factory=list)  # text, score, probability


def token_span(
    offsets: list[tuple[int, int]], char_start: int, char_end: int
) -> tuple[int, int] | None:
    """First and last token overlapping characters [char_start, char_end), or None."""
    ends = [end for _, end in offsets]
    starts = [start for start, _ in offsets]
    first = bisect.bisect_right(ends, char_start)  # first token ending after the answer starts
    last = bisect.bisect_left(starts, char_end) - 1  # last token starting before it ends
    if first >= len(offsets) or last < first:
        return None
    return first, last


def max_context_flags(spans: list[tuple[int, int]], span_index: int) -> tuple[bool, ...]:
    """For each token of spans[span_index]: does that window give it the most context?

    A token's context in a window is min(tokens left of it, tokens right of it), plus a
    hundredth of the window length so that on a tie the longer window wins; the first
    window wins remaining ties.
    """
    start, length = spans[span_index]
    flags = []
    for position in range(start, start + length):
        best_score, best_index = None, None
        for i, (s, n) in enumerate(spans):
            if not s <= position < s + n:
                continue
            score = min(position - s, s + n - 1 - position) + 0.01 * n
            if best_score is None or score > best_score:
                best_score, best_index = score, i
        flags.append(best_index == span_index)
    return tuple(flags)


def window_spans(num_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of the windows covering num_tokens tokens."""
    spans = []
    start = 0
    while True:
        length = min(num_tokens - start, window)
        spans.append((start, length))
        if start + length >= num_tokens:
            return spans
        start += min(length, stride)


class SquadProcessor(TaskProcessor):
    """SQuAD from the official JSON (data -> paragraphs -> qas)."""

    head = "span"
    version: ClassVar[str]  # "1.1" or "2.0", as the file's "version" field says
    max_seq_length = 384
    test_splits = ()  # the SQuAD test sets are hidden; predictions are for dev only
    options_type = SquadOptions

    def split_files(self, split: str) -> tuple[str, ...]:
        tag = "v1.1" if self.version == "1.1" else "v2.0"
        if split not in ("train", "dev"):
            raise DataError(f"{self.name} has no split {split!r}; it has ['dev', 'train']")
        return (f"{split}-{tag}.json", f"{split}.json")

    def read(self, data_dir: Path, split: str) -> SplitData[SquadExample]:
        path = self.require_path(data_dir, split)
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise DataError(f"{path}: expected an object with a 'data' list (official SQuAD JSON)")
        file_version = str(body.get("version", self.version)).removeprefix("v")
        if file_version != self.version:
            other = "squad_v2" if file_version == "2.0" else "squad_v1"
            raise DataError(
                f"{path}: a SQuAD {file_version} file, but the task is {self.name}; use {other}"
            )
        training = split == "train"
        examples: list[SquadExample] = []
        skipped = {"answers_not_at_offset": 0}
        mismatched = 0
        for a, article in enumerate(body["data"]):
            for p, paragraph in enumerate(_field(path, article, "paragraphs", f"data[{a}]")):
                where = f"data[{a}].paragraphs[{p}]"
                context = _field(path, paragraph, "context", where)
                for q, qa in enumerate(_field(path, paragraph, "qas", where)):
                    where_q = f"{where}.qas[{q}]"
                    qid = str(_field(path, qa, "id", where_q))
                    impossible = bool(qa.get("is_impossible", False))
                    if impossible and self.version == "1.1":
                        raise DataError(
                            f"{path}: question {qid} is unanswerable (SQuAD 2.0); use squad_v2"
                        )
                    answers = tuple(
                        _answer(path, answer, f"question {qid}")
                        for answer in (qa.get("answers") or [])
                    )
                    if not impossible and not answers:
                        raise DataError(f"{path}: question {qid} has no answers")
                    bad = [
                        (text, start)
                        for text, start in answers
                        if context[start : start + len(text)] != text
                    ]
                    mismatched += bool(bad)
                    # Training uses the first answer: it must be where the file says it is.
                    if training and not impossible and answers[0] in bad:
                        skipped["answers_not_at_offset"] += 1
                        continue
                    examples.append(
                        SquadExample(
                            qid=qid,
                            question=_field(path, qa, "question", where_q),
                            context=context,
                            answers=answers,
                            is_impossible=impossible,
                        )
                    )
        split_data = SplitData(
            name=split,
            source=str(path),
            examples=examples,
            has_labels=True,
            skipped={k: v for k, v in skipped.items() if v},
            notes={"questions_with_answers_not_at_offset": mismatched} if mismatched else {},
        )
        return check_not_empty(split_data)

    def encode(
        self, split: SplitData[SquadExample], tokenizer: CheckpointTokenizer, max_seq_length: int
    ) -> Encoded:
        options = self.options
        examples = split.examples
        questions = tokenizer.encode_texts([e.question for e in examples])
        contexts = sorted({e.context for e in examples})
        context_encodings = dict(zip(contexts, tokenizer.encode_texts(contexts), strict=True))
        context_offsets = {c: list(enc.offsets) for c, enc in context_encodings.items()}
        input_ids, token_type_ids, starts, ends = [], [], [], []
        example_index: list[int] = []
        meta: list[Window] = []
        stats = {"questions_truncated": 0, "answers_without_tokens": 0, "windows": 0}
        training = split.name == "train"
        for i, (example, question) in enumerate(zip(examples, questions, strict=True)):
            query = question.ids[: options.max_query_length]
            stats["questions_truncated"] += len(question.ids) > len(query)
            context_ids = context_encodings[example.context].ids
            offsets = context_offsets[example.context]
            room = max_seq_length - len(query) - 3
            if room < 1:
                raise ValueError(
                    f"max_seq_length {max_seq_length} leaves no room for context after a "
                    f"{len(query)}-token question; raise it or lower max_query_length"
                )
            answer = None
            if training and not example.is_impossible:
                text, char_start = example.answers[0]
                answer = token_span(offsets, char_start, char_start + len(text))
                if answer is None:  # an answer of only whitespace or removed characters
                    stats["answers_without_tokens"] += 1
                    continue
            spans = window_spans(len(context_ids), room, options.doc_stride)
            for s, (start, length) in enumerate(spans):
                offset = len(query) + 2
                input_ids.append(
                    [tokenizer.cls_id, *query, tokenizer.sep_id]
                    + context_ids[start : start + length]
                    + [tokenizer.sep_id]
                )
                token_type_ids.append([0] * offset + [1] * (length + 1))
                # An answer outside the window (or no answer) targets [CLS], as in the paper.
                start_position = end_position = 0
                if answer is not None and start <= answer[0] and answer[1] < start + length:
                    start_position = answer[0] - start + offset
                    end_position = answer[1] - start + offset
                starts.append(start_position)
                ends.append(end_position)
                example_index.append(i)
                meta.append(Window(i, start, length, offset, max_context_flags(spans, s), offsets))
        stats["windows"] = len(meta)
        inputs = {
            "input_ids": pad_rows(input_ids, max_seq_length, tokenizer.pad_id),
            "token_type_ids": pad_rows(token_type_ids, max_seq_length),
            "attention_mask": pad_rows([[1] * len(r) for r in input_ids], max_seq_length),
        }
        targets = {}
        if training:
            targets = {
                "start_positions": torch.tensor(starts, dtype=torch.long),
                "end_positions": torch.tensor(ends, dtype=torch.long),
            }
        return Encoded(
            inputs=inputs,
            targets=targets,
            example_index=torch.tensor(example_index, dtype=torch.long),
            meta=meta,
            stats=stats,
        )

    def predict(
        self, split: SplitData[SquadExample], encoded: Encoded, logits: Tensor
    ) -> list[SquadPrediction]:
        """Best span per question over all its windows; logits are (N, T, 2) start/end."""
        options = self.options
        by_example: dict[int, list[int]] = {}
        for f, window in enumerate(encoded.meta):
            by_example.setdefault(window.example, []).append(f)
        predictions = []
        k = options.n_best_size
        for i, example in enumerate(split.examples):
            candidates: list[tuple[float, int, int, int]] = []  # score, feature, start, end
            null_score = math.inf
            for f in by_example.get(i, []):
                window: Window = encoded.meta[f]
                start_logits, end_logits = logits[f, :, 0], logits[f, :, 1]
                null_score = min(null_score, float(start_logits[0] + end_logits[0]))
                top_starts = torch.topk(start_logits, min(k, start_logits.numel())).indices.tolist()
                top_ends = torch.topk(end_logits, min(k, end_logits.numel())).indices.tolist()
                for s in top_starts:
                    if not window.holds(s) or not window.max_context[s - window.input_offset]:
                        continue
                    for e in top_ends:
                        if not window.holds(e) or e < s or e - s + 1 > options.max_answer_length:
                            continue
                        candidates.append((float(start_logits[s] + end_logits[e]), f, s, e))
            candidates.sort(key=lambda c: -c[0])
            nbest: list[dict[str, Any]] = []
            seen: set[str] = set()
            for score, f, s, e in candidates:
                char_start, char_end = encoded.meta[f].char_span(s, e)
                text = example.context[char_start:char_end]
                if text in seen:
                    continue
                seen.add(text)
                nbest.append({"text": text, "score": score, "start": char_start})
                if len(nbest) == k:
                    break
            if nbest:
                top = max(c["score"] for c in nbest)
                weights = [math.exp(c["score"] - top) for c in nbest]
                for c, w in zip(nbest, weights, strict=True):
                    c["probability"] = w / sum(weights)
            best_text = nbest[0]["text"] if nbest else ""
            best_score = nbest[0]["score"] if nbest else -math.inf
            predictions.append(SquadPrediction(best_text, null_score - best_score, nbest))
        return predictions

    def gold(self, split: SplitData[SquadExample]) -> dict[str, tuple[str, ...]]:
        return {e.qid: tuple(text for text, _ in e.answers) for e in split.examples}

    def final_answers(
        self, split: SplitData[SquadExample], predictions: list[SquadPrediction]
    ) -> tuple[dict[str, str], float | None]:
        """Answer per question id (v2.0: "" above the best-F1 threshold), and that threshold."""
        answers = {e.qid: p.text for e, p in zip(split.examples, predictions, strict=True)}
        if self.version == "1.1":
            return answers, None
        na = {e.qid: p.null_score_diff for e, p in zip(split.examples, predictions, strict=True)}
        _, f1, has_answer = raw_scores_v2(self.gold(split), answers)
        _, threshold = best_threshold(f1, na, has_answer, answers)
        return {q: ("" if na[q] > threshold else text) for q, text in answers.items()}, threshold

    def score(self, split: SplitData[SquadExample], predictions: list) -> dict[str, float]:
        answers, threshold = self.final_answers(split, predictions)
        if self.version == "1.1":
            report = evaluate_v1(self.gold(split), answers)
            return {"exact_match": report["exact_match"], "f1": report["f1"]}
        report = evaluate_v2(self.gold(split), answers)
        kept = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")
        return {k: report[k] for k in kept if k in report} | {"threshold": threshold}

    def write_predictions(
        self, split: SplitData[SquadExample], predictions: list, directory: Path
    ) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        answers, _ = self.final_answers(split, predictions)
        prefix = directory / f"{self.name}_{split.name}"
        files = {
            Path(f"{prefix}_predictions.json"): answers,
            Path(f"{prefix}_nbest_predictions.json"): {
                e.qid: p.nbest for e, p in zip(split.examples, predictions, strict=True)
            },
        }
        if self.version == "2.0":
            # The official v2.0 script's --na-prob-file: higher means "no answer".
            files[Path(f"{prefix}_null_odds.json")] = {
                e.qid: p.null_score_diff for e, p in zip(split.examples, predictions, strict=True)
            }
        for path, body in files.items():
            path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return list(files)


def _field(path: Path, record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise DataError(f"{path}: {where} has no {key!r}")
    return record[key]


def _answer(path: Path, answer: Any, where: str) -> tuple[str, int]:
    text = _field(path, answer, "text", where)
    start = _field(path, answer, "answer_start", where)
    if not isinstance(text, str) or not isinstance(start, int) or start < 0:
        raise DataError(f"{path}: {where}: answer needs a text and a non-negative answer_start")
    return text, start


class SquadV1Processor(SquadProcessor):
    """SQuAD v1.1: every question has an answer in the paragraph. EM and F1."""

    name, display_name, version = "squad_v1", "SQuAD v1.1", "1.1"
    primary_metric = "dev/f1"
    default_grid = Grid(learning_rates=(5e-5,), batch_sizes=(32,), epochs=(3,))  # the paper's


class SquadV2Processor(SquadProcessor):
    """SQuAD v2.0: some questions have no answer. EM and F1 at the best no-answer threshold."""

    name, display_name, version = "squad_v2", "SQuAD v2.0", "2.0"
    primary_metric = "dev/f1"
    default_grid = Grid(learning_rates=(5e-5,), batch_sizes=(48,), epochs=(2,))  # the paper's
