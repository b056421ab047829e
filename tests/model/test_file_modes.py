"""What the project publishes follows the user's umask: a model or a score file written 0600
cannot be read by a colleague, a web server or a container running as another user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from model.bert import BertForPreTraining, BertModel
from model.finetune import write_results
from model.heads import build_task_model, save_task_model
from model.hf_checkpoint import save_hf_checkpoint


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(directory: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in directory.rglob("*"):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.stat().st_mode)
    return found


def expected(directory: Path, mask: int) -> dict[str, int]:
    return {
        name: (0o777 if name == "." or (directory / name).is_dir() else 0o666) & ~mask
        for name in modes(directory)
    }


def test_an_exported_checkpoint_follows_the_umask(tiny_config, tmp_path, umask):
    out = save_hf_checkpoint(
        BertForPreTraining(tiny_config), tmp_path / "export", {"vocab.txt": b"[PAD]\n"}
    )
    found = modes(out)
    assert {"model.safetensors", "config.json", "vocab.txt"} <= set(found)
    assert found == expected(out, umask)
    # Written again into the existing directory (file by file): still readable by others.
    save_hf_checkpoint(BertForPreTraining(tiny_config), out, {"vocab.txt": b"[PAD]\n"})
    assert modes(out) == expected(out, umask)


def test_a_fine_tuned_model_and_its_scores_follow_the_umask(tiny_config, tmp_path, umask):
    model = build_task_model("classification", BertModel(tiny_config), num_labels=2)
    info = {"task": "toy", "head": "classification", "labels": ["a", "b"]}
    out = save_task_model(model, tmp_path / "model", info=info)
    assert "model.safetensors" in modes(out)
    assert modes(out) == expected(out, umask)

    results = {
        "task": "toy",
        "checkpoint": str(out),
        "selected": None,
        "select_metric": "dev/accuracy",
    }
    write_results(results | {"dev": {}, "test": {}, "paper": []}, tmp_path)
    for name in ("scores.json", "results.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
