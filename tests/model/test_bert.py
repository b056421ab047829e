"""Behaviour of the BERT model on a tester-sized config (batch 13, seq 7, vocab 99)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.bert import IGNORE_INDEX, BertForPreTraining, BertModel
from model.config import PRESETS, BertConfig, bert_base, bert_large

B, T, P = 13, 7, 3


def make_batch(config: BertConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random pretraining inputs: some rows padded, masked slots padded with label -100."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, config.vocab_size, (B, T), generator=g)
    token_type_ids = torch.randint(0, 2, (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    attention_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask  # [PAD] = 0 after each row's end
    positions = torch.stack([torch.randperm(int(n), generator=g)[:P] for n in lengths])
    labels = torch.randint(0, config.vocab_size, (B, P), generator=g)
    n_real = torch.randint(0, P + 1, (B,), generator=g)
    padded_slot = torch.arange(P)[None, :] >= n_real[:, None]
    positions = positions.masked_fill(padded_slot, 0)
    labels = labels.masked_fill(padded_slot, IGNORE_INDEX)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "masked_lm_positions": positions,
        "masked_lm_labels": labels,
        "next_sentence_label": torch.randint(0, 2, (B,), generator=g),
    }


def make_model(config: BertConfig, cls=BertForPreTraining):
    torch.manual_seed(0)
    return cls(config).eval()


def test_output_shapes(tiny_config):
    batch = make_batch(tiny_config)
    H, V, L = tiny_config.hidden_size, tiny_config.vocab_size, tiny_config.num_hidden_layers
    bert = make_model(tiny_config, BertModel)
    out = bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], True)
    assert out.last_hidden_state.shape == (B, T, H)
    assert out.pooled_output.shape == (B, H)
    assert len(out.hidden_states) == L + 1
    assert all(h.shape == (B, T, H) for h in out.hidden_states)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)

    model = make_model(tiny_config)
    out = model(**batch)
    n_real = int((batch["masked_lm_labels"] != IGNORE_INDEX).sum())
    assert out.mlm_logits.shape == (n_real, V)  # decoder ran on real masked slots only
    assert out.nsp_logits.shape == (B, 2)
    assert int(out.mlm_count) == n_real
    assert out.loss.shape == out.mlm_loss.shape == out.nsp_loss.shape == ()
    assert 0 <= int(out.mlm_correct) <= n_real and 0 <= int(out.nsp_correct) <= B

    no_labels = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    out = model(**no_labels, masked_lm_positions=batch["masked_lm_positions"])
    assert out.mlm_logits.shape == (B, P, V)
    assert out.loss is None and out.mlm_count is None and out.nsp_correct is None
    assert model(**no_labels).mlm_logits.shape == (B, T, V)


def test_padding_does_not_change_real_tokens(tiny_config):
    model = make_model(tiny_config, BertModel)
    batch = make_batch(tiny_config)
    ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    extra = 5
    # Padding slots get arbitrary token ids: only the mask may keep them out of attention.
    noise = torch.randint(1, 99, (B, extra), generator=torch.Generator().manual_seed(1))
    padded_ids = torch.cat([ids, noise], dim=1)
    padded_types = torch.cat([types, torch.ones(B, extra, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(B, extra, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model(ids, types, mask)
        long = model(padded_ids, padded_types, padded_mask.bool())
    real = mask.bool()
    torch.testing.assert_close(long.last_hidden_state[:, :T][real], short.last_hidden_state[real])
    torch.testing.assert_close(long.pooled_output, short.pooled_output)

    # Each padded row equals that sequence encoded alone, with no padding at all.
    with torch.no_grad():
        for row in range(B):
            n = int(mask[row].sum())
            alone = model(ids[row : row + 1, :n], types[row : row + 1, :n])
            torch.testing.assert_close(
                alone.last_hidden_state[0], short.last_hidden_state[row, :n], atol=1e-5, rtol=1e-5
            )

    # Without a mask the same padding does change the real tokens.
    with torch.no_grad():
        unmasked = model(padded_ids, padded_types)
    assert not torch.allclose(
        unmasked.last_hidden_state[:, :T][real], short.last_hidden_state[real]
    )


def test_mlm_loss_uses_only_real_masked_slots(tiny_config):
    model = make_model(tiny_config)
    batch = make_batch(tiny_config)
    labels, positions = batch["masked_lm_labels"], batch["masked_lm_positions"]
    real = labels != IGNORE_INDEX
    with torch.no_grad():
        out = model(**batch)
        # Padded slots may point anywhere: the loss must not move.
        moved = positions.masked_fill(~real, T - 1)
        out_moved = model(**{**batch, "masked_lm_positions": moved})
        # Reference: full-sequence logits, picked at the real (row, position) pairs.
        full = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    torch.testing.assert_close(out_moved.mlm_loss, out.mlm_loss, rtol=0, atol=0)
    rows = torch.arange(B)[:, None].expand(B, P)[real]
    picked = full.mlm_logits[rows, positions[real]]
    torch.testing.assert_close(out.mlm_logits, picked)
    torch.testing.assert_close(out.mlm_loss, F.cross_entropy(picked, labels[real]))
    assert int(out.mlm_correct) == int((picked.argmax(-1) == labels[real]).sum())

    # Labels laid out over all T positions (HF style) give the same loss.
    dense_labels = torch.full((B, T), IGNORE_INDEX)
    dense_labels[rows, positions[real]] = labels[real]
    with torch.no_grad():
        dense = model(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            masked_lm_labels=dense_labels,
        )
    torch.testing.assert_close(dense.mlm_loss, out.mlm_loss)

    # A batch with nothing masked has loss 0, not NaN.
    with torch.no_grad():
        empty = model(**{**batch, "masked_lm_labels": torch.full((B, P), IGNORE_INDEX)})
    assert empty.mlm_logits.shape == (0, tiny_config.vocab_size)
    assert float(empty.mlm_loss) == 0.0 and int(empty.mlm_count) == 0


def test_decoder_is_tied_to_word_embeddings(tiny_config):
    model = make_model(tiny_config)
    word = model.bert.embeddings.word_embeddings.weight
    V, H = word.shape
    # No second (V, H) matrix exists: the decoder is the embedding storage itself.
    assert [name for name, p in model.named_parameters() if p.shape == (V, H)] == [
        "bert.embeddings.word_embeddings.weight"
    ]
    batch = make_batch(tiny_config)
    batch["input_ids"] = batch["input_ids"].clamp(max=50)  # rows 51.. never seen as input
    out = model(**batch)
    out.mlm_loss.backward()
    assert word.grad[51:].abs().sum() > 0  # reached only through the decoder
    with torch.no_grad():
        word[V - 1] += 1.0
        after = model(**batch)
    # Row V-1 is no input token, so only its logit column moves.
    changed = (after.mlm_logits - out.mlm_logits).abs().amax(dim=0) > 1e-6
    assert changed.nonzero().flatten().tolist() == [V - 1]


def test_loss_is_mlm_plus_nsp(tiny_config):
    model = make_model(tiny_config)
    batch = make_batch(tiny_config)
    with torch.no_grad():
        out = model(**batch)
        only_nsp = model(**{**batch, "masked_lm_labels": None})
        only_mlm = model(**{**batch, "next_sentence_label": None})
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss)
    nsp = F.cross_entropy(out.nsp_logits, batch["next_sentence_label"])
    torch.testing.assert_close(out.nsp_loss, nsp)
    nsp_hits = (out.nsp_logits.argmax(-1) == batch["next_sentence_label"]).sum()
    assert int(out.nsp_correct) == int(nsp_hits)
    torch.testing.assert_close(only_nsp.loss, out.nsp_loss)
    torch.testing.assert_close(only_mlm.loss, out.mlm_loss)


def test_dropout_only_in_training(tiny_config):
    # Only attention dropout: shows SDPA's dropout is on in training and off in eval.
    config = dataclasses.replace(
        tiny_config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5
    )
    model = make_model(config)
    batch = make_batch(config)
    with torch.no_grad():
        first, second = model(**batch), model(**batch)
        model.train()
        noisy_a, noisy_b = model(**batch), model(**batch)
    torch.testing.assert_close(first.mlm_logits, second.mlm_logits, rtol=0, atol=0)
    assert not torch.allclose(noisy_a.mlm_logits, noisy_b.mlm_logits)


def test_weight_init(tiny_config):
    config = dataclasses.replace(tiny_config, initializer_range=0.05)
    model = make_model(config)
    layer = model.bert.encoder.layers[0]
    assert abs(float(layer.intermediate.weight.detach().std()) - 0.05) < 0.005
    assert torch.all(layer.intermediate.bias == 0)
    assert torch.all(layer.output_layer_norm.weight == 1)
    assert torch.all(layer.output_layer_norm.bias == 0)
    assert torch.all(model.heads.decoder_bias == 0)
    pad = model.bert.embeddings.word_embeddings.weight[config.pad_token_id]
    assert torch.all(pad == 0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_build(name):
    config = PRESETS[name]()
    config.validate()
    assert config.intermediate_size == 4 * config.hidden_size
    assert config.hidden_size % config.num_attention_heads == 0
    assert PRESETS[name](vocab_size=1000).vocab_size == 1000
    with torch.device("meta"):  # shapes only, no memory or init time
        model = BertForPreTraining(config)
    assert len(model.bert.encoder.layers) == config.num_hidden_layers


@pytest.mark.parametrize(("preset", "paper_count"), [(bert_base, 110e6), (bert_large, 340e6)])
def test_parameter_counts_match_the_paper(preset, paper_count):
    with torch.device("meta"):
        model = BertModel(preset(vocab_size=30522))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / paper_count - 1) < 0.03, count


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_size": 100}, "hidden_size"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"num_hidden_layers": -1}, "num_hidden_layers"),
        ({"intermediate_size": 0}, "intermediate_size"),
        ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
        ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"initializer_range": "0.02"}, "initializer_range"),
        ({"pad_token_id": 30522}, "pad_token_id"),
        ({"max_position_embeddings": 1.5}, "max_position_embeddings"),
        ({"hidden_act": "swish"}, "hidden_act"),
    ],
)
def test_invalid_config_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        BertConfig(**changes)
    config = BertConfig()
    for name, value in changes.items():
        setattr(config, name, value)
    with pytest.raises(ValueError, match=field):
        BertModel(config)


def test_config_dict_round_trip(tiny_config):
    assert BertConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(ValueError, match="hidden_sise"):
        BertConfig.from_dict({**tiny_config.to_dict(), "hidden_sise": 3})


def test_sequence_longer_than_positions_is_rejected(tiny_config):
    config = dataclasses.replace(tiny_config, max_position_embeddings=6)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        make_model(config, BertModel)(torch.ones(2, 7, dtype=torch.long))
