"""Fine-tuning from random weights (--init random), and its comparison with pretrained runs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE
from safetensors.torch import load_file

from model.bert import BertModel
from model.finetune import encoder_start, main, summarize
from model.heads import load_encoder
from model.hf_checkpoint import read_hf_config, save_hf_checkpoint
from model.inits import compare_inits, comparison_table, pair_inits


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SST-2-format task: one sentiment word among filler words."""
    rng = random.Random(5)
    directory = tmp_path_factory.mktemp("sst2")
    for split, n in (("train", 64), ("dev", 24)):
        lines = ["sentence\tlabel"]
        for i in range(n):
            words = [rng.choice(FILLER) for _ in range(3)]
            words.insert(rng.randint(0, 3), rng.choice(POSITIVE if i % 2 else NEGATIVE))
            lines.append(f"{' '.join(words)}\t{i % 2}")
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture(scope="module")
def two_checkpoints(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two checkpoints with tiny_checkpoint's config and vocabulary but other weights."""
    config = read_hf_config(tiny_checkpoint)
    directories = []
    for seed in (100, 101):  # not a fine-tuning seed: tiny_checkpoint itself is seed 0's init
        torch.manual_seed(seed)
        directory = tmp_path_factory.mktemp("other") / f"checkpoint-{seed}"
        save_hf_checkpoint(BertModel(config), directory)
        shutil.copy(tiny_checkpoint / "vocab.txt", directory / "vocab.txt")
        directories.append(directory)
    return directories


def finetune(data: Path, checkpoint: Path, output: Path, init: str) -> dict:
    args = ["--task", "sst2", "--data", str(data), "--checkpoint", str(checkpoint)]
    args += ["--output", str(output), "--grid", "lr=1e-3 batch=16 epochs=1", "--seeds", "0"]
    return main([*args, "--no-test", "--init", init])


def test_a_random_init_ignores_the_checkpoints_weights(sentiment_dir, two_checkpoints, tmp_path):
    first, second = two_checkpoints
    random_runs = [finetune(sentiment_dir, c, tmp_path / f"r{i}", "random")
                   for i, c in enumerate(two_checkpoints)]  # fmt: skip
    assert random_runs[0]["runs"][0]["scores"] == random_runs[1]["runs"][0]["scores"]
    assert random_runs[0]["runs"][0]["train_loss"] == random_runs[1]["runs"][0]["train_loss"]
    saved = [load_file(tmp_path / f"r{i}/model/model.safetensors") for i in range(2)]
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])
    # From the weights, the same two checkpoints train differently.
    pretrained_runs = [finetune(sentiment_dir, c, tmp_path / f"p{i}", "pretrained")
                       for i, c in enumerate(two_checkpoints)]  # fmt: skip
    losses = [r["runs"][0]["train_loss"] for r in pretrained_runs]
    assert losses[0] != losses[1]
    assert losses[0] != random_runs[0]["runs"][0]["train_loss"]

    # The output says how it started, so it is never taken for a pretrained run's.
    results = random_runs[0]
    assert results["init"] == "random" and pretrained_runs[0]["init"] == "pretrained"
    assert json.loads((tmp_path / "r0/scores.json").read_text())["init"] == "random"
    assert "| SST-2 (random init) | dev/accuracy |" in (tmp_path / "r0/results.md").read_text()
    config = json.loads((tmp_path / "r0/model/config.json").read_text())
    assert config["finetune"]["init"] == "random"

    # Given both kinds of outputs, the summary adds the comparison.
    table = summarize([tmp_path / "p0", tmp_path / "r0"])
    assert "## Pretrained against random initialisation" in table
    assert "| SST-2 | dev/accuracy |" in table.split("## Pretrained against random")[1]


def test_a_random_encoder_is_a_new_models_init_under_the_seed_never_the_checkpoints(
    tiny_checkpoint: Path, two_checkpoints, tmp_path: Path
):
    checkpoint = two_checkpoints[0]
    loaded, _ = load_encoder(checkpoint)
    start = encoder_start(checkpoint, "random")
    assert start.pretrained is None and start.config == loaded.config

    def drawn(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)  # as run_finetune seeds each run
        return start.encoder().state_dict()

    step0 = drawn(3)
    torch.manual_seed(3)
    new_model = BertModel(read_hf_config(checkpoint)).state_dict()
    assert all(torch.equal(step0[k], new_model[k]) for k in step0)  # the model's own init
    assert all(torch.equal(step0[k], drawn(3)[k]) for k in step0)  # repeatable per seed
    weights = loaded.state_dict()
    matrices = [k for k in step0 if step0[k].dim() == 2]
    assert not any(torch.equal(step0[k], weights[k]) for k in matrices)
    assert not any(torch.equal(step0[k], drawn(4)[k]) for k in matrices)

    # The weights are never read: a checkpoint without them still starts a random init.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "vocab.txt"):
        shutil.copy(checkpoint / name, bare / name)
    assert encoder_start(bare, "random").config == loaded.config
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        encoder_start(bare, "pretrained")
    with pytest.raises(ValueError, match="init must be one of pretrained, random"):
        encoder_start(checkpoint, "scratch")


def results(init: str, values: dict[str, list[float | None]], task: str = "sst2") -> dict:
    """A scores.json body with the given per-seed dev values."""

    def summary(v: list[float | None]) -> dict:
        defined = [x for x in v if x is not None]
        mean = sum(defined) / len(v) if len(defined) == len(v) else None
        std = None
        if mean is not None:
            std = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
        return {"mean": mean, "std": std, "values": v}

    return {
        "task": task,
        "display_name": task.upper(),
        "init": init,
        "data_dir": "glue/" + task,
        "select_metric": "dev/f1",
        "dev": {metric: summary(v) for metric, v in values.items()},
    }


def test_the_comparison_rows_of_a_pretrained_and_a_random_run():
    pretrained = results(
        "pretrained", {"dev/accuracy": [80.0, 82.0, 84.0], "dev/f1": [90.0, 91.0, 92.0]}
    )
    scratch = results("random", {"dev/accuracy": [60.0, 70.0, 81.0], "dev/f1": [70.0, 72.0, 74.0]})
    f1, accuracy = compare_inits(pretrained, scratch)
    assert (f1.task, f1.metric, accuracy.metric) == ("SST2", "dev/f1", "dev/accuracy")
    assert (f1.pretrained_mean, f1.random_mean, f1.gain) == (91.0, 72.0, 19.0)
    assert (f1.pretrained_std, f1.random_std) == (1.0, 2.0)
    assert (f1.pretrained_seeds, f1.random_seeds) == (3, 3)
    assert f1.separation == "clear"  # [90, 92] and [70, 74]
    assert accuracy.gain == pytest.approx(82.0 - 70.0 - 1 / 3)
    assert accuracy.separation == "overlap"  # [80, 84] and [60, 81]

    one_seed = compare_inits(results("pretrained", {"dev/f1": [90.0]}),
                             results("random", {"dev/f1": [70.0]}), label="mine")  # fmt: skip
    assert one_seed[0].task == "mine" and one_seed[0].separation == "too few seeds"
    undefined = compare_inits(results("pretrained", {"dev/f1": [90.0, None]}),
                              results("random", {"dev/f1": [70.0, 71.0]}))  # fmt: skip
    assert undefined[0].gain is None and undefined[0].separation == "undefined"

    table = comparison_table([f1, accuracy, *undefined])
    assert "| SST2 | dev/f1 | 91.00 ± 1.00 (n=3) | 72.00 ± 2.00 (n=3) | +19.00 | clear |" in table
    assert "| SST2 | dev/f1 | undefined | 70.50 ± 0.71 (n=2) | undefined | undefined |" in table

    with pytest.raises(ValueError, match="expected a pretrained and a random run"):
        compare_inits(scratch, pretrained)
    with pytest.raises(ValueError, match="different tasks: 'sst2' and 'mrpc'"):
        compare_inits(pretrained, results("random", {"dev/f1": [1.0]}, task="mrpc"))


def test_runs_are_paired_by_task_and_data_one_to_one():
    sst2_p, sst2_r = results("pretrained", {"dev/f1": [1.0]}), results("random", {"dev/f1": [0.0]})
    mrpc_p = results("pretrained", {"dev/f1": [1.0]}, task="mrpc")
    old = {k: v for k, v in results("pretrained", {"dev/f1": [1.0]}, "rte").items() if k != "init"}
    rte_r = results("random", {"dev/f1": [0.0]}, task="rte")
    pairs, notes = pair_inits([sst2_p, mrpc_p, sst2_r, old, rte_r])
    assert pairs == [(sst2_p, sst2_r), (old, rte_r)]  # results without "init" were pretrained
    assert notes == []
    pairs, notes = pair_inits([sst2_p, sst2_r, results("random", {"dev/f1": [0.5]})])
    assert pairs == [] and notes == [
        f"sst2 on {Path('glue/sst2').absolute()}: 1 pretrained and 2 random runs; "
        "give one of each to compare them"
    ]
    absolute = sst2_r | {"data_dir": str(Path("glue/sst2").absolute())}  # as a flow gives it
    assert pair_inits([sst2_p, absolute]) == ([(sst2_p, absolute)], [])


def test_dropout_for_fine_tuning_replaces_the_checkpoints_on_both_inits(two_checkpoints):
    checkpoint = two_checkpoints[0]
    loaded, _ = load_encoder(checkpoint)
    assert loaded.config.hidden_dropout_prob == 0.1  # what the checkpoint says
    tokens = torch.randint(5, 50, (2, 12))
    for init, rate in (("pretrained", 0.0), ("random", 0.3), ("pretrained", None)):
        start = encoder_start(checkpoint, init, rate)
        expected = 0.1 if rate is None else rate
        assert start.config.hidden_dropout_prob == expected
        assert start.config.attention_probs_dropout_prob == expected
        encoder = start.encoder().train()
        assert all(m.p == expected for m in encoder.modules() if isinstance(m, torch.nn.Dropout))
        if init == "pretrained":  # the weights are the checkpoint's whatever the dropout
            weights = loaded.state_dict()
            assert all(torch.equal(t, weights[k]) for k, t in encoder.state_dict().items())
        # In train mode, two passes agree exactly only without dropout.
        same = torch.equal(encoder(tokens)[0], encoder(tokens)[0])
        assert same == (expected == 0.0)
    for init in ("pretrained", "random"):
        with pytest.raises(ValueError, match=r"dropout_prob must be in \[0, 1\)"):
            encoder_start(checkpoint, init, 1.0)
