"""A fine-tune re-run into an existing output and killed (SIGKILL) right after its new model is
written leaves no scores: only a finished run has scores.json, results.md and predictions."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from conftest import FILLER, NEGATIVE, POSITIVE

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
# The real fine-tuning command, killed by its own process the moment the model is saved.
KILLED_AFTER_MODEL = """
import os, signal, sys
import model.finetune as finetune
save = finetune.save_task_model
def save_then_die(*args, **kwargs):
    save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
finetune.save_task_model = save_then_die
finetune.main(sys.argv[1:])
"""


def write_sst2(directory: Path) -> Path:
    rng = random.Random(1)
    directory.mkdir()
    for split, n in (("train", 64), ("dev", 24)):
        rows = []
        for i in range(n):
            sentence = [rng.choice(FILLER) for _ in range(4)]
            sentence.insert(2, rng.choice(POSITIVE if i % 2 else NEGATIVE))
            rows.append(f"{' '.join(sentence)} .\t{i % 2}")
        (directory / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (directory / "test.tsv").write_text("index\tsentence\n0\tgood day .\n1\tbad day .\n")
    return directory


def finetune(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "model.finetune"]
    return subprocess.run(
        [*command, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_a_rerun_killed_after_writing_its_model_leaves_no_old_scores(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    output = tmp_path / "out"
    common = ["--task=sst2", f"--data={data}", f"--checkpoint={tiny_checkpoint}"]
    common += [f"--output={output}", "--threads=1"]
    done = finetune(*common, "--grid=lr=1e-3 batch=16 epochs=1", "--seeds=0")
    assert done.returncode == 0, done.stderr[-3000:]
    finished = {"scores.json", "results.md", "dev_predictions", "test_predictions", "model"}
    assert finished <= {p.name for p in output.iterdir()}
    old_model = (output / "model" / "model.safetensors").read_bytes()

    killed = finetune(
        *common, "--grid=lr=2e-3 batch=16 epochs=1", "--seeds=1", script=KILLED_AFTER_MODEL
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (output / "model" / "model.safetensors").read_bytes() != old_model  # the new model
    left = {p.name for p in output.iterdir() if not p.name.startswith(".")}
    assert left == {"model"}  # no scores, table or predictions of the old model beside it

    again = finetune(*common, "--grid=lr=2e-3 batch=16 epochs=1", "--seeds=1")
    assert again.returncode == 0, again.stderr[-3000:]  # the killed run's lock is taken over
    assert finished <= {p.name for p in output.iterdir()}
