"""The ablation flow's report: per table, our arms' scores beside the paper's rows, a chart,
and the same as report.md, report.json and Prefect artifacts."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact

from flows import storage
from flows.ablations import PAPER, TABLE_TITLES, Arm, TableName, paper_row_key
from flows.charts import bar_chart_svg, svg_markdown_image
from flows.report import markdown_table
from flows.stages import StageResult

MLM_NOTE = (
    "MLM acc: masked-token accuracy on held-out documents at the end of pretraining (on the "
    "last training batches when the recipe holds none out); for the LTR arm it is next-token "
    "accuracy, not comparable. A masking arm is scored with its own mix, so the tokens it "
    "keeps as they are (and copies) count: MLM acc compares across mixes only with that in "
    "mind. MLM ppl: exp of that loss, as the paper's Table 6 reports. "
    "pretrain s: the last phase's time."
)


@dataclass
class ArmResult:
    """What one arm produced: its pretraining and its scores per task name."""

    arm: Arm
    pretrain: StageResult
    finetuned: dict[str, StageResult] = field(default_factory=dict)  # task -> pretrained init
    random: dict[str, StageResult] = field(default_factory=dict)  # task -> random init
    feature_based: dict[str, StageResult] = field(default_factory=dict)  # task -> frozen


def _score(result: StageResult | None) -> str:
    if result is None or result.summary.get("score") is None:
        return ""
    mean, std = result.summary["score"], result.summary.get("std") or 0.0
    return f"{mean:.1f} ± {std:.1f}"


def _mlm(result: StageResult) -> Any:
    value = result.summary.get("eval_mlm_accuracy", result.summary.get("mlm_accuracy"))
    return round(value, 4) if isinstance(value, float) else value


def _binary_task(r: ArmResult) -> str:
    """The arm's binary task and its held-out accuracy: NSP or SOP (none when the arm turns
    the sentence loss off), or ELECTRA's replaced-token detection with the base rate."""
    summary = r.pretrain.summary
    rtd = summary.get("eval_rtd_accuracy", summary.get("rtd_accuracy"))
    if isinstance(rtd, float):
        replaced = summary.get("eval_replaced_share", summary.get("replaced_share"))
        base = f" (base {1 - replaced:.3f})" if isinstance(replaced, float) else ""
        return f"RTD {rtd:.3f}{base}"
    task = str(summary.get("sentence_task", "nsp")).upper()
    accuracy = summary.get("eval_nsp_accuracy", summary.get("nsp_accuracy"))
    if isinstance(accuracy, float) and "nsp=false" not in " ".join(r.arm.sets):
        return f"{task} {accuracy:.3f}"
    return ""


def _perplexity(result: StageResult) -> Any:
    value = result.summary.get("eval_mlm_loss", result.summary.get("mlm_loss"))
    return round(math.exp(value), 2) if isinstance(value, float) else None


def paper_rows(table: TableName) -> list[dict[str, Any]]:
    """The paper's own table, row by row."""
    paper = PAPER[table]
    first = {"size": "L/H/A", "masking": "MASK/SAME/RND"}.get(table, "arm")
    return [{first: key} | dict(zip(paper.columns, values, strict=True))
            for key, values in paper.rows.items()]  # fmt: skip


def table_rows(
    table: TableName, results: list[ArmResult], tasks: list[str], base_size: str
) -> list[dict[str, Any]]:
    """One row per arm of the table (and, for the tasks table, fine-tuning from random
    weights as the floor): dev score mean ± std over seeds per task, held-out MLM accuracy,
    pretraining seconds, then the paper's row."""
    paper = PAPER[table]
    rows = []
    for r in results:
        if table not in r.arm.tables:
            continue
        key = paper_row_key(r.arm, table, base_size)
        row: dict[str, Any] = {"arm": r.arm.label}
        if table == "masking":
            row["arm"] = key  # MASK/SAME/RND
        elif table == "size":
            row["arm"] = "L={} H={} A={}".format(*key.split("/"))
        for task in tasks:
            row[task] = _score(r.finetuned.get(task))
            if table == "masking" and r.feature_based:
                row[f"{task} (feature-based)"] = _score(r.feature_based.get(task))
        row["MLM acc"] = _mlm(r.pretrain)
        if table == "objectives":
            summary = r.pretrain.summary
            row["binary task acc"] = _binary_task(r)
            row["params"] = summary.get("parameters")
        if table == "size":
            row["MLM ppl"] = _perplexity(r.pretrain)
        row["pretrain s"] = round(r.pretrain.seconds, 1)
        values = paper.rows.get(key, ())
        if values and table != "size":  # sizes rarely match the paper's; its table follows
            row[f"paper {paper.columns[0]}"] = values[0]
        rows.append(row)
    if table == "tasks":
        base = next((r for r in results if r.arm.name == "base"), None)
        if base is not None and base.random:
            row = {"arm": "no pretraining (random init)"}
            row |= {task: _score(base.random.get(task)) for task in tasks}
            rows.append(row)
    return rows


def chart(table: TableName, rows: list[dict[str, Any]], tasks: list[str]) -> str:
    """Bars of each arm's mean dev score per task (and feature-based, for masking)."""
    groups: dict[str, dict[str, float]] = {}
    for row in rows:
        named = {}
        for column, cell in row.items():
            base_task = column.removesuffix(" (feature-based)")
            if base_task in tasks and isinstance(cell, str) and cell:
                named[column] = float(cell.split(" ± ")[0])
        groups[str(row["arm"])] = named
    return bar_chart_svg(groups, title=TABLE_TITLES[table], y_label="dev score (mean over seeds)")


def write_ablation_report(
    directory: str,
    *,
    tables: list[TableName],
    results: list[ArmResult],
    tasks: list[str],
    base_size: str,
    parameters: dict[str, Any],
) -> str:
    """report.md, report.json and one SVG per table in `directory`; one artifact per table."""
    sections = [f"# ablate-bert ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", ""]
    sections += [
        "Every arm pretrains from the same data with the same steps, batch and schedule, and "
        "differs from the base arm in one thing. Scores are dev scores in percent, mean ± "
        "std over the fine-tuning seeds; the paper's columns are BERT-base on its tasks, for "
        "the direction of each effect, not its size.",
        "",
    ]
    body: dict[str, Any] = {"parameters": parameters, "tables": {}}
    for table in tables:
        rows = table_rows(table, results, tasks, base_size)
        svg = chart(table, rows, tasks)
        storage.write_atomic(storage.join(directory, f"{table}.svg"), svg.encode())
        text = [f"## {TABLE_TITLES[table]}", "", markdown_table(rows), ""]
        text += [MLM_NOTE, ""]
        if PAPER[table].note:
            text += [PAPER[table].note, ""]
        if PAPER[table].rows:
            text += [
                "The paper's table (BERT-base dev scores):",
                "",
                markdown_table(paper_rows(table)),
                "",
            ]
        text += [f"![{TABLE_TITLES[table]}]({table}.svg)", ""]
        sections += text
        body["tables"][table] = {"title": TABLE_TITLES[table], "rows": rows}
        create_markdown_artifact(
            key=f"ablate-bert-{table}",
            markdown="\n".join(text[:-2] + [svg_markdown_image(svg, TABLE_TITLES[table])]),
            description=TABLE_TITLES[table],
        )
    body["arms"] = {
        r.arm.name: {
            "label": r.arm.label,
            "sets": list(r.arm.sets),
            "data": dict(r.arm.data),
            "pretrain": r.pretrain.model_dump(),
            "finetuned": {t: s.model_dump() for t, s in r.finetuned.items()},
            "random": {t: s.model_dump() for t, s in r.random.items()},
            "feature_based": {t: s.model_dump() for t, s in r.feature_based.items()},
        }
        for r in results
    }
    path = storage.join(directory, "report.md")
    storage.write_atomic(storage.join(directory, "report.json"),
                         (json.dumps(body, indent=2, default=str) + "\n").encode())  # fmt: skip
    storage.write_atomic(path, "\n".join(sections).encode())
    return path
