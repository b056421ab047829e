"""What a person sees in the Prefect UI: whole charts, clean task run names, readable numbers,
artifacts a browser can open (docs/ui.md)."""

from __future__ import annotations

import importlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from prefect import Task, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.charts import bar_chart_svg, line_chart_svg, text_width
from flows.evaluate_bert import HISTORY_SCHEMA, publish_scores
from flows.runner import run_stage
from flows.stages import StageCall

FLOW_MODULES = ("pretrain_bert", "finetune_bert", "evaluate_bert", "ablate_bert", "runner")


def view_box(svg: str) -> tuple[float, float]:
    """(width, height) of an SVG's viewBox."""
    _, _, width, height = map(float, re.search(r'viewBox="([^"]+)"', svg).group(1).split())
    return width, height


def texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, text-anchor, text) of every <text> element but rotated ones."""
    found = []
    for attrs, text in re.findall(r"<text ([^>]*)>([^<]*)</text>", svg):
        if "transform" in attrs:
            continue
        x = float(re.search(r'\bx="([-\d.]+)"', attrs).group(1))
        anchor = re.search(r'text-anchor="(\w+)"', attrs)
        found.append((x, anchor.group(1) if anchor else "start", text))
    return found


def assert_text_inside(svg: str) -> None:
    """Every label (title aside) lies within the viewBox, by an upper estimate of its width."""
    width, _ = view_box(svg)
    for x, anchor, text in texts(svg)[1:]:
        w = text_width(text)
        low, high = {"start": (x, x + w), "end": (x - w, x), "middle": (x - w / 2, x + w / 2)}[
            anchor
        ]
        assert 0 <= low and high <= width, (text, low, high, width)


def test_a_line_charts_legend_fits_however_long_its_names():
    series = {
        "sentence-order (dev/accuracy)": [(0, 50.0), (8, 55.0)],
        "same-document (dev/accuracy), a long name": [(0, 40.0), (8, 60.0)],
    }
    svg = line_chart_svg(series, title="Dev score by step", x_label="step", y_label="score")
    assert_text_inside(svg)
    legend = [t for t in texts(svg) if t[2] in series]
    assert len(legend) == 2
    many = {f"series {i}": [(0, float(i)), (1, float(i + 1))] for i in range(30)}
    svg = line_chart_svg(many, title="t", x_label="x", y_label="y")
    last_line = max(float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)">series', svg))
    assert last_line <= view_box(svg)[1]


def test_a_bar_charts_names_values_and_legend_fit():
    groups = {
        "BERT (MLM + NSP, 80/10/10), a long arm name": {"sentence-order": 71.25, "mnli": 84.4},
        "No NSP": {"sentence-order (feature-based)": 12345.5},
    }
    svg = bar_chart_svg(groups, title="Ablations", y_label="dev score")
    assert_text_inside(svg)


def test_the_curves_mark_where_phase_1_ends():
    series = {"loss": [(2, 9.0), (4, 8.0), (6, 7.5), (8, 7.0), (10, 6.8)]}
    svg = line_chart_svg(
        series, title="loss", x_label="step", y_label="loss", markers=[(8.0, "end of phase 1")]
    )
    assert "end of phase 1" in svg
    (x,) = {
        float(x1)
        for x1, x2 in re.findall(r'<line x1="([\d.]+)" x2="([\d.]+)"[^>]*stroke-dasharray', svg)
        if x1 == x2
    }
    # The plot spans steps 2..10 over [64, 64 + plot width]: step 8 is at 3/4 of it.
    plot = [float(w) for w in re.findall(r'<rect x="64" y="34" width="([\d.]+)"', svg)][0]
    assert abs(x - (64 + 0.75 * plot)) < 0.2
    assert_text_inside(svg)
    assert "20,000" in line_chart_svg(
        {"a": [(0, 1.0), (20_000, 2.0)]}, title="t", x_label="step", y_label="y"
    )
    steps = line_chart_svg({"a": [(8, 1.0), (10, 2.0)]}, title="t", x_label="step", y_label="y")
    assert ">9<" in steps and ">8.5<" not in steps  # whole steps only


def test_every_task_names_its_runs():
    """Without task_run_name Prefect names each run `<task>-<random suffix>`."""
    tasks = [
        obj
        for name in FLOW_MODULES
        for obj in vars(importlib.import_module(f"flows.{name}")).values()
        if isinstance(obj, Task)
    ]
    assert len(tasks) >= 5
    assert [t.name for t in tasks if not t.task_run_name] == []


@flow
def stage_and_scores(call: StageCall, history: pa.Table, path: str) -> None:
    run_stage(call)
    publish_scores(history, path)


def test_a_runs_tasks_and_artifacts_read_well(prefect_harness, toy_stage, tmp_path: Path):
    output = tmp_path / "out"
    call = StageCall(
        name="extract",
        kind="extract",
        module="toy_stage",
        args=["--output", str(output), "--rows", "27082"],
        runtime_args=["--counter", str(tmp_path / "runs.txt")],
        output=str(output),
        markers=["manifest.json"],
    )
    history = pa.Table.from_pylist(
        [
            {
                "checkpoint": "c",
                "fingerprint": "f",
                "step": 12_000,
                "task": "sentence-order",
                "metric": "dev/accuracy",
                "score": 61.5,
                "finetune_output": "o",
                "evaluated_at": datetime(2026, 1, 1, tzinfo=UTC),
                "flow_run_id": "r",
            }
        ],
        HISTORY_SCHEMA,
    )
    state = stage_and_scores(call, history, str(tmp_path / "history.parquet"), return_state=True)
    assert state.is_completed()
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        names = sorted(r.name for r in client.read_task_runs(flow_run_filter=run_filter))
        artifacts = client.read_artifacts(flow_run_filter=run_filter)
    assert names == ["extract", "publish-scores"]
    by_key = {a.key: a for a in artifacts}
    # A link artifact is markdown: `[text](url)`; a browser blocks file:// from an http page.
    assert [a.key for a in artifacts if "file://" in str(a.data)] == []
    figures = {r["figure"]: r["value"] for r in json.loads(by_key["extract-figures"].data)}
    assert (figures["rows"], figures["toy_rows"]) == ("27,082", "27,082")
    (history_row,) = json.loads(by_key["evaluate-bert-history"].data)
    assert (history_row["step"], history_row["score"]) == ("12,000", 61.5)
