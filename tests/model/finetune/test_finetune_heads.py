"""Task heads: shapes and losses, and saved models that transformers loads as BertFor* models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from model.bert import IGNORE_INDEX, BertModel
from model.config import bert_tiny
from model.heads import build_task_model, load_encoder, load_task_model, save_task_model

CONFIG = bert_tiny(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37)


def inputs(batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 5:] = 0
    return {
        "input_ids": torch.randint(1, 99, (batch, length), generator=g),
        "token_type_ids": (torch.arange(length) >= 4).long().expand(batch, length),
        "attention_mask": mask,
    }


def model(head: str, num_labels: int = 3):
    torch.manual_seed(0)
    return build_task_model(head, BertModel(CONFIG), num_labels).eval()


def test_classification_regression_span_and_token_heads():
    x = inputs()
    out = model("classification")(**x, labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3) and out.loss > 0
    out = model("regression")(**x, labels=torch.tensor([0.5, 4.0, 2.0]))
    assert out.logits.shape == (3, 1)
    torch.testing.assert_close(
        out.loss, ((out.logits.squeeze(-1) - torch.tensor([0.5, 4.0, 2.0])) ** 2).mean()
    )
    out = model("span")(
        **x, start_positions=torch.tensor([1, 2, 0]), end_positions=torch.tensor([2, 4, 0])
    )
    assert out.logits.shape == (3, 7, 2) and out.loss > 0
    labels = torch.full((3, 7), IGNORE_INDEX)
    labels[:, 1] = 2
    tagger = model("token")
    out = tagger(**x, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 1], labels[:, 1])
    torch.testing.assert_close(out.loss, expected)  # only the labelled positions count


def test_multiple_choice_scores_each_choice_and_softmaxes_over_them():
    chooser = model("choice")
    x = {k: v.unsqueeze(1).expand(-1, 4, -1).clone() for k, v in inputs().items()}
    x["input_ids"][:, 2] = 5  # choice 2 differs from the others
    out = chooser(**x, labels=torch.tensor([2, 2, 2]))
    assert out.logits.shape == (3, 4)
    assert out.logits[0, 0] == out.logits[0, 1] != out.logits[0, 2]
    one = chooser.bert(
        x["input_ids"][:, 2], x["token_type_ids"][:, 2], x["attention_mask"][:, 2]
    ).pooled_output
    torch.testing.assert_close(out.logits[:, 2], chooser.classifier(one).squeeze(-1))


@pytest.mark.parametrize(
    ("head", "auto_class"),
    [
        ("classification", transformers.AutoModelForSequenceClassification),
        ("span", transformers.AutoModelForQuestionAnswering),
        ("token", transformers.AutoModelForTokenClassification),
        ("choice", transformers.AutoModelForMultipleChoice),
    ],
)
def test_saved_models_load_in_transformers_with_the_same_outputs(tmp_path: Path, head, auto_class):
    ours = model(head)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # every tensor distinct: a dropped one would show
    labels = ["a", "b", "c"]
    save_task_model(ours, tmp_path / "m", info={"task": "x", "head": head, "labels": labels})
    theirs, loading = auto_class.from_pretrained(tmp_path / "m", output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"]
    x = inputs()
    if head == "choice":
        x = {k: v.unsqueeze(1).expand(-1, 4, -1).contiguous() for k, v in x.items()}
    with torch.no_grad():
        expected = ours(**x).logits
        got = theirs.eval()(**x)
    actual = torch.stack([got.start_logits, got.end_logits], -1) if head == "span" else got.logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    if head in ("classification", "token"):
        assert theirs.config.id2label == {0: "a", 1: "b", 2: "c"}
    reloaded, info = load_task_model(tmp_path / "m")
    assert info["labels"] == labels
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**x).logits, expected)


def test_the_encoder_of_a_fine_tuned_model_starts_another_task(tmp_path: Path):
    mnli = model("classification")
    save_task_model(
        mnli,
        tmp_path / "mnli",
        info={"task": "mnli", "head": "classification", "labels": ["a", "b", "c"]},
    )
    bert, report = load_encoder(tmp_path / "mnli")
    assert not report.missing_keys and not report.unexpected_keys  # the MNLI head is left out
    for name, tensor in bert.state_dict().items():
        torch.testing.assert_close(tensor, mnli.bert.state_dict()[name])
    assert json.loads((tmp_path / "mnli/config.json").read_text())["finetune"]["task"] == "mnli"


def test_saving_over_an_existing_model_replaces_it_whole(tmp_path: Path):
    first, second = model("classification"), model("span")
    save_task_model(
        first,
        tmp_path / "m",
        info={"task": "x", "head": "classification", "labels": ["a", "b", "c"]},
    )
    save_task_model(second, tmp_path / "m", info={"task": "y", "head": "span", "labels": []})
    assert json.loads((tmp_path / "m/config.json").read_text())["architectures"] == [
        "BertForQuestionAnswering"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or old copies left
