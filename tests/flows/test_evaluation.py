"""Evaluation logic: finding checkpoints, the results history, the plots, the sample task."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from flows.charts import line_chart_svg, svg_markdown_image
from flows.checkpoints import find_checkpoints, finetune_ready
from flows.evaluate_bert import (
    HISTORY_SCHEMA,
    history_rows,
    pending_checkpoints,
    read_history,
    score_series,
    write_history,
)
from flows.sample_tasks import main as build_sample_tasks
from flows.stages import StageResult
from schemas.documents import DOCUMENTS, document_id
from schemas.manifest import Manifest, ShardInfo


def make_checkpoint(directory: Path, step: int, vocab: str = "/w/vocab") -> Path:
    """A training checkpoint as model/checkpointing.py leaves it (weights are stand-ins)."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"hidden_size": 8}')
    (directory / "model.safetensors").write_bytes(b"w" * step)
    info = {"step": step, "phase": 1, "config": {"data": {"vocab": vocab}}}
    (directory / "trainer.json").write_text(json.dumps(info))
    return directory


def test_checkpoints_are_found_by_their_trainer_json_and_ordered_by_step(tmp_path):
    run = tmp_path / "pretrain" / "bert_tiny-abc"
    make_checkpoint(run / "checkpoints" / "step-000000020", 20)
    make_checkpoint(run / "checkpoints" / "step-000000004", 4)
    (run / "phase1").mkdir(parents=True)  # an export: weights but no trainer.json
    (run / "phase1" / "config.json").write_text("{}")
    (run / "phase1" / "model.safetensors").write_bytes(b"w")
    half = run / "checkpoints" / ".tmp-step-000000024-1234"  # a save that was cut short
    half.mkdir()
    (half / "config.json").write_text("{}")
    found = find_checkpoints(str(tmp_path))
    assert [c.step for c in found] == [4, 20]
    assert len({c.fingerprint for c in found}) == 2


def test_only_checkpoints_without_a_score_for_every_task_are_pending(tmp_path):
    a = make_checkpoint(tmp_path / "step-000000004", 4)
    b = make_checkpoint(tmp_path / "step-000000008", 8)
    found = find_checkpoints(str(tmp_path))
    scored = StageResult(
        name="finetune-mrpc", kind="finetune", output="/o", markers={"scores.json": "h"},
        summary={"metric": "dev/f1", "score": 81.5},
    )  # fmt: skip
    rows = history_rows(found[0], [scored], "run-1")
    history = pa.Table.from_pylist(rows, HISTORY_SCHEMA)
    assert [c.path for c in pending_checkpoints(found, history, ["mrpc"])] == [str(b)]
    # A new task makes every checkpoint pending again.
    assert len(pending_checkpoints(found, history, ["mrpc", "rte"])) == 2
    assert str(a) == rows[0]["checkpoint"]


def test_the_history_is_appended_and_read_back(tmp_path):
    path = str(tmp_path / "eval" / "history.parquet")
    assert read_history(path).num_rows == 0
    found = find_checkpoints(str(make_checkpoint(tmp_path / "step-000000004", 4).parent))
    result = StageResult(
        name="finetune-rte", kind="finetune", output="/o", markers={"scores.json": "h"},
        summary={"metric": "dev/accuracy", "score": 61.0},
    )  # fmt: skip
    table = pa.Table.from_pylist(history_rows(found[0], [result], "run-1"), HISTORY_SCHEMA)
    write_history(path, table)
    write_history(path, pa.concat_tables([read_history(path), table]))
    back = read_history(path)
    assert back.num_rows == 2 and back.schema == HISTORY_SCHEMA
    assert back.column("score").to_pylist() == [61.0, 61.0]
    assert score_series(back) == {"rte (dev/accuracy)": [(4.0, 61.0)]}  # latest per checkpoint


def test_a_checkpoint_without_vocab_is_made_ready_for_fine_tuning(tmp_path):
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (vocab / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    checkpoint = make_checkpoint(tmp_path / "step-000000004", 4, vocab=str(vocab))
    ready = Path(finetune_ready(str(checkpoint), None, str(tmp_path / "staging")))
    assert (ready / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    assert (ready / "model.safetensors").resolve() == checkpoint / "model.safetensors"
    # A second call (a re-run) leaves the same folder; one with vocab.txt is used as it is.
    assert finetune_ready(str(checkpoint), None, str(tmp_path / "staging")) == str(ready)
    assert finetune_ready(str(ready), None, str(tmp_path / "other")) == str(ready)


def test_charts_are_valid_svg_with_a_line_per_series():
    svg = line_chart_svg(
        {"loss": [(0, 9.5), (10, 8.0), (20, 7.2)], "eval loss": [(20, 7.4)]},
        title="loss <phase 1>",
        x_label="step",
        y_label="loss",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert "loss &lt;phase 1&gt;" in svg
    assert svg_markdown_image(svg, "x").startswith("![x](data:image/svg+xml;base64,")
    empty = ET.fromstring(line_chart_svg({}, title="t", x_label="x", y_label="y"))
    assert any(t.text == "no data" for t in empty.iter(f"{ns}text"))


def _documents_output(directory: Path, docs: list[list[str]]) -> None:
    rows = []
    for i, sentences in enumerate(docs):
        rows.append(
            {
                "doc_id": document_id("t", str(i)), "source": "t", "original_id": str(i),
                "title": "", "sentences": sentences, "num_chars": sum(map(len, sentences)),
                "num_words": sum(len(s.split()) for s in sentences),
            }
        )  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=DOCUMENTS.arrow_schema)
    directory.mkdir(parents=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    (directory / "documents-00000-of-00001.arrow").write_bytes(data)
    import hashlib

    shard = ShardInfo(path="documents-00000-of-00001.arrow", rows=len(rows), bytes=len(data),
                      sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    manifest = Manifest(stage="extract", schema_name="documents", schema_version=1,
                        shards=[shard], config={}, inputs=[])  # fmt: skip
    (directory / "manifest.json").write_text(manifest.to_json())


def test_the_sample_task_is_built_from_the_documents_the_same_way_every_time(tmp_path):
    docs = [
        [f"Sentence number {j} of document {i} has some words in it." for j in range(6)]
        for i in range(40)
    ]
    _documents_output(tmp_path / "documents", docs)
    out = tmp_path / "tasks"
    argv = ["--documents", str(tmp_path / "documents"), "--output", str(out)]
    argv += ["--tasks", "sentence-order"]
    assert build_sample_tasks(argv) == 0
    train = [json.loads(x) for x in (out / "sentence-order/train.jsonl").read_text().splitlines()]
    dev = [json.loads(x) for x in (out / "sentence-order/dev.jsonl").read_text().splitlines()]
    assert len(train) + len(dev) == 40 * 5 and dev
    assert {e["label"] for e in train} == {"in_order", "swapped"}
    for e in train:
        a, b = (int(t.split()[2]) for t in (e["text_a"], e["text_b"]))
        assert (b - a == 1) == (e["label"] == "in_order")
    # Documents never straddle train and dev.
    assert not {e["id"].rsplit("-", 1)[0] for e in train} & {e["id"].rsplit("-", 1)[0] for e in dev}
    first = (out / "sentence-order/train.jsonl").read_bytes()
    assert build_sample_tasks(argv) == 0
    assert (out / "sentence-order/train.jsonl").read_bytes() == first
    manifest = Manifest.from_json((out / "manifest.json").read_bytes())
    assert manifest.total_rows == len(train) + len(dev)


def test_the_sample_task_refuses_a_folder_without_documents(tmp_path, capsys):
    assert build_sample_tasks(["--documents", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "manifest.json: not found; run the extraction stage first" in capsys.readouterr().err


def test_checkpoints_and_history_on_gcs_use_the_same_code_path(gcs_emulator, tmp_path):
    import gcsfs

    bucket = gcs_emulator()
    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=os.environ["STORAGE_EMULATOR_HOST"])
    local = make_checkpoint(tmp_path / "step-000000012", 12, vocab=f"gs://{bucket}/vocab")
    for path in local.iterdir():
        fs.pipe(f"{bucket}/run/checkpoints/step-000000012/{path.name}", path.read_bytes())
    fs.pipe(f"{bucket}/vocab/vocab.txt", b"[PAD]\n[UNK]\n")

    (found,) = find_checkpoints(f"gs://{bucket}/run")
    assert (found.path, found.step) == (f"gs://{bucket}/run/checkpoints/step-000000012", 12)
    ready = Path(finetune_ready(found.path, None, str(tmp_path / "staging")))
    assert (ready / "model.safetensors").read_bytes() == b"w" * 12  # copied down
    assert (ready / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"

    history = f"gs://{bucket}/evaluation/history.parquet"
    result = StageResult(
        name="finetune-rte", kind="finetune", output="/o", markers={"scores.json": "h"},
        summary={"metric": "dev/accuracy", "score": 55.0},
    )  # fmt: skip
    write_history(history, pa.Table.from_pylist(history_rows(found, [result], "r"), HISTORY_SCHEMA))
    assert read_history(history).column("step").to_pylist() == [12]
    assert pending_checkpoints([found], read_history(history), ["rte"]) == []
