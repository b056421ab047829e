"""Fixtures for the fine-tuning tests: a tiny random checkpoint with a small real vocabulary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from model.bert import BertModel
from model.config import bert_tiny
from model.hf_checkpoint import save_hf_checkpoint

# Under a bare `pytest` (not `python -m pytest`), tests/ is on sys.path and the project root is
# not, so `model` is a namespace package of tests/model, and this directory would shadow the
# module model.finetune. Looking in the project's model/ first restores the real modules.
_model = sys.modules.get("model")
if _model is not None and getattr(_model, "__file__", None) is None:
    _model.__path__ = [str(Path(__file__).resolve().parents[3] / "model"), *_model.__path__]

# Words the test data sets are made of; each is one WordPiece token of the tiny vocabulary.
FILLER = (
    "the a an is was of and to in it on at he she they we saw said that this with for by from "
    "had has man woman child day night house road car tree water then there very old new big"
).split()
POSITIVE = ("good", "great", "fun", "lovely")
NEGATIVE = ("bad", "terrible", "boring", "awful")
CITIES = ("paris", "london", "rome", "berlin", "madrid", "tokyo")
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
OTHER = "eu german british capital city who what where when which call calls lamb cricket".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
PUNCTUATION = ".,!?;:'\"-()"


def tiny_vocab() -> list[str]:
    """[PAD] [UNK] [CLS] [SEP] [MASK], characters, ##characters, then whole words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(LETTERS + PUNCTUATION) + ["##" + c for c in LETTERS]
    tokens += [*FILLER, *POSITIVE, *NEGATIVE, *CITIES, *NAMES, *OTHER]
    return list(dict.fromkeys(tokens))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BERT (L=2, H=32) saved in HF format with its vocab.txt."""
    vocab = tiny_vocab()
    torch.manual_seed(0)
    config = bert_tiny(
        vocab_size=len(vocab), hidden_size=32, num_attention_heads=4, intermediate_size=64
    )
    directory = tmp_path_factory.mktemp("tiny") / "checkpoint"
    save_hf_checkpoint(BertModel(config), directory)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    return directory


@pytest.fixture(autouse=True)
def _one_thread_for_every_test(one_torch_thread):
    """Every fine-tuning test trains a tiny model: tests/model/conftest.py's one_torch_thread."""
