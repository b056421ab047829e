"""The health checks' references and verdicts, on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from model.bert import IGNORE_INDEX
from model.health import (
    COLLAPSE,
    LOSS_AT_UNIGRAM,
    NON_FINITE,
    NOT_LEARNING,
    NSP_AT_CHANCE,
    baseline_from_counts,
    diagnose,
    mean_token_cosine,
    measure_baseline,
)
from model.pretraining_batch import PretrainingBatch
from model.train_config import HealthConfig


def batch_with(labels: list[list[int]], nsp: list[int]) -> PretrainingBatch:
    B, P = len(labels), len(labels[0])
    return PretrainingBatch(
        input_ids=torch.zeros(B, 4, dtype=torch.long),
        token_type_ids=torch.zeros(B, 4, dtype=torch.long),
        attention_mask=torch.ones(B, 4, dtype=torch.bool),
        masked_lm_positions=torch.zeros(B, P, dtype=torch.long),
        masked_lm_labels=torch.tensor(labels),
        next_sentence_label=torch.tensor(nsp),
    )


def test_baseline_is_the_most_frequent_token_and_the_entropy():
    x = IGNORE_INDEX
    batches = [batch_with([[5, 5, 7], [5, x, x]], [0, 1]), batch_with([[9, 7, x]], [1])]
    baseline = measure_baseline(batches, vocab_size=10)
    # masked tokens: 5 x3, 7 x2, 9 x1 (unused slots not counted)
    assert baseline.masked_tokens == 6 and baseline.top_token_id == 5
    assert baseline.unigram_accuracy == pytest.approx(3 / 6)
    p = np.array([3, 2, 1]) / 6
    assert baseline.unigram_entropy == pytest.approx(float(-(p * np.log(p)).sum()))
    assert baseline.nsp_chance == pytest.approx(2 / 3) and baseline.sequences == 3
    with pytest.raises(ValueError, match="no masked tokens"):
        baseline_from_counts(np.zeros(4, dtype=np.int64), np.array([1, 1]))


def test_token_cosine_ignores_pairs_of_the_same_token():
    same_direction = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    assert mean_token_cosine(same_direction, torch.tensor([1, 2, 3]), 512) == pytest.approx(1.0)
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # tokens 0 and 2 share an id: only the pairs (0,1), (1,2) count, both orthogonal
    assert mean_token_cosine(orthogonal, torch.tensor([4, 5, 4]), 512) == pytest.approx(0.0)
    assert mean_token_cosine(orthogonal, torch.tensor([4, 5, 4]), 2) == pytest.approx(0.0)
    assert math.isnan(mean_token_cosine(orthogonal, torch.tensor([4, 4, 4]), 512))


BASELINE = baseline_from_counts(np.array([0, 60, 30, 10]), np.array([50, 50]))


def verdict(learning_checked=True, cosine=0.3, **metrics):
    values = {"loss": 4.0, "mlm_loss": 3.3, "nsp_loss": 0.7, "mlm_accuracy": 0.9}
    values |= {"nsp_accuracy": 0.9} | metrics
    return diagnose(
        100,
        values,
        baseline=BASELINE,
        token_cosine=cosine,
        learning_checked=learning_checked,
        config=HealthConfig(),
    )


def test_each_way_of_not_learning_is_named():
    assert verdict().status == "ok" and verdict().problems == {}
    assert set(verdict(cosine=0.97).problems) == {COLLAPSE}
    at_baseline = verdict(mlm_accuracy=0.6)  # = always predicting token 1
    assert set(at_baseline.problems) == {NOT_LEARNING} and at_baseline.status == "failing"
    stuck = verdict(mlm_loss=BASELINE.unigram_entropy * 1.01)
    assert set(stuck.problems) == {LOSS_AT_UNIGRAM} and stuck.status == "warning"
    chance = verdict(nsp_accuracy=0.51)
    assert set(chance.problems) == {NSP_AT_CHANCE} and chance.status == "warning"
    assert set(verdict(loss=float("nan")).problems) == {NON_FINITE}
    # During the warm-up only non-finite values are problems: an untrained model is at the
    # baseline by definition.
    early = verdict(learning_checked=False, cosine=0.99, mlm_accuracy=0.1)
    assert early.problems == {} and early.record()["learning_checked"] is False
    line = verdict(cosine=0.97, mlm_accuracy=0.6).line()
    assert "failing" in line and "1.00x the unigram baseline 0.600" in line
    assert "collapse: " in line and "not_learning: " in line
