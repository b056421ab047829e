"""Data parallel training: 2 gloo processes give the parameters of 1 process accumulating 2."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from model.bert import BertForPreTraining
from model.checkpointing import latest_checkpoint
from model.config import bert_tiny
from model.hf_checkpoint import to_hf_state_dict
from model.metrics_log import read_metrics
from model.synthetic_data import write_synthetic_pretraining_data

STEPS = 6


def config_for_data():
    return bert_tiny(
        vocab_size=120, pad_token_id=0, hidden_size=32, num_attention_heads=2, intermediate_size=64
    )


def run_pretrain(output, data, *, processes: int, micro_batch_size: int):
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
        ]
        if processes > 1
        else [sys.executable]
    )
    command = [
        *launcher,
        "-m",
        "model.pretrain",
        "--preset=bert_tiny",
        f"--data={data}",
        f"--output={output}",
        f"--steps={STEPS}",
        "--set=schedule.phase1_fraction=1.0",
        "--set=phase1.seq_length=32",
        "--set=phase1.global_batch_size=8",
        f"--set=phase1.micro_batch_size={micro_batch_size}",
        "--set=model.hidden_size=32",
        "--set=model.num_attention_heads=2",
        "--set=model.intermediate_size=64",
        "--set=optim.lr=1e-3",
        "--set=optim.warmup_fraction=0.2",
        "--set=log.every=1",
        "--set=log.progress=false",
        "--set=eval.examples=16",
        "--set=data.num_workers=0",
        "--set=runtime.threads=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return latest_checkpoint(output / "checkpoints")


@pytest.mark.timeout(600)
def test_two_processes_match_one_process_with_accumulation(tmp_path):
    data = tmp_path / "pretraining"
    write_synthetic_pretraining_data(
        data / "seq32", num_examples=240, num_shards=5, max_seq_length=32, vocab_size=120, seed=3
    )
    ddp = run_pretrain(tmp_path / "ddp", data, processes=2, micro_batch_size=4)
    accumulated = run_pretrain(tmp_path / "accumulated", data, processes=1, micro_batch_size=4)
    assert ddp.step == accumulated.step == STEPS

    ddp_weights = load_file(ddp.path / "model.safetensors")
    accumulated_weights = load_file(accumulated.path / "model.safetensors")
    assert ddp_weights.keys() == accumulated_weights.keys()
    for name, tensor in ddp_weights.items():
        torch.testing.assert_close(tensor, accumulated_weights[name], rtol=0, atol=1e-6, msg=name)
    # Both moved well away from the shared initial weights (seeded by runtime.seed).
    torch.manual_seed(12345)
    initial = to_hf_state_dict(BertForPreTraining(config_for_data()))
    moved = (
        (
            ddp_weights["bert.encoder.layer.0.intermediate.dense.weight"]
            - initial["bert.encoder.layer.0.intermediate.dense.weight"]
        )
        .abs()
        .max()
    )
    assert moved > 1e-3
    # The runs really trained: the weights moved, the same way (dropout included).
    ddp_log = [r for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["event"] == "train"]
    acc_log = [
        r for r in read_metrics(tmp_path / "accumulated" / "metrics.jsonl") if r["event"] == "train"
    ]
    assert [r["step"] for r in ddp_log] == list(range(1, STEPS + 1))
    for a, b in zip(ddp_log, acc_log, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and a["mlm_accuracy"] == b["mlm_accuracy"]
    assert ddp_log[-1]["grad_norm"] > 0
    first = read_metrics(tmp_path / "ddp" / "metrics.jsonl")[0]
    assert first["event"] == "start" and first["world_size"] == 2
    evals = [r for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["event"] == "eval"]
    assert evals and evals[-1]["examples"] == 16  # both ranks' halves of the held-out set
