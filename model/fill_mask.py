"""Fill-mask: what a pretrained checkpoint predicts for each [MASK] of a sentence.

    python -m model.fill_mask --checkpoint runs/small/model \
        "The [MASK] of the United States signed the treaty." "He opened the [MASK] and walked in."
    python -m model.fill_mask --checkpoint RUN/checkpoints/step-000000500 --vocab VOCAB_DIR "..."

The quickest look at whether pretraining taught a model anything: a collapsed or untrained
model predicts the same frequent pieces (`, the . of`) for every sentence; a model that learned
predicts pieces that fit each context. Prints the top-k pieces with their probabilities.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bertdata.options import command_parser
from model.bert import BertForPreTraining
from model.hf_checkpoint import load_hf_checkpoint
from model.tasks.tokenize import MASK, CheckpointTokenizer, TokenizerError, load_tokenizer

MASK_TEXT = "[MASK]"


@dataclass(frozen=True)
class Prediction:
    """The top pieces for one [MASK] of one sentence."""

    text: str
    mask_index: int  # which [MASK] of the sentence, from 0
    pieces: list[str]
    probabilities: list[float]


def encode_with_masks(tokenizer: CheckpointTokenizer, text: str, max_length: int) -> list[int]:
    """[CLS] text [SEP] with each literal "[MASK]" as the mask id (the rest word-pieced)."""
    if MASK not in tokenizer.vocab:
        raise TokenizerError(f"{tokenizer.source}: has no {MASK} token")
    mask_id = tokenizer.vocab.index(MASK)
    parts = text.split(MASK_TEXT)
    if len(parts) < 2:
        raise ValueError(f"no {MASK_TEXT} in {text!r}")
    ids = [tokenizer.cls_id]
    for i, encoding in enumerate(tokenizer.encode_texts(parts)):
        if i:
            ids.append(mask_id)
        ids.extend(encoding.ids)
    ids.append(tokenizer.sep_id)
    if len(ids) > max_length:
        raise ValueError(f"{text!r} is {len(ids)} pieces, longer than the model's {max_length}")
    return ids


@torch.no_grad()
def fill_mask(
    model: BertForPreTraining, tokenizer: CheckpointTokenizer, texts: list[str], top_k: int = 5
) -> list[Prediction]:
    """The top_k pieces and probabilities for every [MASK] of every text (eval mode)."""
    model.eval()
    mask_id = tokenizer.vocab.index(MASK)
    device = next(model.parameters()).device
    predictions = []
    for text in texts:
        ids = encode_with_masks(tokenizer, text, model.config.max_position_embeddings)
        input_ids = torch.tensor([ids], device=device)  # (1, T)
        positions = (input_ids[0] == mask_id).nonzero().squeeze(1)  # (M,)
        out = model(input_ids, masked_lm_positions=positions.unsqueeze(0))
        probabilities = out.mlm_logits[0].softmax(dim=-1)  # (M, V)
        top = probabilities.topk(top_k, dim=-1)
        for m in range(positions.numel()):
            predictions.append(
                Prediction(
                    text=text,
                    mask_index=m,
                    pieces=[tokenizer.vocab[i] for i in top.indices[m].tolist()],
                    probabilities=top.values[m].tolist(),
                )
            )
    return predictions


def probe_records(
    model: BertForPreTraining, vocab_dir: Path, texts: list[str], top_k: int = 5
) -> list[dict[str, object]]:
    """fill_mask's predictions as JSON records, for a training run's log; leaves the model in
    the mode it found it in."""
    tokenizer = load_tokenizer(vocab_dir, vocab_size=model.config.vocab_size)
    training = model.training
    try:
        predictions = fill_mask(model, tokenizer, texts, top_k)
    finally:
        model.train(training)
    return [
        {
            "text": p.text,
            "mask": p.mask_index,
            "pieces": p.pieces,
            "probabilities": [round(x, 4) for x in p.probabilities],
        }
        for p in predictions
    ]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m model.fill_mask", __doc__)
    parser.add_argument("texts", nargs="+", help='sentences with one or more "[MASK]"')
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a pretraining export or checkpoint (config.json, model.safetensors, vocab.txt)",
    )
    parser.add_argument(
        "--vocab",
        type=Path,
        default=None,
        help="the folder of its vocab.txt, when the checkpoint has none (training checkpoints); "
        "default: the checkpoint",
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="pieces shown per [MASK] (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        loaded = load_hf_checkpoint(args.checkpoint, for_pretraining=True)
        vocab = args.vocab or args.checkpoint
        tokenizer = load_tokenizer(vocab, vocab_size=loaded.model.config.vocab_size)
        predictions = fill_mask(loaded.model, tokenizer, args.texts, args.top_k)
    except (TokenizerError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if any("heads" in key for key in loaded.report.missing_keys):
        print("warning: the checkpoint has no MLM head; predictions are from random weights")
    for p in predictions:
        shown = ", ".join(
            f"{piece} {prob:.2f}" for piece, prob in zip(p.pieces, p.probabilities, strict=True)
        )
        print(f"{p.text}\n  [MASK] {p.mask_index + 1}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
