"""The ablation objectives (paper Tables 5 and 8): mask mixes redrawn on the data's positions,
a left-to-right LM with causal attention, and MLM without NSP, unit by unit and through the
trainer on the real sample."""

import json

import pytest
import torch
import transformers

from bertdata.masking import MaskingVocab
from model.bert import IGNORE_INDEX, BertForPreTraining, BertModel, Unpadding
from model.config import bert_tiny
from model.hf_checkpoint import config_to_hf, load_hf_checkpoint, to_hf_state_dict
from model.metrics_log import read_metrics
from model.objectives import Objective, batch_generator, left_to_right, remix, restore_tokens
from model.pretrain import train
from model.pretraining_batch import PretrainingBatch
from model.train_config import ObjectiveConfig, parse_mask_mix
from tests.model.test_pretrain import sample_data, tiny_config  # noqa: F401  (fixture)

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"] + [f"w{i}" for i in range(94)]
MASK_ID = TOKENS.index("[MASK]")


def masked_batch(sequences: int = 64, length: int = 40, slots: int = 6) -> PretrainingBatch:
    """Random sequences of ordinary tokens with `slots` positions masked by [MASK], padded."""
    g = torch.Generator().manual_seed(0)
    original = torch.randint(6, len(TOKENS), (sequences, length), generator=g)
    original[:, 0], original[:, -1] = 2, 3
    lengths = torch.randint(length // 2, length + 1, (sequences,), generator=g)
    attention = torch.arange(length) < lengths.unsqueeze(1)
    original[~attention] = 0
    positions = torch.stack([torch.randperm(int(n) - 2, generator=g)[:slots] + 1 for n in lengths])
    labels = original.gather(1, positions)
    labels[:, -1] = IGNORE_INDEX  # one unused slot per sequence
    positions[:, -1] = 0
    ids = original.clone()
    ids.scatter_(1, positions[:, :-1], MASK_ID)
    return PretrainingBatch(
        input_ids=ids,
        token_type_ids=torch.zeros_like(ids),
        attention_mask=attention,
        masked_lm_positions=positions,
        masked_lm_labels=labels,
        next_sentence_label=torch.randint(0, 2, (sequences,), generator=g),
    ), original


def test_mask_mix_is_parsed_as_percentages_and_bad_ones_are_refused():
    assert parse_mask_mix("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_mask_mix("0/0/100") == pytest.approx((0.0, 0.0, 1.0))
    for bad in ("80/10", "80/10/20", "a/b/c", "-10/60/50", ""):
        with pytest.raises(ValueError, match="MASK/SAME/RND"):
            parse_mask_mix(bad)


def test_restore_gives_back_every_original_token():
    batch, original = masked_batch()
    assert torch.equal(restore_tokens(batch), original)


@pytest.mark.parametrize("mix", ["100/0/0", "0/0/100", "80/0/20", "0/20/80", "80/10/10"])
def test_remix_replaces_the_chosen_tokens_in_the_asked_shares(mix):
    batch, original = masked_batch(sequences=400)
    shares = parse_mask_mix(mix)
    tables = MaskingVocab.from_tokens(TOKENS)
    out = remix(batch, shares, tables, batch_generator(1, 2))
    used = batch.masked_lm_labels != IGNORE_INDEX
    rows = torch.arange(len(used)).unsqueeze(1).expand_as(used)[used]
    cols = batch.masked_lm_positions[used]
    got = out.input_ids[rows, cols]
    n = len(got)
    masked = (got == MASK_ID).float().mean().item()
    same = (got == original[rows, cols]).float().mean().item()
    # A random token equals the original 1 time in 94: the "same" share includes those.
    random_share = 1.0 - masked - same
    assert masked == pytest.approx(shares[0], abs=4 / n**0.5)
    assert random_share == pytest.approx(shares[2] * 93 / 94, abs=4 / n**0.5)
    # Only chosen positions change; random tokens are ordinary ones; labels stay.
    untouched = torch.ones_like(original, dtype=torch.bool)
    untouched[rows, cols] = False
    assert torch.equal(out.input_ids[untouched], original[untouched])
    assert not torch.isin(got, torch.tensor([0, 1, 2, 3, 5])).any()
    assert torch.equal(out.masked_lm_labels, batch.masked_lm_labels)
    # The same generator seed, the same batch: resumed runs see the same masks.
    again = remix(batch, shares, tables, batch_generator(1, 2))
    assert torch.equal(again.input_ids, out.input_ids)


def test_left_to_right_predicts_every_next_real_token():
    batch, original = masked_batch()
    out = left_to_right(batch)
    assert torch.equal(out.input_ids, original)
    B, T = original.shape
    assert out.masked_lm_positions.shape == (B, T - 1)
    for b in range(B):
        n = int(batch.attention_mask[b].sum())
        labels = out.masked_lm_labels[b]
        assert torch.equal(labels[: n - 1], original[b, 1:n])
        assert (labels[n - 1 :] == IGNORE_INDEX).all()
        assert torch.equal(out.masked_lm_positions[b, : n - 1], torch.arange(n - 1))


def test_causal_model_sees_only_the_left_and_matches_transformers():
    config = bert_tiny(vocab_size=100, is_decoder=True)
    torch.manual_seed(0)
    ours = BertForPreTraining(config).eval()
    hf_config = transformers.BertConfig(
        **{k: v for k, v in config_to_hf(config).items() if k not in ("architectures", "dtype")}
    )
    theirs = transformers.BertForPreTraining(hf_config).eval()
    theirs.load_state_dict(to_hf_state_dict(ours), strict=False)
    ids = torch.randint(5, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    with torch.no_grad():
        out = ours.bert(ids, attention_mask=mask)
        ref = theirs.bert(ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        assert torch.allclose(out.last_hidden_state[real], ref[real], atol=1e-5)
        changed = ids.clone()
        changed[0, 7] = 6
        after = ours.bert(changed, attention_mask=mask).last_hidden_state
        assert torch.equal(after[0, :7], out.last_hidden_state[0, :7])
        assert not torch.allclose(after[0, 7:], out.last_hidden_state[0, 7:])
        # The pooled vector is the last real token's: the only one that saw the whole input.
        last = torch.tensor([11, 7, 4])
        pooled = ours.bert.pooler.dense(out.last_hidden_state[torch.arange(3), last]).tanh()
        assert torch.allclose(out.pooled_output, pooled, atol=1e-6)
        unpadded = ours.bert(
            ids, attention_mask=mask, unpadding=Unpadding.from_attention_mask(mask)
        )
        assert torch.allclose(unpadded.pooled_output, out.pooled_output, atol=1e-6)
    bidirectional = BertModel(bert_tiny(vocab_size=100)).eval()
    with torch.no_grad():
        a = bidirectional(ids, attention_mask=mask).last_hidden_state
        b = bidirectional(changed, attention_mask=mask).last_hidden_state
    assert not torch.allclose(a[0, :7], b[0, :7])  # the encoder sees both sides


def test_without_nsp_the_loss_is_the_mlm_loss_and_nsp_gets_no_gradient():
    torch.manual_seed(0)
    model = BertForPreTraining(bert_tiny(vocab_size=100))
    batch, _ = masked_batch(sequences=8)
    out = model.pretraining_loss(**batch.as_dict(), nsp=False)
    assert torch.equal(out.loss, out.mlm_loss) and out.nsp_loss > 0
    out.loss.backward()
    assert (
        model.heads.seq_relationship.weight.grad.abs().max() == 0
    )  # present (DDP needs it), but zero
    model.zero_grad()
    both = model.pretraining_loss(**batch.as_dict())
    assert torch.allclose(both.loss, both.mlm_loss + both.nsp_loss)
    both.loss.backward()
    assert model.heads.seq_relationship.weight.grad.abs().max() > 0


def test_objective_refuses_a_mix_without_a_vocabulary():
    with pytest.raises(ValueError, match="vocabulary"):
        Objective(ObjectiveConfig(mask_mix="100/0/0"))


def _run(sample_data, tmp_path, *overrides):  # noqa: F811
    config = tiny_config(
        sample_data.pretraining,
        tmp_path,
        40,
        "--phase=1",
        "--set=log.every=10",
        "--set=eval.every=20",
        "--set=checkpoint.every=20",
        f"--vocab={sample_data.vocab}",
        *overrides,
    )
    train(config)
    return read_metrics(tmp_path / "metrics.jsonl")


def test_trainer_runs_each_ablation_objective_on_the_sample(sample_data, tmp_path):  # noqa: F811
    base = _run(sample_data, tmp_path / "base")
    no_nsp = _run(sample_data, tmp_path / "no-nsp", "--set=objective.nsp=false")
    ltr = _run(
        sample_data, tmp_path / "ltr", "--set=objective.name=ltr", "--set=objective.nsp=false"
    )
    remixed = _run(sample_data, tmp_path / "mix", "--set=objective.mask_mix=0/0/100")

    def last(records, event):
        return [r for r in records if r["event"] == event][-1]

    # Without NSP the evaluated loss is the MLM loss; with it, their sum.
    e = last(base, "eval")
    assert e["loss"] == pytest.approx(e["mlm_loss"] + e["nsp_loss"])
    e = last(no_nsp, "eval")
    assert e["loss"] == pytest.approx(e["mlm_loss"])
    assert "nsp_accuracy" not in last(no_nsp, "health")
    # LTR predicts every next token: far more predictions per sequence than the 10 masked.
    base_train = last(base, "train")
    e_ltr = last(ltr, "eval")
    assert e_ltr["loss"] == pytest.approx(e_ltr["mlm_loss"])
    config = json.loads((tmp_path / "ltr" / "phase1" / "config.json").read_text())
    assert config["is_decoder"] is True
    model, report = load_hf_checkpoint(tmp_path / "ltr" / "phase1", for_pretraining=True)
    assert model.config.is_decoder and report.missing_keys == ()
    base_config = json.loads((tmp_path / "base" / "phase1" / "config.json").read_text())
    assert base_config["is_decoder"] is False
    # A mix of 0/0/100 never shows [MASK]: the data's own masks are replaced, so training
    # differs from the base run from the first step on.
    assert last(remixed, "train")["mlm_loss"] != pytest.approx(base_train["mlm_loss"])
    assert all(r["step"] for r in remixed if r["event"] == "eval")
    # The same arm twice gives the same curve (the redraw is seeded).
    again = _run(sample_data, tmp_path / "mix-again", "--set=objective.mask_mix=0/0/100")
    strip = {"tokens_per_s", "sequences_per_s", "step_time_s", "elapsed_s", "time"}
    keep = ("train", "eval")
    assert [
        {k: v for k, v in r.items() if k not in strip} for r in remixed if r["event"] in keep
    ] == [{k: v for k, v in r.items() if k not in strip} for r in again if r["event"] in keep]
