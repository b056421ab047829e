"""Run reports: which stages ran or came from the cache, their outputs, and the scores."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import storage
from flows.stages import SCORES_NAME, StageResult, finetuned_task
from model.inits import InitComparison, compare_inits, comparison_table

# BERT-base dev scores from the paper's ablation (Table 5), for a sense of scale only.
PAPER_BASE_DEV = {"mnli": 84.4, "qnli": 88.4, "mrpc": 86.7, "sst2": 92.7, "squad1": 88.5}


def shown(value: Any) -> str:
    """A value as people read it, numbers grouped by thousands (27,082; 1,234.5); report.json
    and the stages' results keep the numbers themselves."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def figure_rows(result: StageResult) -> list[dict[str, str]]:
    """A stage's figures (floats to six significant digits) and its time, for the table
    artifact that people read."""
    figures = result.summary | {"seconds": round(result.seconds, 1)}
    return [
        {"figure": name, "value": shown(float(f"{v:.6g}") if isinstance(v, float) else v)}
        for name, v in figures.items()
        if not isinstance(v, list)  # fill-mask examples have their own section
    ]


def stage_rows(results: list[StageResult]) -> list[dict[str, Any]]:
    """One row per stage: name, whether it ran or came from the cache, time, output."""
    return [
        {
            "stage": r.name,
            "status": "cached" if r.cached else "ran",
            "seconds": round(r.seconds, 1),
            "output": r.output,
        }
        for r in results
    ]


def score_rows(finetuned: list[StageResult]) -> list[dict[str, Any]]:
    """One row per task and init: its main score and metric, from each fine-tuning result."""
    rows = []
    for r in finetuned:
        task, init = finetuned_task(r)
        rows.append(
            {
                "task": task,
                "init": init,
                "metric": r.summary.get("metric", ""),
                "score": r.summary.get("score"),
                "paper_bert_base_dev": PAPER_BASE_DEV.get(task) if init == "pretrained" else None,
                "output": r.output,
            }
        )
    return rows


def init_comparison_rows(finetuned: list[StageResult]) -> list[InitComparison]:
    """For each task fine-tuned both from the pretrained weights and from random ones, the
    comparison of their scores.json (model/inits.py); [] when no task ran both ways."""
    by_task: dict[str, dict[str, StageResult]] = {}
    for r in finetuned:
        task, init = finetuned_task(r)
        by_task.setdefault(task, {})[init] = r
    rows = []
    for task, runs in by_task.items():
        if {"pretrained", "random"} <= set(runs):
            pretrained, random = (
                json.loads(storage.read_bytes(storage.join(runs[init].output, SCORES_NAME)))
                for init in ("pretrained", "random")
            )
            rows += compare_inits(pretrained, random, label=task)
    return rows


def init_comparison(finetuned: list[StageResult]) -> list[dict[str, Any]]:
    """init_comparison_rows as plain rows, for a table artifact or JSON."""
    return [asdict(row) for row in init_comparison_rows(finetuned)]


SMALL_DEPLOYMENT = "pretrain-bert/small"  # the recipe meant to show learning on a 2-core CPU


def learning_rows(stages: list[StageResult]) -> list[dict[str, Any]]:
    """Per pretraining phase: the last health check against the unigram baseline."""
    rows = []
    for r in stages:
        figures = r.summary
        if "health" not in figures:
            continue
        held_out = "eval_mlm_accuracy" in figures  # else the checks used the train means
        prefix = "eval_" if held_out else ""
        rows.append(
            {
                "stage": r.name,
                "step": figures.get("step"),
                "measured on": "held-out data" if held_out else "training batches",
                "MLM accuracy": _round(figures.get(f"{prefix}mlm_accuracy")),
                "unigram baseline": _round(figures.get("health_unigram_accuracy")),
                "x baseline": _round(figures.get("health_mlm_accuracy_ratio"), 2),
                "NSP accuracy": _round(figures.get(f"{prefix}nsp_accuracy")),
                "token cosine": _round(figures.get("health_token_cosine")),
                "health": figures["health"],
                "problems": figures.get("health_problems", ""),
            }
        )
    return rows


def _round(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, int | float) else value


def learning_verdict(rows: list[dict[str, Any]], comparison: list[InitComparison]) -> str:
    """One paragraph: did pretraining teach the model anything, by the two measures we have."""
    if not rows:
        return "No pretraining phase reported health checks."
    last = rows[-1]
    ratio = last["x baseline"]
    learned = last["health"] != "failing" and isinstance(ratio, int | float) and ratio >= 1.5
    parts = []
    on = "held-out" if last["measured on"] == "held-out data" else "training-batch"
    if learned:
        parts.append(
            f"Pretraining learned: {on} MLM accuracy is {ratio}x the unigram baseline "
            f"(always predicting the most frequent token) at step {last['step']}."
        )
    else:
        parts.append(
            f"Pretraining has not shown that it learned: {on} MLM accuracy is {ratio}x the "
            f"unigram baseline at step {last['step']} (health: {last['health']}"
            + (f"; {last['problems']}" if last["problems"] not in ("", "none") else "")
            + "). A run this short proves the plumbing, not the learning; "
            f"`prefect deployment run {SMALL_DEPLOYMENT}` runs the recipe meant to show "
            "learning on a 2-core CPU (docs/recipes.md)."
        )
    main_rows = list({c.task: c for c in reversed(comparison)}.values())  # selection metric
    if main_rows:
        clear = [c for c in main_rows if c.separation == "clear" and (c.gain or 0) > 0]
        parts.append(
            f"Fine-tuning from the pretrained weights beats random initialisation clearly "
            f"(seed ranges apart) on {len(clear)} of {len(main_rows)} tasks."
        )
    return " ".join(parts)


def fill_mask_rows(stages: list[StageResult]) -> list[dict[str, Any]]:
    """The last pretraining phase's top predictions for the probe sentences: a model that
    learned fills each blank from its context, a collapsed one says `the , .` everywhere."""
    for r in reversed(stages):
        if r.summary.get("fill_mask"):
            return [
                {
                    "sentence": p["text"].replace("|", "\\|"),
                    f"top pieces at step {r.summary.get('step')}": " ".join(
                        code_span(piece) for piece in p["pieces"]
                    ),
                }
                for p in r.summary["fill_mask"]
            ]
    return []


def code_span(text: str) -> str:
    """`text` as a markdown code span inside a table cell (a `,` piece stays readable)."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_"
    keys = list(dict.fromkeys(k for row in rows for k in row))  # every column, first seen first
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = (shown(row.get(k)) for k in keys)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    *,
    flow_name: str,
    directory: str,
    stages: list[StageResult],
    finetuned: list[StageResult],
    parameters: dict[str, Any],
    pending: list[str],
    key: str,
) -> str:
    """Write report.md and report.json under `directory`, publish them; returns report.md's path."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    stage_table, scores = stage_rows(stages), score_rows(finetuned)
    comparison = init_comparison_rows(finetuned)
    learning = learning_rows(stages)
    verdict = learning_verdict(learning, comparison) if learning or comparison else ""
    parts = [
        f"# {flow_name} report",
        f"Written {now}. Outputs under `{directory}`.",
    ]
    if verdict:
        parts += ["## Did it learn?", verdict]
    if learning:
        parts.append(markdown_table(learning))
    fill_mask = fill_mask_rows(stages)
    if fill_mask:
        parts += ["## What it predicts (fill-mask)", markdown_table(fill_mask)]
    parts += ["## Stages", markdown_table(stage_table)]
    if scores:
        parts += ["## Scores (dev)", markdown_table(scores)]
    if comparison:
        parts.append(comparison_table(comparison).rstrip("\n"))
    if pending:
        parts += ["## Not run", "\n".join(f"- {p}" for p in pending)]
    markdown = "\n\n".join(parts) + "\n"
    body = {
        "flow": flow_name,
        "written_at": now,
        "stages": [r.model_dump() for r in stages],
        "scores": scores,
        "init_comparison": [asdict(row) for row in comparison],
        "learning": learning,
        "fill_mask": fill_mask,
        "verdict": verdict,
        "not_run": pending,
        "parameters": parameters,
    }
    md_path = storage.join(directory, "report.md")
    storage.write_atomic(md_path, markdown.encode())
    storage.write_atomic(
        storage.join(directory, "report.json"), (json.dumps(body, indent=2) + "\n").encode()
    )
    create_markdown_artifact(key=key, markdown=markdown, description=f"{flow_name}: the run")
    if scores:
        create_table_artifact(key=f"{key}-scores", table=scores, description="dev scores")
    if comparison:
        create_table_artifact(
            key=f"{key}-inits",
            table=[asdict(row) for row in comparison],
            description="pretrained against random initialisation (dev)",
        )
    return md_path
