"""Hugging Face interop: real MiniLM weights, export to transformers, round trips, bad input."""

import dataclasses
import json
import logging

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.models.bert.tokenization_bert import load_vocab

from model.bert import BertForPreTraining, BertModel
from model.config import BertConfig
from model.hf_checkpoint import (
    CONFIG_NAME,
    PYTORCH_NAME,
    SAFETENSORS_NAME,
    config_from_hf,
    config_to_hf,
    load_hf_checkpoint,
    load_hf_weights,
    save_hf_checkpoint,
    to_hf_state_dict,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "BERT is pretrained with a masked language model and next sentence prediction.",
    "Paris is the capital of France.",
    "Unbelievably, the tokenizer splits rare words into word-pieces!",
]
HEAD_KEYS = (
    "heads.decoder_bias",
    "heads.seq_relationship.bias",
    "heads.seq_relationship.weight",
    "heads.transform.bias",
    "heads.transform.weight",
    "heads.transform_layer_norm.bias",
    "heads.transform_layer_norm.weight",
)


class RecordWarnings(logging.Handler):
    """Collects transformers' warnings (its logger does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "RecordWarnings":
        logging.getLogger("transformers").addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        logging.getLogger("transformers").removeHandler(self)


def random_model(config: BertConfig, cls=BertForPreTraining, seed: int = 0):
    """A model with every parameter random, so a swapped or dropped tensor shows up."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


def tiny_inputs(config: BertConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, config.vocab_size, (13, 7), generator=g)
    attention_mask = torch.ones(13, 7, dtype=torch.long)
    attention_mask[::3, 5:] = 0
    token_type_ids = (torch.arange(7) >= 3).long().expand(13, 7)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }


def test_minilm_hidden_states_match_transformers(minilm_dir):
    tokenizer = transformers.BertTokenizer(vocab=load_vocab(str(minilm_dir / "vocab.txt")))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # the batch really has padding
    assert (batch["input_ids"] == tokenizer.unk_token_id).sum() == 0

    ours, report = load_hf_checkpoint(minilm_dir, for_pretraining=False)
    assert report.missing_keys == () and report.unexpected_keys == ()
    reference = transformers.BertModel.from_pretrained(minilm_dir, local_files_only=True).eval()
    ours.eval()
    with torch.no_grad():
        got = ours(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            output_hidden_states=True,
        )
        want = reference(**batch, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states) == 7
    for layer, (a, b) in enumerate(zip(got.hidden_states, want.hidden_states, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"hidden state {layer}")
    torch.testing.assert_close(got.pooled_output, want.pooler_output, atol=1e-5, rtol=0)


def test_minilm_into_pretraining_reports_fresh_heads(minilm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="model.hf_checkpoint"):
        model, report = load_hf_checkpoint(minilm_dir, for_pretraining=True)
    assert isinstance(model, BertForPreTraining)
    assert report.missing_keys == HEAD_KEYS
    assert report.unexpected_keys == ()
    assert report.source.endswith(SAFETENSORS_NAME)
    assert "freshly initialised" in caplog.text and "heads.decoder_bias" in caplog.text
    weights = load_file(minilm_dir / SAFETENSORS_NAME)
    torch.testing.assert_close(
        model.bert.encoder.layers[5].attention.qkv.weight[384:768],
        weights["encoder.layer.5.attention.self.key.weight"],
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_export_loads_into_transformers_with_same_logits(tiny_config, tmp_path, hidden_act):
    config = dataclasses.replace(tiny_config, hidden_act=hidden_act)
    ours = random_model(config)
    save_hf_checkpoint(ours, tmp_path / "export")
    with RecordWarnings() as warnings:
        reference, info = transformers.BertForPreTraining.from_pretrained(
            tmp_path / "export", local_files_only=True, output_loading_info=True
        )
    assert info == {
        "missing_keys": set(),
        "unexpected_keys": set(),
        "mismatched_keys": set(),
        "error_msgs": [],
    }
    assert warnings.messages == []
    reference.eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        got = ours(**inputs)  # no masked_lm_positions: logits for all T positions
        want = reference(**inputs)
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.seq_relationship_logits, atol=1e-5, rtol=0)


def test_exported_encoder_loads_into_transformers_bert_model(tiny_config, tmp_path):
    ours = random_model(tiny_config, BertModel)
    save_hf_checkpoint(ours, tmp_path / "export")
    assert json.loads((tmp_path / "export" / CONFIG_NAME).read_text())["architectures"] == [
        "BertModel"
    ]
    with RecordWarnings() as warnings:
        reference, info = transformers.BertModel.from_pretrained(
            tmp_path / "export", local_files_only=True, output_loading_info=True
        )
    assert not info["missing_keys"] and not info["unexpected_keys"] and warnings.messages == []
    inputs = tiny_inputs(tiny_config)
    with torch.no_grad():
        got, want = ours(**inputs), reference.eval()(**inputs)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [BertForPreTraining, BertModel])
def test_round_trip_gives_identical_state(tiny_config, tmp_path, cls):
    ours = random_model(tiny_config, cls)
    directory = save_hf_checkpoint(ours, tmp_path / "export")
    loaded, report = load_hf_checkpoint(directory, for_pretraining=cls is BertForPreTraining)
    assert type(loaded) is cls and loaded.config == ours.config
    assert report.missing_keys == () and report.unexpected_keys == ()
    want, got = ours.state_dict(), loaded.state_dict()
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    # Nothing is left behind next to the export.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert sorted(p.name for p in directory.iterdir()) == [CONFIG_NAME, SAFETENSORS_NAME]


def test_transformers_checkpoint_loads_with_same_logits(tiny_config, tmp_path):
    hf_config = transformers.BertConfig(**config_to_hf(tiny_config))
    torch.manual_seed(0)
    reference = transformers.BertForPreTraining(hf_config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.2)
    reference.save_pretrained(tmp_path / "hf")
    ours, report = load_hf_checkpoint(tmp_path / "hf", for_pretraining=True)
    assert report.missing_keys == () and report.unexpected_keys == ()
    inputs = tiny_inputs(tiny_config)
    with torch.no_grad():
        got, want = ours.eval()(**inputs), reference(**inputs)
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.seq_relationship_logits, atol=1e-5, rtol=0)


def test_old_style_pytorch_bin_checkpoint_loads(tiny_config, tmp_path):
    """pytorch_model.bin with LayerNorm gamma/beta and the decoder weight stored explicitly."""
    ours = random_model(tiny_config)
    tensors = to_hf_state_dict(ours)
    old = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): tensor
        for name, tensor in tensors.items()
    }
    assert "bert.embeddings.LayerNorm.gamma" in old
    old["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    old["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"]
    old["bert.embeddings.position_ids"] = torch.arange(512)[None]
    directory = tmp_path / "old"
    directory.mkdir()
    torch.save(old, directory / PYTORCH_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(config_to_hf(tiny_config)))
    loaded, report = load_hf_checkpoint(directory, for_pretraining=True)
    assert report.source.endswith(PYTORCH_NAME)
    assert report.missing_keys == () and report.unexpected_keys == ()
    for name, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_pretraining_checkpoint_into_encoder_reports_unused_heads(tiny_config, tmp_path):
    save_hf_checkpoint(random_model(tiny_config), tmp_path / "export")
    model, report = load_hf_checkpoint(tmp_path / "export", for_pretraining=False)
    assert isinstance(model, BertModel)
    assert report.missing_keys == ()
    assert report.unexpected_keys == (
        "cls.predictions.bias",
        "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.dense.weight",
        "cls.seq_relationship.bias",
        "cls.seq_relationship.weight",
    )


def test_save_over_existing_export_replaces_it(tiny_config, tmp_path):
    directory = tmp_path / "export"
    save_hf_checkpoint(random_model(tiny_config, seed=1), directory)
    second = random_model(tiny_config, seed=2)
    save_hf_checkpoint(second, directory)
    loaded, _ = load_hf_checkpoint(directory, for_pretraining=True)
    assert torch.equal(loaded.heads.decoder_bias, second.heads.decoder_bias)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_config_mismatch_names_the_field(tiny_config, tmp_path):
    save_hf_checkpoint(random_model(tiny_config), tmp_path / "export")
    wider = BertForPreTraining(dataclasses.replace(tiny_config, num_hidden_layers=3))
    with pytest.raises(ValueError, match=r"config mismatch: num_hidden_layers is 2 .* but 3"):
        load_hf_weights(wider, tmp_path / "export")
    other_act = dataclasses.replace(tiny_config, hidden_act="relu")
    with pytest.raises(ValueError, match="hidden_act"):
        load_hf_checkpoint(tmp_path / "export", for_pretraining=True, config=other_act)
    # Dropout is not architecture: a fine-tuning config may change it.
    no_dropout = dataclasses.replace(tiny_config, hidden_dropout_prob=0.0)
    model, _ = load_hf_checkpoint(tmp_path / "export", for_pretraining=True, config=no_dropout)
    assert model.config.hidden_dropout_prob == 0.0


def edit_config(directory, **changes) -> None:
    path = directory / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_config_that_contradicts_the_weights_is_rejected(tiny_config, tmp_path):
    directory = save_hf_checkpoint(random_model(tiny_config), tmp_path / "export")
    edit_config(directory, intermediate_size=40)
    with pytest.raises(
        ValueError, match=r"encoder.layer.0.intermediate.dense.weight has shape \(37, 32\)"
    ):
        load_hf_checkpoint(directory, for_pretraining=True)
    edit_config(directory, intermediate_size=37, num_hidden_layers=3)
    with pytest.raises(ValueError, match="lacks encoder weights"):
        load_hf_checkpoint(directory, for_pretraining=True)
    edit_config(directory, num_hidden_layers=1)
    with pytest.raises(ValueError, match=r"no place for.*encoder\.layer\.1\."):
        load_hf_checkpoint(directory, for_pretraining=True)


def test_unsupported_or_broken_config_is_rejected(tiny_config, tmp_path):
    directory = save_hf_checkpoint(random_model(tiny_config), tmp_path / "export")
    edit_config(directory, position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="config.json: .*position_embedding_type"):
        load_hf_checkpoint(directory, for_pretraining=True)
    edit_config(directory, position_embedding_type="absolute", num_attention_heads=5)
    with pytest.raises(ValueError, match="config.json: .*num_attention_heads"):
        load_hf_checkpoint(directory, for_pretraining=True)
    (directory / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_hf_checkpoint(directory, for_pretraining=True)
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({"model_type": "roberta"})


def test_missing_files_are_named(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path, for_pretraining=False)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config_to_hf(tiny_config)))
    with pytest.raises(FileNotFoundError, match=f"no {SAFETENSORS_NAME} or {PYTORCH_NAME}"):
        load_hf_checkpoint(tmp_path, for_pretraining=False)
    (tmp_path / SAFETENSORS_NAME).write_bytes(b"truncated")
    with pytest.raises(ValueError, match=f"{SAFETENSORS_NAME}: cannot read weights"):
        load_hf_checkpoint(tmp_path, for_pretraining=False)


def test_untied_decoder_is_rejected(tiny_config, tmp_path):
    directory = save_hf_checkpoint(random_model(tiny_config), tmp_path / "export")
    tensors = load_file(directory / SAFETENSORS_NAME)
    tensors["cls.predictions.decoder.weight"] = torch.zeros(99, 32)
    save_file(tensors, directory / SAFETENSORS_NAME)
    with pytest.raises(ValueError, match="differs from the word embeddings"):
        load_hf_checkpoint(directory, for_pretraining=True)
