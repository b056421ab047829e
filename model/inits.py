"""Where fine-tuning starts, and the paper's central comparison: pretrained against random.

`pretrained` starts every run from the checkpoint's weights; `random` takes only the
checkpoint's architecture (config.json) and vocabulary and starts from fresh weights, drawn as a
new model draws them, from each run's seed. Fine-tuning both ways on the same task, data, grid
and seeds measures what pretraining buys. This module holds the comparison of two such results
(scores.json bodies of model.finetune) as plain data, and its table; it imports no torch, so the
flows' report uses it as it is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

Init = Literal["pretrained", "random"]
INITS: tuple[str, ...] = get_args(Init)
DEFAULT_INIT: Init = "pretrained"  # results written before the choice existed were pretrained


def init_of(results: dict[str, Any]) -> str:
    """The init a results body records (`pretrained` when it predates the field)."""
    return results.get("init", DEFAULT_INIT)


@dataclass(frozen=True, kw_only=True)
class InitComparison:
    """One dev metric of one task, fine-tuned from the pretrained weights and from random ones."""

    task: str  # the task's label (display name, or the flow's task name)
    metric: str  # "split/metric"
    pretrained_mean: float | None  # mean over seeds; None when a seed's score is undefined
    pretrained_std: float | None  # sample standard deviation over seeds (0 for one seed)
    pretrained_seeds: int  # seeds behind the mean
    random_mean: float | None
    random_std: float | None
    random_seeds: int
    gain: float | None  # pretrained_mean - random_mean
    # "clear": the seeds' [min, max] ranges do not overlap; "overlap": they do; "too few seeds":
    # a side has a single seed, so it has no range; "undefined": a score is undefined (NaN).
    separation: str


def _finite(values: list[Any]) -> list[float] | None:
    """The values as floats, or None if any is missing or not finite."""
    if not values or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def _separation(pretrained: list[float] | None, random: list[float] | None) -> str:
    if pretrained is None or random is None:
        return "undefined"
    if len(pretrained) < 2 or len(random) < 2:
        return "too few seeds"
    overlap = max(min(pretrained), min(random)) <= min(max(pretrained), max(random))
    return "overlap" if overlap else "clear"


def compare_inits(
    pretrained: dict[str, Any], random: dict[str, Any], *, label: str | None = None
) -> list[InitComparison]:
    """Rows comparing two results of one task: the selection metric first, then the others both
    have. Raises ValueError if the two are not a pretrained and a random run of one task."""
    if init_of(pretrained) != "pretrained" or init_of(random) != "random":
        raise ValueError(
            f"expected a pretrained and a random run, got {init_of(pretrained)!r} and "
            f"{init_of(random)!r}"
        )
    if pretrained["task"] != random["task"]:
        raise ValueError(
            f"the runs are of different tasks: {pretrained['task']!r} and {random['task']!r}"
        )
    select = pretrained.get("select_metric")
    shared = [m for m in pretrained["dev"] if m in random["dev"]]
    metrics = sorted(shared, key=lambda m: (m != select, m))
    rows = []
    for metric in metrics:
        ours, theirs = pretrained["dev"][metric], random["dev"][metric]
        pretrained_values, random_values = _finite(ours["values"]), _finite(theirs["values"])
        gain = None
        if ours["mean"] is not None and theirs["mean"] is not None:
            gain = ours["mean"] - theirs["mean"]
        rows.append(
            InitComparison(
                task=label or pretrained.get("display_name", pretrained["task"]),
                metric=metric,
                pretrained_mean=ours["mean"],
                pretrained_std=ours["std"],
                pretrained_seeds=len(ours["values"]),
                random_mean=theirs["mean"],
                random_std=theirs["std"],
                random_seeds=len(theirs["values"]),
                gain=gain,
                separation=_separation(pretrained_values, random_values),
            )
        )
    return rows


def pair_inits(
    all_results: list[dict[str, Any]],
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """Pretrained and random results of the same task on the same data, paired; and a note for
    each task and data whose runs cannot be paired one to one."""
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for results in all_results:
        data_dir = str(results.get("data_dir", ""))
        if data_dir and "://" not in data_dir:  # a flow's absolute path, a person's relative one
            data_dir = os.path.abspath(data_dir)
        key = (results["task"], data_dir)
        groups.setdefault(key, {}).setdefault(init_of(results), []).append(results)
    pairs, notes = [], []
    for (task, data_dir), by_init in groups.items():
        pretrained, random = by_init.get("pretrained", []), by_init.get("random", [])
        if len(pretrained) == 1 and len(random) == 1:
            pairs.append((pretrained[0], random[0]))
        elif pretrained and random:
            notes.append(
                f"{task} on {data_dir}: {len(pretrained)} pretrained and {len(random)} random "
                "runs; give one of each to compare them"
            )
    return pairs, notes


def format_score(mean: float | None, std: float | None, seeds: int) -> str:
    """ "mean ± std (n=seeds)" over several seeds, the mean alone for one; "undefined" without."""
    if mean is None:
        return "undefined"
    if seeds > 1:
        return f"{mean:.2f} ± {std:.2f} (n={seeds})"
    return f"{mean:.2f}"


def comparison_table(rows: list[InitComparison], notes: list[str] | None = None) -> str:
    """Markdown: per task and metric, pretrained and random (mean ± std), gain, separation."""
    lines = [
        "## Pretrained against random initialisation",
        "",
        "The same task, data, grid and seeds, fine-tuned from the checkpoint's weights and from "
        "fresh random weights of its architecture. Gain = pretrained mean - random mean; "
        '"clear" when the seeds\' [min, max] ranges do not overlap.',
        "",
        "| Task | Metric | Pretrained | Random init | Gain | Seed ranges |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        gain = "undefined" if row.gain is None else f"{row.gain:+.2f}"
        lines.append(
            f"| {row.task} | {row.metric} | "
            f"{format_score(row.pretrained_mean, row.pretrained_std, row.pretrained_seeds)} | "
            f"{format_score(row.random_mean, row.random_std, row.random_seeds)} | {gain} | "
            f"{row.separation} |"
        )
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"
