"""GLUE's metrics: accuracy, F1, Matthews correlation, Pearson and Spearman correlation.

The functions return fractions (correlations in [-1, 1]); `glue_metrics` reports them in
percent as the paper and the GLUE leaderboard do. Where a metric is undefined (a correlation
with a constant series) the result is NaN, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check_lengths(predictions: Sequence, labels: Sequence) -> None:
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("no labels to score")


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    """Fraction of predictions equal to their label."""
    _check_lengths(predictions, labels)
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def binary_f1(predictions: Sequence, labels: Sequence, positive: object = 1) -> float:
    """F1 of the positive class (MRPC's paraphrase, QQP's duplicate); 0 when it is never hit."""
    _check_lengths(predictions, labels)
    pairs = list(zip(predictions, labels, strict=True))
    tp = sum(p == positive and y == positive for p, y in pairs)
    fp = sum(p == positive and y != positive for p, y in pairs)
    fn = sum(p != positive and y == positive for p, y in pairs)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(predictions: Sequence, labels: Sequence, positive: object = 1) -> float:
    """Matthews correlation of a binary task (CoLA); 0 when a row or column is empty."""
    _check_lengths(predictions, labels)
    pairs = list(zip(predictions, labels, strict=True))
    tp = sum(p == positive and y == positive for p, y in pairs)
    tn = sum(p != positive and y != positive for p, y in pairs)
    fp = sum(p == positive and y != positive for p, y in pairs)
    fn = sum(p != positive and y == positive for p, y in pairs)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    # A constant prediction has no correlation with anything; scikit-learn also returns 0.
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN if either series is constant."""
    _check_lengths(x, y)
    n = len(x)
    mean_x, mean_y = math.fsum(x) / n, math.fsum(y) / n
    dx = [a - mean_x for a in x]
    dy = [b - mean_y for b in y]
    sxx = math.fsum(a * a for a in dx)
    syy = math.fsum(b * b for b in dy)
    if sxx == 0 or syy == 0:
        return math.nan
    return math.fsum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy)


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing the mean of their ranks (as scipy's rankdata)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1
        for i in range(start, end + 1):
            ranks[order[i]] = rank
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the tie-averaged ranks."""
    _check_lengths(x, y)
    return pearson(average_ranks(x), average_ranks(y))


# Which metrics each GLUE task reports (DESIGN.md; the paper's Table 1 shows the first one).
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("spearman", "pearson"),
    "qqp": ("f1", "accuracy"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def classification_metrics(
    predictions: Sequence[str], labels: Sequence[str], names: Sequence[str], positive: str = "1"
) -> dict[str, float]:
    """The named metrics ("accuracy", "f1", "mcc") of string labels, in percent."""
    functions = {
        "accuracy": lambda: accuracy(predictions, labels),
        "f1": lambda: binary_f1(predictions, labels, positive),
        "mcc": lambda: matthews_corrcoef(predictions, labels, positive),
    }
    return {name: 100.0 * functions[name]() for name in names}


def regression_metrics(predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation, in percent."""
    return {
        "spearman": 100.0 * spearman(predictions, labels),
        "pearson": 100.0 * pearson(predictions, labels),
    }


def macro_f1(predictions: Sequence, labels: Sequence, classes: Sequence) -> float:
    """Mean over `classes` of each class's F1 (a class never predicted nor present scores 0)."""
    _check_lengths(predictions, labels)
    return sum(binary_f1(predictions, labels, c) for c in classes) / len(classes)
