"""The scores Devlin et al. (2018) report, for the table that puts ours next to them.

GLUE numbers are on the test sets (Table 1: our dev scores are not the same measurement,
and the table says so); SQuAD v1.1, SWAG and CoNLL-2003 numbers are on dev; SQuAD v2.0 on
test. Table 5's ablation gives BERT-base dev scores for a few GLUE tasks, the closest
comparison to a dev score.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PaperResult:
    """One number from the paper."""

    task: str  # registry name, e.g. "mnli"
    metric: str  # our metric name, prefixed by our split name: "dev_matched/accuracy"
    model: str  # "base", "large", "base (no NSP)", "base (feature-based)"
    split: str  # the split the paper measured on: "test" or "dev"
    value: float  # in percent
    source: str  # where in the paper


def _glue(task: str, metric: str, base: float, large: float) -> list[PaperResult]:
    return [
        PaperResult(
            task=task, metric=metric, model=model, split="test", value=value, source="Table 1"
        )
        for model, value in (("base", base), ("large", large))
    ]


def _dev(task: str, metric: str, model: str, value: float, source: str) -> PaperResult:
    return PaperResult(
        task=task, metric=metric, model=model, split="dev", value=value, source=source
    )


PAPER_RESULTS: tuple[PaperResult, ...] = (
    *_glue("mnli", "dev_matched/accuracy", 84.6, 86.7),
    *_glue("mnli", "dev_mismatched/accuracy", 83.4, 85.9),
    *_glue("qqp", "dev/f1", 71.2, 72.1),
    *_glue("qnli", "dev/accuracy", 90.5, 92.7),
    *_glue("sst2", "dev/accuracy", 93.5, 94.9),
    *_glue("cola", "dev/mcc", 52.1, 60.5),
    *_glue("stsb", "dev/spearman", 85.8, 86.5),
    *_glue("mrpc", "dev/f1", 88.9, 89.3),
    *_glue("rte", "dev/accuracy", 66.4, 70.1),
    _dev("squad_v1", "dev/f1", "base", 88.5, "Table 2"),
    _dev("squad_v1", "dev/f1", "large", 90.9, "Table 2"),
    PaperResult(
        task="squad_v2", metric="dev/f1", model="large", split="test", value=83.1, source="Table 3"
    ),
    _dev("swag", "dev/accuracy", "base", 81.6, "Table 4"),
    _dev("swag", "dev/accuracy", "large", 86.6, "Table 4"),
    _dev("conll2003", "dev/f1", "base", 96.4, "Table 7"),
    _dev(
        "conll2003",
        "dev/f1",
        "base (feature-based)",
        96.1,
        "Table 7, last four layers concatenated",
    ),
    # Table 5 (ablation), BERT-base dev; MRPC there is accuracy.
    _dev("mnli", "dev_matched/accuracy", "base", 84.4, "Table 5"),
    _dev("qnli", "dev/accuracy", "base", 88.4, "Table 5"),
    _dev("mrpc", "dev/accuracy", "base", 86.7, "Table 5"),
    _dev("sst2", "dev/accuracy", "base", 92.7, "Table 5"),
    _dev("mnli", "dev_matched/accuracy", "base (no NSP)", 83.9, "Table 5"),
    _dev("qnli", "dev/accuracy", "base (no NSP)", 84.9, "Table 5"),
    _dev("mrpc", "dev/accuracy", "base (no NSP)", 86.5, "Table 5"),
    _dev("sst2", "dev/accuracy", "base (no NSP)", 92.6, "Table 5"),
    _dev("squad_v1", "dev/f1", "base (no NSP)", 87.9, "Table 5"),
)


FINE_TUNED = ("base", "large")  # the models a fine-tuning run is compared with
FEATURE_BASED = ("base (feature-based)", "base")  # a feature-based run: the paper's, and fine-tuned


def paper_results(task: str, models: tuple[str, ...] | None = None) -> list[PaperResult]:
    """The paper's numbers for one task (only `models`, if given), in the order above."""
    return [r for r in PAPER_RESULTS if r.task == task and (models is None or r.model in models)]
