"""A fine-tuned model loads in transformers with the tokenizer it was trained with: a BERT
tokenizer class that lower-cases, and a model_max_length equal to the length fine-tuned at, so
that plain `truncation=True` gives the inputs the model saw (a 512 there disagreed with our
predictions on 2-5% of inputs)."""

from __future__ import annotations

from pathlib import Path

from conftest import FILLER
from test_finetune_training import finetune, sst2_dir  # noqa: F401  (a fixture)

from model.tasks.tokenize import load_tokenizer


def test_the_fine_tuned_tokenizer_truncates_where_the_model_was_trained(
    tiny_checkpoint: Path,
    sst2_dir: Path,  # noqa: F811
    tmp_path: Path,
):
    from transformers import AutoTokenizer

    finetune(
        sst2_dir,
        tiny_checkpoint,
        tmp_path / "out",
        "--grid",
        "lr=2e-3 batch=16 epochs=1",
        "--max-seq-length",
        "24",
    )
    model_dir = tmp_path / "out" / "model"
    theirs = AutoTokenizer.from_pretrained(str(model_dir))
    assert "Bert" in type(theirs).__name__ and theirs.do_lower_case is True
    assert theirs.model_max_length == 24

    ours = load_tokenizer(model_dir)
    long_a = " ".join(FILLER * 3).upper()  # upper case: lower-casing must agree too
    long_b = " ".join(reversed(FILLER * 2))
    for a, b in ((long_a, None), (long_a, long_b), ("short one", long_b)):
        ids_a = ours.encode_texts([a])[0].ids
        ids_b = ours.encode_texts([b])[0].ids if b is not None else None
        expected, segments, truncated = ours.frame_pair(ids_a, ids_b, 24)
        got = theirs(a, b, truncation=True)
        assert truncated and len(expected) == 24
        assert got["input_ids"] == expected and got["token_type_ids"] == segments
