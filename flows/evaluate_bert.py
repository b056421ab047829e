"""`evaluate-bert`: score every checkpoint that has no results yet, and plot scores by step.

Runs on a schedule (prefect.yaml). It lists the checkpoints under a directory (local or
gs://), skips those whose fingerprint already has a score for every configured task in the
results history, fine-tunes and evaluates the rest, appends their scores to the history
(a Parquet file, rewritten atomically after each checkpoint) and publishes a table and a plot
of each task's score against the pretraining step (the paper's Figure 5, for any corpus).
It fine-tunes from each checkpoint's weights only: a random-init baseline does not depend on
the step (pretrain-bert and finetune-bert run it, with finetune.inits).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import storage
from flows.charts import line_chart_svg, svg_markdown_image
from flows.checkpoints import Checkpoint, find_checkpoints
from flows.finetune_bert import finetune_checkpoint, resolve_finetune_params
from flows.params import FinetuneParams, PresetName, with_deployment_sections
from flows.report import shown
from flows.runner import kill_stage_processes
from flows.stages import InputRef

HISTORY_SCHEMA = pa.schema(
    [
        pa.field("checkpoint", pa.string(), nullable=False),  # checkpoint directory
        pa.field("fingerprint", pa.string(), nullable=False),  # flows.checkpoints.fingerprint
        pa.field("step", pa.int64()),  # pretraining step; null when unknown
        pa.field("task", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # the task's main metric
        pa.field("score", pa.float64()),  # best dev score over the grid
        pa.field("finetune_output", pa.string(), nullable=False),
        pa.field("evaluated_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("flow_run_id", pa.string(), nullable=False),
    ]
)


def read_history(path: str) -> pa.Table:
    """The results history; an empty table when there is none yet."""
    if not storage.exists(path):
        return HISTORY_SCHEMA.empty_table()
    table = pq.read_table(pa.BufferReader(storage.read_bytes(path)))
    return table.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)


def write_history(path: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table.cast(HISTORY_SCHEMA), sink, compression="zstd")
    storage.write_atomic(path, sink.getvalue().to_pybytes())


def pending_checkpoints(
    checkpoints: list[Checkpoint], history: pa.Table, tasks: list[str]
) -> list[Checkpoint]:
    """Checkpoints that lack a score for at least one of `tasks`."""
    scored = set(
        zip(
            history.column("fingerprint").to_pylist(),
            history.column("task").to_pylist(),
            strict=True,
        )
    )
    return [c for c in checkpoints if any((c.fingerprint, t) not in scored for t in tasks)]


def history_rows(checkpoint: Checkpoint, results: list, flow_run_id: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for r in results:
        score = r.summary.get("score")
        rows.append(
            {
                "checkpoint": checkpoint.path,
                "fingerprint": checkpoint.fingerprint,
                "step": checkpoint.step,
                "task": r.name.removeprefix("finetune-"),
                "metric": str(r.summary.get("metric", "")),
                "score": float(score) if isinstance(score, int | float) else None,
                "finetune_output": r.output,
                "evaluated_at": now,
                "flow_run_id": flow_run_id,
            }
        )
    return rows


def score_series(history: pa.Table) -> dict[str, list[tuple[float, float]]]:
    """task (metric) -> [(step, score)], latest evaluation of each checkpoint."""
    latest: dict[tuple[str, str], dict] = {}
    for row in history.to_pylist():
        if row["step"] is None or row["score"] is None:
            continue
        key = (row["task"], row["fingerprint"])
        if key not in latest or row["evaluated_at"] >= latest[key]["evaluated_at"]:
            latest[key] = row
    series: dict[str, list[tuple[float, float]]] = {}
    for row in latest.values():
        series.setdefault(f"{row['task']} ({row['metric']})", []).append(
            (float(row["step"]), float(row["score"]))
        )
    return {k: sorted(v) for k, v in sorted(series.items())}


@task(name="publish-scores", task_run_name="publish-scores")
def publish_scores(history: pa.Table, path: str) -> str:
    """Table and plot of scores against pretraining step; writes scores.svg next to the history."""
    series = score_series(history)
    svg = line_chart_svg(
        series, title="Dev score by pretraining step", x_label="pretraining step", y_label="score"
    )
    chart = storage.join(path.rsplit("/", 1)[0], "scores.svg")
    storage.write_atomic(chart, svg.encode())
    rows = [
        {
            "checkpoint": r["checkpoint"],
            "step": shown(r["step"]),
            "task": r["task"],
            "metric": r["metric"],
            "score": r["score"],
        }  # fmt: skip
        for r in history.to_pylist()
    ]
    create_table_artifact(key="evaluate-bert-history", table=rows, description=f"`{path}`")
    create_markdown_artifact(
        key="evaluate-bert-scores-by-step",
        markdown="# Dev score by pretraining step\n\n"
        + svg_markdown_image(svg, "score by step")
        + f"\n\nHistory: `{path}`; chart: `{chart}`\n",
        description="Each task's score against the pretraining step",
    )
    return chart


@flow(name="evaluate-bert", validate_parameters=True)
def evaluate_bert(
    checkpoints: str,
    history: str | None = None,
    output: str | None = None,
    preset: PresetName = "sample",
    finetune: FinetuneParams | None = None,
    max_checkpoints: int = 0,
) -> dict[str, Any]:
    """Fine-tune and score the checkpoints under a directory that have no results yet.

    Args:
        checkpoints: Directory searched for checkpoints (config.json plus weights), local or gs://.
        history: Results history (Parquet); default: evaluation/history.parquet under checkpoints.
        output: Where fine-tuned models go; default: evaluation/ under checkpoints.
        preset: Whose fine-tuning settings to start from: 'sample', 'base' or 'base-dataflow'.
        finetune: Tasks and grid; fields you set override the deployment's (a run from a
            deployment), else the preset's.
        max_checkpoints: Score at most this many new checkpoints per run, oldest step first;
            0 = all.
    """
    logger = get_run_logger()
    params = resolve_finetune_params(
        preset, with_deployment_sections(finetune=finetune)["finetune"]
    )
    root = storage.absolute(checkpoints)
    output = storage.absolute(output) if output else storage.join(root, "evaluation")
    history_path = storage.absolute(history) if history else storage.join(output, "history.parquet")
    found = [c for c in find_checkpoints(root) if not c.path.startswith(output)]
    table = read_history(history_path)
    todo = pending_checkpoints(found, table, [t.name for t in params.task_specs()])
    if max_checkpoints:
        todo = todo[:max_checkpoints]
    if "random" in params.inits:
        logger.info(
            "finetune.inits includes 'random': evaluate-bert scores checkpoints, so it "
            "fine-tunes from their weights only; pretrain-bert and finetune-bert run the baseline"
        )
    logger.info("%d checkpoint(s) under %s, %d to evaluate", len(found), root, len(todo))
    run_id = str(runtime.flow_run.id or "")
    try:
        for checkpoint in todo:
            name = f"step-{checkpoint.step}" if checkpoint.step is not None else checkpoint.name
            results = finetune_checkpoint(
                params,
                checkpoint=checkpoint.path,
                checkpoint_inputs=[
                    InputRef(path=checkpoint.path, manifest_hash=checkpoint.fingerprint)
                ],
                output=storage.join(output, f"{name}-{checkpoint.fingerprint[:8]}"),
                inits=["pretrained"],
            )
            rows = pa.Table.from_pylist(history_rows(checkpoint, results, run_id), HISTORY_SCHEMA)
            table = pa.concat_tables([table, rows])
            write_history(history_path, table)
            logger.info("scored %s", checkpoint.path)
    finally:
        kill_stage_processes()
    chart = publish_scores(table, history_path) if table.num_rows else None
    return {
        "evaluated": [c.path for c in todo],
        "history": history_path,
        "chart": chart,
        "checkpoints_found": len(found),
    }
