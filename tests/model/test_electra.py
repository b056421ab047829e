"""ELECTRA (Clark et al., 2020): the generator and discriminator, their loss, and their
checkpoints as transformers' ElectraForPreTraining and ElectraForMaskedLM."""

import dataclasses
import json

import pytest
import torch
import transformers

from model.bert import IGNORE_INDEX
from model.config import BertConfig
from model.electra import DISCRIMINATOR_WEIGHT, ElectraForPreTraining, generator_config
from model.hf_checkpoint import (
    CONFIG_NAME,
    GENERATOR_DIR,
    load_electra_checkpoint,
    save_electra_checkpoint,
)
from tests.model.test_albert import LOADED_CLEANLY
from tests.model.test_hf_checkpoint import RecordWarnings, random_model, tiny_inputs


@pytest.fixture(params=["E=H", "E<H"])
def electra_config(tiny_config, request) -> BertConfig:
    """Discriminator H=32 with 4 heads: embeddings as wide, or 16 wide (ELECTRA-Small's
    factorisation)."""
    return dataclasses.replace(tiny_config, embedding_size=16 if request.param == "E<H" else None)


def random_electra(config: BertConfig, seed: int = 0) -> ElectraForPreTraining:
    return random_model(config, ElectraForPreTraining, seed)


def test_the_generator_is_a_quarter_as_wide_and_shares_the_embeddings(electra_config):
    model = ElectraForPreTraining(electra_config)
    g = model.generator_config
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size) == (8, 1, 9)
    assert g.num_hidden_layers == electra_config.num_hidden_layers
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "layer_norm"):
        assert getattr(model.generator.embeddings, name) is getattr(
            model.discriminator.embeddings, name
        )
    assert model.generator.embeddings.projection.weight.shape == (8, electra_config.embedding_width)
    # As wide as the embeddings: no projection, as transformers' ElectraModel.
    assert generator_config(electra_config, 1.0).embedding_size == electra_config.embedding_size
    with pytest.raises(ValueError, match="width"):
        generator_config(electra_config, 0.0)


def test_export_loads_into_transformers_with_the_same_outputs(electra_config, tmp_path):
    ours = random_electra(electra_config)
    directory = save_electra_checkpoint(ours, tmp_path / "electra")
    written = json.loads((directory / CONFIG_NAME).read_text())
    assert written["architectures"] == ["ElectraForPreTraining"]
    assert written["embedding_size"] == electra_config.embedding_width
    inputs = tiny_inputs(electra_config)
    with RecordWarnings() as warnings:
        discriminator, info = transformers.ElectraForPreTraining.from_pretrained(
            directory, output_loading_info=True
        )
        generator, g_info = transformers.ElectraForMaskedLM.from_pretrained(
            directory / GENERATOR_DIR, output_loading_info=True
        )
    assert info == LOADED_CLEANLY and g_info == LOADED_CLEANLY and warnings.messages == []
    with torch.no_grad():
        torch.testing.assert_close(
            ours.discriminator_logits(**inputs), discriminator.eval()(**inputs).logits,
            atol=1e-5, rtol=0,
        )  # fmt: skip
        torch.testing.assert_close(
            ours.generator_logits(**inputs), generator.eval()(**inputs).logits, atol=1e-5, rtol=0
        )
    again = load_electra_checkpoint(directory)
    assert again.config == electra_config
    for name, tensor in ours.state_dict().items():
        if ".pooler." not in name:  # ELECTRA has no pooler
            assert torch.equal(again.state_dict()[name], tensor), name


def test_transformers_electra_loads_with_the_same_outputs(electra_config, tmp_path):
    """A discriminator and generator written by transformers itself, every weight random."""
    ours = random_electra(electra_config)
    save_electra_checkpoint(ours, tmp_path / "ours")
    discriminator = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "ours")
    generator = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "ours" / GENERATOR_DIR)
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in discriminator.parameters():
            parameter.normal_(0.0, 0.2)
        for name, parameter in generator.named_parameters():
            if not name.startswith("electra.embeddings."):
                parameter.normal_(0.0, 0.2)
        shared = discriminator.electra.embeddings.state_dict()
        generator.electra.embeddings.load_state_dict(shared)
    discriminator.save_pretrained(tmp_path / "hf")
    generator.save_pretrained(tmp_path / "hf" / GENERATOR_DIR)
    loaded = load_electra_checkpoint(tmp_path / "hf").eval()
    inputs = tiny_inputs(electra_config)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.discriminator_logits(**inputs), discriminator.eval()(**inputs).logits,
            atol=1e-5, rtol=0,
        )  # fmt: skip
        torch.testing.assert_close(
            loaded.generator_logits(**inputs), generator.eval()(**inputs).logits,
            atol=1e-5, rtol=0,
        )  # fmt: skip


def masked_batch(config: BertConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """tiny_inputs with 3 slots per sequence masked ([MASK] = 3) and labelled."""
    inputs = tiny_inputs(config)
    g = torch.Generator().manual_seed(seed)
    B = inputs["input_ids"].size(0)
    positions = torch.stack([torch.randperm(5, generator=g)[:3] + 1 for _ in range(B)])
    labels = torch.gather(inputs["input_ids"], 1, positions)
    labels[0, 2] = IGNORE_INDEX  # an unused slot
    masked = inputs["input_ids"].clone()
    masked.scatter_(1, positions, 3)
    return inputs | {"input_ids": masked, "masked_lm_positions": positions,
                     "masked_lm_labels": labels}  # fmt: skip


def test_the_loss_is_mlm_plus_fifty_times_replaced_token_detection(tiny_config):
    model = random_electra(tiny_config)
    batch = masked_batch(tiny_config)
    out = model.pretraining_loss(**batch, generator=torch.Generator().manual_seed(0))
    again = model.pretraining_loss(**batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.loss, again.loss)  # the samples follow the generator's seed
    real = batch["masked_lm_labels"] != IGNORE_INDEX
    assert out.mlm_count == real.sum() == 38
    assert out.rtd_count == batch["attention_mask"].sum()
    assert 0 < out.replaced_count <= out.mlm_count  # only masked slots can change
    torch.testing.assert_close(out.loss, out.mlm_loss + DISCRIMINATOR_WEIGHT * out.rtd_loss)
    # The generator's loss is cross-entropy at the real slots, against the original tokens.
    logits = model.generator_logits(batch["input_ids"], batch["token_type_ids"],
                                    batch["attention_mask"])  # fmt: skip
    at = torch.gather(logits, 1, batch["masked_lm_positions"].unsqueeze(-1).expand(-1, -1, 99))
    want = torch.nn.functional.cross_entropy(at[real], batch["masked_lm_labels"][real])
    torch.testing.assert_close(out.mlm_loss, want)
    out.loss.backward()  # both models learn; the samples carry no gradient
    assert model.generator.encoder.layers[0].output.weight.grad.abs().sum() > 0
    assert model.discriminator_head.prediction.weight.grad.abs().sum() > 0


def test_the_loss_skipping_padding_equals_the_padded_one(electra_config):
    """With Unpadding (the trainer's default) both encoders run on the real tokens only: the
    same samples, losses and counts as the padded batch, and the same gradients."""
    from model.bert import Unpadding

    batch = masked_batch(electra_config)
    unpadding = Unpadding.from_attention_mask(batch["attention_mask"])
    outs, grads = [], []
    for pad in (None, unpadding):
        model = random_electra(electra_config)
        out = model.pretraining_loss(**batch, unpadding=pad,
                                     generator=torch.Generator().manual_seed(1))  # fmt: skip
        out.loss.backward()
        outs.append(out)
        grads.append(model.discriminator.encoder.layers[0].intermediate.weight.grad)
    padded, unpadded = outs
    for name in ("mlm_count", "rtd_count", "replaced_count", "mlm_correct", "rtd_correct"):
        assert torch.equal(getattr(padded, name), getattr(unpadded, name)), name
    torch.testing.assert_close(padded.loss, unpadded.loss, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert padded.rtd_count == batch["attention_mask"].sum()


def test_fill_mask_reads_the_generator(tiny_config):
    """ElectraForPreTraining(ids, masked_lm_positions=...) gives the generator's predictions
    there (what model.fill_mask and the trainer's probes read) and the discriminator's view."""
    model = random_electra(tiny_config).eval()
    batch = masked_batch(tiny_config)
    ids, positions = batch["input_ids"], batch["masked_lm_positions"]
    with torch.no_grad():
        out = model(ids, masked_lm_positions=positions)
        every = model.generator_logits(ids)
    at = torch.gather(every, 1, positions.unsqueeze(-1).expand(-1, -1, every.size(-1)))
    torch.testing.assert_close(out.mlm_logits, at)
    assert out.replaced_logits.shape == ids.shape
    with pytest.raises(ValueError, match="no sentence task"):
        model.pretraining_loss(**batch, nsp=True)


def test_the_discriminator_learns_replacements_it_can_tell_apart(tiny_config):
    """A generator held to ids the text never uses (a frozen head whose bias rules out the
    others): the discriminator must find every replaced token, far above the rate of
    answering "original" everywhere. Wrong labels, positions or inputs would keep it at that
    rate (at this size, ordinary samples keep it there for hundreds of steps: docs)."""
    torch.manual_seed(0)
    model = ElectraForPreTraining(tiny_config)
    with torch.no_grad():
        model.generator_head.decoder_bias.fill_(-1e4)
        model.generator_head.decoder_bias[90:] = 0  # samples from ids 90..98 only
    model.generator_head.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)

    def batch() -> dict[str, torch.Tensor]:
        ids = torch.randint(5, 80, (16, 24), generator=g)  # the text: ids 5..79
        positions = torch.stack([torch.randperm(23, generator=g)[:4] + 1 for _ in range(16)])
        labels = torch.gather(ids, 1, positions)
        return {"input_ids": ids.scatter(1, positions, 3), "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids), "masked_lm_positions": positions,
                "masked_lm_labels": labels}  # fmt: skip

    for _ in range(150):
        out = model.pretraining_loss(**batch(), generator=g)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model.pretraining_loss(**batch(), generator=g)
    accuracy = float(out.rtd_correct) / float(out.rtd_count)
    original = 1 - float(out.replaced_count) / float(out.rtd_count)  # 20 of 24 tokens
    assert original < 0.85 and accuracy > 0.98, (accuracy, original)
