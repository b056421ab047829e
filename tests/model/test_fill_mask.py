"""Fill-mask on a saved checkpoint: the pieces at each [MASK], and clear refusals."""

import torch

from model.bert import BertForPreTraining
from model.config import bert_tiny
from model.fill_mask import encode_with_masks, fill_mask, main
from model.hf_checkpoint import save_hf_checkpoint
from model.tasks.tokenize import load_tokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "a", "."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def checkpoint(tmp_path):
    torch.manual_seed(0)
    config = bert_tiny(vocab_size=len(VOCAB), hidden_size=32, num_attention_heads=2,
                       intermediate_size=64)  # fmt: skip
    model = BertForPreTraining(config)
    vocab = ("\n".join(VOCAB) + "\n").encode()
    return save_hf_checkpoint(model, tmp_path / "ckpt", {"vocab.txt": vocab}), model


def test_each_mask_gets_its_top_pieces_from_the_mlm_head(tmp_path, capsys):
    directory, model = checkpoint(tmp_path)
    tokenizer = load_tokenizer(directory)
    ids = encode_with_masks(tokenizer, "the [MASK] sat on the [MASK] .", 512)
    assert [VOCAB[i] for i in ids] == ["[CLS]", "the", "[MASK]", "sat", "on", "the", "[MASK]",
                                       ".", "[SEP]"]  # fmt: skip
    (first, second) = fill_mask(model, tokenizer, ["the [MASK] sat on the [MASK] ."], top_k=3)
    # The head's own distribution at each masked position, ranked.
    out = model.eval()(torch.tensor([ids]), masked_lm_positions=torch.tensor([[2, 6]]))
    for prediction, row in zip((first, second), out.mlm_logits[0].softmax(-1), strict=True):
        top = row.topk(3)
        assert prediction.pieces == [VOCAB[i] for i in top.indices.tolist()]
        torch.testing.assert_close(torch.tensor(prediction.probabilities), top.values)
    assert main(["--checkpoint", str(directory), "--top-k", "2", "a [MASK] ran ."]) == 0
    printed = capsys.readouterr().out
    assert "a [MASK] ran .\n  [MASK] 1: " in printed and printed.count(", ") == 1


def test_text_without_a_mask_and_a_checkpoint_without_an_mlm_head_are_named(
    tmp_path, capsys, minilm_dir
):
    directory, _ = checkpoint(tmp_path)
    assert main(["--checkpoint", str(directory), "no mask here"]) == 2
    assert "no [MASK] in 'no mask here'" in capsys.readouterr().err
    # all-MiniLM-L6-v2 is an encoder only: its MLM head would be random.
    assert main(["--checkpoint", str(minilm_dir), "the [MASK] is red."]) == 0
    assert "warning: the checkpoint has no MLM head" in capsys.readouterr().out
