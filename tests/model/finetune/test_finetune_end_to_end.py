"""End to end: the tiny model fine-tuned by `python -m model.finetune` on each task type learns it.

Each data set is written in its benchmark's official format and made so that a two-layer model
can learn it in seconds (the label follows from which words occur), so a score far above
chance shows that reading, features, head, loss, training and prediction all fit together.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import transformers
from conftest import CITIES, FILLER, NAMES, NEGATIVE, POSITIVE

from model.finetune import main
from model.heads import load_task_model

GRID = ["--grid", "lr=2e-3 batch=16 epochs=6", "--seeds", "0"]


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(FILLER) for _ in range(n)]


def sentiment_sentence(rng: random.Random, positive: bool) -> str:
    sentence = words(rng, rng.randint(3, 7))
    sentence.insert(rng.randint(0, len(sentence)), rng.choice(POSITIVE if positive else NEGATIVE))
    return " ".join(sentence) + " ."


def run(task: str, data: Path, checkpoint: Path, output: Path, *extra: str) -> dict:
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
            *GRID,
            *extra,
        ]
    )


def test_sst2_classification_learns_and_writes_submission(tiny_checkpoint: Path, tmp_path: Path):
    rng = random.Random(1)
    data = tmp_path / "SST-2"
    data.mkdir()
    for split, n in (("train", 240), ("dev", 60)):
        labels = [i % 2 for i in range(n)]
        rows = [f"{sentiment_sentence(rng, y == 1)}\t{y}" for y in labels]
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    test_rows = [f"{i}\t{sentiment_sentence(rng, i < 5)}" for i in range(10)]
    (data / "test.tsv").write_text("index\tsentence\n" + "\n".join(test_rows) + "\n")

    results = run("sst2", data, tiny_checkpoint, tmp_path / "out")

    assert results["dev"]["dev/accuracy"]["mean"] > 90.0
    submission = (tmp_path / "out/test_predictions/SST-2.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction"
    assert [line.split("\t")[0] for line in submission[1:]] == [str(i) for i in range(10)]
    assert [line.split("\t")[1] for line in submission[1:]] == ["1"] * 5 + ["0"] * 5
    scores = json.loads((tmp_path / "out/scores.json").read_text())
    assert (
        scores["paper"] and "| SST-2 | dev/accuracy |" in (tmp_path / "out/results.md").read_text()
    )


def test_stsb_regression_learns_and_model_loads_in_transformers(
    tiny_checkpoint: Path, tmp_path: Path
):
    rng = random.Random(2)
    data = tmp_path / "STS-B"
    data.mkdir()
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    )
    for split, n in (("train", 240), ("dev", 60)):
        rows = []
        for i in range(n):
            positives = i % 5  # the score counts the positive words in the pair
            pair = words(rng, 6) + [rng.choice(POSITIVE) for _ in range(positives)]
            rng.shuffle(pair)
            first, second = " ".join(pair[:5]), " ".join(pair[5:])
            rows.append(
                f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\t{first}\t{second}\t{positives * 1.25:.3f}"
            )
        (data / f"{split}.tsv").write_text(header + "\n".join(rows) + "\n")

    results = run("stsb", data, tiny_checkpoint, tmp_path / "out")

    assert results["dev"]["dev/spearman"]["mean"] > 80.0
    assert results["dev"]["dev/pearson"]["mean"] > 80.0
    # The saved model is a transformers BertForSequenceClassification (regression).
    ours, _ = load_task_model(tmp_path / "out/model")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out/model")
    assert theirs.config.problem_type == "regression"
    ids = torch.tensor([[2, 40, 41, 3, 42, 3]])
    with torch.no_grad():
        expected = ours.eval()(ids, torch.tensor([[0, 0, 0, 0, 1, 1]])).logits
        actual = theirs.eval()(
            input_ids=ids, token_type_ids=torch.tensor([[0, 0, 0, 0, 1, 1]])
        ).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def squad_file(path: Path, rng: random.Random, n: int, version: str) -> None:
    """Contexts of 20-40 filler words with a city somewhere (v2.0: a third have none)."""
    paragraphs = []
    for i in range(n):
        context_words = words(rng, rng.randint(20, 40))
        impossible = version == "2.0" and i % 3 == 0
        qa = {"id": f"q{i}", "question": "where is it ?"}
        if impossible:
            qa |= {"answers": [], "is_impossible": True}
        else:
            city = rng.choice(CITIES)
            context_words.insert(rng.randint(0, len(context_words)), city)
            context = " ".join(context_words)
            start = (
                context.index(f" {city} ") + 1 if f" {city} " in context else context.index(city)
            )
            qa["answers"] = [{"text": city, "answer_start": start}]
            if version == "2.0":
                qa["is_impossible"] = False
        paragraphs.append({"context": " ".join(context_words), "qas": [qa]})
    body = {
        "version": "v2.0" if version == "2.0" else "1.1",
        "data": [{"title": "t", "paragraphs": paragraphs}],
    }
    path.write_text(json.dumps(body))


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_span_prediction_learns_over_windows(
    tiny_checkpoint: Path, tmp_path: Path, version: str
):
    rng = random.Random(3)
    data = tmp_path / "squad"
    data.mkdir()
    tag = "v1.1" if version == "1.1" else "v2.0"
    squad_file(data / f"train-{tag}.json", rng, 300, version)
    squad_file(data / f"dev-{tag}.json", rng, 60, version)
    task = "squad_v1" if version == "1.1" else "squad_v2"

    # Windows of 32 tokens over contexts of up to 45: most contexts need two or three.
    results = run(
        task,
        data,
        tiny_checkpoint,
        tmp_path / "out",
        "--max-seq-length",
        "32",
        "--task-option",
        "doc_stride=8",
    )

    assert results["data"]["dev"]["encoding"]["windows"] > 90
    assert results["dev"]["dev/f1"]["mean"] > 85.0
    predictions = json.loads(
        (tmp_path / f"out/dev_predictions/{task}_dev_predictions.json").read_text()
    )
    assert len(predictions) == 60
    if version == "2.0":
        assert results["dev"]["dev/NoAns_f1"]["mean"] > 80.0
        assert (tmp_path / "out/dev_predictions/squad_v2_dev_null_odds.json").is_file()


def conll_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Words with IOB1 tags: a first name, sometimes with a second name (one PER), a city (LOC)."""
    tokens: list[tuple[str, str]] = [(w, "O") for w in words(rng, rng.randint(4, 8))]
    person = [(rng.choice(NAMES[:3]), "I-PER")]
    if rng.random() < 0.5:
        person.append((rng.choice(NAMES[3:]), "I-PER"))
    at = rng.randint(1, len(tokens) - 1)
    tokens[at:at] = person
    tokens.insert(rng.choice([0, len(tokens)]), (rng.choice(CITIES), "I-LOC"))
    return tokens


def test_conll_token_classification_learns_from_iob1(tiny_checkpoint: Path, tmp_path: Path):
    rng = random.Random(4)
    data = tmp_path / "conll"
    data.mkdir()
    for name, n in (("eng.train", 250), ("eng.testa", 60), ("eng.testb", 30)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(n):
            lines += [f"{w} NN I-NP {t}" for w, t in conll_sentence(rng)] + [""]
        (data / name).write_text("\n".join(lines))

    results = run("conll2003", data, tiny_checkpoint, tmp_path / "out")

    assert results["dev"]["dev/f1"]["mean"] > 90.0
    assert results["test"]["test/f1"] > 90.0  # CoNLL's test file has gold tags: scored too
    written = (tmp_path / "out/test_predictions/conll2003_test_predictions.txt").read_text()
    first = written.split("\n\n")[0].splitlines()
    assert all(len(line.split()) == 3 for line in first)  # word, gold (BIO), predicted


def test_swag_multiple_choice_learns(tiny_checkpoint: Path, tmp_path: Path):
    rng = random.Random(5)
    data = tmp_path / "swag"
    data.mkdir()
    header = [
        "",
        "video-id",
        "fold-ind",
        "startphrase",
        "sent1",
        "sent2",
        "gold-source",
        *(f"ending{i}" for i in range(4)),
        "label",
    ]
    for name, n in (("train.csv", 300), ("val.csv", 60)):
        with open(data / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for i in range(n):
                label = rng.randrange(4)
                endings = [sentiment_sentence(rng, j == label) for j in range(4)]
                sent1, sent2 = " ".join(words(rng, 5)), " ".join(words(rng, 2))
                writer.writerow(
                    [i, f"v{i}", f"f{i}", f"{sent1} {sent2}", sent1, sent2, "gold", *endings, label]
                )

    results = run("swag", data, tiny_checkpoint, tmp_path / "out")

    assert results["dev"]["dev/accuracy"]["mean"] > 80.0  # chance is 25


def test_custom_pair_classification_from_jsonl_and_regression_from_parquet(
    tiny_checkpoint: Path, tmp_path: Path
):
    rng = random.Random(6)
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    for split, n in (("train", 240), ("dev", 60)):
        with open(jsonl / f"{split}.jsonl", "w") as f:
            for i in range(n):
                label = ["neg", "pos"][i % 2]
                row = {
                    "uid": f"{split}{i}",
                    "premise": " ".join(words(rng, 4)),
                    "hypothesis": sentiment_sentence(rng, label == "pos"),
                    "gold": label,
                }
                f.write(json.dumps(row) + "\n")
    options = [
        "--task-option",
        "text_a=premise",
        "--task-option",
        "text_b=hypothesis",
        "--task-option",
        "label=gold",
        "--task-option",
        "id=uid",
    ]
    results = run("custom", jsonl, tiny_checkpoint, tmp_path / "out1", *options)
    assert results["dev"]["dev/accuracy"]["mean"] > 90.0
    written = [
        json.loads(line)
        for line in (tmp_path / "out1/dev_predictions/custom_dev_predictions.jsonl").open()
    ]
    assert written[0]["id"] == "dev0" and written[0]["prediction"] in ("neg", "pos")

    parquet = tmp_path / "parquet"
    parquet.mkdir()
    for split, n in (("train", 240), ("dev", 60)):
        texts, scores = [], []
        for i in range(n):
            positives = i % 4
            sentence = words(rng, 5) + [rng.choice(POSITIVE) for _ in range(positives)]
            rng.shuffle(sentence)
            texts.append(" ".join(sentence))
            scores.append(float(positives))
        pq.write_table(pa.table({"sentence": texts, "score": scores}), parquet / f"{split}.parquet")
    results = run(
        "custom",
        parquet,
        tiny_checkpoint,
        tmp_path / "out2",
        "--task-option",
        "text_a=sentence",
        "--task-option",
        "label=score",
        "--task-option",
        "kind=regression",
    )
    assert results["dev"]["dev/spearman"]["mean"] > 80.0
