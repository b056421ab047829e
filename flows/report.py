"""Run reports: which stages ran or came from the cache, their outputs, and the scores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import storage
from flows.stages import StageResult

# BERT-base dev scores from the paper's ablation (Table 5), for a sense of scale only.
PAPER_BASE_DEV = {"mnli": 84.4, "qnli": 88.4, "mrpc": 86.7, "sst2": 92.7, "squad1": 88.5}


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
    """One row per task: its main score and metric, from each fine-tuning result."""
    rows = []
    for r in finetuned:
        task = r.name.removeprefix("finetune-")
        rows.append(
            {
                "task": task,
                "metric": r.summary.get("metric", ""),
                "score": r.summary.get("score"),
                "paper_bert_base_dev": PAPER_BASE_DEV.get(task),
                "output": r.output,
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[k] is None else str(row[k]) for k in keys) + " |")
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
    parts = [
        f"# {flow_name} report",
        f"Written {now}. Outputs under `{directory}`.",
        "## Stages",
        markdown_table(stage_table),
    ]
    if scores:
        parts += ["## Scores (dev)", markdown_table(scores)]
    if pending:
        parts += ["## Not run", "\n".join(f"- {p}" for p in pending)]
    markdown = "\n\n".join(parts) + "\n"
    body = {
        "flow": flow_name,
        "written_at": now,
        "stages": [r.model_dump() for r in stages],
        "scores": scores,
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
    return md_path
