"""GLUE readers on small files in each task's own format, and their bad-input handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.tasks import TASKS, get_task
from model.tasks.base import DataError


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_cola_has_no_header_in_train_and_dev_but_one_in_test(tmp_path: Path):
    write(
        tmp_path / "train.tsv",
        [
            "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
            'gj04\t0\t*\tThe more "we study" verbs, the crazier they get.',
        ],
    )
    write(tmp_path / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    cola = get_task("cola")
    train = cola.read(tmp_path, "train")
    assert [(e.text_a, e.label) for e in train.examples] == [
        ("The sailors rode the breeze clear of the rocks.", "1"),
        ('The more "we study" verbs, the crazier they get.', "0"),  # quotes kept: quoting is off
    ]
    test = cola.read(tmp_path, "test")
    assert (test.examples[0].guid, test.has_labels) == ("0", False)


def test_mrpc_reads_named_columns_and_a_byte_order_mark(tmp_path: Path):
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(tmp_path / "dev.tsv", [header, "1\t1355540\t1355592\tHe said hi .\tHe said hello ."])
    example = get_task("mrpc").read(tmp_path, "dev").examples[0]
    assert (example.text_a, example.text_b, example.label) == (
        "He said hi .",
        "He said hello .",
        "1",
    )


def test_stsb_scores_are_floats_in_range(tmp_path: Path):
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    write(
        tmp_path / "dev.tsv",
        [header, "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man.\tA man!\t4.750"],
    )
    assert get_task("stsb").read(tmp_path, "dev").examples[0].label == 4.75
    write(tmp_path / "train.tsv", [header, "0\tmain\tf\t2012\t0\tnone\tnone\ta\tb\t5.2"])
    with pytest.raises(DataError, match=r"train.tsv:2: score 5.2 is outside \[0.0, 5.0\]"):
        get_task("stsb").read(tmp_path, "train")


def test_mnli_matched_mismatched_test_and_diagnostic(tmp_path: Path):
    header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    )
    row = "0\t1\t1n\tfiction\t(\t(\t(\t(\tA premise .\tA hypothesis .\tneutral\tneutral"
    mnli = tmp_path / "MNLI"
    for name in ("train", "dev_matched", "dev_mismatched"):
        write(mnli / f"{name}.tsv", [header, row])
    test_header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"
    write(mnli / "test_matched.tsv", [test_header, "7\t1\t1n\tfiction\t(\t(\t(\t(\tP .\tH ."])
    write(
        tmp_path / "diagnostic" / "diagnostic.tsv",
        ["index\tsentence1\tsentence2", "0\tThe cat sat.\tThe cat did not sit."],
    )
    task = get_task("mnli")
    assert task.dev_splits == ("dev_matched", "dev_mismatched")
    assert task.read(mnli, "dev_mismatched").examples[0].label == "neutral"
    assert task.split_path(mnli, "test_mismatched") is None  # absent test files are skipped
    diagnostic = task.read(mnli, "diagnostic")
    files = task.write_predictions(diagnostic, ["contradiction"], tmp_path / "out")
    assert files[0].name == "AX.tsv"
    assert files[0].read_text() == "index\tprediction\n0\tcontradiction\n"
    test = task.read(mnli, "test_matched")
    assert task.write_predictions(test, ["entailment"], tmp_path / "out")[0].name == "MNLI-m.tsv"


@pytest.mark.parametrize(
    ("task", "header", "row", "expected"),
    [
        ("sst2", "sentence\tlabel", "a gripping film \t1", ("a gripping film ", None, "1")),
        (
            "qqp",
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "5\t1\t2\tHow do I cook?\tHow to cook?\t1",
            ("How do I cook?", "How to cook?", "1"),
        ),
        (
            "qnli",
            "index\tquestion\tsentence\tlabel",
            "0\tWhat is it?\tIt is a cat.\tentailment",
            ("What is it?", "It is a cat.", "entailment"),
        ),
        (
            "rte",
            "index\tsentence1\tsentence2\tlabel",
            "0\tA cat sat.\tAn animal sat.\tnot_entailment",
            ("A cat sat.", "An animal sat.", "not_entailment"),
        ),
        (
            "wnli",
            "index\tsentence1\tsentence2\tlabel",
            "0\tI put the cake in the box.\tThe box was big.\t1",
            ("I put the cake in the box.", "The box was big.", "1"),
        ),
    ],
)
def test_each_task_reads_its_own_columns(tmp_path: Path, task, header, row, expected):
    write(tmp_path / "dev.tsv", [header, row])
    example = get_task(task).read(tmp_path, "dev").examples[0]
    assert (example.text_a, example.text_b, example.label) == expected


QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"


def test_malformed_training_rows_are_counted_and_skipped(tmp_path: Path):
    rows = [f"{i}\t1\t2\tq one {i}\tq two\t0" for i in range(200)]
    rows.insert(50, "999\t1\t2\ta question cut short")
    write(tmp_path / "train.tsv", [QQP_HEADER, *rows])
    train = get_task("qqp").read(tmp_path, "train")
    assert len(train.examples) == 200
    assert train.skipped == {"malformed_rows": 1}


def test_many_malformed_training_rows_mean_the_wrong_file(tmp_path: Path):
    write(tmp_path / "train.tsv", [QQP_HEADER, "1\t1\t2\tq\tq\t0", "2\t1\t2\tq", "3\t1\t2\tq"])
    with pytest.raises(DataError, match="2 of 3 rows do not have 6 fields"):
        get_task("qqp").read(tmp_path, "train")


def test_a_malformed_dev_row_is_an_error_naming_the_line(tmp_path: Path):
    write(tmp_path / "dev.tsv", [QQP_HEADER, "1\t1\t2\tq\tq\t0", "2\t1\t2\tq\tq"])
    with pytest.raises(DataError, match=r"dev.tsv:3: expected 6 tab-separated fields, found 5"):
        get_task("qqp").read(tmp_path, "dev")


def test_labels_outside_the_label_set_are_errors(tmp_path: Path):
    write(
        tmp_path / "train.tsv",
        ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment", "1\ta\tb\tneutral"],
    )
    with pytest.raises(
        DataError,
        match=r"train.tsv:3: label 'neutral' is not one of \['entailment', 'not_entailment'\]",
    ):
        get_task("rte").read(tmp_path, "train")


def test_missing_columns_empty_splits_and_missing_files(tmp_path: Path):
    write(tmp_path / "dev.tsv", ["index\tsentence1\tlabel", "0\ta\t1"])
    with pytest.raises(DataError, match=r"header lacks column\(s\) \['sentence2'\]"):
        get_task("wnli").read(tmp_path, "dev")
    write(tmp_path / "train.tsv", ["sentence\tlabel"])
    with pytest.raises(DataError, match="the train split holds no examples"):
        get_task("sst2").read(tmp_path, "train")
    with pytest.raises(DataError, match="no test file for sst2"):
        get_task("sst2").read(tmp_path, "test")


def test_stsb_submission_is_clipped_to_the_score_range(tmp_path: Path):
    write(tmp_path / "test.tsv", ["index\tsentence1\tsentence2", "0\ta\tb", "1\tc\td"])
    task = get_task("stsb")
    test = task.read(tmp_path, "test")
    path = task.write_predictions(test, [5.71, -0.2], tmp_path / "out")[0]
    assert path.name == "STS-B.tsv"
    assert path.read_text() == "index\tprediction\n0\t5.000\n1\t0.000\n"


def test_every_glue_task_names_its_submission_file():
    names = {
        TASKS[t].submission_files.get("test")
        for t in ("cola", "sst2", "mrpc", "stsb", "qqp", "qnli", "rte", "wnli")
    }
    assert names == {
        "CoLA.tsv",
        "SST-2.tsv",
        "MRPC.tsv",
        "STS-B.tsv",
        "QQP.tsv",
        "QNLI.tsv",
        "RTE.tsv",
        "WNLI.tsv",
    }
