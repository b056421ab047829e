"""SWAG's CSV files and user data in JSONL, CSV and Parquet with a field mapping."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.tasks import get_task
from model.tasks.base import DataError
from model.tasks.tokenize import load_tokenizer

SWAG_HEADER = [
    "",
    "video-id",
    "fold-ind",
    "startphrase",
    "sent1",
    "sent2",
    "gold-source",
    "ending0",
    "ending1",
    "ending2",
    "ending3",
    "label",
]


def write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def test_swag_reads_four_endings_and_encodes_four_sequences(tiny_checkpoint: Path, tmp_path: Path):
    write_csv(
        tmp_path / "val.csv",
        [
            SWAG_HEADER,
            [
                0,
                "lsmdc_1",
                "19",
                "He opens the door. He",
                "He opens the door.",
                "He",
                "gold",
                "walks in.",
                "eats, the door.",
                "flies away",
                "sings",
                0,
            ],
        ],
    )
    task = get_task("swag")
    split = task.read(tmp_path, "dev")
    example = split.examples[0]
    assert (example.guid, example.context, example.start, example.label) == (
        "0",
        "He opens the door.",
        "He",
        0,
    )
    assert example.endings[1] == "eats, the door."  # a quoted comma stays inside its field
    encoded = task.encode(split, load_tokenizer(tiny_checkpoint), max_seq_length=24)
    assert encoded.inputs["input_ids"].shape == (1, 4, 24)
    batch = encoded.batch(encoded.example_index, with_targets=True)
    assert batch["input_ids"].shape[:2] == (1, 4) and batch["labels"].tolist() == [0]


def test_swag_bad_labels_and_missing_columns(tmp_path: Path):
    row = [0, "v", "1", "s", "s1", "s2", "gold", "a", "b", "c", "d"]
    write_csv(tmp_path / "train.csv", [SWAG_HEADER, row + ["4"]])
    with pytest.raises(DataError, match=r"train.csv:2: label '4' is not an ending index 0-3"):
        get_task("swag").read(tmp_path, "train")
    write_csv(tmp_path / "train.csv", [SWAG_HEADER[:-2] + ["label"], row[:-1] + ["1"]])
    with pytest.raises(DataError, match=r"header lacks column\(s\) \['ending3'\]"):
        get_task("swag").read(tmp_path, "train")


def test_custom_jsonl_with_a_field_mapping(tmp_path: Path):
    rows = [
        {"q": "is it good", "a": "yes", "y": True, "n": 1},
        {"q": "is it bad", "a": "no", "y": False, "n": 2},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps({"q": "new", "a": "one", "n": 9}) + "\n")
    task = get_task("custom", {"text_a": "q", "text_b": "a", "label": "y", "id": "n"})
    train = task.read(tmp_path, "train")
    assert task.labels == ["false", "true"]
    assert (train.examples[0].text_b, train.examples[0].label, train.examples[0].guid) == (
        "yes",
        "true",
        "1",
    )
    test = task.read(tmp_path, "test")
    assert not test.has_labels and test.examples[0].guid == "9"
    assert task.finetune_info()["options"]["labels"] == "false,true"


def test_custom_csv_and_parquet(tmp_path: Path):
    write_csv(tmp_path / "train.csv", [["text", "label"], ["fine", "pos"], ["awful", "neg"]])
    write_csv(tmp_path / "dev.csv", [["text", "label"], ["ok", "pos"], ["meh", "mixed"]])
    task = get_task("custom")
    assert [e.label for e in task.read(tmp_path, "train").examples] == ["pos", "neg"]
    with pytest.raises(
        DataError, match=r"dev.csv: row 2: label 'mixed' is not one of \['neg', 'pos'\]"
    ):
        task.read(tmp_path, "dev")
    parquet = tmp_path / "p"
    parquet.mkdir()
    pq.write_table(
        pa.table({"sentence": ["a", "b"], "score": [0.5, None]}), parquet / "train.parquet"
    )
    regression = get_task("custom", {"text_a": "sentence", "label": "score", "kind": "regression"})
    with pytest.raises(DataError, match="row 2 has no value in label field 'score'"):
        regression.read(parquet, "train")


def test_custom_bad_records_name_file_and_row(tmp_path: Path):
    (tmp_path / "train.jsonl").write_text(
        '{"text": "a", "label": "x"}\n{"txt": "b", "label": "y"}\n'
    )
    with pytest.raises(DataError, match=r"train.jsonl: row 2 has no field 'text'"):
        get_task("custom").read(tmp_path, "train")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{broken\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: not valid JSON"):
        get_task("custom").read(tmp_path, "train")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "five"}\n')
    with pytest.raises(DataError, match="label 'five' is not a number"):
        get_task("custom", {"kind": "regression"}).read(tmp_path, "train")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n')
    with pytest.raises(DataError, match="every training example has label"):
        get_task("custom").read(tmp_path, "train")
    with pytest.raises(ValueError, match="has no option 'txet'"):
        get_task("custom", {"txet": "a"})
