"""GLUE metrics against values worked out by hand (and as scikit-learn / scipy give them)."""

import math

import pytest

from model.metrics.glue import (
    accuracy,
    average_ranks,
    binary_f1,
    classification_metrics,
    macro_f1,
    matthews_corrcoef,
    pearson,
    regression_metrics,
    spearman,
)


def test_accuracy_f1_and_matthews_on_a_known_case():
    labels = [1, 1, 1, 0]
    predictions = [1, 0, 1, 1]  # tp 2, fn 1, fp 1, tn 0
    assert accuracy(predictions, labels) == 0.5
    assert binary_f1(predictions, labels) == pytest.approx(2 / 3)
    assert matthews_corrcoef(predictions, labels) == pytest.approx(-1 / 3)


def test_matthews_is_one_for_perfect_and_zero_for_a_constant_prediction():
    assert matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 1, 0]) == 0.0  # CoLA's all-"acceptable" model


def test_f1_counts_only_the_positive_class():
    assert binary_f1(["0", "0"], ["0", "0"], positive="1") == 0.0
    assert binary_f1(["1", "0", "1"], ["1", "1", "1"], positive="1") == pytest.approx(0.8)


def test_pearson_and_spearman_with_ties():
    x, y = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    assert pearson(x, y) == pytest.approx(6 / math.sqrt(60))
    assert average_ranks(y) == [1.0, 2.5, 4.5, 2.5, 4.5]
    assert spearman(x, y) == pytest.approx(0.7378647873726218)  # scipy.stats.spearmanr
    assert spearman(x, [10, 20, 30, 40, 50]) == pytest.approx(1.0)


def test_correlation_with_a_constant_series_is_undefined_not_zero():
    assert math.isnan(pearson([1, 2, 3], [2, 2, 2]))
    assert math.isnan(regression_metrics([3.0, 3.0, 3.0], [1.0, 2.0, 5.0])["spearman"])


def test_task_level_metrics_are_percentages():
    scores = classification_metrics(
        ["1", "0", "1", "1"], ["1", "1", "1", "0"], ("f1", "accuracy", "mcc")
    )
    assert scores == pytest.approx({"f1": 200 / 3, "accuracy": 50.0, "mcc": -100 / 3})
    assert macro_f1(["a", "b"], ["a", "b"], ["a", "b", "c"]) == pytest.approx(2 / 3)


def test_mismatched_or_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="no labels"):
        accuracy([], [])
