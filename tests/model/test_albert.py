"""ALBERT's shape (Lan et al., 2019): a factorised embedding and cross-layer sharing in our BERT,
and its checkpoints as transformers' ALBERT classes."""

import dataclasses
import json

import pytest
import torch
import transformers

from model.bert import BertForPreTraining, BertModel
from model.config import BertConfig
from model.heads import build_task_model, load_task_model, save_task_model
from model.hf_checkpoint import (
    CONFIG_NAME,
    config_from_hf,
    config_to_hf,
    load_hf_checkpoint,
    load_hf_weights,
    save_hf_checkpoint,
)
from tests.model.test_hf_checkpoint import RecordWarnings, random_model, tiny_inputs

LOADED_CLEANLY = {
    "missing_keys": set(),
    "unexpected_keys": set(),
    "mismatched_keys": set(),
    "error_msgs": [],
}


@pytest.fixture(params=["shared", "not_shared"])
def albert_config(tiny_config, request) -> BertConfig:
    """E=16 < H=32, three layers (so that sharing shows), ALBERT's activation."""
    return dataclasses.replace(
        tiny_config,
        embedding_size=16,
        num_hidden_layers=3,
        share_layers=request.param == "shared",
        hidden_act="gelu_new",
    )


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_factorised_embedding_and_sharing_cut_the_parameters(tiny_config):
    """E x V + E x H instead of H x V, and one layer's weights instead of L."""
    V, H, E, L = 1000, 64, 16, 4
    base = dataclasses.replace(tiny_config, vocab_size=V, hidden_size=H, num_hidden_layers=L)
    bert = BertModel(base)
    factorised = BertModel(dataclasses.replace(base, embedding_size=E))
    shared = BertModel(dataclasses.replace(base, embedding_size=E, share_layers=True))
    embed_saving = V * H - (V * E + E * H + H)  # the projection's weight and bias are new
    other_tables = (base.max_position_embeddings + base.type_vocab_size) * (H - E) + 2 * (H - E)
    assert parameters(bert) - parameters(factorised) == embed_saving + other_tables
    layer = parameters(bert.encoder.layers[0])
    assert parameters(factorised) - parameters(shared) == (L - 1) * layer
    assert len(shared.encoder.layers) == 1
    # Sharing is the same weights applied L times, not one layer: 4 layers of the same weights
    # give another function than 1.
    one_layer = BertModel(dataclasses.replace(base, embedding_size=E, num_hidden_layers=1))
    one_layer.load_state_dict(shared.state_dict())
    inputs = tiny_inputs(dataclasses.replace(base, vocab_size=V))
    with torch.no_grad():
        four = shared.eval()(**inputs, output_hidden_states=True)
        once = one_layer.eval()(**inputs)
    assert len(four.hidden_states) == L + 1
    torch.testing.assert_close(four.hidden_states[1], once.last_hidden_state)
    assert not torch.allclose(four.last_hidden_state, once.last_hidden_state)


def test_config_rules(tiny_config):
    with pytest.raises(ValueError, match="share_layers needs embedding_size"):
        dataclasses.replace(tiny_config, share_layers=True)
    with pytest.raises(ValueError, match="embedding_size must be None or positive"):
        dataclasses.replace(tiny_config, embedding_size=0)
    with pytest.raises(ValueError, match="is_decoder"):
        dataclasses.replace(tiny_config, embedding_size=16, is_decoder=True)


def test_export_loads_into_transformers_albert_with_same_logits(albert_config, tmp_path):
    ours = random_model(albert_config)
    save_hf_checkpoint(ours, tmp_path / "export")
    written = json.loads((tmp_path / "export" / CONFIG_NAME).read_text())
    assert written["model_type"] == "albert"
    assert written["architectures"] == ["AlbertForPreTraining"]
    assert written["num_hidden_groups"] == (1 if albert_config.share_layers else 3)
    with RecordWarnings() as warnings:
        reference, info = transformers.AlbertForPreTraining.from_pretrained(
            tmp_path / "export", local_files_only=True, output_loading_info=True
        )
    assert info == LOADED_CLEANLY
    assert warnings.messages == []
    reference.eval()
    inputs = tiny_inputs(albert_config)
    with torch.no_grad():
        got = ours(**inputs)
        want = reference(**inputs)
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.sop_logits, atol=1e-5, rtol=0)


def test_transformers_albert_loads_with_same_outputs(albert_config, tmp_path):
    """A checkpoint written by transformers itself, every weight random."""
    hf_config = transformers.AlbertConfig(**config_to_hf(albert_config))
    torch.manual_seed(1)
    reference = transformers.AlbertForPreTraining(hf_config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.2)
    reference.save_pretrained(tmp_path / "hf")
    ours, report = load_hf_checkpoint(tmp_path / "hf", for_pretraining=True)
    assert ours.config == albert_config
    assert report.missing_keys == () and report.unexpected_keys == ()
    inputs = tiny_inputs(albert_config)
    with torch.no_grad():
        got, want = ours.eval()(**inputs), reference(**inputs)
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.sop_logits, atol=1e-5, rtol=0)
    encoder, _ = load_hf_checkpoint(tmp_path / "hf", for_pretraining=False)
    reference_encoder = transformers.AlbertModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got, want = encoder.eval()(**inputs), reference_encoder(**inputs)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooled_output, want.pooler_output, atol=1e-5, rtol=0)


def test_round_trip_and_resume_into_the_same_shape(albert_config, tmp_path):
    ours = random_model(albert_config)
    directory = save_hf_checkpoint(ours, tmp_path / "export")
    loaded, report = load_hf_checkpoint(directory, for_pretraining=True)
    assert loaded.config == albert_config and report.missing_keys == ()
    for name, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    fresh = BertForPreTraining(albert_config)
    load_hf_weights(fresh, directory)  # what a resumed run does
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in ours.state_dict().items())
    other = dataclasses.replace(albert_config, share_layers=not albert_config.share_layers)
    with pytest.raises(ValueError, match="share_layers"):
        load_hf_weights(BertForPreTraining(other), directory)


def test_bert_configs_stay_bert(tiny_config):
    written = config_to_hf(tiny_config)
    assert written["model_type"] == "bert" and "embedding_size" not in written
    assert config_from_hf(written) == tiny_config
    with pytest.raises(ValueError, match="inner_group_num"):
        config_from_hf({**config_to_hf(dataclasses.replace(tiny_config, embedding_size=8)),
                        "inner_group_num": 2})  # fmt: skip


@pytest.mark.parametrize(
    ("head", "hf_class"),
    [("classification", "AlbertForSequenceClassification"),
     ("span", "AlbertForQuestionAnswering"),
     ("token", "AlbertForTokenClassification"),
     ("choice", "AlbertForMultipleChoice")],
)  # fmt: skip
def test_finetuned_albert_saves_as_transformers_albert(albert_config, tmp_path, head, hf_class):
    torch.manual_seed(0)
    model = build_task_model(head, BertModel(albert_config), 3).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    labels = ["a", "b", "c"] if head in ("classification", "token") else []
    save_task_model(model, tmp_path / "tuned", info={"task": "t", "head": head, "labels": labels})
    reference, info = getattr(transformers, hf_class).from_pretrained(
        tmp_path / "tuned", output_loading_info=True
    )
    assert info == LOADED_CLEANLY
    inputs = tiny_inputs(albert_config)
    if head == "choice":
        inputs = {k: v.view(13, 1, 7) for k, v in inputs.items()}
    with torch.no_grad():
        got, want = model(**inputs), reference.eval()(**inputs)
    want_logits = (
        torch.stack([want.start_logits, want.end_logits], -1) if head == "span" else want.logits
    )
    torch.testing.assert_close(got.logits, want_logits, atol=1e-5, rtol=0)
    again, _ = load_task_model(tmp_path / "tuned")
    kept = {k: v for k, v in model.state_dict().items() if model.uses_pooler or "pooler" not in k}
    assert all(torch.equal(again.state_dict()[k], v) for k, v in kept.items())
