"""End to end: a real Prefect server and process worker on free local ports, the deployments of
prefect.yaml, and `prefect deployment run` of the sample chain (tiny settings to stay quick).

The tests run in order and share one server and one work directory: the full chain, the same
run again from the cache, bad parameters refused, a failing stage, a stage killed midway and
resumed, a cancelled run, and scheduled evaluation picking up only new checkpoints: the
server's scheduler creates the runs of prefect.yaml's cron schedule, and a run that an interval
schedule creates is executed by the worker.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from flows.local_server import LocalPrefect
from flows.quickstart import deploy
from schemas.manifest import Manifest

# Smaller than the sample preset: the same stages, fewer steps and examples.
TINY_PRETRAIN = {
    "total_steps": 10,
    "phase1_fraction": 0.8,
    "phase1_batch_size": 4,
    "phase2_batch_size": 2,
    "checkpoint_every": 8,  # checkpoints at steps 8 (end of phase 1) and 10
    "log_every": 2,
}
TINY_FINETUNE = {"max_train_examples": 64, "max_seq_length": 32, "batch_sizes": [16]}
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Server, pool and worker on a free port, state in a temp dir; deployments applied."""
    prefect = LocalPrefect(
        state_dir=tmp_path_factory.mktemp("prefect-local"), port=_free_port(), pool="bert-e2e"
    )
    try:
        started = prefect.up()
        assert started == {"server": True, "pool": True, "worker": True}
        # A second `up` finds everything running and starts nothing.
        assert prefect.up() == {"server": False, "pool": False, "worker": False}
        deploy(prefect)
        yield prefect
    finally:
        stopped = prefect.down(grace_s=10)
        assert stopped == ["worker", "server"]
        assert not prefect.server_healthy()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample-run")


def create_run(local: LocalPrefect, deployment: str, params: dict, *, watch: bool = True):
    """`prefect deployment run` with JSON parameters; returns (exit status, output, run id)."""
    args = ["deployment", "run", deployment]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    if watch:
        args += ["--watch", "--watch-timeout", "900"]
    proc = local.prefect(*args, check=False)
    output = proc.stdout + proc.stderr
    run_id = None
    if "UUID: " in output:
        run_id = output.split("UUID: ", 1)[1].split()[0]
        if watch and proc.returncode != 0:  # say why, in the assertion message
            output += "\nstate message: " + str(flow_run(local, run_id)["state"].get("message"))
    return proc.returncode, output, run_id


def flow_run(local: LocalPrefect, run_id: str) -> dict:
    return httpx.get(f"{local.api_url}/flow_runs/{run_id}", timeout=30).json()


def task_states(local: LocalPrefect, run_id: str) -> dict[str, str]:
    runs = httpx.post(
        f"{local.api_url}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [run_id]}}},
        timeout=30,
    ).json()
    return {r["name"]: r["state"]["name"] for r in runs}


def latest_artifacts(local: LocalPrefect) -> dict[str, dict]:
    found = httpx.post(f"{local.api_url}/artifacts/latest/filter", json={}, timeout=30).json()
    return {a["key"]: a for a in found}


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def stage_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `marker` (a stage module plus our workdir)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if marker in cmdline and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def sample_params(workdir: Path, **extra) -> dict:
    return {
        "workdir": str(workdir),
        "pretrain": TINY_PRETRAIN | extra.pop("pretrain", {}),
        "finetune": TINY_FINETUNE,
    } | extra


def deployment_id(local: LocalPrefect, name: str) -> str:
    found = httpx.get(f"{local.api_url}/deployments/name/{name}", timeout=30)
    found.raise_for_status()
    return found.json()["id"]


def scheduled_runs(local: LocalPrefect, deployment: str) -> list[dict]:
    """The runs that the server's scheduler created for a deployment and that have not started."""
    for _ in range(20):  # SQLite answers 503 when busy under load
        answer = httpx.post(
            f"{local.api_url}/flow_runs/filter",
            json={
                "deployments": {"id": {"any_": [deployment]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            },
            timeout=30,
        )
        if answer.status_code != 503:
            break
        time.sleep(1)
    answer.raise_for_status()
    return answer.json()


def delete(url: str) -> None:
    """DELETE, tried again while the server answers 503: SQLite is busy under load."""
    for _ in range(20):
        answer = httpx.delete(url, timeout=30)
        if answer.status_code != 503:
            break
        time.sleep(1)
    if answer.status_code != 404:  # already gone (a schedule's runs go with it)
        answer.raise_for_status()


def remove_schedules(local: LocalPrefect, deployment: str) -> None:
    """Delete a deployment's schedules and the runs they had scheduled: nothing fires later."""
    detail = httpx.get(f"{local.api_url}/deployments/{deployment}", timeout=30).json()
    for schedule in detail["schedules"]:
        delete(f"{local.api_url}/deployments/{deployment}/schedules/{schedule['id']}")
    for run in scheduled_runs(local, deployment):
        delete(f"{local.api_url}/flow_runs/{run['id']}")
    assert not scheduled_runs(local, deployment)


def test_the_cron_schedule_of_prefect_yaml_gets_runs_from_the_server(local):
    """The server's scheduler really creates the deployment's runs (with SQLAlchemy 2.1 it failed
    every minute and created none). The schedule is then removed, so that no evaluation of the
    repository's runs/sample fires in the middle of the tests."""
    deployment = deployment_id(local, "evaluate-bert/sample")
    runs = wait_for(lambda: scheduled_runs(local, deployment), 120, "the cron schedule's runs")
    assert all(r["auto_scheduled"] for r in runs)
    starts = [datetime.fromisoformat(r["expected_start_time"]) for r in runs]
    assert all(t > datetime.now(UTC) - timedelta(minutes=1) for t in starts)
    # "0 */6 * * *" in UTC: on the hour, every sixth hour.
    assert all(t.astimezone(UTC).hour % 6 == 0 and t.minute == 0 for t in starts), starts
    remove_schedules(local, deployment)


def test_the_sample_chain_runs_from_a_deployment(local, workdir):
    rc, output, run_id = create_run(local, "pretrain-bert/sample", sample_params(workdir))
    assert rc == 0, output
    assert flow_run(local, run_id)["state"]["type"] == "COMPLETED"
    states = task_states(local, run_id)
    for stage in ("extract", "vocab", "pretraining_data", "validate-seq128", "validate-seq512",
                  "pretrain-phase1", "pretrain-phase2", "finetune-sentence-order"):  # fmt: skip
        assert states[stage] == "Completed", states

    # Every data stage's output is complete: a readable manifest that matches its shards.
    for directory in ("documents", "vocab", "pretraining/seq128", "pretraining/seq512", "tasks"):
        path = workdir / directory / "manifest.json"
        manifest = Manifest.from_json(path.read_bytes(), source=str(path))
        assert manifest.total_rows > 0
        for shard in manifest.shards:
            assert (workdir / directory / shard.path).stat().st_size == shard.bytes
    for length in (128, 512):
        stats = json.loads((workdir / f"pretraining/seq{length}/stats.json").read_text())
        assert stats["passed"] and stats["max_seq_length"] == length
    (run_dir,) = (workdir / "pretrain").iterdir()
    assert {"phase1", "phase2", "checkpoints", "metrics.jsonl"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert {p.name for p in (workdir / "model").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "vocab.txt",
    }

    scores = json.loads((workdir / "finetuned/sentence-order/scores.json").read_text())
    assert scores["select_metric"] == "dev/accuracy"
    assert 0.0 <= scores["dev"]["dev/accuracy"]["mean"] <= 100.0
    report = (workdir / "report.md").read_text()
    assert "sentence-order" in report and "| pretrain-phase2 | ran |" in report
    # Ten steps teach nothing: the report says so, and compares with a random init.
    assert states["finetune-sentence-order-random"] == "Completed", states
    assert "## Did it learn?" in report and "proves the plumbing, not the learning" in report
    assert "## Pretrained against random initialisation" in report

    runs = httpx.post(
        f"{local.api_url}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [run_id]}}},
        timeout=30,
    ).json()
    tags = {r["name"]: set(r["tags"]) for r in runs}
    # Training stages carry the tag that a GPU concurrency limit counts.
    assert "gpu" in tags["pretrain-phase1"] and "gpu" in tags["finetune-sentence-order"]
    assert "gpu" not in tags["extract"]

    artifacts = latest_artifacts(local)
    for key in ("extract-figures", "vocab-figures", "pretraining-data-figures",
                "validate-seq128-figures", "pretrain-phase1-figures", "pretrain-phase2-curves",
                "pretrain-phase1-health", "pretrain-phase2-health",
                "finetune-sentence-order-figures", "pretrain-bert-report",
                "pretrain-bert-report-scores"):  # fmt: skip
        assert key in artifacts, sorted(artifacts)
    extract_rows = {
        r["figure"]: r["value"] for r in json.loads(artifacts["extract-figures"]["data"])
    }
    documents = json.loads((workdir / "documents/manifest.json").read_text())
    assert extract_rows["rows"] == f"{documents['total_rows']:,}"  # as people read it
    assert not [k for k in artifacts if k.endswith("-output")]  # no file:// links a browser blocks
    assert "data:image/svg+xml;base64," in artifacts["pretrain-phase2-curves"]["data"]
    score_rows = json.loads(artifacts["pretrain-bert-report-scores"]["data"])
    assert score_rows[0]["score"] == scores["dev"]["dev/accuracy"]["mean"]


def test_a_second_run_takes_every_stage_from_the_cache(local, workdir):
    before = (workdir / "finetuned/sentence-order/scores.json").stat().st_mtime_ns
    started = time.monotonic()
    rc, output, run_id = create_run(local, "pretrain-bert/sample", sample_params(workdir))
    assert rc == 0, output
    states = task_states(local, run_id)
    stages = {
        k: v for k, v in states.items() if not k.startswith(("fetch-", "export-", "prepare-"))
    }
    assert [name for name, state in stages.items() if state != "Cached"] == []
    assert (workdir / "finetuned/sentence-order/scores.json").stat().st_mtime_ns == before
    assert time.monotonic() - started < 120


def test_the_finetune_flow_scores_a_given_checkpoint_from_both_inits(local, workdir, tmp_path):
    params = {
        "checkpoint": str(workdir / "model"),
        "output": str(tmp_path / "finetuned"),
        "finetune": TINY_FINETUNE
        | {"data_dir": str(workdir / "tasks"), "inits": ["pretrained", "random"]},
    }
    rc, output, run_id = create_run(local, "finetune-bert/sample", params)
    assert rc == 0, output
    assert {"finetune-sentence-order", "finetune-sentence-order-random"} <= set(
        task_states(local, run_id)
    )
    scores = {
        init: json.loads((tmp_path / f"{folder}/sentence-order/scores.json").read_text())
        for init, folder in (("pretrained", "finetuned"), ("random", "finetuned-random"))
    }
    assert {init: body["init"] for init, body in scores.items()} == {
        "pretrained": "pretrained",
        "random": "random",
    }
    artifacts = latest_artifacts(local)
    table = json.loads(artifacts["finetune-bert-scores"]["data"])
    assert table == [
        {
            "task": "sentence-order",
            "init": init,
            "metric": "dev/accuracy",
            "score": scores[init]["dev"]["dev/accuracy"]["mean"],
        }
        for init in ("pretrained", "random")
    ]
    comparison = json.loads(artifacts["finetune-bert-inits"]["data"])
    assert comparison[0]["metric"] == "dev/accuracy" and comparison[0]["gain"] == pytest.approx(
        scores["pretrained"]["dev"]["dev/accuracy"]["mean"]
        - scores["random"]["dev"]["dev/accuracy"]["mean"]
    )


def test_the_small_recipe_is_deployed_with_its_preset(local):
    # Not run here (about an hour on 2 cores): its deployment exists and names its preset,
    # and the server's schema knows the preset.
    deployment = httpx.get(
        f"{local.api_url}/deployments/name/pretrain-bert/small", timeout=30
    ).json()
    assert deployment["parameters"] == {"preset": "small"}
    schema = deployment["parameter_openapi_schema"]
    assert "small" in json.dumps(schema)


def test_invalid_parameters_are_refused_when_the_run_is_created(local, workdir):
    rc, output, run_id = create_run(
        local, "pretrain-bert/sample", {"vocab": {"vocab_size": 5}}, watch=False
    )
    assert rc != 0 and run_id is None
    assert "vocab.vocab_size" in output and "minimum of 6" in output
    rc, output, _ = create_run(
        local, "pretrain-bert/sample", {"beam": {"runner": "dataflow"}}, watch=False
    )
    assert rc != 0 and "field 'beam'" in output and "'project' is a required property" in output


def test_a_failing_stage_fails_the_run_with_its_own_message(local, workdir):
    documents = (workdir / "documents/manifest.json").read_bytes()
    params = sample_params(workdir, vocab={"vocab_file": str(workdir / "no-such-vocab.txt")})
    rc, output, run_id = create_run(local, "pretrain-bert/sample", params)
    run = flow_run(local, run_id)
    assert run["state"]["type"] == "FAILED"
    message = run["state"]["message"]
    assert (
        "stage 'vocab' failed (exit status 2): error:" in message and "no-such-vocab.txt" in message
    )
    states = task_states(local, run_id)
    assert states["extract"] == "Cached" and states["vocab"] == "Failed"
    assert (workdir / "documents/manifest.json").read_bytes() == documents  # left intact


def test_a_stage_killed_midway_resumes_where_it_stopped(local, workdir):
    params = sample_params(
        workdir,
        pretrain={"seed": 7, "total_steps": 12, "phase1_fraction": 1.0, "checkpoint_every": 2},
        stop_after="pretrain_phase1",
    )
    rc, output, run_id = create_run(local, "pretrain-bert/sample", params, watch=False)
    assert rc == 0, output

    def first_checkpoint():
        found = list((workdir / "pretrain").glob("*/checkpoints/step-*/trainer.json"))
        new = [f for f in found if json.loads(f.read_text())["config"]["runtime"]["seed"] == 7]
        return new[0] if new else None

    checkpoint = wait_for(first_checkpoint, 300, "the first checkpoint of the seed-7 run")
    run_dir = checkpoint.parents[2]
    (trainer,) = wait_for(
        lambda: stage_processes(f"model.pretrain --preset bert_tiny --data {workdir}"),
        30,
        "the trainer",
    )
    trainer.send_signal(signal.SIGKILL)
    run = wait_for(
        lambda: (r := flow_run(local, run_id))["state"]["type"] in FINAL and r,
        120,
        "the run to fail",
    )
    assert run["state"]["type"] == "FAILED"
    assert "stage 'pretrain-phase1' was killed by SIGKILL" in run["state"]["message"]
    assert not (run_dir / "phase1").exists()

    rc, output, run_id = create_run(local, "pretrain-bert/sample", params)
    assert rc == 0, output
    states = task_states(local, run_id)
    assert states["pretraining_data"] == "Cached" and states["pretrain-phase1"] == "Completed"
    starts = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"event": "start"' in line
    ]
    assert len(starts) == 2 and starts[1]["step"] > 0  # the second run resumed from a checkpoint
    assert (run_dir / "phase1/model.safetensors").exists()


def test_cancelling_a_run_kills_its_stage(local, workdir):
    params = sample_params(
        workdir,
        pretrain={"seed": 8, "total_steps": 100000, "phase1_fraction": 1.0},
        stop_after="pretrain_phase1",
    )
    rc, output, run_id = create_run(local, "pretrain-bert/sample", params, watch=False)
    assert rc == 0, output
    marker = f"model.pretrain --preset bert_tiny --data {workdir}"
    wait_for(lambda: stage_processes(marker), 300, "the trainer to start")
    local.prefect("flow-run", "cancel", run_id)
    run = wait_for(
        lambda: (r := flow_run(local, run_id))["state"]["type"] in FINAL and r, 120, "the cancel"
    )
    assert run["state"]["type"] == "CANCELLED"
    wait_for(lambda: not stage_processes(marker), 30, "the trainer to be gone")


def test_evaluation_scores_only_new_checkpoints(local, workdir, tmp_path):
    (run_dir,) = [
        d for d in (workdir / "pretrain").iterdir() if (d / "phase2").exists()
    ]  # the first test's run
    history = tmp_path / "history.parquet"
    params = {
        "checkpoints": str(run_dir),
        "history": str(history),
        "output": str(tmp_path / "evaluation"),
        "finetune": TINY_FINETUNE | {"data_dir": str(workdir / "tasks")},
    }
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    rc, output, run_id = create_run(local, "evaluate-bert/sample", params)
    assert rc == 0, output
    table = pq.read_table(history).to_pylist()
    assert sorted(r["step"] for r in table) == sorted(int(c.name[5:]) for c in checkpoints)
    assert all(r["task"] == "sentence-order" and 0 <= r["score"] <= 100 for r in table)
    assert "evaluate-bert-scores-by-step" in latest_artifacts(local)

    # Nothing new: nothing fine-tuned, the history unchanged.
    rc, output, run_id = create_run(local, "evaluate-bert/sample", params)
    assert rc == 0, output
    assert not [n for n in task_states(local, run_id) if n.startswith("finetune-")]
    assert pq.read_table(history).num_rows == len(table)

    # A new checkpoint appears: only it is evaluated.
    new = run_dir / "checkpoints" / "step-000000099"
    shutil.copytree(checkpoints[-1], new)
    info = json.loads((new / "trainer.json").read_text())
    (new / "trainer.json").write_text(json.dumps(info | {"step": 99}))
    rc, output, run_id = create_run(local, "evaluate-bert/sample", params)
    assert rc == 0, output
    assert [n for n in task_states(local, run_id) if n.startswith("finetune-")] == [
        "finetune-sentence-order"
    ]
    rows = pq.read_table(history).to_pylist()
    assert len(rows) == len(table) + 1 and rows[-1]["step"] == 99


def test_an_interval_schedule_runs_the_evaluation_on_the_worker(local, workdir, tmp_path):
    """A schedule whose first run is due in 90 s: the server schedules it, the worker runs
    it, and the run scores the one checkpoint it was given."""
    (run_dir,) = [d for d in (workdir / "pretrain").iterdir() if (d / "phase2").exists()]
    checkpoint = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    shutil.copytree(checkpoint, tmp_path / "checkpoints" / checkpoint.name)
    history = tmp_path / "history.parquet"
    params = {
        "checkpoints": str(tmp_path / "checkpoints"),
        "history": str(history),
        "output": str(tmp_path / "evaluation"),
        "finetune": TINY_FINETUNE | {"data_dir": str(workdir / "tasks")},
    }
    deployment = deployment_id(local, "evaluate-bert/sample")
    # The server's scheduler looks at every deployment each minute, and at recently updated
    # ones every few seconds (the PATCH below marks it so): 90 s leaves it time under load.
    anchor = datetime.now(UTC) + timedelta(seconds=90)
    schedule = {
        # Hourly from 90 s from now: one run falls due during the test.
        "schedule": {"interval": 3600, "anchor_date": anchor.isoformat()},
        "active": True,
        "parameters": params,
    }
    created = httpx.post(
        f"{local.api_url}/deployments/{deployment}/schedules", json=[schedule], timeout=30
    )
    assert created.status_code == 201, created.text
    updated = httpx.patch(
        f"{local.api_url}/deployments/{deployment}", json={"paused": False}, timeout=30
    )
    assert updated.status_code == 204, updated.text
    try:

        def first_run() -> dict | None:
            runs = httpx.post(
                f"{local.api_url}/flow_runs/filter",
                json={"deployments": {"id": {"any_": [deployment]}}},
                timeout=30,
            ).json()
            due = [
                r
                for r in runs
                if r["auto_scheduled"] and r["parameters"].get("history") == str(history)
            ]
            due.sort(key=lambda r: r["expected_start_time"])
            return due[0] if due else None

        run = wait_for(first_run, 120, "the server to schedule the run")
        started = datetime.fromisoformat(run["expected_start_time"])
        assert abs((started - anchor).total_seconds()) < 1

        def finished() -> dict | None:
            state = flow_run(local, run["id"])["state"]
            return state if state["type"] in FINAL else None

        state = wait_for(finished, 600, "the worker to run the scheduled evaluation")
        assert state["type"] == "COMPLETED", state
        rows = pq.read_table(history).to_pylist()
        assert [(r["step"], r["flow_run_id"]) for r in rows] == [
            (int(checkpoint.name[5:]), run["id"])
        ]
    finally:
        remove_schedules(local, deployment)


def test_the_ablation_flow_runs_each_table_from_its_deployment(local, tmp_path):
    # The sample scale, cut to one arm per kind: base, no NSP, LTR, one mask mix, one size,
    # and the objectives after BERT (ALBERT with its own sentence-order data, SpanBERT,
    # RoBERTa with packed inputs, ELECTRA on the shared data).
    workdir = tmp_path / "ablate"
    params = {
        "workdir": str(workdir),
        "mask_mixes": ["0/0/100"],
        "sizes": ["1/128/2"],
        "pretrain": TINY_PRETRAIN,
        "finetune": TINY_FINETUNE,
    }
    rc, output, run_id = create_run(local, "ablate-bert/sample", params)
    assert rc == 0, output
    arms = ["base", "no-nsp", "ltr-no-nsp", "mask-0-0-100", "size-L1-H128-A2", "albert",
            "spanbert", "roberta", "electra"]  # fmt: skip
    states = task_states(local, run_id)
    for arm in arms:
        assert states[f"pretrain-phase2-{arm}"] == "Completed"
        assert states[f"finetune-sentence-order-{arm}"] == "Completed"
    assert states["finetune-sentence-order-random-base"] == "Completed"
    assert states["feature-based-sentence-order-mask-0-0-100"] == "Completed"
    assert "feature-based-sentence-order-no-nsp" not in states  # masking arms only
    for arm in ("albert", "spanbert", "roberta"):  # data of their own, validated
        assert states[f"pretraining-data-{arm}"] == "Completed"
        assert states[f"validate-seq128-{arm}"] == "Completed"

    def data_config(name: str) -> dict:
        return json.loads((workdir / name / "seq128" / "manifest.json").read_text())["config"]

    assert data_config("pretraining-albert")["sentence_order"] is True
    assert "sentence_order" not in data_config("pretraining")
    packed = data_config("pretraining-roberta")
    assert packed["packing"] == "full-sentences" and packed["dynamic_masking"] is True
    spans = data_config("pretraining-spanbert")
    assert spans["packing"] == "full-sentences" and spans["span_masking"] is True

    # Each arm trained what it claims: its exported model and its logged losses.
    root = workdir / "ablations"
    configs = {a: json.loads((root / a / "model" / "config.json").read_text()) for a in arms}
    assert [a for a in arms if configs[a].get("is_decoder")] == ["ltr-no-nsp"]
    assert configs["size-L1-H128-A2"]["num_hidden_layers"] == 1
    assert configs["base"]["num_hidden_layers"] == 2
    assert configs["albert"]["architectures"] == ["AlbertForPreTraining"]
    assert (configs["albert"]["embedding_size"], configs["albert"]["num_hidden_groups"]) == (128, 1)
    # ELECTRA: the discriminator is what fine-tuning took, its generator beside it.
    assert configs["electra"]["architectures"] == ["ElectraForPreTraining"]
    generator = json.loads((root / "electra" / "model" / "generator" / "config.json").read_text())
    assert generator["hidden_size"] * 4 == configs["electra"]["hidden_size"]
    assert "pretraining-data-electra" not in states  # the shared data

    report = json.loads((root / "report.json").read_text())
    assert set(report["tables"]) == {"tasks", "masking", "size", "objectives"}
    objectives = report["tables"]["objectives"]["rows"]
    assert [r["arm"] for r in objectives] == [
        "BERT (MLM + NSP, 80/10/10)", "ALBERT (E=128, shared layers, SOP)",
        "SpanBERT (span masks, span boundaries, single segments)",
        "RoBERTa inputs (full sentences, dynamic masks, no NSP, beta2 0.98)",
        "ELECTRA (generator 1/4 wide, replaced-token detection, no NSP)",
    ]  # fmt: skip
    binary = [r["binary task acc"] for r in objectives]
    assert binary[0].startswith("NSP ") and binary[1].startswith("SOP ") and binary[2] == ""
    assert re.fullmatch(r"RTD 0\.\d{3} \(base 0\.\d{3}\)", binary[4]), binary[4]
    assert objectives[1]["params"] < objectives[0]["params"] < objectives[4]["params"]
    tasks = report["tables"]["tasks"]["rows"]
    assert [r["arm"] for r in tasks] == [
        "BERT (MLM + NSP, 80/10/10)", "No NSP", "LTR & No NSP", "no pretraining (random init)",
    ]  # fmt: skip
    assert all(" ± " in r["sentence-order"] for r in tasks)
    assert tasks[0]["paper MNLI-m"] == 84.4 and tasks[2]["paper MNLI-m"] == 82.1
    masking = report["tables"]["masking"]["rows"]
    assert [r["arm"] for r in masking] == ["80/10/10", "0/0/100"]
    assert all(" ± " in r["sentence-order (feature-based)"] for r in masking)
    trained = {a: report["arms"][a]["pretrain"]["summary"] for a in ("spanbert", "electra")}
    # The sample scale holds no documents out: the last training means.
    assert 0 <= trained["spanbert"]["sbo_accuracy"] <= 1  # the span-boundary head trained
    assert 0.5 < trained["electra"]["rtd_accuracy"] <= 1
    scored = report["arms"]["mask-0-0-100"]["feature_based"]["sentence-order"]["summary"]
    assert 0 <= scored["score"] <= 100
    size = report["tables"]["size"]["rows"]
    assert [r["arm"] for r in size] == ["L=2 H=128 A=2", "L=1 H=128 A=2"]
    assert all(r["MLM ppl"] > 1 for r in size)
    markdown = (root / "report.md").read_text()
    assert "## Masking procedures (paper Table 8)" in markdown and "(size.svg)" in markdown
    assert (root / "size.svg").read_text().startswith("<svg")
    artifacts = latest_artifacts(local)
    assert {"ablate-bert-tasks", "ablate-bert-masking", "ablate-bert-size",
            "ablate-bert-objectives"} <= set(artifacts)  # fmt: skip
