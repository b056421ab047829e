"""SQuAD EM/F1 as the official v1.1 and v2.0 scripts compute them."""

import json
import math

import pytest

from model.metrics.squad_eval import (
    apply_no_answer_threshold,
    best_threshold,
    evaluate_v1,
    evaluate_v2,
    exact_match,
    f1_v1,
    f1_v2,
    gold_answers,
    gold_answers_v2,
    main,
    normalize_answer,
    raw_scores_v2,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Cat  sat.", "cat sat"),
        ("An   apple, a day!", "apple day"),
        ("Theater and anthem", "theater and anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("the-end", "theend"),  # punctuation goes first, so no article is left to remove
        ("  \tA\n", ""),
        ("Élan, the café", "élan café"),  # non-ASCII letters and accents are kept
        ("«quoted»", "«quoted»"),  # only ASCII punctuation is removed
    ],
)
def test_normalisation_follows_the_official_script(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_and_f1_on_known_pairs():
    assert exact_match("The Eiffel Tower", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    # pred tokens [cat sat on mat], gold [cat on mat]: precision 3/4, recall 1.
    assert f1_v1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    # Repeated tokens count as often as both sides have them.
    assert f1_v1("a a b", "a b b") == pytest.approx(2 / 3)


def test_empty_answers_differ_between_v1_and_v2():
    assert f1_v1("", "") == 0.0
    assert f1_v2("", "") == 1.0
    assert f1_v2("paris", "") == 0.0
    assert f1_v2("", "paris") == 0.0
    assert gold_answers_v2(["the", "  "]) == [""]  # golds that normalise to nothing: no answer
    assert gold_answers_v2(["the", "Paris"]) == ["Paris"]


DATASET = [
    {
        "title": "t",
        "paragraphs": [
            {
                "context": "...",
                "qas": [
                    {
                        "id": "a",
                        "answers": [
                            {"text": "Paris", "answer_start": 0},
                            {"text": "the city of Paris", "answer_start": 0},
                        ],
                    },
                    {"id": "b", "answers": [{"text": "1990", "answer_start": 0}]},
                ],
            }
        ],
    }
]


def test_v1_takes_the_best_gold_and_scores_missing_predictions_zero():
    gold = gold_answers(DATASET)
    report = evaluate_v1(gold, {"a": "city of Paris", "b": "in 1990"})
    # a: EM 1 against the second gold; b: EM 0, F1 2/3.
    assert report["exact_match"] == pytest.approx(50.0)
    assert report["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    missing = evaluate_v1(gold, {"a": "Paris"})
    assert missing["exact_match"] == 50.0 and missing["missing"] == 1


V2_GOLD = {"a": ("Paris",), "b": (), "c": ("red fox",), "d": ()}


def test_v2_scores_no_answer_questions_and_splits_has_and_no_answer():
    report = evaluate_v2(V2_GOLD, {"a": "Paris", "b": "", "c": "", "d": "fox"})
    assert report["exact"] == 50.0  # a right, b right (""), c wrong, d wrong
    assert report["HasAns_exact"] == 50.0 and report["NoAns_exact"] == 50.0
    assert report["HasAns_total"] == 2 and report["NoAns_total"] == 2


def test_no_answer_threshold_and_the_best_threshold():
    predictions = {"a": "Paris", "b": "x", "c": "fox", "d": "y"}
    na = {"a": 0.1, "b": 0.5, "c": 0.9, "d": 0.3}
    exact, f1, has_answer = raw_scores_v2(V2_GOLD, predictions)
    assert f1 == {"a": 1.0, "b": 0.0, "c": pytest.approx(2 / 3), "d": 0.0}
    # Answer only a (na <= 0.1): a 1, b 1, c 0, d 1.
    assert apply_no_answer_threshold(f1, na, has_answer, 0.1) == {
        "a": 1.0,
        "b": 1.0,
        "c": 0.0,
        "d": 1.0,
    }
    best, threshold = best_threshold(f1, na, has_answer, predictions)
    assert (best, threshold) == (75.0, 0.1)
    report = evaluate_v2(V2_GOLD, predictions, na, na_prob_threshold=threshold)
    assert report["f1"] == 75.0 and report["best_f1"] == 75.0 and report["best_f1_thresh"] == 0.1


def test_best_threshold_only_reports_scores_some_threshold_reaches():
    gold = {"a": ("Paris",), "b": ()}
    predictions = {"a": "Paris", "b": "x"}
    na = {"a": 0.2, "b": 0.2}  # tied: no threshold answers a without b
    _, f1, has_answer = raw_scores_v2(gold, predictions)
    best, threshold = best_threshold(f1, na, has_answer, predictions)
    assert best == 50.0
    reached = apply_no_answer_threshold(f1, na, has_answer, threshold)
    assert 100 * sum(reached.values()) / 2 == best


def test_answering_nothing_can_be_best():
    gold = {"a": (), "b": ()}
    predictions = {"a": "x", "b": "y"}
    na = {"a": -3.0, "b": 2.0}
    _, f1, has_answer = raw_scores_v2(gold, predictions)
    best, threshold = best_threshold(f1, na, has_answer, predictions)
    assert best == 100.0 and threshold < -3.0


def test_command_line_reads_official_files(tmp_path, capsys):
    (tmp_path / "dev.json").write_text(json.dumps({"version": "1.1", "data": DATASET}))
    (tmp_path / "pred.json").write_text(json.dumps({"a": "Paris", "b": "1990"}))
    main([str(tmp_path / "dev.json"), str(tmp_path / "pred.json")])
    report = json.loads(capsys.readouterr().out)
    assert report["exact_match"] == 100.0 and math.isclose(report["f1"], 100.0)
