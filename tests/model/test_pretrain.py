"""The pretraining trainer on the real sample: it learns, resumes exactly after kill -9, runs
its phases apart or together, and stops on bad input with a clear message and nothing lost."""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

from model.bert import IGNORE_INDEX, BertForPreTraining, Unpadding
from model.checkpointing import latest_checkpoint, list_checkpoints
from model.hf_checkpoint import load_hf_checkpoint
from model.metrics_log import TIMING_FIELDS, read_metrics
from model.optim import Lamb, param_groups, warmup_linear_decay
from model.pretrain import (
    NonFiniteLossError,
    NotLearningError,
    PhaseData,
    PretrainError,
    loader_workers,
    main,
    parse_args,
    plan_phases,
    sentence_task,
    train,
)
from model.pretraining_batch import PretrainingShards
from model.shard_loader import StreamPlan, split_shards
from model.train_config import PretrainConfig, apply_overrides
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, manifest_hash

# A tiny model on the sample: phase 1 at 64 tokens, phase 2 at 128, batches of 8.
TINY = [
    "--preset=bert_tiny",
    "--set=model.hidden_size=32",
    "--set=model.num_attention_heads=2",
    "--set=model.intermediate_size=128",
    "--set=phase1.seq_length=64",
    "--set=phase2.seq_length=128",
    "--set=phase1.global_batch_size=8",
    "--set=phase2.global_batch_size=8",
    "--set=optim.lr=2e-3",
    "--set=optim.warmup_fraction=0.05",
    "--set=eval.examples=128",
    "--set=log.progress=false",
    "--set=runtime.threads=1",
    "--set=data.num_workers=0",
]
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class SampleData(NamedTuple):
    vocab: Path
    pretraining: Path  # seq64/ and seq128/


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    result = subprocess.run(
        command, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=timeout
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def sample_data(sample_dump, tmp_path_factory) -> SampleData:
    """The real Wikipedia sample through the real jobs: extract, a 2,000-token vocabulary,
    pre-masked pairs at 64 and 128 tokens in 4 shards each."""
    root = tmp_path_factory.mktemp("sample")
    run_module(
        "pipelines.extract",
        "--input",
        str(sample_dump),
        "--output",
        f"{root}/documents",
        "--num-shards",
        "2",
    )
    run_module(
        "pipelines.vocab",
        "--documents",
        f"{root}/documents",
        "--output",
        f"{root}/vocab",
        "--vocab-size",
        "2000",
        "--no-reference",
    )
    run_module(
        "pipelines.pretraining_data",
        "--documents",
        f"{root}/documents",
        "--vocab",
        f"{root}/vocab",
        "--output",
        f"{root}/pretraining",
        "--max-seq-lengths",
        "64,128",
        "--dupe-factor",
        "1",
        "--num-shards",
        "4",
    )
    return SampleData(root / "vocab", root / "pretraining")


def tiny_args(data: Path, output: Path, steps: int, *overrides: str) -> list[str]:
    return [f"--data={data}", f"--output={output}", f"--steps={steps}", *TINY, *overrides]


def tiny_config(data: Path, output: Path, steps: int, *overrides: str) -> PretrainConfig:
    return parse_args(tiny_args(data, output, steps, *overrides))


def curve(output: Path) -> list[dict]:
    """The metrics that do not depend on timing, as a run would plot them."""
    return [
        {k: v for k, v in r.items() if k not in TIMING_FIELDS}
        for r in read_metrics(output / "metrics.jsonl")
        if r["event"] in ("train", "eval")
    ]


def weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint_dir / "model.safetensors")


# -- configuration, optimiser, loss ---------------------------------------------------------


def test_threads_and_loader_workers_default_from_the_machine(monkeypatch):
    config = parse_args(["--data=d", "--output=o", "--threads", "3"])
    assert config.runtime.threads == 3 and config.data.num_workers == -1
    # -1: half the cores per rank, at least one, at most four (4 on 2 cores made torch warn).
    for cores, ranks, expected in ((2, 1, 1), (1, 1, 1), (16, 1, 4), (16, 2, 4), (16, 8, 1)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert loader_workers(-1, ranks) == expected
    assert loader_workers(0, 1) == 0 and loader_workers(6, 1) == 6
    with pytest.raises(SystemExit):
        parse_args(["--data=d", "--output=o", "--set=data.num_workers=-2"])


def test_overrides_reach_any_field_and_name_bad_ones(capsys):
    config = parse_args(
        [
            "--data=gs://b/pretraining",
            "--output=runs/x",
            "--preset=bert_large",
            "--steps=1e6",
            "--set=optim.lr=5e-5",
            "--set=optim.betas=0.9,0.98",
            "--set=runtime.compile=auto",
            "--set=log.tensorboard=false",
            '--set=data.storage_options={"token": "anon"}',
            "--set=model.hidden_dropout_prob=0.0",
        ]
    )
    assert config.preset == "bert_large" and config.schedule.total_steps == 1_000_000
    assert config.optim.lr == 5e-5 and config.optim.betas == (0.9, 0.98)
    assert config.runtime.compile is None and config.log.tensorboard is False
    assert config.data.storage_options == {"token": "anon"}
    assert config.to_dict()["data"]["storage_options"] == {"token": "<hidden>"}  # not logged
    model = config.model_config(vocab_size=30522, pad_token_id=0)
    assert model.num_hidden_layers == 24 and model.hidden_dropout_prob == 0.0
    for bad, message in [
        ("optim.lrr=1", "optim has no field 'lrr'"),
        ("model.hidden=1", "BertConfig has no field 'hidden'"),
        ("phase1.micro_batch_size=1.5", "expected an integer"),
        ("log.progress=maybe", "expected true or false"),
        ("phase2.micro_batch_size=-1", "phase2.micro_batch_size must be >= 0, got -1"),
        ("optim.name=sgd", "optim.name must be 'adamw' or 'lamb'"),
    ]:
        with pytest.raises(SystemExit):
            parse_args(["--data=d", "--output=o", f"--set={bad}"])
        assert message in capsys.readouterr().err


def test_paper_defaults_and_phase_plan():
    config = apply_overrides(PretrainConfig(output="o"), ["data.dir=d"])
    config.validate()
    assert (config.optim.lr, config.optim.betas, config.optim.weight_decay) == (
        1e-4,
        (0.9, 0.999),
        0.01,
    )
    one, two = plan_phases(config, world_size=8)
    assert (one.seq_length, one.first_step, one.end_step) == (128, 0, 900_000)
    assert (two.seq_length, two.first_step, two.end_step) == (512, 900_000, 1_000_000)
    assert (one.micro_batch_size, one.grad_accum) == (32, 1)
    apply_overrides(config, ["phase1.micro_batch_size=8", "phase=1"])
    (only,) = plan_phases(config, world_size=8)
    assert (only.index, only.micro_batch_size, only.grad_accum) == (1, 8, 4)
    apply_overrides(config, ["phase1.micro_batch_size=24"])
    with pytest.raises(PretrainError, match="not a multiple of micro_batch_size 24 x world_size 8"):
        plan_phases(config, world_size=8)
    # warm-up 10,000 steps to the peak, then linear decay to 0 at 1,000,000
    factors = [
        warmup_linear_decay(s, warmup_steps=10_000, total_steps=1_000_000)
        for s in (0, 5_000, 10_000, 505_000, 1_000_000)
    ]
    assert factors == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_weight_decay_skips_biases_and_layer_norms(tiny_config):
    model = BertForPreTraining(tiny_config)
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01
    assert all(n.endswith("bias") or "layer_norm" in n for n in no_decay_names)
    assert "heads.decoder_bias" in no_decay_names
    assert "bert.embeddings.layer_norm.weight" in no_decay_names
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "bert.embeddings.word_embeddings.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(names)


def test_lamb_steps_by_the_trust_ratio():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 4) * 3)
    before = weight.detach().clone()
    optimizer = Lamb([weight], lr=0.01, weight_decay=0.0)
    weight.grad = torch.randn(8, 4) * 100  # the step does not depend on the gradient's scale
    optimizer.step()
    # ||change|| = lr * ||w|| whatever the update's own size.
    change = (weight.detach() - before).norm()
    torch.testing.assert_close(change, 0.01 * before.norm(), rtol=1e-5, atol=0)
    zero = torch.nn.Parameter(torch.zeros(3))  # ||w|| = 0: trust ratio 1, plain Adam step
    zero.grad = torch.ones(3)
    Lamb([zero], lr=0.1).step()
    torch.testing.assert_close(zero.detach(), torch.full((3,), -0.1), rtol=1e-4, atol=0)


def test_training_loss_equals_forward_with_or_without_padding(tiny_config):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config).eval()
    B, T, P = 6, 9, 3
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 4, 7, 9, 5, 6])
    mask = torch.arange(T)[None] < lengths[:, None]
    ids = torch.randint(5, 99, (B, T), generator=g) * mask
    types = (torch.arange(T)[None] >= 2).long() * mask
    positions = torch.stack([torch.randperm(int(n), generator=g)[:P] for n in lengths])
    labels = torch.randint(5, 99, (B, P), generator=g)
    labels[1, 2] = labels[4, 1] = IGNORE_INDEX  # unused slots
    positions[1, 2] = 8  # an unused slot may point at padding
    nsp = torch.tensor([0, 1, 1, 0, 1, 0])
    batch = (ids, types, mask, positions, labels, nsp)
    reference = model(*batch)
    padded = model.pretraining_loss(*batch)
    unpadded = model.pretraining_loss(*batch, unpadding=Unpadding.from_attention_mask(mask))
    assert Unpadding.from_attention_mask(mask).token_index.numel() == int(lengths.sum())
    for out in (padded, unpadded):
        torch.testing.assert_close(out.loss, reference.loss, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out.mlm_loss, reference.mlm_loss, rtol=1e-6, atol=1e-6)
        assert int(out.mlm_count) == int(reference.mlm_count) == B * P - 2
        assert int(out.mlm_correct) == int(reference.mlm_correct)
        assert int(out.nsp_correct) == int(reference.nsp_correct)
    # Gradients agree too: padding tokens contribute nothing in either form.
    grads = []
    for unpadding in (None, Unpadding.from_attention_mask(mask)):
        model.zero_grad()
        model.pretraining_loss(*batch, unpadding=unpadding).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)
    manual = F.cross_entropy(reference.nsp_logits, nsp)
    torch.testing.assert_close(padded.nsp_loss, manual)


# -- training on the sample ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(sample_data, tmp_path_factory) -> Path:
    """300 steps of the tiny model on the sample (270 at 64 tokens, 30 at 128)."""
    output = tmp_path_factory.mktemp("trained")
    config = tiny_config(
        sample_data.pretraining,
        output,
        300,
        "--set=log.every=10",
        "--set=checkpoint.every=50",
        "--set=eval.every=100",
        "--set=data.num_workers=2",
    )  # no --vocab: the data's manifest names it
    train(config)
    return output


def test_tiny_model_learns_on_the_sample(trained_run):
    records = read_metrics(trained_run / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert steps[0]["step"] == 10 and steps[-1]["step"] == 300
    assert {r["phase"] for r in steps} == {1, 2} and steps[-1]["seq_length"] == 128
    # ln(2000) = 7.6 at the start; the model learns far more than chance.
    assert steps[0]["mlm_loss"] > 7.3
    assert steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 1.0
    phase1_evals = [r for r in evals if r["phase"] == 1]
    assert phase1_evals[-1]["mlm_loss"] < phase1_evals[0]["mlm_loss"]
    assert phase1_evals[-1]["mlm_accuracy"] > 0.02
    assert all(r["examples"] == 128 for r in evals)
    assert steps[-1]["tokens_per_s"] > 0 and steps[-1]["lr"] < steps[0]["lr"]
    # NSP is trained and measured: its loss is part of every total, a two-way loss no worse
    # than chance (ln 2). 300 steps of this tiny model do not learn NSP (its loss stays within
    # 0.01 of ln 2 and the health checks warn "nsp_at_chance"), so no NSP learning is asserted.
    for r in steps + evals:
        assert r["loss"] == pytest.approx(r["mlm_loss"] + r["nsp_loss"], abs=1e-5), r
        assert 0.0 < r["nsp_loss"] < math.log(2) + 0.03, r
    # Checkpoints: the last 3 plus the best of each phase; phase ends exported for fine-tuning.
    kept = [c.step for c in list_checkpoints(trained_run / "checkpoints")]
    assert kept[-3:] == [250, 270, 300] and len(kept) <= 5
    for phase in ("phase1", "phase2"):
        model, report = load_hf_checkpoint(trained_run / phase, for_pretraining=True)
        assert report.missing_keys == () and model.config.vocab_size == 2000
    final = weights(trained_run / "checkpoints" / "step-000000300")
    assert all(torch.equal(t, final[k]) for k, t in weights(trained_run / "phase2").items())


def test_health_checks_see_a_healthy_run(trained_run):
    records = read_metrics(trained_run / "metrics.jsonl")
    baselines = [r for r in records if r["event"] == "baseline"]
    assert [r["phase"] for r in baselines] == [1, 2]
    # The most frequent masked piece of the sample ("the") is 4-8% of the masked tokens.
    assert all(0.03 < r["unigram_accuracy"] < 0.1 for r in baselines)
    # Half the pairs have a random next sentence: the majority label is about half of them.
    assert all(0.5 <= r["nsp_chance"] < 0.6 for r in baselines)
    health = [r for r in records if r["event"] == "health"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in health] == [r["step"] for r in evals]
    # The checks see the evaluation's NSP accuracy, against the baseline of its phase.
    assert [r["nsp_accuracy"] for r in health] == [r["nsp_accuracy"] for r in evals]
    chance = {r["phase"]: r["nsp_chance"] for r in baselines}
    assert all(r["nsp_chance"] == chance[r["phase"]] for r in health)
    assert all(r["nsp_accuracy"] > chance[r["phase"]] - 0.1 for r in evals)
    last = health[-1]
    assert last["learning_checked"] and last["status"] != "failing", last
    assert last["mlm_accuracy_ratio"] > 1.0 and last["token_cosine"] < 0.9


def test_collapse_is_reported_and_stop_on_collapse_ends_the_run(sample_data, tmp_path, caplog):
    # lr 3e-2 breaks post-LayerNorm BERT: the final hidden states of all tokens align and
    # the MLM head predicts the most frequent piece everywhere.
    collapsing = ["--set=optim.lr=3e-2", "--set=optim.warmup_fraction=0.1", "--set=log.every=5"]
    collapsing += ["--set=eval.every=10", "--set=phase=1", "--set=checkpoint.every=1000"]
    output = tmp_path / "reported"
    train(tiny_config(sample_data.pretraining, output, 40, *collapsing))
    health = [r for r in read_metrics(output / "metrics.jsonl") if r["event"] == "health"]
    checked = [r for r in health if r["learning_checked"]]  # from step 8: twice the warm-up
    assert [r["step"] for r in checked] == [10, 20, 30, 36]
    assert all(r["status"] == "failing" and "not_learning" in r["problems"] for r in checked)
    assert [r["failing_checks"] for r in checked] == [1, 2, 3, 4]
    assert max(r["token_cosine"] for r in checked) > 0.95
    assert any("collapse" in r["problems"] for r in checked)
    assert "the representations collapsed" in caplog.text
    assert (output / "phase1").exists()  # without --stop-on-collapse the run goes on
    # What a user sees of it: the export fills every probe's blank with the same piece.
    (probes,) = [r for r in read_metrics(output / "metrics.jsonl") if r["event"] == "fill_mask"]
    assert len({p["pieces"][0] for p in probes["predictions"]}) == 1, probes

    output = tmp_path / "stopped"
    stop = NotLearningError
    with pytest.raises(stop, match=r"stopped at step 20 \(--stop-on-collapse, 2 failing") as err:
        train(tiny_config(sample_data.pretraining, output, 40, "--stop-on-collapse", *collapsing))
    assert "unigram baseline" in str(err.value)
    assert not (output / "phase1").exists()  # a run stopped for collapse exports no model


def test_each_export_logs_what_it_predicts_for_the_probe_sentences(trained_run):
    from model.fill_mask import fill_mask
    from model.tasks.tokenize import load_tokenizer
    from model.train_config import FILL_MASK_PROBES

    records = read_metrics(trained_run / "metrics.jsonl")
    exports = [r for r in records if r["event"] == "export"]
    probes = [r for r in records if r["event"] == "fill_mask"]
    assert [(r["step"], r["phase"]) for r in probes] == [
        (r["step"], p) for r, p in zip(exports, (1, 2), strict=True)
    ]
    for record in probes:
        assert [p["text"] for p in record["predictions"]] == list(FILL_MASK_PROBES)
        for p in record["predictions"]:
            assert len(p["pieces"]) == 5 and p["probabilities"] == sorted(
                p["probabilities"], reverse=True
            )
    # The logged predictions are the export's own: the same as fill-mask on the saved model.
    model, _ = load_hf_checkpoint(trained_run / "phase2", for_pretraining=True)
    again = fill_mask(model, load_tokenizer(trained_run / "phase2"), list(FILL_MASK_PROBES))
    assert [p.pieces for p in again] == [p["pieces"] for p in probes[-1]["predictions"]]


def test_probe_records_leave_the_model_training(trained_run):
    from model.fill_mask import probe_records

    model, _ = load_hf_checkpoint(trained_run / "phase2", for_pretraining=True)
    model.train()
    (record,) = probe_records(model, trained_run / "phase2", ["A [MASK] day."], top_k=3)
    assert model.training and len(record["pieces"]) == 3
    model.eval()
    probe_records(model, trained_run / "phase2", ["A [MASK] day."])
    assert not model.training
    config = apply_overrides(PretrainConfig(), ['health.fill_mask_probes=["[MASK] it."]'])
    assert config.health.fill_mask_probes == ["[MASK] it."]
    assert (
        apply_overrides(PretrainConfig(), ["health.fill_mask_probes=[]"]).health.fill_mask_probes
        == []
    )
    with pytest.raises(ValueError, match="expected a JSON list"):
        apply_overrides(PretrainConfig(), ['health.fill_mask_probes="[MASK] it."'])


@pytest.mark.timeout(600)
def test_exports_carry_the_tokenizer_that_transformers_loads(sample_data, trained_run):
    from transformers import AutoTokenizer

    ours = Tokenizer.from_file(str(sample_data.vocab / "tokenizer.json"))
    text = "The Prefect server starts [MASK] workers; naïve café."
    for phase in ("phase1", "phase2"):
        assert (trained_run / phase / "vocab.txt").read_bytes() == (
            sample_data.vocab / "vocab.txt"
        ).read_bytes()
        theirs = AutoTokenizer.from_pretrained(str(trained_run / phase))
        assert theirs(text)["input_ids"] == ours.encode(text).ids
        # Transformers' defaults agree with how the model was trained: a BERT tokenizer that
        # lower-cases, and plain truncation=True cuts at the phase's sequence length.
        assert "Bert" in type(theirs).__name__ and theirs.do_lower_case is True
        length = {"phase1": 64, "phase2": 128}[phase]
        assert theirs.model_max_length == length
        long_text = " ".join(["The history of the county is long."] * 40)
        ids = ours.encode(long_text).ids
        assert theirs(long_text, truncation=True)["input_ids"] == ids[: length - 1] + ids[-1:]
    # One stable name for the final model, whatever phases ran.
    assert (trained_run / "model").resolve() == (trained_run / "phase2").resolve()
    assert AutoTokenizer.from_pretrained(str(trained_run / "model")).model_max_length == 128


def test_a_vocabulary_the_manifest_names_but_cannot_be_read_is_refused(
    sample_data, tmp_path, capsys
):
    data = tmp_path / "pretraining"
    shutil.copytree(sample_data.pretraining, data)
    for seq in ("seq64", "seq128"):
        path = data / seq / MANIFEST_NAME
        manifest = Manifest.from_json(path.read_bytes(), source=str(path))
        inputs = [
            dataclasses.replace(r, path=str(tmp_path / "moved-vocab"))
            if r.path == str(sample_data.vocab)
            else r
            for r in manifest.inputs
        ]
        path.write_text(dataclasses.replace(manifest, inputs=inputs).to_json())
    assert main(tiny_args(data, tmp_path / "run", 4)) == 2  # bad input
    message = capsys.readouterr().err
    assert "moved-vocab" in message and "--vocab" in message
    assert not (tmp_path / "run" / "phase1").exists()


@pytest.mark.timeout(600)
def test_kill_9_then_resume_reproduces_the_uninterrupted_run(sample_data, tmp_path):
    steps = 120  # phase 1 to step 108, phase 2 after: the resumed run crosses the boundary
    extra = [
        "--set=log.every=5",
        "--set=checkpoint.every=30",
        "--set=eval.every=30",
        "--set=data.num_workers=1",
    ]
    uninterrupted = tmp_path / "uninterrupted"
    run_module("model.pretrain", *tiny_args(sample_data.pretraining, uninterrupted, steps, *extra))

    interrupted = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "model.pretrain",
        *tiny_args(sample_data.pretraining, interrupted, steps, *extra),
    ]
    process = subprocess.Popen(
        command, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics, deadline = interrupted / "metrics.jsonl", time.time() + 300
    # Kill it once it is past the first checkpoint (step 30), in the middle of a step.
    while process.poll() is None and time.time() < deadline:
        if metrics.exists() and any(r.get("step", 0) >= 40 for r in read_metrics(metrics)):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = max(r.get("step", 0) for r in read_metrics(metrics))
    assert 40 <= killed_at < steps
    assert latest_checkpoint(interrupted / "checkpoints").step in (30, 60, 90)

    resumed = run_module(
        "model.pretrain", *tiny_args(sample_data.pretraining, interrupted, steps, *extra)
    )
    assert "resuming from" in resumed.stderr and "data order differs" not in resumed.stderr
    assert curve(interrupted) == curve(uninterrupted)  # every loss, accuracy, lr, grad norm
    events = [r["event"] for r in read_metrics(interrupted / "metrics.jsonl")]
    assert events.count("start") == 2 and events[-1] == "end"
    a = weights(uninterrupted / "checkpoints" / "step-000000120")
    b = weights(interrupted / "checkpoints" / "step-000000120")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_phases_run_apart_as_together(sample_data, tmp_path):
    args = ("--set=checkpoint.every=0", "--set=log.every=5", "--set=eval.every=0")
    together = tmp_path / "together"
    train(tiny_config(sample_data.pretraining, together, 20, *args))  # 18 + 2 steps
    apart = tmp_path / "apart"
    first = train(tiny_config(sample_data.pretraining, apart, 20, "--phase=1", *args))
    assert first["step"] == 18 and (apart / "phase1").is_dir() and not (apart / "phase2").exists()
    second = train(tiny_config(sample_data.pretraining, apart, 20, "--phase=2", *args))
    assert second["step"] == 20
    a, b = weights(together / "phase2"), weights(apart / "phase2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert curve(apart) == curve(together)

    fresh = tmp_path / "fresh"
    with pytest.raises(PretrainError, match="phase 2 starts from the phase-1 model"):
        train(tiny_config(sample_data.pretraining, fresh, 20, "--phase=2", *args))
    # From the phase-1 weights alone: a fresh optimizer, the schedule from step 18 on.
    summary = train(
        tiny_config(
            sample_data.pretraining,
            fresh,
            20,
            "--phase=2",
            f"--init-from={apart / 'phase1'}",
            *args,
        )
    )
    assert summary["step"] == 20
    start = read_metrics(fresh / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["step"] == 18


# -- bad input: clear errors, nothing lost -------------------------------------------------


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    output = tmp_path / "run"
    shutil.copytree(trained_run / "checkpoints", output / "checkpoints")
    shutil.copy(trained_run / "metrics.jsonl", output / "metrics.jsonl")
    return output


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_checkpoint_of_another_model_is_refused(sample_data, trained_run, tmp_path, capsys):
    output = copy_run(trained_run, tmp_path)
    before = snapshot(output / "checkpoints")
    status = main(
        tiny_args(sample_data.pretraining, output, 400, "--set=model.num_hidden_layers=3")
    )
    message = capsys.readouterr().err
    assert status == 1
    assert "config mismatch: num_hidden_layers is 2 in the checkpoint but 3 in the model" in message
    assert "step-000000300" in message
    assert snapshot(output / "checkpoints") == before


def edit_manifest(directory: Path, **changes) -> None:
    path = directory / MANIFEST_NAME
    manifest = Manifest.from_json(path.read_bytes())
    path.write_text(dataclasses.replace(manifest, **changes).to_json())


def test_data_of_another_schema_version_is_refused(sample_data, tmp_path, capsys):
    data = tmp_path / "pretraining"
    shutil.copytree(sample_data.pretraining, data)
    edit_manifest(data / "seq128", schema_version=2)
    status = main(tiny_args(data, tmp_path / "run", 20))
    message = capsys.readouterr().err
    assert status == 2  # bad input: the flows do not retry it
    assert (
        f"{data}/seq128/manifest.json: 'pretraining' schema version 2, this code reads version 1"
        in message
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_data_of_another_vocabulary_is_refused(sample_data, trained_run, tmp_path, capsys):
    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(sample_data.vocab, other_vocab)
    edit_manifest(other_vocab, counters={"documents_read": 1})  # another vocabulary's manifest
    other_hash = manifest_hash((other_vocab / MANIFEST_NAME).read_bytes())

    # --vocab names a vocabulary the data was not built from.
    status = main(
        tiny_args(sample_data.pretraining, tmp_path / "fresh", 20, f"--vocab={other_vocab}")
    )
    assert status == 2
    assert "built from another vocabulary" in capsys.readouterr().err

    # Data built from another vocabulary than the checkpoint's model was trained with.
    data = tmp_path / "pretraining"
    shutil.copytree(sample_data.pretraining, data)
    for length in ("seq64", "seq128"):
        manifest = Manifest.from_json((data / length / MANIFEST_NAME).read_bytes())
        inputs = [i for i in manifest.inputs if Path(i.path) != sample_data.vocab]
        edit_manifest(
            data / length,
            inputs=[*inputs, InputRef(path=str(other_vocab), manifest_hash=other_hash)],
        )
    output = copy_run(trained_run, tmp_path)
    before = snapshot(output / "checkpoints")
    status = main(tiny_args(data, output, 400))
    message = capsys.readouterr().err
    assert status == 1
    assert f"built from vocabulary {other_hash[:12]}" in message
    assert "was trained with vocabulary" in message and "step-000000300" in message
    assert snapshot(output / "checkpoints") == before


def test_corrupt_shard_is_named_and_checkpoints_kept(sample_data, tmp_path, capsys):
    data = tmp_path / "pretraining"
    shutil.copytree(sample_data.pretraining, data)
    output = tmp_path / "run"
    args = (
        "--set=schedule.phase1_fraction=1.0",
        "--set=checkpoint.every=5",
        "--set=data.num_workers=1",
    )
    assert main(tiny_args(data, output, 5, *args)) == 0
    # Damage the shard that the next step reads.
    shards = PretrainingShards(str(data / "seq64"))
    training, _ = split_shards(list(shards.manifest.shards), -1)
    plan = StreamPlan(
        [s.rows for s in training], num_streams=1, stream=0, shuffle_buffer=10_000, seed=12345
    )
    _, shard_ids, _ = plan.locate(5 * 8, 8)
    path = data / "seq64" / training[int(shard_ids[0])].path
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3] ^= 0x55
    path.write_bytes(bytes(damaged))
    before = snapshot(output / "checkpoints")
    capsys.readouterr()

    assert main(tiny_args(data, output, 100, *args)) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"error: {path}: checksum differs from the manifest")
    assert snapshot(output / "checkpoints") == before
    assert latest_checkpoint(output / "checkpoints").step == 5


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(sample_data, tmp_path):
    output = tmp_path / "run"
    config = tiny_config(
        sample_data.pretraining,
        output,
        20,
        "--set=optim.lr=1e30",
        "--set=optim.warmup_fraction=0",
        "--set=checkpoint.every=1",
        "--set=log.every=1",
        "--set=eval.every=0",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(config)
    message = str(caught.value)
    assert "step 2: the training loss became nan" in message
    assert f"last good checkpoint is {output / 'checkpoints' / 'step-000000001'}" in message
    assert "optim.lr" in message
    assert [c.step for c in list_checkpoints(output / "checkpoints")] == [1]
    model, _ = load_hf_checkpoint(output / "checkpoints" / "step-000000001", for_pretraining=True)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_batch_too_large_for_memory_names_the_knob(sample_data, tmp_path):
    # A real allocation failure: the address space is capped 1 GiB above what imports use.
    script = (
        "import resource, sys\n"
        "import torch, model.pretrain\n"
        "size = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), size + (1 << 30)))\n"
        "sys.exit(model.pretrain.main(sys.argv[1:]))\n"
    )
    output = tmp_path / "run"
    args = tiny_args(
        sample_data.pretraining,
        output,
        10,
        "--set=phase1.global_batch_size=4096",
        "--set=data.validation_shards=0",
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert (
        "a micro-batch of 4096 sequences x 64 tokens does not fit in cpu memory. Lower "
        "phase1.micro_batch_size (e.g. --set phase1.micro_batch_size=2048)"
    ) in result.stderr
    assert "global batch at 4096 sequences" in result.stderr
    assert latest_checkpoint(output / "checkpoints") is None


def test_a_run_that_cannot_fit_in_memory_is_refused_before_its_first_step(
    sample_data, tmp_path, capsys
):
    """A batch far beyond this machine's memory: refused at once, with the micro-batch size
    that would fit, instead of being killed by the kernel minutes in."""
    output = tmp_path / "huge"
    args = tiny_args(sample_data.pretraining, output, 10, "--set=phase1.global_batch_size=262144")
    assert main(args) != 0
    message = capsys.readouterr().err
    assert "phase 1 needs about" in message and "GiB" in message
    advised = int(re.search(r"--set phase1.micro_batch_size=(\d+)", message).group(1))
    assert 262144 % advised == 0 and advised < 262144
    assert not (output / "checkpoints").exists() or not any((output / "checkpoints").iterdir())


def test_the_memory_estimate_grows_with_the_batch_and_picks_a_divisor_that_fits():
    from model.config import PRESETS
    from model.memory_estimate import estimate_phase, largest_fitting_micro_batch

    config = PRESETS["bert_base"](vocab_size=30522)

    def at(micro: int):
        return estimate_phase(config, micro_batch_size=micro, seq_length=128, max_predictions=20)

    # BERT-base with its pretraining heads: 110.1M parameters, 12 bytes each of gradient and
    # AdamW moments on top of the weights.
    assert at(8).states == at(256).states == 110_106_428 * 12
    assert at(8).activations * 32 == at(256).activations
    assert 30 * 2**30 < at(256).total < 45 * 2**30  # the README's bert_base batch on one CPU
    fits = largest_fitting_micro_batch(at, 256, 256, 8 * 2**30)
    assert fits is not None and 256 % fits == 0 and at(fits).total <= 8 * 2**30 < at(2 * fits).total
    assert largest_fitting_micro_batch(at, 256, 256, 2**20) is None


def test_fast_precision_is_bf16_exactly_on_cpus_with_native_bf16():
    from model.parallelize import cpu_has_native_bf16, resolve_precision

    flags = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
        assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    cpu = torch.device("cpu")
    assert resolve_precision("fast", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert apply_overrides(PretrainConfig(), ["runtime.precision=fast"]).runtime.precision == "fast"
    config = apply_overrides(
        PretrainConfig(), ["runtime.precision=fp16", "output=/tmp/r", "data.dir=d"]
    )
    with pytest.raises(
        ValueError,
        match=r"runtime.precision must be one of \[.auto., .fast., .bf16., .fp32.\], got .fp16.",
    ):
        config.validate()
    # Fine-tuning takes the same choice.
    from model.finetune import resolve_placement

    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert resolve_placement("cpu", "fast").autocast_dtype == expected
    assert resolve_placement("cpu", "auto").autocast_dtype is None
    with pytest.raises(ValueError, match="auto, fast, bf16 or fp32"):
        resolve_placement("cpu", "fp16")


def test_the_last_word_on_the_command_line_wins_the_environment_comes_last(tmp_path):
    """--steps, --threads, --stop-on-collapse and --set apply in command-line order, and
    BERT_PRETRAIN_ARGS is appended: it can turn off what the command turned on."""
    command = [
        sys.executable, "-m", "model.pretrain", "--data", str(tmp_path), "--output", str(tmp_path),
        "--stop-on-collapse", "--steps", "100", "--set", "runtime.threads=2", "--print-config",
    ]  # fmt: skip
    env = os.environ | {
        "BERT_PRETRAIN_ARGS": "--set health.stop_on_collapse=false --steps 12 --threads 1"
    }
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=True)
    config = json.loads(shown.stdout)
    assert config["health"]["stop_on_collapse"] is False
    assert (config["schedule"]["total_steps"], config["runtime"]["threads"]) == (12, 1)


def test_albert_shape_learns_on_the_sample_and_exports_as_albert(sample_data, tmp_path):
    """A factorised embedding (E=16 < H=32) and one layer shared by both: the MLM loss falls
    on real text, and the export is an AlbertForPreTraining that computes what ours does.
    (In 200 steps this size learns the pieces' frequencies, as BERT's shape does: 6.40 against
    6.39 held-out MLM loss at step 200. The ablation flow's objectives table measures more.)"""
    import transformers

    output = tmp_path / "albert"
    albert = ["--set=model.embedding_size=16", "--set=model.share_layers=true", "--set=phase=1"]
    summary = train(tiny_config(sample_data.pretraining, output, 220, *albert,
                                "--set=log.every=10", "--set=eval.every=100"))  # fmt: skip
    records = read_metrics(output / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    assert start["sentence_task"] == summary["sentence_task"] == "nsp"
    steps = [r for r in records if r["event"] == "train"]
    assert steps[0]["mlm_loss"] > 7.3 and steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 0.8
    evals = [r for r in records if r["event"] == "eval"]
    assert evals[-1]["mlm_loss"] < evals[0]["mlm_loss"] < 7.0
    ours, report = load_hf_checkpoint(output / "phase1", for_pretraining=True)
    assert report.missing_keys == () and ours.config.share_layers
    assert len(ours.bert.encoder.layers) == 1 and ours.config.num_hidden_layers == 2
    reference = transformers.AlbertForPreTraining.from_pretrained(output / "phase1").eval()
    ids = torch.randint(
        5, ours.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        got, want = ours.eval()(ids), reference(ids)
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.sop_logits, atol=1e-4, rtol=0)


def test_the_binary_heads_task_comes_from_the_data_and_must_agree():
    def data(directory: str, **config) -> PhaseData:
        shards = SimpleNamespace(directory=directory, config=config)
        return PhaseData(train=shards, train_shards=[], validation=None, validation_shards=[],
                         vocab_hash=None)  # fmt: skip

    assert sentence_task([data("a"), data("b")], nsp=True) == "nsp"
    assert sentence_task([data("a", sentence_order=True)], nsp=True) == "sop"
    assert sentence_task([data("a", packing="full-sentences")], nsp=False) == "none"
    with pytest.raises(PretrainError, match="a: packed data .* objective.nsp=false"):
        sentence_task([data("a", packing="full-sentences")], nsp=True)
    with pytest.raises(PretrainError, match="mix next-sentence and sentence-order labels"):
        sentence_task([data("seq128"), data("seq512", sentence_order=True)], nsp=True)


def test_electra_learns_replaced_token_detection_on_the_sample(sample_data):
    """A tiny ELECTRA on real pre-masked pairs, measured on held-back batches: the generator's
    MLM loss falls, and the discriminator learns the rate of replaced tokens (its loss from
    ln 2 to that rate's entropy). At this size and budget neither uses the context much (as
    BERT's tiny model, which learns the pieces' frequencies first): 600 steps took the
    discriminator only 0.007 below the entropy (0.4003 against 0.4074)."""
    from model.electra import ElectraForPreTraining
    from model.pretraining_batch import iter_batches

    torch.manual_seed(0)
    config = tiny_model_config(vocab_size=2000)
    model = ElectraForPreTraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    shards = PretrainingShards(str(sample_data.pretraining / "seq64"))
    batches = list(iter_batches(shards, batch_size=16, drop_last=True))
    held, train_batches = batches[:4], batches[4:]
    sampler = torch.Generator().manual_seed(0)

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            outs = [model.pretraining_loss(**electra_inputs(b), generator=sampler) for b in held]
        model.train()
        rate = sum(float(o.replaced_count) for o in outs) / sum(float(o.rtd_count) for o in outs)
        mean = lambda name: sum(float(getattr(o, name)) for o in outs) / len(outs)  # noqa: E731
        return mean("mlm_loss"), mean("rtd_loss"), rate

    first_generator, _, _ = evaluate()
    for step, batch in enumerate(train_batches * 3):
        if step == 200:
            break
        out = model.pretraining_loss(**electra_inputs(batch), generator=sampler)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    generator_loss, discriminator_loss, rate = evaluate()
    assert first_generator > 7.0 and generator_loss < first_generator - 1.0
    base_rate_entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    assert 0.1 < rate < 0.16  # about 15% masked, nearly all of them changed by a young generator
    assert discriminator_loss < base_rate_entropy + 0.005 < math.log(2) - 0.25, discriminator_loss


ELECTRA = ["--set=objective.name=electra", "--set=objective.nsp=false", "--set=phase=1",
           "--set=log.every=10", "--set=eval.every=90", "--set=checkpoint.every=90",
           "--set=checkpoint.keep_last=5"]  # fmt: skip


@pytest.mark.timeout(600)
def test_electra_trains_through_pretrain_resumes_exactly_and_exports_both_models(
    sample_data, tmp_path
):
    """objective.name=electra: the trainer's loss is the generator's MLM plus 50 x the
    discriminator's; both learn on real text; the checkpoints resume to the same bytes; the
    export is transformers' ElectraForPreTraining (the generator beside it) with our outputs,
    and fine-tuning reads it as a BERT encoder."""
    import transformers

    from model.hf_checkpoint import GENERATOR_DIR, load_electra_checkpoint
    from tests.model.test_hf_checkpoint import RecordWarnings

    output = tmp_path / "electra"
    summary = train(tiny_config(sample_data.pretraining, output, 200, *ELECTRA))  # 180 steps
    assert summary["step"] == 180 and summary["sentence_task"] == "none"
    records = read_metrics(output / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    saved = load_electra_checkpoint(output / "phase1")
    trained = sum(p.numel() for p in saved.parameters() if p.requires_grad)
    assert start["sentence_task"] == "none" and start["parameters"] == trained
    steps = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    for r in steps + evals:
        assert "nsp_accuracy" not in r and "nsp_loss" not in r
        assert r["loss"] == pytest.approx(r["mlm_loss"] + 50 * r["rtd_loss"], rel=1e-6), r
        assert 0.08 < r["replaced_share"] < 0.16, r  # 15% masked, nearly all replaced
    assert steps[0]["mlm_loss"] > 7.3 and steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 1.0
    assert steps[0]["rtd_loss"] > steps[-1]["rtd_loss"] + 0.2  # from about ln 2
    last = evals[-1]  # at least the base rate: "original" for every token
    assert last["rtd_accuracy"] >= 1 - last["replaced_share"] - 0.005, last

    export = output / "model"
    with RecordWarnings() as warnings:
        discriminator, info = transformers.ElectraForPreTraining.from_pretrained(
            export, output_loading_info=True
        )
        generator, g_info = transformers.ElectraForMaskedLM.from_pretrained(
            export / GENERATOR_DIR, output_loading_info=True
        )
    assert all(not v for v in info.values()) and all(not v for v in g_info.values())
    assert warnings.messages == []
    ids = torch.randint(5, 2000, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = saved.eval()(ids)
        torch.testing.assert_close(ours.replaced_logits, discriminator.eval()(ids).logits,
                                   atol=1e-4, rtol=0)  # fmt: skip
        torch.testing.assert_close(ours.mlm_logits, generator.eval()(ids).logits, atol=1e-4,
                                   rtol=0)  # fmt: skip
        # Fine-tuning reads the discriminator as a BERT encoder, its pooler fresh.
        encoder, report = load_hf_checkpoint(export, for_pretraining=False)
        assert set(report.missing_keys) == {"pooler.dense.weight", "pooler.dense.bias"}
        reference = transformers.ElectraModel.from_pretrained(export).eval()
        torch.testing.assert_close(encoder.eval()(ids).last_hidden_state,
                                   reference(ids).last_hidden_state, atol=1e-4, rtol=0)  # fmt: skip
    for name in ("vocab.txt", "tokenizer.json"):
        assert (export / name).is_file() and (export / GENERATOR_DIR / name).is_file()

    # Resumed from the step-90 checkpoint: the same bytes at the end as the run without a stop.
    resumed = tmp_path / "resumed"
    shutil.copytree(output / "checkpoints" / "step-000000090",
                    resumed / "checkpoints" / "step-000000090")  # fmt: skip
    train(tiny_config(sample_data.pretraining, resumed, 200, *ELECTRA))
    for part in ("model.safetensors", f"{GENERATOR_DIR}/model.safetensors"):
        a, b = output / "phase1" / part, resumed / "phase1" / part
        assert a.read_bytes() == b.read_bytes(), part


def test_electra_settings_are_checked_before_the_run(sample_data, tmp_path, capsys):
    def config(*overrides: str) -> PretrainConfig:
        return tiny_config(sample_data.pretraining, tmp_path / "x", 10, *overrides)

    for wrong, message in (
        (["--set=objective.name=electra"], "set objective.nsp=false"),
        ([*ELECTRA, "--set=objective.generator_width=0"], "generator_width must be in"),
    ):
        with pytest.raises(SystemExit):
            config(*wrong)
        assert message in capsys.readouterr().err
    with pytest.raises(PretrainError, match="neither shared layers"):
        train(config(*ELECTRA, "--set=model.embedding_size=16", "--set=model.share_layers=true"))
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.timeout(600)
def test_roberta_recipe_learns_on_packed_full_sentences(sample_data, tmp_path):
    """RoBERTa's recipe through the trainer: FULL-SENTENCES rows stored unmasked and masked
    afresh by the trainer, no NSP, Adam's beta2 0.98. The MLM loss falls on real text, and no
    sentence-task figure is logged (the rows have no second segment)."""
    data = tmp_path / "packed"
    run_module("pipelines.pretraining_data", "--documents", str(sample_data.vocab.parent / "documents"),
               "--vocab", str(sample_data.vocab), "--output", str(data), "--max-seq-lengths", "64",
               "--dupe-factor", "1", "--num-shards", "2", "--packing", "full-sentences",
               "--dynamic-masking")  # fmt: skip
    output = tmp_path / "roberta"
    roberta = ["--set=objective.nsp=false", "--set=optim.betas=0.9,0.98", "--set=phase=1",
               "--set=log.every=10", "--set=checkpoint.every=0"]  # fmt: skip
    summary = train(tiny_config(data, output, 200, *roberta))  # 180 steps at 64 tokens
    assert summary["sentence_task"] == "none"
    records = read_metrics(output / "metrics.jsonl")
    start = next(r for r in records if r["event"] == "start")
    assert start["config"]["optim"]["betas"] == [0.9, 0.98]
    steps = [r for r in records if r["event"] == "train"]
    assert all("nsp_accuracy" not in r and r["loss"] == r["mlm_loss"] for r in steps)
    assert steps[0]["mlm_loss"] > 7.3 and steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 1.0
    with pytest.raises(PretrainError, match="packed data .* objective.nsp=false"):
        train(tiny_config(data, tmp_path / "with-nsp", 10, "--set=phase=1"))


SBO = ["--set=objective.span_boundary=true", "--set=objective.nsp=false", "--set=phase=1",
       "--set=log.every=10", "--set=eval.every=90", "--set=checkpoint.every=90",
       "--set=checkpoint.keep_last=5"]  # fmt: skip


@pytest.mark.timeout(600)
def test_span_boundary_objective_learns_exports_as_bert_and_resumes_exactly(
    sample_data, trained_run, tmp_path, caplog
):
    """objective.span_boundary on SpanBERT's data (span masks): the loss is MLM + SBO, the
    SBO's falls on real text, the export is BERT's with the head in a file beside it, and a
    resumed run ends with the same bytes. A BERT export goes on with a fresh head."""
    import transformers

    from model.span_boundary import SPAN_BOUNDARY_FILE
    from tests.model.test_albert import LOADED_CLEANLY

    data = tmp_path / "span"
    run_module("pipelines.pretraining_data", "--documents", str(sample_data.vocab.parent / "documents"),
               "--vocab", str(sample_data.vocab), "--output", str(data), "--max-seq-lengths", "64",
               "--dupe-factor", "1", "--num-shards", "2", "--span-masking")  # fmt: skip
    output = tmp_path / "spanbert"
    with caplog.at_level("WARNING", logger="model.pretrain"):
        train(tiny_config(data, output, 200, *SBO))  # 180 steps at 64 tokens
    assert "not span-masked" not in caplog.text
    records = read_metrics(output / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    for r in steps + evals:
        assert r["loss"] == pytest.approx(r["mlm_loss"] + r["sbo_loss"], rel=1e-6), r
        assert 0 <= r["sbo_accuracy"] <= 1
    assert steps[0]["sbo_loss"] > 7.3 and steps[-1]["sbo_loss"] < steps[0]["sbo_loss"] - 1.0
    assert evals[-1]["sbo_loss"] < evals[0]["sbo_loss"]

    export = output / "model"
    assert (export / SPAN_BOUNDARY_FILE).is_file()
    _, info = transformers.BertForPreTraining.from_pretrained(export, output_loading_info=True)
    assert info == LOADED_CLEANLY
    ours, report = load_hf_checkpoint(export, for_pretraining=True)
    assert report.missing_keys == () and report.unexpected_keys == ()

    resumed = tmp_path / "resumed"
    shutil.copytree(output / "checkpoints" / "step-000000090",
                    resumed / "checkpoints" / "step-000000090")  # fmt: skip
    train(tiny_config(data, resumed, 200, *SBO))
    for part in ("model.safetensors", SPAN_BOUNDARY_FILE):
        assert (output / "phase1" / part).read_bytes() == (resumed / "phase1" / part).read_bytes()

    # From a BERT model (no head file) the head starts fresh, said so; a checkpoint without
    # it cannot be resumed with the SBO on; pairs data that is not span-masked is warned of.
    caplog.clear()
    onward = tmp_path / "onward"
    with caplog.at_level("WARNING", logger="model.pretrain"):
        train(tiny_config(sample_data.pretraining, onward, 20, *SBO,
                          f"--init-from={trained_run / 'phase1'}"))  # fmt: skip
    assert "has no span-boundary head (span_boundary.safetensors): it starts fresh" in caplog.text
    assert "is not span-masked" in caplog.text
    plain = tmp_path / "plain"
    shutil.copytree(trained_run / "checkpoints" / "step-000000250",
                    plain / "checkpoints" / "step-000000250")  # fmt: skip
    with pytest.raises(PretrainError, match="has no span-boundary head"):
        train(tiny_config(sample_data.pretraining, plain, 300, *SBO[:2]))


def tiny_model_config(vocab_size: int):
    from model.config import bert_tiny

    return bert_tiny(vocab_size=vocab_size, hidden_size=64, num_attention_heads=4,
                     intermediate_size=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)  # fmt: skip


def electra_inputs(batch) -> dict:
    fields = ("input_ids", "token_type_ids", "attention_mask", "masked_lm_positions",
              "masked_lm_labels")  # fmt: skip
    return {name: getattr(batch, name) for name in fields}
