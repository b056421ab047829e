"""The fine-tuning loop: grid, seeds, selection, schedule, starting from MNLI, bad input."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE

from model.bert import BertModel
from model.config import bert_tiny
from model.finetune import linear_warmup_decay, main, parameter_groups, parse_grid, parse_seeds
from model.heads import build_task_model
from model.tasks.base import PAPER_GRID, Grid


def sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, int]]:
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(4)]
        words.insert(rng.randint(0, 4), rng.choice(POSITIVE if i % 2 else NEGATIVE))
        rows.append((" ".join(words), i % 2))
    return rows


@pytest.fixture
def sst2_dir(tmp_path: Path) -> Path:
    rng = random.Random(11)
    directory = tmp_path / "SST-2"
    directory.mkdir()
    for split, n in (("train", 240), ("dev", 40)):
        lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in sentiment_rows(rng, n))]
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return directory


def finetune(data: Path, checkpoint: Path, output: Path, *extra: str, task: str = "sst2") -> dict:
    return main(
        [
            "--task",
            task,
            "--data",
            str(data),
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(output),
            *extra,
        ]
    )


def test_grid_and_seed_parsing():
    assert (
        parse_grid("paper", Grid(learning_rates=(1.0,), batch_sizes=(1,), epochs=(1,)))
        == PAPER_GRID
    )
    assert len(PAPER_GRID.configurations()) == 18
    grid = parse_grid("lr=5e-5,3e-5 batch=32", PAPER_GRID)
    assert grid == Grid(learning_rates=(5e-5, 3e-5), batch_sizes=(32,), epochs=(2, 3, 4))
    with pytest.raises(ValueError, match="use lr=..., batch=..., epochs="):
        parse_grid("rate=1", PAPER_GRID)
    with pytest.raises(ValueError, match="positive"):
        parse_grid("epochs=0", PAPER_GRID)
    assert parse_seeds("3,1,2") == (3, 1, 2)
    with pytest.raises(ValueError, match="repeat"):
        parse_seeds("1,1")


def test_warmup_then_linear_decay():
    factor = linear_warmup_decay(total_steps=10, warmup_steps=2)
    assert [factor(s) for s in range(10)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    )
    assert linear_warmup_decay(4, 0)(0) == 1.0


def test_no_weight_decay_on_biases_and_layer_norms():
    model = build_task_model(
        "classification",
        BertModel(bert_tiny(vocab_size=99, hidden_size=32, num_attention_heads=4)),
        2,
    )
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(
        not names[id(p)].endswith("bias") and "layer_norm" not in names[id(p)]
        for p in decay["params"]
    )
    assert {names[id(p)] for p in no_decay["params"]} >= {
        "classifier.bias",
        "bert.embeddings.layer_norm.weight",
    }
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_grid_search_over_seeds_selects_the_best_configuration(
    tiny_checkpoint: Path, sst2_dir: Path, tmp_path: Path
):
    results = finetune(
        sst2_dir,
        tiny_checkpoint,
        tmp_path / "out",
        "--grid",
        "lr=1e-7,2e-3 batch=16 epochs=6",
        "--seeds",
        "0,1",
    )
    assert [(r["learning_rate"], r["seed"]) for r in results["runs"]] == [
        (1e-7, 0),
        (1e-7, 1),
        (2e-3, 0),
        (2e-3, 1),
    ]
    assert results["selected"]["learning_rate"] == 2e-3  # 1e-7 leaves the model at chance
    values = [r["scores"]["dev/accuracy"] for r in results["runs"][2:]]
    summary = results["dev"]["dev/accuracy"]
    assert summary["values"] == values
    assert summary["mean"] == pytest.approx(sum(values) / 2) and summary["mean"] > 90
    assert summary["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    saved = results["saved_model_scores"]["dev/accuracy"]
    assert saved == max(values)
    # Same seed, same data: the same run.
    again = finetune(
        sst2_dir,
        tiny_checkpoint,
        tmp_path / "again",
        "--grid",
        "lr=2e-3 batch=16 epochs=6",
        "--seeds",
        "1",
    )
    assert again["runs"][0]["scores"] == results["runs"][3]["scores"]
    assert again["runs"][0]["train_loss"] == pytest.approx(results["runs"][3]["train_loss"])
    # The saved model, evaluated on its own, gives the scores it was saved with.
    evaluated = main(
        [
            "--eval-only",
            "--checkpoint",
            str(tmp_path / "out/model"),
            "--data",
            str(sst2_dir),
            "--output",
            str(tmp_path / "eval"),
        ]
    )
    assert evaluated["dev"]["dev/accuracy"]["mean"] == pytest.approx(saved)
    table = main(["--summarize", str(tmp_path / "out"), str(tmp_path / "eval")])
    assert table is None


def test_rte_starts_from_a_model_fine_tuned_on_mnli(tiny_checkpoint: Path, tmp_path: Path):
    rng = random.Random(12)
    mnli, rte = tmp_path / "MNLI", tmp_path / "RTE"
    mnli.mkdir()
    rte.mkdir()
    labels = ["contradiction", "entailment", "neutral"]
    header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    for split in ("train", "dev_matched", "dev_mismatched"):
        rows = [
            f"{i}\t0\t0\tg\t(\t(\t(\t(\t{s}\t{' '.join(rng.choice(FILLER) for _ in range(3))}\t{labels[y]}\t{labels[y]}"
            for i, (s, y) in enumerate(sentiment_rows(rng, 60))
        ]
        (mnli / f"{split}.tsv").write_text("\n".join([header, *rows]) + "\n")
    mnli_results = finetune(
        mnli,
        tiny_checkpoint,
        tmp_path / "mnli_out",
        "--grid",
        "lr=2e-3 batch=16 epochs=2",
        task="mnli",
    )
    assert set(mnli_results["dev"]) == {"dev_matched/accuracy", "dev_mismatched/accuracy"}
    names = ["entailment", "not_entailment"]
    for split in ("train", "dev"):
        rows = [
            f"{i}\t{s}\t{rng.choice(FILLER)}\t{names[y]}"
            for i, (s, y) in enumerate(sentiment_rows(rng, 40))
        ]
        (rte / f"{split}.tsv").write_text(
            "\n".join(["index\tsentence1\tsentence2\tlabel", *rows]) + "\n"
        )

    results = finetune(
        rte,
        tmp_path / "mnli_out/model",
        tmp_path / "rte_out",
        "--grid",
        "lr=2e-3 batch=16 epochs=2",
        task="rte",
    )

    assert results["checkpoint_missing_keys"] == []  # the whole encoder came from the MNLI model
    assert results["checkpoint_task"] == "mnli"
    config = json.loads((tmp_path / "rte_out/model/config.json").read_text())
    assert config["finetune"]["task"] == "rte" and config["id2label"] == {
        "0": "entailment",
        "1": "not_entailment",
    }


def test_bad_checkpoints_and_data_stop_with_a_clear_error(
    tiny_checkpoint: Path, sst2_dir: Path, tmp_path: Path, capsys
):
    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(tiny_checkpoint, no_vocab)
    (no_vocab / "vocab.txt").unlink()
    with pytest.raises(SystemExit) as exit_info:
        finetune(sst2_dir, no_vocab, tmp_path / "out")
    assert exit_info.value.code == 2 and "no vocab.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune(tmp_path / "empty", tiny_checkpoint, tmp_path / "out")
    assert "no train file for sst2 (expected train.tsv)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune(sst2_dir, tiny_checkpoint, tmp_path / "out", "--max-seq-length", "1024")
    assert "exceeds the model's max_position_embeddings 512" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune(sst2_dir, tiny_checkpoint, tmp_path / "out", "--threads", "-1")
    assert "--threads must be >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--task", "sst2", "--data", str(sst2_dir)])
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_regression_model_that_predicts_a_constant_reports_an_undefined_correlation(
    tiny_checkpoint: Path, tmp_path: Path
):
    data = tmp_path / "STS-B"
    data.mkdir()
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    rows = [f"{i}\tg\tf\ty\t{i}\ts\ts\tthe cat\tthe dog\t{i % 5}.0" for i in range(20)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("\n".join([header, *rows]) + "\n")
    # Identical inputs everywhere: any model predicts one value, so Pearson is undefined.
    results = finetune(
        data, tiny_checkpoint, tmp_path / "out", "--grid", "lr=1e-3 batch=8 epochs=1", task="stsb"
    )
    assert results["dev"]["dev/pearson"]["mean"] is None
    assert "undefined" in (tmp_path / "out/results.md").read_text()
