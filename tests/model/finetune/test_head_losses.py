"""Each head's loss is its paper formula, written out here by hand, and predictions are the
model's eval-mode outputs (no dropout) whatever mode training left the model in."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE

from model.bert import IGNORE_INDEX, BertModel
from model.config import bert_tiny
from model.finetune import (
    TrainSettings,
    checkpoint_tokenizer,
    evaluate_splits,
    predict_logits,
    resolve_placement,
)
from model.heads import build_task_model, load_encoder
from model.tasks import get_task
from model.tasks.base import Encoded

B, C, T, LABELS = 4, 3, 9, 5  # batch, choices, sequence length, labels
LENGTHS = (9, 6, 4, 7)  # real tokens of each row: the others are padding
DROPOUT = 0.3
CPU = resolve_placement("cpu", "fp32")


def tiny_bert(dropout: float = DROPOUT) -> BertModel:
    torch.manual_seed(0)
    return BertModel(
        bert_tiny(
            vocab_size=99,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=37,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
    )


def head_model(head: str, num_labels: int = LABELS) -> torch.nn.Module:
    """A head on a tiny BERT whose output layer is spread out (std 1, not 0.02), so that its
    logits, and the terms of its loss, clearly differ from one another."""
    model = build_task_model(head, tiny_bert(), num_labels)
    torch.manual_seed(1)
    with torch.no_grad():
        output_layer = model.qa_outputs if head == "span" else model.classifier
        output_layer.weight.normal_(0.0, 1.0)
        output_layer.bias.normal_(0.0, 1.0)
    return model


def inputs(rows: int = B, lengths: tuple[int, ...] = LENGTHS) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()  # (rows, T)
    return {
        "input_ids": torch.randint(5, 99, (rows, T), generator=g) * mask,
        "token_type_ids": (torch.arange(T) >= 3).long().expand(rows, T) * mask,
        "attention_mask": mask,
    }


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] of each row of (N, K) logits, in float64."""
    logits = logits.detach().double()
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    return -log_probs[torch.arange(len(targets)), targets]


# -- losses ---------------------------------------------------------------------------------


def test_classification_loss_is_the_mean_negative_log_likelihood_of_the_labels():
    model = head_model("classification").eval()
    labels = torch.tensor([0, 4, 2, 2])
    out = model(**inputs(), labels=labels)
    assert out.logits.shape == (B, LABELS)
    expected = nll(out.logits, labels).mean()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out.loss, model(**inputs(), labels=labels.flip(0)).loss)


def test_regression_loss_is_the_mean_squared_error():
    model = head_model("regression", 1).eval()
    scores = torch.tensor([0.5, 4.0, 2.25, 3.0])
    out = model(**inputs(), labels=scores)
    assert out.logits.shape == (B, 1)
    predicted = out.logits[:, 0].tolist()
    expected = sum((p - y) ** 2 for p, y in zip(predicted, scores.tolist(), strict=True)) / B
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_span_loss_averages_the_start_and_the_end_losses():
    model = head_model("span").eval()
    starts, ends = torch.tensor([1, 3, 0, 2]), torch.tensor([4, 5, 0, 6])
    out = model(**inputs(), start_positions=starts, end_positions=ends)
    assert out.logits.shape == (B, T, 2)  # start and end logits over every position
    start_loss = nll(out.logits[..., 0], starts).mean()
    end_loss = nll(out.logits[..., 1], ends).mean()
    assert abs(float(start_loss - end_loss)) > 0.1  # both terms matter to the check below
    expected = (start_loss + end_loss) / 2
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)
    # Both the start and the end scorer learn from it.
    out.loss.backward()
    start_grad, end_grad = model.qa_outputs.weight.grad  # rows of S and E
    assert start_grad.abs().sum() > 0 and end_grad.abs().sum() > 0


def test_token_loss_averages_over_the_labelled_tokens_only():
    model = head_model("token").eval()
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, LABELS, (B, T), generator=g)
    labelled = inputs()["attention_mask"].bool()
    labelled[:, 0] = False  # [CLS]
    labelled[1, 2:4] = False  # later pieces of a word
    labels[~labelled] = IGNORE_INDEX
    out = model(**inputs(), labels=labels)
    assert out.logits.shape == (B, T, LABELS)
    expected = nll(out.logits[labelled], labels[labelled]).mean()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)
    # The labels of ignored tokens change nothing.
    labels[~labelled] = 0
    mean_over_all = nll(out.logits.flatten(0, 1), labels.flatten()).mean()
    assert abs(float(mean_over_all - expected)) > 1e-3
    labels[~labelled] = IGNORE_INDEX
    torch.testing.assert_close(model(**inputs(), labels=labels).loss, out.loss)


def test_multiple_choice_loss_is_the_negative_log_likelihood_over_the_choices():
    model = head_model("choice").eval()
    x = {k: v.unsqueeze(1).expand(-1, C, -1).clone() for k, v in inputs().items()}
    g = torch.Generator().manual_seed(4)
    x["input_ids"] = torch.randint(5, 99, (B, C, T), generator=g) * x["attention_mask"]
    labels = torch.tensor([2, 0, 1, 2])
    out = model(**x, labels=labels)
    assert out.logits.shape == (B, C)
    expected = nll(out.logits, labels).mean()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)


# -- predictions ----------------------------------------------------------------------------


def encoded(head: str, rows: int = 10) -> Encoded:
    """`rows` features of several lengths, as a task encodes them (choices: (rows, C, T))."""
    lengths = tuple(3 + (5 * i) % (T - 2) for i in range(rows))
    features = inputs(rows, lengths)
    if head == "choice":
        features = {k: v.unsqueeze(1).expand(-1, C, -1).clone() for k, v in features.items()}
        g = torch.Generator().manual_seed(5)
        ids = torch.randint(5, 99, (rows, C, T), generator=g)
        features["input_ids"] = ids * features["attention_mask"]
    return Encoded(inputs=features, targets={}, example_index=torch.arange(rows))


@pytest.mark.parametrize("head", ["classification", "regression", "span", "token", "choice"])
def test_predictions_are_the_eval_mode_outputs_after_training(head):
    model = head_model(head, 1 if head == "regression" else LABELS).train()  # as training ends
    data = encoded(head)
    first = predict_logits(model, data, batch_size=4, placement=CPU)
    assert model.training  # training can go on with dropout
    second = predict_logits(model, data, batch_size=3, placement=CPU)
    with torch.no_grad():
        reference = model.eval()(**data.inputs).logits  # the whole split, without dropout
    if head in ("span", "token"):  # per token: compare the real tokens (padding is -inf)
        real = data.inputs["attention_mask"].bool()
        first, second, reference = first[real], second[real], reference[real]
    torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first, reference, rtol=1e-4, atol=1e-5)


def sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, int]]:
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if i % 2 else NEGATIVE))
        rows.append((" ".join(words), i % 2))
    return rows


def test_sst2_dev_predictions_are_the_eval_mode_labels(tiny_checkpoint: Path, tmp_path: Path):
    lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in sentiment_rows(random.Random(7), 40))]
    (tmp_path / "dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = get_task("sst2")
    bert, _ = load_encoder(
        tiny_checkpoint, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5
    )
    torch.manual_seed(0)
    model = build_task_model("classification", bert, len(task.labels))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)  # a head that separates the examples
    tokenizer = checkpoint_tokenizer(tiny_checkpoint, 32, bert.config)
    split = task.read(tmp_path, "dev")
    features = task.encode(split, tokenizer, 32)
    splits = {"dev": (split, features)}
    settings = TrainSettings(eval_batch_size=16)

    model.train()  # as training leaves it
    scores, predictions = evaluate_splits(task, model, splits, settings, CPU)
    again_scores, again = evaluate_splits(task, model, splits, settings, CPU)
    assert model.training
    with torch.no_grad():
        logits = model.eval()(**features.inputs).logits
    expected = [task.labels[i] for i in logits.argmax(-1).tolist()]
    assert predictions["dev"] == again["dev"] == expected
    assert scores == again_scores
    gold = [e.label for e in split.examples]
    accuracy = sum(p == y for p, y in zip(expected, gold, strict=True)) / len(gold)
    assert scores["dev/accuracy"] == pytest.approx(100 * accuracy)  # in percent
