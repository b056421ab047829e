"""Pretraining throughput: our trainer against transformers.BertForPreTraining, same batches.

    .venv/bin/python bench/pretrain.py --data out/pretraining   # GPU: base-128 base-512 large-128
    .venv/bin/python bench/pretrain.py                          # CPU: tiny-128, synthetic shards

For each case (model size, sequence length, micro-batch), the same micro-batches, read from
pretraining shards by our loader (model/shard_loader.py) and kept on the device, go through
- ours: model/bert.py with unpadding and the static-shape loss, bf16 autocast, fused AdamW,
  torch.compile on GPU (model/parallelize.py, model/optim.py): the trainer's own step;
- ours-padded: the same with runtime.unpad off (every layer also runs on the padding);
- hf: transformers.BertForPreTraining (SDPA attention), bf16 autocast, fused AdamW;
- hf-compiled: the same model, torch.compile'd;
- the objectives after BERT (docs/objectives.md), each our step with its model: albert (E=128,
  one shared layer), spanbert (the span-boundary head beside MLM, no NSP) and electra (a
  generator 1/4 as wide and the discriminator, no NSP). Their ratio to `ours` is the
  objective's cost per step; their TFLOP/s and MFU count BERT's work only.
A timed step is forward, backward, gradient clipping and the optimizer step. Model FLOPs count
the useful work only, the same for every contestant: the encoder on the real tokens, attention
over the real lengths, the MLM head on the masked tokens and the NSP head, times 3 for forward
and backward. MFU divides model TFLOP/s by a matrix-product peak measured in the same run
(bf16 on GPU, fp32 on CPU). Without --data, shards of random tokens in the real schema are
written to a temporary directory (model/synthetic_data.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.bert import IGNORE_INDEX  # noqa: E402
from model.config import PRESETS, BertConfig  # noqa: E402
from model.hf_checkpoint import config_to_hf  # noqa: E402
from model.optim import build_optimizer, clip_gradients  # noqa: E402
from model.parallelize import (  # noqa: E402
    Distributed,
    autocast,
    mark_dynamic_tokens,
    parallelize,
)
from model.pretraining_batch import PretrainingShards  # noqa: E402
from model.pretraining_model import build_pretraining_model  # noqa: E402
from model.shard_loader import LoadedBatch, PretrainingStream, StreamSpec, train_loader  # noqa: E402
from model.synthetic_data import write_synthetic_pretraining_data  # noqa: E402
from model.train_config import ObjectiveConfig, OptimConfig  # noqa: E402

# name: (preset, sequence length, micro-batch); the GPU batches of the design's HF anchors.
CASES = {
    "base-128": ("bert_base", 128, 256),
    "base-512": ("bert_base", 512, 32),
    "large-128": ("bert_large", 128, 64),
    "tiny-128": ("bert_tiny", 128, 32),
    "mini-128": ("bert_mini", 128, 32),  # the small recipe's model and batch
}
GOALS = {"base-128": 6500, "base-512": 1400, "large-128": 1900}  # seq/s, docs/pretrain.md


@dataclass
class Result:
    case: str
    contestant: str
    sequences_per_s: float
    tokens_per_s: float
    tflops: float
    mfu: float
    error: str = ""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> float:
    """TFLOP/s of a large square matrix product: bf16 on GPU, fp32 on CPU."""
    n, dtype, reps = (
        (8192, torch.bfloat16, 50) if device.type == "cuda" else (1024, torch.float32, 10)
    )
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def model_flops(config: BertConfig, batch: LoadedBatch) -> float:
    """Useful forward + backward FLOPs of one micro-batch (see the module docstring)."""
    L, H, I, V = (  # noqa: E741
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    )
    lengths = batch.batch.attention_mask.sum(dim=1).double()
    tokens = float(lengths.sum())
    masked = float((batch.batch.masked_lm_labels != IGNORE_INDEX).sum())
    sequences = lengths.numel()
    dense = 2 * tokens * L * (4 * H * H + 2 * H * I)  # qkv, output projection, feed-forward
    attention = 2 * L * 2 * float((lengths**2).sum()) * H  # QK^T and attention x V
    heads = 2 * masked * (H * H + H * V) + 2 * sequences * (H * H + 2 * H)  # MLM, pooler + NSP
    return 3 * (dense + attention + heads)


def stream_spec(directory: str, batch_size: int) -> StreamSpec:
    """One stream over every shard of `directory`, as the trainer builds it, seed 0."""
    return StreamSpec(
        directory=directory,
        vocab_dir=None,
        shards=list(PretrainingShards(directory).manifest.shards),
        num_streams=1,
        streams=[0],
        micro_batch_size=batch_size,
        shuffle_buffer=10_000,
        seed=0,
        cache_dir=str(Path(tempfile.gettempdir()) / "bench-shard-cache"),
    )


def load_batches(directory: str, batch_size: int, count: int) -> list[LoadedBatch]:
    """`count` distinct micro-batches of our loader, from the start of the stream."""
    spec = stream_spec(directory, batch_size)
    stream = PretrainingStream(spec)
    return [stream.batch(step, 0) for step in range(count)]


def loader_rate(directory: str, batch_size: int, workers: int, count: int) -> float:
    """Sequences/s that our DataLoader (background workers) produces, excluding start-up."""
    spec = stream_spec(directory, batch_size)
    loader = iter(
        train_loader(spec, start_step=0, num_workers=workers, prefetch_factor=4, pin_memory=False)
    )
    for _ in range(max(2, workers)):
        next(loader)
    start = time.perf_counter()
    for _ in range(count):
        next(loader)
    return count * batch_size / (time.perf_counter() - start)


def our_step(
    config: BertConfig,
    device: torch.device,
    precision: str,
    compile: bool,
    unpad: bool = True,
    objective: ObjectiveConfig | None = None,
):
    torch.manual_seed(0)
    objective = objective or ObjectiveConfig()
    model = build_pretraining_model(config, objective).to(device)
    optimizer = build_optimizer(model, OptimConfig(), device)
    trained = parallelize(model, Distributed(0, 1, 0, device), compile=compile, nsp=objective.nsp)
    parameters = [p for p in model.parameters() if p.requires_grad]

    def step(loaded: LoadedBatch) -> None:
        token_index = loaded.token_index if unpad else None
        if compile and unpad:
            mark_dynamic_tokens(token_index)
        with autocast(device, precision):
            out = trained.loss_module(**loaded.batch.as_dict(), token_index=token_index)
        out.loss.backward()
        clip_gradients(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def hf_step(config: BertConfig, device: torch.device, precision: str, compile: bool):
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**config_to_hf(config))
    model = transformers.AutoModelForPreTraining.from_config(
        hf_config, attn_implementation="sdpa"
    ).to(device)
    optimizer = build_optimizer(model, OptimConfig(), device)
    forward = torch.compile(model) if compile else model
    parameters = list(model.parameters())
    labels: dict[int, torch.Tensor] = {}

    def step(loaded: LoadedBatch) -> None:
        batch = loaded.batch
        if id(batch) not in labels:  # HF takes (B, T) labels; made once, outside the timing
            labels[id(batch)] = batch.token_labels()
        with autocast(device, precision):
            out = forward(
                input_ids=batch.input_ids,
                token_type_ids=batch.token_type_ids,
                attention_mask=batch.attention_mask.long(),
                labels=labels[id(batch)],
                next_sentence_label=batch.next_sentence_label,
            )
        out.loss.backward()
        clip_gradients(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(
    make_step: Callable,
    batches: list[LoadedBatch],
    *,
    warmup: int,
    steps: int,
    device: torch.device,
) -> float:
    step = make_step()
    for i in range(warmup):
        step(batches[i % len(batches)])
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize(device)
    return time.perf_counter() - start


def run_case(name: str, args, device: torch.device, precision: str, peak: float) -> list[Result]:
    preset, seq_length, batch_size = CASES[name]
    batch_size = args.batch_size or batch_size
    directory = f"{args.data}/seq{seq_length}"
    shards = PretrainingShards(directory)
    config = PRESETS[preset](
        vocab_size=int(shards.config["vocab_size"]), pad_token_id=shards.pad_id
    )
    batches = [
        LoadedBatch(b.step, b.micro_step, b.batch.to(device), b.token_index.to(device))
        for b in load_batches(directory, batch_size, args.batches)
    ]
    flops_per_step = sum(model_flops(config, b) for b in batches) / len(batches)
    tokens_per_step = sum(b.token_index.numel() for b in batches) / len(batches)
    compile_ours = device.type == "cuda" or args.compile
    contestants = {
        "ours": lambda: our_step(config, device, precision, compile_ours),
        "ours-padded": lambda: our_step(config, device, precision, compile_ours, unpad=False),
        "hf": lambda: hf_step(config, device, precision, False),
        "hf-compiled": lambda: hf_step(config, device, precision, True),
        # bf16 autocast whatever the device: on a CPU with AVX512-BF16 or AMX, what the
        # trainer's runtime.precision=fast picks (the small recipe, docs/recipes.md)
        "ours-bf16": lambda: our_step(config, device, "bf16", compile_ours),
        "hf-bf16": lambda: hf_step(config, device, "bf16", False),
        "albert": lambda: our_step(
            dataclasses.replace(config, embedding_size=128, share_layers=True),
            device, precision, compile_ours,
        ),
        "spanbert": lambda: our_step(
            config, device, precision, compile_ours,
            objective=ObjectiveConfig(nsp=False, span_boundary=True),
        ),
        "electra": lambda: our_step(
            config, device, precision, compile_ours,
            objective=ObjectiveConfig(name="electra", nsp=False),
        ),
    }  # fmt: skip
    results = []
    for contestant in args.contestants:
        try:
            elapsed = measure(
                contestants[contestant],
                batches,
                warmup=args.warmup,
                steps=args.steps,
                device=device,
            )
            tflops = flops_per_step * args.steps / elapsed / 1e12
            results.append(
                Result(
                    name,
                    contestant,
                    batch_size * args.steps / elapsed,
                    tokens_per_step * args.steps / elapsed,
                    tflops,
                    tflops / peak,
                )
            )
        except torch.OutOfMemoryError as err:
            results.append(Result(name, contestant, 0, 0, 0, 0, f"out of memory: {err}"[:200]))
        finally:
            gc.collect()
            torch._dynamo.reset()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(format_result(results[-1]), flush=True)
    return results


def format_result(r: Result) -> str:
    if r.error:
        return f"| {r.case} | {r.contestant} | {r.error} | | | |"
    return (
        f"| {r.case} | {r.contestant} | {r.sequences_per_s:,.1f} | {r.tokens_per_s:,.0f} "
        f"| {r.tflops:.3f} | {100 * r.mfu:.1f}% |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", help="pretraining output dir (seq128/, seq512/); default: synthetic"
    )
    parser.add_argument("--cases", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument(
        "--contestants",
        default="ours,ours-padded,hf,hf-compiled",
        help="of ours, ours-padded, hf, hf-compiled, ours-bf16, hf-bf16, and the objectives "
        "albert, spanbert, electra (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=0, help="micro-batch of every case")
    parser.add_argument("--batches", type=int, default=8, help="distinct batches, cycled")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps")
    parser.add_argument("--compile", action="store_true", help="compile ours on CPU too")
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    precision = "bf16" if gpu else "fp32"
    args.cases = (args.cases or ("base-128,base-512,large-128" if gpu else "tiny-128")).split(",")
    args.contestants = args.contestants.split(",")
    args.warmup = args.warmup or (10 if gpu else 2)
    args.steps = args.steps or (50 if gpu else 5)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        if not args.data:
            args.data = tmp
            for length in sorted({CASES[c][1] for c in args.cases}):
                batch = args.batch_size or max(CASES[c][2] for c in args.cases)
                write_synthetic_pretraining_data(
                    f"{tmp}/seq{length}",
                    num_examples=max(4096, batch * args.batches),
                    num_shards=4,
                    max_seq_length=length,
                    vocab_size=30522,
                )
        peak = matmul_peak(device)
        name = torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu"
        print(
            f"device: {name}; torch {torch.__version__}; {precision}; matrix-product peak "
            f"{peak:.3g} TFLOP/s; data: {args.data if args.data != tmp else 'synthetic'}"
        )
        results = []
        for case in args.cases:
            preset, length, batch = CASES[case]
            rate = loader_rate(
                f"{args.data}/seq{length}", args.batch_size or batch, args.loader_workers, 20
            )
            print(
                f"\n{case}: {preset}, {length} tokens, micro-batch {args.batch_size or batch}; "
                f"our loader with {args.loader_workers} workers: {rate:,.0f} sequences/s"
            )
            print("| case | contestant | sequences/s | tokens/s | model TFLOP/s | MFU |")
            print("|---|---|---|---|---|---|")
            results += run_case(case, args, device, precision, peak)
        print()
        for case in args.cases:
            by = {r.contestant: r for r in results if r.case == case and not r.error}
            if "ours" in by:
                ratios = ", ".join(
                    f"{by['ours'].sequences_per_s / r.sequences_per_s:.2f}x {name}"
                    for name, r in by.items()
                    if name != "ours"
                )
                goal = f"; goal {GOALS[case]:,} seq/s" if case in GOALS and gpu else ""
                print(f"{case}: ours {by['ours'].sequences_per_s:,.1f} seq/s = {ratios}{goal}")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {"peak_tflops": peak, "results": [r.__dict__ for r in results]}, indent=2
                )
            )


if __name__ == "__main__":
    main()
