"""The trainer's memory estimate against the memory it really takes, at several sizes.

    .venv/bin/python bench/memory_estimate.py            # CPU cases, synthetic shards
    .venv/bin/python bench/memory_estimate.py --quick    # two small cases

Each case runs `python -m model.pretrain` for a few steps of phase 1 in its own process, on
shards of random tokens in the real schema (model/synthetic_data.py, vocabulary of 30,522),
one loader in the training process. The trainer records in metrics.jsonl what it estimated
each phase would add (gradients, optimizer moments, activations: model/memory_estimate.py) and
its resident memory when it estimated; the process reports its peak resident memory when it
ends. The ratio measured/estimated is what the estimate is judged by: the trainer refuses a run
whose estimate exceeds the memory available, so a ratio below 1 could refuse a run that fits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from model.synthetic_data import write_synthetic_pretraining_data, write_synthetic_vocab

VOCAB = 30522
# (preset, sequence length, micro-batch)
CASES = [
    ("bert_mini", 128, 8),
    ("bert_mini", 128, 64),
    ("bert_mini", 512, 8),
    ("bert_small", 128, 32),
    ("bert_medium", 128, 16),
    ("bert_base", 128, 8),
    ("bert_base", 128, 32),
]
QUICK = CASES[:2]

CHILD = """
import resource, runpy, sys
sys.argv = ["model.pretrain", *sys.argv[1:]]
try:
    runpy.run_module("model.pretrain", run_name="__main__")
except SystemExit as stop:
    if stop.code:
        raise
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def write_data(root: Path) -> Path:
    vocab = write_synthetic_vocab(root / "vocab", vocab_size=VOCAB)
    for length, examples in ((128, 512), (512, 64)):
        write_synthetic_pretraining_data(
            root / "data" / f"seq{length}",
            num_examples=examples,
            num_shards=2,
            max_seq_length=length,
            vocab_size=VOCAB,
            inputs=[vocab],
        )
    return root / "data"


def run_case(data: Path, out: Path, preset: str, length: int, micro: int) -> dict:
    args = [
        f"--preset={preset}",
        f"--data={data}",
        f"--output={out}",
        "--phase=1",
        "--steps=3",
        f"--set=phase1.seq_length={length}",
        f"--set=phase1.global_batch_size={micro}",
        "--set=data.num_workers=0",
        "--set=data.validation_shards=0",
        "--set=log.progress=false",
        "--set=log.tensorboard=false",
        "--set=eval.examples=0",
        "--set=checkpoint.every=0",
        "--threads=2",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{preset} {length} x {micro} failed:\n{done.stderr[-3000:]}")
    peak = 1024 * int(done.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (memory,) = [r for r in records if r["event"] == "memory"]
    added = peak - memory["rss_bytes"]
    return {
        "case": f"{preset} T={length} micro={micro}",
        "estimate_mib": memory["estimate_bytes"] / 2**20,
        "measured_mib": added / 2**20,
        "ratio": added / memory["estimate_bytes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small cases only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp))
        rows = [
            run_case(data, Path(tmp) / f"run{i}", *case)
            for i, case in enumerate(QUICK if args.quick else CASES)
        ]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(
        "| case | estimated MiB | measured MiB (peak - RSS at the estimate) | measured/estimated |"
    )
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['estimate_mib']:,.0f} | {r['measured_mib']:,.0f} | {r['ratio']:.2f} |"
        )
    ratios = [r["ratio"] for r in rows]
    print(f"ratio min {min(ratios):.2f}, max {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
