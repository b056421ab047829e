"""SQuAD: the official JSON, sliding windows, exact answer mapping and span selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.tasks import get_task
from model.tasks.base import DataError
from model.tasks.squad import max_context_flags, token_span, window_spans
from model.tasks.tokenize import load_tokenizer

CONTEXT = (
    "In the 1990s, Zürich's naïve art scene grew; the U.S. consulate (opened 1897) hosted "
    "exhibitions by Jean-Luc Godard and others. By 2001 the city's museums drew 1.5 million "
    "visitors a year, more than Geneva, Basel and Bern together."
)
ANSWERS = [
    "1990s",
    "Zürich",
    "naïve art scene",
    "U.S. consulate",
    "1897",
    "Jean-Luc Godard",
    "2001",
    "1.5 million",
    "Geneva, Basel and Bern",
]


def squad_json(path: Path, qas: list[dict], version: str = "1.1", context: str = CONTEXT) -> Path:
    body = {
        "version": version,
        "data": [{"title": "Zürich", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return path


def question(qid: str, answer: str, start: int | None = None) -> dict:
    return {
        "id": qid,
        "question": f"What about {answer}?",
        "answers": [
            {"text": answer, "answer_start": CONTEXT.index(answer) if start is None else start}
        ],
    }


def test_window_mapping_round_trips_every_answer_exactly(minilm_dir: Path, tmp_path: Path):
    squad_json(tmp_path / "train-v1.1.json", [question(f"q{i}", a) for i, a in enumerate(ANSWERS)])
    task = get_task("squad_v1", {"doc_stride": "7", "max_query_length": "8"})
    split = task.read(tmp_path, "train")
    encoded = task.encode(split, load_tokenizer(minilm_dir), max_seq_length=32)
    starts, ends = encoded.targets["start_positions"], encoded.targets["end_positions"]
    found = set()
    for f, window in enumerate(encoded.meta):
        example = split.examples[window.example]
        if starts[f] == 0:
            continue  # the answer is outside this window: the target is [CLS]
        char_start, char_end = window.char_span(int(starts[f]), int(ends[f]))
        assert CONTEXT[char_start:char_end] == example.answers[0][0]
        assert char_start == example.answers[0][1]
        ids = encoded.inputs["input_ids"][f]
        assert ids[window.input_offset - 1] == load_tokenizer(minilm_dir).sep_id
        found.add(window.example)
    assert found == set(range(len(ANSWERS)))  # every answer lies whole inside some window
    assert max(int(encoded.example_index.bincount().max()), 0) > 3  # contexts really are windowed


def test_windows_cover_the_context_and_each_token_has_one_best_window():
    spans = window_spans(50, 20, 8)
    assert spans == [(0, 20), (8, 20), (16, 20), (24, 20), (32, 18)]
    owners = [0] * 50
    for i in range(len(spans)):
        start, length = spans[i]
        for offset, best in enumerate(max_context_flags(spans, i)):
            owners[start + offset] += best
    assert owners == [1] * 50
    assert window_spans(3, 20, 8) == [(0, 3)]


def test_token_span_of_characters():
    offsets = [(0, 2), (3, 7), (7, 8), (9, 14)]  # "In 1990s, Basel" style pieces
    assert token_span(offsets, 3, 7) == (1, 1)
    assert token_span(offsets, 3, 8) == (1, 2)
    assert token_span(offsets, 8, 9) is None  # whitespace only


def test_answers_not_at_their_offset_are_counted_and_skipped_in_training(tmp_path: Path):
    qas = [question("good", "1897"), question("bad", "1897", start=3)]
    squad_json(tmp_path / "train-v1.1.json", qas)
    squad_json(tmp_path / "dev-v1.1.json", qas)
    task = get_task("squad_v1")
    train = task.read(tmp_path, "train")
    assert [e.qid for e in train.examples] == ["good"]
    assert train.skipped == {"answers_not_at_offset": 1}
    dev = task.read(tmp_path, "dev")  # scoring reads only answer texts: kept, but counted
    assert len(dev.examples) == 2 and dev.notes == {"questions_with_answers_not_at_offset": 1}


def test_bad_files_are_errors_naming_the_record(tmp_path: Path):
    no_question = question("q1", "1897")
    del no_question["question"]
    squad_json(tmp_path / "train-v1.1.json", [no_question])
    with pytest.raises(DataError, match=r"data\[0\].paragraphs\[0\].qas\[0\] has no 'question'"):
        get_task("squad_v1").read(tmp_path, "train")
    squad_json(
        tmp_path / "dev-v1.1.json",
        [{"id": "q2", "question": "?", "answers": [], "is_impossible": True}],
    )
    with pytest.raises(DataError, match="question q2 is unanswerable"):
        get_task("squad_v1").read(tmp_path, "dev")
    squad_json(tmp_path / "dev-v2.0.json", [question("q", "1897")], version="1.1")
    with pytest.raises(DataError, match="a SQuAD 1.1 file, but the task is squad_v2; use squad_v1"):
        get_task("squad_v2").read(tmp_path, "dev")
    (tmp_path / "train-v2.0.json").write_text("{not json")
    with pytest.raises(DataError, match="train-v2.0.json: not valid JSON"):
        get_task("squad_v2").read(tmp_path, "train")


def span_logits(encoded, example: int, answer_char: tuple[int, int], length: int) -> torch.Tensor:
    """Logits that point at the tokens of a character span in the window that owns them."""
    logits = torch.zeros(len(encoded), length, 2)
    for f, window in enumerate(encoded.meta):
        if window.example != example:
            continue
        for position in range(window.input_offset, window.input_offset + window.length):
            start, end = window.char_span(position, position)
            if start == answer_char[0]:
                logits[f, position, 0] = 10.0
            if end == answer_char[1]:
                logits[f, position, 1] = 10.0
    return logits


def test_prediction_maps_the_best_span_back_to_the_original_text(minilm_dir: Path, tmp_path: Path):
    squad_json(tmp_path / "dev-v1.1.json", [question("q0", "Jean-Luc Godard")])
    task = get_task("squad_v1", {"doc_stride": "6"})
    split = task.read(tmp_path, "dev")
    encoded = task.encode(split, load_tokenizer(minilm_dir), max_seq_length=24)
    start = CONTEXT.index("Jean-Luc Godard")
    logits = span_logits(encoded, 0, (start, start + len("Jean-Luc Godard")), 24)
    [prediction] = task.predict(split, encoded, logits)
    assert prediction.text == "Jean-Luc Godard"
    assert task.score(split, [prediction]) == {"exact_match": 100.0, "f1": 100.0}
    # Too long for max_answer_length (Jean - Luc Godard is 5 pieces): the span is not allowed.
    short = get_task("squad_v1", {"doc_stride": "6", "max_answer_length": "3"})
    [prediction] = short.predict(split, encoded, logits)
    assert prediction.text != "Jean-Luc Godard"


def test_v2_null_score_and_threshold_chosen_on_dev(minilm_dir: Path, tmp_path: Path):
    qas = [
        question("has", "1897"),
        {"id": "none", "question": "Who?", "answers": [], "is_impossible": True},
    ]
    for q in qas:
        q.setdefault("is_impossible", False)
    squad_json(tmp_path / "dev-v2.0.json", qas, version="v2.0")
    task = get_task("squad_v2")
    split = task.read(tmp_path, "dev")
    encoded = task.encode(split, load_tokenizer(minilm_dir), max_seq_length=64)
    start = CONTEXT.index("1897")
    logits = (
        span_logits(encoded, 0, (start, start + 4), 64)
        + span_logits(encoded, 1, (start, start + 4), 64) / 2
    )
    for f, window in enumerate(encoded.meta):  # the unanswerable question prefers [CLS]
        if window.example == 1:
            logits[f, 0] = 8.0
    predictions = task.predict(split, encoded, logits)
    assert [p.text for p in predictions] == ["1897", "1897"]
    assert predictions[0].null_score_diff < 0 < predictions[1].null_score_diff
    scores = task.score(split, predictions)
    assert scores["f1"] == 100.0 and scores["NoAns_f1"] == 100.0
    assert predictions[0].null_score_diff <= scores["threshold"] < predictions[1].null_score_diff
    files = task.write_predictions(split, predictions, tmp_path / "out")
    answers = json.loads(files[0].read_text())
    assert answers == {"has": "1897", "none": ""}
    null_odds = json.loads((tmp_path / "out/squad_v2_dev_null_odds.json").read_text())
    assert math.isclose(null_odds["none"], predictions[1].null_score_diff)
