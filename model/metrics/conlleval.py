"""Entity-level precision, recall and F1 as the CoNLL shared tasks' conlleval script counts them.

A tag is PREFIX-TYPE ("B-PER", "I-LOC") or "O". Chunks follow conlleval's rules for B/I/O:
a chunk starts at B-X, at I-X after O, and wherever the type changes; it ends before B, O or a
change of type. So the same spans come out of IOB1 (I-X starts a chunk unless it continues
one of the same type; B-X only splits two adjacent chunks of one type) and of BIO, and a BIO
sequence with an I-X that follows O (invalid, but models predict it) still counts as a chunk,
as conlleval counts it. A predicted chunk is correct if its start, end and type match a gold
chunk. A sentence boundary ends every chunk. Token accuracy counts every token, O included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

OUTSIDE = "O"


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O"; the prefix is what precedes the first '-'."""
    prefix, dash, entity_type = tag.partition("-")
    if prefix not in ("B", "I", "O") or (prefix == "O" and dash):
        raise ValueError(
            f"tag {tag!r} is not O, B-TYPE or I-TYPE (IOB1 and BIO tags only; E-/S- tags of "
            "IOBES are not supported)"
        )
    return prefix, entity_type


def _ends_chunk(prev_prefix: str, prev_type: str, prefix: str, entity_type: str) -> bool:
    if prev_prefix == OUTSIDE:
        return False
    return prefix in ("B", OUTSIDE) or prev_type != entity_type


def _starts_chunk(prev_prefix: str, prev_type: str, prefix: str, entity_type: str) -> bool:
    if prefix == OUTSIDE:
        return False
    return prefix == "B" or prev_prefix == OUTSIDE or prev_type != entity_type


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of each chunk of one sentence, end exclusive, in order."""
    found: list[tuple[str, int, int]] = []
    prev_prefix, prev_type = OUTSIDE, ""
    start = None
    for i, tag in enumerate([*tags, OUTSIDE]):  # the boundary after the sentence is an O
        prefix, entity_type = split_tag(tag)
        if start is not None and _ends_chunk(prev_prefix, prev_type, prefix, entity_type):
            found.append((prev_type, start, i))
            start = None
        if _starts_chunk(prev_prefix, prev_type, prefix, entity_type):
            start = i
        prev_prefix, prev_type = prefix, entity_type
    return found


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """The BIO tags of the same chunks: every chunk's first tag becomes B-."""
    out: list[str] = []
    prev_prefix, prev_type = OUTSIDE, ""
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        starts = _starts_chunk(prev_prefix, prev_type, prefix, entity_type)
        out.append(f"B-{entity_type}" if starts else tag)
        prev_prefix, prev_type = prefix, entity_type
    return out


@dataclass(frozen=True)
class ChunkScore:
    """Precision, recall and F1 in percent, with the counts they come from."""

    precision: float
    recall: float
    f1: float
    gold: int  # chunks in the gold tags
    predicted: int  # chunks in the predicted tags ("found" in conlleval)
    correct: int  # predicted chunks that match a gold chunk exactly


def _score(gold: int, predicted: int, correct: int) -> ChunkScore:
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ChunkScore(precision, recall, f1, gold, predicted, correct)


@dataclass(frozen=True)
class ConllevalResult:
    """Overall and per-type chunk scores and token accuracy."""

    overall: ChunkScore
    by_type: dict[str, ChunkScore] = field(default_factory=dict)
    accuracy: float = 0.0  # percent of tokens whose predicted tag equals the gold tag
    tokens: int = 0

    def report(self) -> str:
        """Text in conlleval's layout."""
        o = self.overall
        lines = [
            f"processed {self.tokens} tokens with {o.gold} phrases; "
            f"found: {o.predicted} phrases; correct: {o.correct}.",
            f"accuracy: {self.accuracy:6.2f}%; precision: {o.precision:6.2f}%; "
            f"recall: {o.recall:6.2f}%; FB1: {o.f1:6.2f}",
        ]
        for name, s in sorted(self.by_type.items()):
            lines.append(
                f"{name:>17}: precision: {s.precision:6.2f}%; recall: {s.recall:6.2f}%; "
                f"FB1: {s.f1:6.2f}  {s.predicted}"
            )
        return "\n".join(lines) + "\n"


def evaluate(
    gold_sentences: Sequence[Sequence[str]], predicted_sentences: Sequence[Sequence[str]]
) -> ConllevalResult:
    """conlleval's scores of predicted tags against gold tags, sentence by sentence."""
    if len(gold_sentences) != len(predicted_sentences):
        raise ValueError(
            f"{len(predicted_sentences)} predicted sentences for {len(gold_sentences)} gold ones"
        )
    gold_count: Counter[str] = Counter()
    predicted_count: Counter[str] = Counter()
    correct_count: Counter[str] = Counter()
    tokens = correct_tokens = 0
    for i, (gold, predicted) in enumerate(zip(gold_sentences, predicted_sentences, strict=True)):
        if len(gold) != len(predicted):
            raise ValueError(
                f"sentence {i}: {len(predicted)} predicted tags for {len(gold)} gold tags"
            )
        tokens += len(gold)
        correct_tokens += sum(g == p for g, p in zip(gold, predicted, strict=True))
        gold_chunks = set(chunks(gold))
        predicted_chunks = set(chunks(predicted))
        gold_count.update(t for t, _, _ in gold_chunks)
        predicted_count.update(t for t, _, _ in predicted_chunks)
        correct_count.update(t for t, _, _ in gold_chunks & predicted_chunks)
    types = sorted(set(gold_count) | set(predicted_count))
    by_type = {t: _score(gold_count[t], predicted_count[t], correct_count[t]) for t in types}
    overall = _score(
        sum(gold_count.values()), sum(predicted_count.values()), sum(correct_count.values())
    )
    accuracy = 100.0 * correct_tokens / tokens if tokens else 0.0
    return ConllevalResult(overall, by_type, accuracy, tokens)
