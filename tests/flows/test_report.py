"""The run report: scores per task and init, and the pretrained-against-random table."""

from __future__ import annotations

import json
from pathlib import Path

from flows.report import figure_rows, init_comparison_rows, score_rows, shown, write_report
from flows.stages import StageResult, finetune_output, finetune_stage_name


def finetuned(workdir: Path, task: str, init: str, accuracy: list[float]) -> StageResult:
    """A fine-tuning stage's result with the scores.json it wrote."""
    output = Path(finetune_output(str(workdir / "finetuned"), init)) / task
    output.mkdir(parents=True)
    mean = sum(accuracy) / len(accuracy)
    body = {
        "task": "custom",
        "init": init,
        "select_metric": "dev/accuracy",
        "dev": {"dev/accuracy": {"mean": mean, "std": 0.0, "values": accuracy}},
    }
    (output / "scores.json").write_text(json.dumps(body))
    return StageResult(
        name=finetune_stage_name(task, init),
        kind="finetune",
        output=str(output),
        markers={"scores.json": "h"},
        summary={"init": init, "metric": "dev/accuracy", "score": mean},
    )


def test_the_report_compares_each_task_fine_tuned_both_ways(tmp_path, monkeypatch):
    results = [
        finetuned(tmp_path, "mnli", "pretrained", [84.0, 84.0]),
        finetuned(tmp_path, "sentence-order", "pretrained", [70.0, 70.0]),
        finetuned(tmp_path, "mnli", "random", [61.0, 61.0]),
    ]
    rows = score_rows(results)
    assert [(r["task"], r["init"], r["score"]) for r in rows] == [
        ("mnli", "pretrained", 84.0), ("sentence-order", "pretrained", 70.0),
        ("mnli", "random", 61.0),
    ]  # fmt: skip
    assert [r["paper_bert_base_dev"] for r in rows] == [84.4, None, None]  # not for random
    assert rows[2]["output"] == str(tmp_path / "finetuned-random/mnli")
    (comparison,) = init_comparison_rows(results)  # sentence-order ran one way only
    assert (comparison.task, comparison.gain, comparison.separation) == ("mnli", 23.0, "clear")

    published = {}
    monkeypatch.setattr(
        "flows.report.create_markdown_artifact", lambda **kw: published.update({kw["key"]: kw})
    )
    monkeypatch.setattr(
        "flows.report.create_table_artifact", lambda **kw: published.update({kw["key"]: kw})
    )
    path = write_report(flow_name="pretrain-bert", directory=str(tmp_path), stages=results,
                        finetuned=results, parameters={}, pending=[], key="r")  # fmt: skip
    report = Path(path).read_text()
    assert "| mnli | random | dev/accuracy | 61.0 |" in report
    assert "## Pretrained against random initialisation" in report
    assert (
        "| mnli | dev/accuracy | 84.00 ± 0.00 (n=2) | 61.00 ± 0.00 (n=2) | +23.00 | clear |"
        in report
    )
    assert json.loads((tmp_path / "report.json").read_text())["init_comparison"][0]["gain"] == 23.0
    assert published["r-inits"]["table"][0]["separation"] == "clear"


def pretrained_phase(ratio: float, health: str, problems: str = "none") -> StageResult:
    summary = {"step": 3000, "eval_mlm_accuracy": 0.05 * ratio, "eval_nsp_accuracy": 0.7,
               "health": health, "health_problems": problems, "health_unigram_accuracy": 0.05,
               "health_mlm_accuracy_ratio": ratio, "health_token_cosine": 0.3}  # fmt: skip
    return StageResult(name="pretrain-phase1", kind="pretrain", output="/w/p", markers={},
                       summary=summary)  # fmt: skip


def test_the_report_says_whether_pretraining_learned(tmp_path):
    from flows.report import learning_rows, learning_verdict

    rows = learning_rows([pretrained_phase(1.02, "failing", "not_learning")])
    assert rows[0]["x baseline"] == 1.02 and rows[0]["unigram baseline"] == 0.05
    assert rows[0]["measured on"] == "held-out data" and rows[0]["MLM accuracy"] == 0.051
    verdict = learning_verdict(rows, [])
    assert verdict.startswith("Pretraining has not shown that it learned: held-out MLM")
    assert "proves the plumbing, not the learning" in verdict
    assert "prefect deployment run pretrain-bert/small" in verdict
    results = [
        finetuned(tmp_path, "same-document", "pretrained", [80.0, 81.0]),
        finetuned(tmp_path, "same-document", "random", [60.0, 62.0]),
        finetuned(tmp_path, "source", "pretrained", [70.0, 75.0]),
        finetuned(tmp_path, "source", "random", [72.0, 74.0]),
    ]
    comparison = init_comparison_rows(results)
    verdict = learning_verdict(learning_rows([pretrained_phase(3.4, "ok")]), comparison)
    assert verdict.startswith("Pretraining learned: held-out MLM accuracy is 3.4x")
    assert "clearly (seed ranges apart) on 1 of 2 tasks" in verdict
    assert learning_rows([]) == [] and "No pretraining" in learning_verdict([], comparison)
    # Without a held-out split the trainer checks its training means, and the report says so.
    phase = pretrained_phase(0.5, "failing", "not_learning")
    phase.summary = {k: v for k, v in phase.summary.items() if not k.startswith("eval_")}
    phase.summary |= {"mlm_accuracy": 0.025, "nsp_accuracy": 0.5}
    (row,) = learning_rows([phase])
    assert row["measured on"] == "training batches" and row["MLM accuracy"] == 0.025
    assert "training-batch MLM accuracy is 0.5x" in learning_verdict([row], [])


def test_numbers_people_read_are_grouped_by_thousands_and_machines_get_numbers(
    tmp_path, monkeypatch
):
    for name in ("create_markdown_artifact", "create_table_artifact"):
        monkeypatch.setattr(f"flows.report.{name}", lambda **kw: None)
    assert [shown(v) for v in (27082, 1234.5, 0.125, True, None, "ok")] == [
        "27,082", "1,234.5", "0.125", "True", "", "ok",
    ]  # fmt: skip
    stage = StageResult(name="extract", kind="extract", output="/w/documents", markers={},
                        summary={"rows": 27082, "loss": 7.123456789, "health": "ok"},
                        seconds=1234.56)  # fmt: skip
    assert figure_rows(stage) == [
        {"figure": "rows", "value": "27,082"}, {"figure": "loss", "value": "7.12346"},
        {"figure": "health", "value": "ok"}, {"figure": "seconds", "value": "1,234.6"},
    ]  # fmt: skip
    path = write_report(flow_name="pretrain-bert", directory=str(tmp_path), stages=[stage],
                        finetuned=[], parameters={}, pending=[], key="r")  # fmt: skip
    assert "| extract | ran | 1,234.6 | /w/documents |" in Path(path).read_text()
    body = json.loads((tmp_path / "report.json").read_text())
    assert body["stages"][0]["summary"]["rows"] == 27082


def test_the_report_shows_what_the_last_phase_predicts_for_the_probe_sentences(
    tmp_path, monkeypatch
):
    from flows.stages import METRICS_NAME, StageCall, summarize_training

    for name in ("create_markdown_artifact", "create_table_artifact"):
        monkeypatch.setattr(f"flows.report.{name}", lambda **kw: None)
    records = [
        {"event": "train", "step": 10, "phase": 1, "loss": 7.0},
        {"event": "fill_mask", "step": 10, "phase": 1, "predictions": [
            {"text": "He opened the [MASK].", "mask": 0, "pieces": ["the", ","],
             "probabilities": [0.2, 0.1]}]},
        {"event": "train", "step": 20, "phase": 2, "loss": 6.0},
        {"event": "fill_mask", "step": 20, "phase": 2, "predictions": [
            {"text": "He opened the [MASK].", "mask": 0, "pieces": ["door", "window"],
             "probabilities": [0.4, 0.2]}]},
    ]  # fmt: skip
    (tmp_path / METRICS_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    phases = []
    for phase in (1, 2):
        call = StageCall(name=f"pretrain-phase{phase}", kind="pretrain", module="model.pretrain",
                         args=[], output=str(tmp_path), markers=[], meta={"phase": phase})  # fmt: skip
        summary = summarize_training(call)
        phases.append(StageResult(name=call.name, kind="pretrain", output=str(tmp_path),
                                  markers={}, summary=summary))  # fmt: skip
    assert phases[0].summary["fill_mask"] == [
        {"text": "He opened the [MASK].", "pieces": ["the", ","]}
    ]
    assert all(row["figure"] != "fill_mask" for row in figure_rows(phases[1]))
    path = write_report(flow_name="pretrain-bert", directory=str(tmp_path / "r"), stages=phases,
                        finetuned=[], parameters={}, pending=[], key="r")  # fmt: skip
    report = Path(path).read_text()
    assert "## What it predicts (fill-mask)" in report
    assert "| He opened the [MASK]. | `door` `window` |" in report  # the last phase's
    assert "`the`" not in report
    from flows.report import code_span

    assert [code_span(p) for p in (",", "|", "`")] == ["`,`", "`\\|`", "`` ` ``"]
