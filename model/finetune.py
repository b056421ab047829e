"""Fine-tune a checkpoint on one task: grid search on dev, several seeds, scores next to the paper's.

    python -m model.finetune --task mrpc --data glue_data/MRPC --checkpoint CKPT --output out/mrpc \
        [--grid paper | --grid "lr=5e-5,3e-5 batch=32 epochs=3"] [--seeds 0,1,2] [--init random]

CKPT is a Hugging Face-format directory (config.json + model.safetensors) with the vocab.txt
of its tokenizer: one of ours, an imported BERT, or a fine-tuned model of this module (e.g.
MNLI, to start RTE, MRPC or STS-B from it). Every configuration of the grid is trained once
per seed; the configuration with the best mean dev score wins, and its best seed is saved.
`--init random` keeps CKPT's architecture and vocabulary but starts each run from fresh weights
drawn from its seed, the baseline that shows what pretraining buys (model/inits.py).

OUTPUT/
  model/             the saved model (transformers' BertFor* layout; also a checkpoint here)
  dev_predictions/   that model's predictions on each dev split
  test_predictions/  its predictions on the test files present, in submission format
  scores.json        every run's dev scores, the selection, mean and std over seeds, the paper's
  results.md         our dev scores next to the paper's numbers
A re-run removes the old scores, table and predictions before it writes its model, and writes
the scores last: an output with scores.json is a finished run's. One run per OUTPUT at a time
(bertdata/output_lock.py).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bertdata.options import add_arguments, check, chosen, command_parser, option
from bertdata.output_lock import output_lock
from bertdata.paths import write_atomic
from model.bert import BertModel
from model.command_line import command_line
from model.config import BertConfig
from model.heads import (
    build_task_model,
    load_encoder,
    load_task_model,
    read_task_info,
    save_task_model,
)
from model.hf_checkpoint import read_hf_config
from model.inits import (
    DEFAULT_INIT,
    INITS,
    Init,
    compare_inits,
    comparison_table,
    format_score,
    init_of,
    pair_inits,
)
from model.metrics_log import format_duration
from model.paper_results import FINE_TUNED, paper_results
from model.parallelize import resolve_precision
from model.tasks import TASKS, get_task, task_name
from model.tasks.base import PAPER_GRID, DataError, Encoded, Grid, SplitData, TaskProcessor
from model.tasks.tokenize import CheckpointTokenizer, TokenizerError, load_tokenizer

logger = logging.getLogger(__name__)

SCORES_NAME = "scores.json"
RESULTS_NAME = "results.md"


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Optimizer and loop settings shared by every run of a grid; each is an option of the
    command line and of the flows' `finetune` section (bertdata/options.py)."""

    warmup_proportion: float = option(
        0.1, "share of the steps of linear warm-up of the learning rate", ge=0.0, le=1.0
    )
    weight_decay: float = option(
        0.01, "AdamW decoupled weight decay, never on biases and LayerNorm weights", ge=0.0
    )
    adam_epsilon: float = option(
        1e-6, "AdamW epsilon (google-research/bert's; PyTorch's default is 1e-8)", gt=0.0
    )
    max_grad_norm: float = option(
        1.0, "clip the global gradient norm to this, as google-research/bert does", gt=0.0
    )
    eval_batch_size: int = option(64, "examples per forward pass when predicting", ge=1)
    log_every: int = option(50, "optimizer steps between log lines", ge=1)
    # A model pretrained without dropout (the small recipe) is fine-tuned with BERT's 0.1.
    dropout: float | None = option(
        None,
        "hidden and attention dropout while fine-tuning; none: the checkpoint's config.json "
        "(BERT's is 0.1)",
        ge=0.0,
        lt=1.0,
    )


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One fine-tuning run: a point of the grid and a seed."""

    learning_rate: float
    batch_size: int
    epochs: int
    seed: int  # seeds the head's initialisation, dropout and the data order


@dataclass(frozen=True)
class Placement:
    """Where and in which precision the model runs."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # bf16 on GPU; None: float32 throughout
    length_multiple: int  # batches are cut to a multiple of this length (8 suits tensor cores)
    compile: bool  # torch.compile the model

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def precision(self) -> str:
        return (
            "float32"
            if self.autocast_dtype is None
            else str(self.autocast_dtype).removeprefix("torch.")
        )


def resolve_placement(
    device: str = "auto", precision: str = "auto", compile: bool = False
) -> Placement:
    """GPU with bf16 autocast when there is one; otherwise CPU in float32 ('fast': bf16 also on
    a CPU that computes it natively)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if precision not in ("auto", "fast", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, fast, bf16 or fp32, got {precision!r}")
    precision = resolve_precision(precision, target)
    if target.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Placement(
        device=target,
        autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
        length_multiple=8 if target.type == "cuda" else 1,
        compile=compile,
    )


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on biases and LayerNorm (as in BERT)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = name.endswith(".bias") or "layer_norm" in name or parameter.dim() < 2
        (no_decay if exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def linear_warmup_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of step s: rises linearly to 1 over warm-up, then falls to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def to_device(batch: dict[str, Tensor | None], device: torch.device) -> dict[str, Tensor | None]:
    return {
        k: (v.to(device, non_blocking=True) if v is not None else None) for k, v in batch.items()
    }


def train(
    model: nn.Module,
    data: Encoded,
    run: RunConfig,
    settings: TrainSettings,
    placement: Placement,
) -> dict[str, float]:
    """Fine-tune `model` in place; returns the mean loss of the last epoch, steps and speed."""
    if not data.targets:
        raise ValueError("the training split has no targets")
    model.train()
    n = len(data)
    steps_per_epoch = math.ceil(n / run.batch_size)
    total_steps = steps_per_epoch * run.epochs
    warmup_steps = int(total_steps * settings.warmup_proportion)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, settings.weight_decay),
        lr=run.learning_rate,
        betas=(0.9, 0.999),
        eps=settings.adam_epsilon,
        # The fused kernel also exists on CPU, where it is several times faster than the loop.
        fused=placement.device.type in ("cuda", "cpu"),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, warmup_steps)
    )
    step_fn = torch.compile(model) if placement.compile else model
    generator = torch.Generator().manual_seed(run.seed)
    step = 0
    epoch_loss = torch.zeros((), device=placement.device)
    started = time.perf_counter()
    for epoch in range(run.epochs):
        order = torch.randperm(n, generator=generator)
        epoch_loss.zero_()
        for first in range(0, n, run.batch_size):
            index = order[first : first + run.batch_size]
            batch = data.batch(index, with_targets=True, length_multiple=placement.length_multiple)
            with placement.autocast():
                loss = step_fn(**to_device(batch, placement.device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss += loss.detach()
            step += 1
            if step % settings.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - started
                logger.info(
                    "epoch %d step %d/%d loss %.4f lr %.2e | %.1f steps/s | eta %s",
                    epoch + 1,
                    step,
                    total_steps,
                    loss.item(),
                    schedule.get_last_lr()[0],
                    step / elapsed,
                    format_duration(elapsed / step * (total_steps - step)),
                )
    if placement.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "train_loss": float(epoch_loss) / steps_per_epoch,
        "steps": step,
        "train_seconds": seconds,
        "train_examples_per_second": n * run.epochs / seconds if seconds > 0 else math.inf,
    }


@torch.no_grad()
def predict_logits(
    model: nn.Module, data: Encoded, batch_size: int, placement: Placement
) -> Tensor:
    """Float32 logits of every feature, in order; per-token outputs padded back to full length."""
    was_training = model.training
    model.eval()
    full_length = data.inputs["input_ids"].size(-1)
    outputs = []
    for first in range(0, len(data), batch_size):
        index = torch.arange(first, min(first + batch_size, len(data)))
        batch = data.batch(index, with_targets=False, length_multiple=placement.length_multiple)
        with placement.autocast():
            logits = model(**to_device(batch, placement.device)).logits.float().cpu()
        if logits.dim() >= 3 and logits.size(1) < full_length:  # (B, T, ...) cut to the batch
            pad = logits.new_full(
                (logits.size(0), full_length - logits.size(1), *logits.shape[2:]), -math.inf
            )
            logits = torch.cat([logits, pad], dim=1)
        outputs.append(logits)
    model.train(was_training)
    return torch.cat(outputs)


@dataclass
class SplitSet:
    """The read and encoded splits of a task."""

    train: tuple[SplitData, Encoded] | None
    dev: dict[str, tuple[SplitData, Encoded]]
    test: dict[str, tuple[SplitData, Encoded]]

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, (split, encoded) in self.named():
            out[name] = {
                "source": split.source,
                "examples": len(split.examples),
                "features": len(encoded),
                "skipped": split.skipped,
                **({"notes": split.notes} if split.notes else {}),
                "encoding": encoded.stats,
            }
        return out

    def named(self) -> list[tuple[str, tuple[SplitData, Encoded]]]:
        items = [("train", self.train)] if self.train is not None else []
        return items + list(self.dev.items()) + list(self.test.items())


def read_splits(
    task: TaskProcessor,
    data_dir: Path,
    tokenizer: CheckpointTokenizer,
    max_seq_length: int,
    *,
    with_train: bool,
    with_test: bool,
    max_train_examples: int | None = None,
) -> SplitSet:
    """Read and encode train (first: custom tasks learn their label set there), dev and test."""
    train = None
    if with_train:
        split = task.read(data_dir, "train")
        if max_train_examples is not None:
            split.notes["examples_before_cut"] = len(split.examples)
            split.examples = split.examples[:max_train_examples]
        train = (split, task.encode(split, tokenizer, max_seq_length))
    dev = {}
    for name in task.dev_splits:
        split = task.read(data_dir, name)
        dev[name] = (split, task.encode(split, tokenizer, max_seq_length))
    test = {}
    if with_test:
        for name in task.test_splits:
            if task.split_path(data_dir, name) is None:
                continue
            split = task.read(data_dir, name)
            test[name] = (split, task.encode(split, tokenizer, max_seq_length))
    splits = SplitSet(train, dev, test)
    for _, (split, _) in splits.named():
        if split.skipped:
            logger.warning("%s: skipped %s", split.source, split.skipped)
    return splits


def evaluate_splits(
    task: TaskProcessor,
    model: nn.Module,
    splits: dict[str, tuple[SplitData, Encoded]],
    settings: TrainSettings,
    placement: Placement,
) -> tuple[dict[str, float], dict[str, list]]:
    """Scores ("split/metric") of the labelled splits, and the predictions of every split."""
    scores: dict[str, float] = {}
    predictions: dict[str, list] = {}
    for name, (split, encoded) in splits.items():
        logits = predict_logits(model, encoded, settings.eval_batch_size, placement)
        predictions[name] = task.predict(split, encoded, logits)
        if split.has_labels:
            for metric, value in task.score(split, predictions[name]).items():
                scores[f"{name}/{metric}"] = value
    return scores, predictions


def parse_grid(text: str | None, default: Grid) -> Grid:
    """ "paper", "default", or "lr=5e-5,3e-5 batch=16,32 epochs=2,3,4" (absent keys: default)."""
    if text is None or text.strip() == "default":
        return default
    if text.strip() == "paper":
        return PAPER_GRID
    keys = {
        "lr": "learning_rates",
        "learning_rate": "learning_rates",
        "batch": "batch_sizes",
        "batch_size": "batch_sizes",
        "epochs": "epochs",
    }
    values: dict[str, tuple] = {}
    for part in text.replace(";", " ").split():
        key, _, listed = part.partition("=")
        if key not in keys or not listed:
            raise ValueError(f"grid part {part!r}: use lr=..., batch=..., epochs=... (comma lists)")
        convert = float if keys[key] == "learning_rates" else int
        try:
            values[keys[key]] = tuple(convert(v) for v in listed.split(","))
        except ValueError:
            raise ValueError(f"grid part {part!r}: not a list of numbers") from None
    return Grid(**(asdict(default) | values))


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" -> (0, 1, 2)."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(
            f"seeds must be a comma-separated list of integers, got {text!r}"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {text!r}")
    return seeds


def _finite_or_none(value: float) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _summary(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds; None where a value is undefined (NaN)."""
    mean = std = None
    if values and all(math.isfinite(v) for v in values):
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": [_finite_or_none(v) for v in values]}


def _rank(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


@dataclass(kw_only=True)
class FineTuneJob:
    """A whole fine-tuning job: task, data, checkpoint, grid and where the results go."""

    task: TaskProcessor
    data_dir: Path  # the task's files as the benchmark distributes them
    checkpoint: Path  # HF-format directory with vocab.txt
    output_dir: Path
    grid: Grid | None = None  # None: the task's default (the paper's grid or settings)
    seeds: tuple[int, ...] = (0,)  # each configuration is trained once per seed
    max_seq_length: int | None = None  # None: the task's default (128, SQuAD 384)
    settings: TrainSettings = field(default_factory=TrainSettings)
    placement: Placement = field(default_factory=resolve_placement)
    predict_test: bool = True  # predict the test files that are present
    max_train_examples: int | None = None  # keep only the first N training examples
    select_metric: str | None = None  # "split/metric" to maximise; None: the task's primary
    init: Init = DEFAULT_INIT  # "random": the checkpoint's config and vocabulary, fresh weights


@dataclass(frozen=True)
class EncoderStart:
    """Where each run's encoder comes from: the checkpoint's weights, or fresh ones of its shape."""

    init: Init
    config: BertConfig  # the checkpoint's architecture
    pretrained: BertModel | None  # the loaded encoder; None for a random init
    missing_keys: tuple[str, ...]  # encoder parameters the checkpoint lacked (the pooler)

    def encoder(self) -> BertModel:
        """A new encoder for one run; a random one is drawn from torch's seed, as a new model's."""
        if self.pretrained is not None:
            return copy.deepcopy(self.pretrained)
        return BertModel(self.config)


def encoder_start(checkpoint: Path, init: str, dropout: float | None = None) -> EncoderStart:
    """The checkpoint's encoder (`pretrained`), or only its config (`random`: weights unread);
    with `dropout`, that hidden and attention dropout instead of the config's."""
    rates = {}
    if dropout is not None:  # BertConfig.validate checks the range
        rates = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    if init == "pretrained":
        pretrained, report = load_encoder(checkpoint, **rates)
        return EncoderStart(init, pretrained.config, pretrained, report.missing_keys)
    if init == "random":
        config = dataclasses.replace(read_hf_config(checkpoint), **rates)
        config.validate()
        return EncoderStart(init, config, None, ())
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def checkpoint_tokenizer(
    checkpoint: Path, max_seq_length: int, config: BertConfig
) -> CheckpointTokenizer:
    """The checkpoint's tokenizer, checked against the model's config and the sequence length."""
    tokenizer = load_tokenizer(checkpoint, vocab_size=config.vocab_size)
    if tokenizer.pad_id != config.pad_token_id:
        raise TokenizerError(
            f"{tokenizer.source}: [PAD] has id {tokenizer.pad_id} but config.json's pad_token_id "
            f"is {config.pad_token_id}"
        )
    if max_seq_length > config.max_position_embeddings:
        raise ValueError(
            f"max_seq_length {max_seq_length} exceeds the model's max_position_embeddings "
            f"{config.max_position_embeddings}"
        )
    return tokenizer


def starting_task(job: FineTuneJob, start: EncoderStart) -> str | None:
    """The task a checkpoint fine-tuned here was trained on (to start RTE from MNLI), or None."""
    if start.init == "random":
        logger.info(
            "%s: random init: %s's config and vocabulary only", job.task.name, job.checkpoint
        )
        return None
    try:
        start_task = read_task_info(job.checkpoint)["task"]
    except ValueError:  # a pretrained checkpoint
        return None
    logger.info("%s: starting from a model fine-tuned on %s", job.task.name, start_task)
    return start_task


def search_grid(
    job: FineTuneJob, grid: Grid, start: EncoderStart, splits: SplitSet, select: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train every configuration of the grid once per seed; returns every run's record and
    the configuration with the best mean `select` score on dev, with its best seed's weights."""
    task, placement = job.task, job.placement
    num_labels = max(len(task.labels), 1)
    _, train_data = splits.train
    if placement.device.type == "cuda":
        train_data = train_data.to(placement.device)
    runs: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None  # the winning configuration so far
    total_runs = len(list(grid.configurations())) * len(job.seeds)
    grid_started = time.perf_counter()
    for learning_rate, batch_size, epochs in grid.configurations():
        config_runs = []
        best_seed = None  # (score, state_dict, predictions, scores, seed) of this configuration
        for seed in job.seeds:
            run = RunConfig(
                learning_rate=learning_rate, batch_size=batch_size, epochs=epochs, seed=seed
            )
            done = len(runs)
            elapsed = time.perf_counter() - grid_started
            eta = format_duration(elapsed / done * (total_runs - done)) if done else "?"
            logger.info(
                "%s: run %d of %d (grid x seeds): %s | eta %s",
                task.name,
                done + 1,
                total_runs,
                run,
                eta,
            )
            torch.manual_seed(seed)  # a random init's encoder, the head, dropout
            model = build_task_model(task.head, start.encoder(), num_labels)
            model.to(placement.device)
            stats = train(model, train_data, run, job.settings, placement)
            scores, predictions = evaluate_splits(task, model, splits.dev, job.settings, placement)
            if select not in scores:
                raise ValueError(
                    f"selection metric {select!r} is not among the scores {sorted(scores)}"
                )
            logger.info("%s: %s -> %s", task.name, run, scores)
            record = (
                asdict(run) | {"scores": {k: _finite_or_none(v) for k, v in scores.items()}} | stats
            )
            runs.append(record)
            config_runs.append(scores)
            if best_seed is None or _rank(scores[select]) > _rank(best_seed[0]):
                state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best_seed = (scores[select], state, predictions, scores, seed)
            del model
        mean = statistics.fmean(_rank(s[select]) for s in config_runs)
        if best is None or mean > best["mean"]:
            best = {
                "mean": mean,
                "config": {
                    "learning_rate": learning_rate,
                    "batch_size": batch_size,
                    "epochs": epochs,
                },
                "runs": config_runs,
                "seed_state": best_seed,
            }
    assert best is not None  # a grid has at least one configuration and one seed
    return runs, best


def run_finetune(job: FineTuneJob) -> dict[str, Any]:
    """Run the grid, save the selected model and its predictions, write scores and the table."""
    task = job.task
    grid = job.grid or task.default_grid
    max_seq_length = job.max_seq_length or task.max_seq_length
    placement = job.placement
    start = encoder_start(job.checkpoint, job.init, job.settings.dropout)
    tokenizer = checkpoint_tokenizer(job.checkpoint, max_seq_length, start.config)
    splits = read_splits(
        task,
        job.data_dir,
        tokenizer,
        max_seq_length,
        with_train=True,
        with_test=job.predict_test,
        max_train_examples=job.max_train_examples,
    )
    select = job.select_metric or task.primary_metric
    start_task = starting_task(job, start)
    runs, best = search_grid(job, grid, start, splits, select)

    _, state, dev_predictions, saved_scores, saved_seed = best["seed_state"]
    model = build_task_model(task.head, start.encoder(), max(len(task.labels), 1))
    model.load_state_dict(state)
    model.to(placement.device)
    output = job.output_dir
    output.mkdir(parents=True, exist_ok=True)
    clear_results(output)
    save_task_model(
        model,
        output / "model",
        info=task.finetune_info() | {"max_seq_length": max_seq_length, "init": start.init},
        write_tokenizer=lambda directory: tokenizer.save(directory, max_length=max_seq_length),
    )
    prediction_files, test_scores = _write_predictions(
        task, splits, dev_predictions, model, job.settings, placement, output
    )

    metrics = sorted({k for r in best["runs"] for k in r})
    results = {
        "task": task.name,
        "display_name": task.display_name,
        "checkpoint": str(job.checkpoint),
        "init": start.init,
        "checkpoint_missing_keys": list(start.missing_keys),
        "checkpoint_task": start_task,
        "data_dir": str(job.data_dir),
        "max_seq_length": max_seq_length,
        "device": str(placement.device),
        "precision": placement.precision,
        "task_options": asdict(task.options),
        "train_settings": asdict(job.settings),
        "grid": asdict(grid),
        "seeds": list(job.seeds),
        "select_metric": select,
        "data": splits.stats(),
        "runs": runs,
        "selected": best["config"] | {"saved_seed": saved_seed},
        "dev": {m: _summary([r[m] for r in best["runs"]]) for m in metrics},
        "saved_model_scores": {k: _finite_or_none(v) for k, v in saved_scores.items()},
        "test": {k: _finite_or_none(v) for k, v in test_scores.items()},
        "files": {
            "model": str(output / "model"),
            "predictions": [str(p) for p in prediction_files],
        },
        "paper": [asdict(r) for r in paper_results(task.name, FINE_TUNED)],
    }
    write_results(results, output)
    return results


def _write_predictions(
    task: TaskProcessor,
    splits: SplitSet,
    dev_predictions: dict[str, list],
    model: nn.Module,
    settings: TrainSettings,
    placement: Placement,
    output: Path,
) -> tuple[list[Path], dict[str, float]]:
    """Write dev and test predictions; returns the files and the scores of labelled test files."""
    files = []
    for name, (split, _) in splits.dev.items():
        files += task.write_predictions(split, dev_predictions[name], output / "dev_predictions")
    test_scores, test_predictions = evaluate_splits(task, model, splits.test, settings, placement)
    for name, (split, _) in splits.test.items():
        files += task.write_predictions(split, test_predictions[name], output / "test_predictions")
    return files, test_scores


def evaluate_saved(
    model_dir: Path,
    data_dir: Path,
    output_dir: Path,
    *,
    task: TaskProcessor | None = None,
    settings: TrainSettings | None = None,
    placement: Placement | None = None,
    max_seq_length: int | None = None,
    predict_test: bool = True,
) -> dict[str, Any]:
    """Score a model saved by run_finetune on dev and predict the test files; no training."""
    settings = settings or TrainSettings()
    placement = placement or resolve_placement()
    info = read_task_info(model_dir)
    if task is None:
        task = get_task(info["task"], info.get("options", {}))
    elif task.name != info["task"]:
        raise ValueError(f"{model_dir} was fine-tuned for {info['task']}, not {task.name}")
    model, _ = load_task_model(model_dir)
    max_seq_length = max_seq_length or info.get("max_seq_length") or task.max_seq_length
    tokenizer = checkpoint_tokenizer(model_dir, max_seq_length, model.bert.config)
    splits = read_splits(
        task, data_dir, tokenizer, max_seq_length, with_train=False, with_test=predict_test
    )
    model.to(placement.device)
    scores, predictions = evaluate_splits(task, model, splits.dev, settings, placement)
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_results(output_dir)
    files, test_scores = _write_predictions(
        task, splits, predictions, model, settings, placement, output_dir
    )
    results = {
        "task": task.name,
        "display_name": task.display_name,
        "checkpoint": str(model_dir),
        "init": info.get("init", DEFAULT_INIT),  # how the evaluated model's fine-tuning started
        "data_dir": str(data_dir),
        "max_seq_length": max_seq_length,
        "device": str(placement.device),
        "precision": placement.precision,
        "task_options": asdict(task.options),
        "seeds": [],
        "select_metric": task.primary_metric,
        "data": splits.stats(),
        "runs": [],
        "selected": None,
        "dev": {k: _summary([v]) for k, v in scores.items()},
        "test": {k: _finite_or_none(v) for k, v in test_scores.items()},
        "files": {"model": str(model_dir), "predictions": [str(p) for p in files]},
        "paper": [asdict(r) for r in paper_results(task.name, FINE_TUNED)],
    }
    write_results(results, output_dir)
    return results


def clear_results(output_dir: Path) -> None:
    """Remove an earlier run's scores and predictions before anything new is written, scores
    first: a run killed after writing its model must not look finished with the scores of
    another model. scores.json and results.md are written last, so only a complete run has them."""
    for name in (SCORES_NAME, RESULTS_NAME):
        (output_dir / name).unlink(missing_ok=True)
    for name in ("dev_predictions", "test_predictions"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def write_results(results: dict[str, Any], output_dir: Path) -> None:
    """scores.json and results.md, each written atomically."""
    scores = json.dumps(results, indent=2, allow_nan=False) + "\n"
    write_atomic(output_dir / SCORES_NAME, scores.encode())
    write_atomic(output_dir / RESULTS_NAME, results_table([results]).encode())


def results_table(all_results: Sequence[dict[str, Any]]) -> str:
    """Markdown: each task's dev scores (mean ± std over seeds) next to the paper's numbers."""
    lines = [
        "| Task | Metric | Ours | Paper | Paper model | Paper split | Source |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for results in all_results:
        name = results.get("display_name", results["task"])
        if init_of(results) == "random":  # never to be read as a pretrained model's score
            name += " (random init)"
        paper = results.get("paper", [])
        for metric, summary in results["dev"].items():
            ours = format_score(summary["mean"], summary["std"], len(summary["values"]))
            matching = [p for p in paper if p["metric"] == metric]
            if not matching:
                lines.append(f"| {name} | {metric} | {ours} | — | — | — | — |")
            for p in matching:
                lines.append(
                    f"| {name} | {metric} | {ours} | {p['value']:.1f} | BERT-{p['model']} | "
                    f"{p['split']} | {p['source']} |"
                )
        for metric, value in results.get("test", {}).items():  # labelled test files (CoNLL)
            ours = "undefined" if value is None else f"{value:.2f}"
            lines.append(f"| {name} | {metric} | {ours} | — | — | — | — |")
        selected = results.get("selected")
        if selected:
            seeds = ", ".join(str(s) for s in results["seeds"])
            notes.append(
                f"- {name}: selected on {results['select_metric']}: learning rate "
                f"{selected['learning_rate']:g}, batch {selected['batch_size']}, "
                f"{selected['epochs']} epochs; seeds {seeds}; {_start(results)}; "
                f"{results['device']} {results['precision']}."
            )
        else:
            notes.append(f"- {name}: evaluated without training, model {results['checkpoint']}.")
    header = [
        "# Fine-tuning results",
        "",
        "Each metric is named split/metric; ours on dev are the mean ± sample standard deviation "
        "over seeds of the selected configuration. GLUE numbers from the paper (Table 1) are on "
        "the GLUE test sets, so they are not the same measurement; Table 5's BERT-base dev "
        "numbers are.",
        "",
    ]
    return "\n".join(header + lines + [""] + notes) + "\n"


def _start(results: dict[str, Any]) -> str:
    """Where the fine-tuning started, for a table's note."""
    if init_of(results) == "random":
        return f"random init (config and vocabulary of {results['checkpoint']}, fresh weights)"
    return f"checkpoint {results['checkpoint']}"


def summarize(output_dirs: Sequence[Path]) -> str:
    """One table over several jobs' scores.json files; given pretrained and random runs of a
    task, also the table that compares them."""
    all_results = []
    for directory in output_dirs:
        path = Path(directory) / SCORES_NAME if Path(directory).is_dir() else Path(directory)
        all_results.append(json.loads(path.read_text(encoding="utf-8")))
    table = results_table(all_results)
    pairs, notes = pair_inits(all_results)
    if not pairs and not notes:
        return table
    rows = [row for pretrained, random in pairs for row in compare_inits(pretrained, random)]
    return table + "\n" + comparison_table(rows, notes)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "python -m model.finetune",
        __doc__.splitlines()[0],
        "example:\n  python -m model.finetune --task mrpc --data glue_data/MRPC "
        "--checkpoint runs/bert-base/model --output runs/bert-base/finetuned/mrpc --seeds 0,1,2\n"
        "docs/finetune.md has more.",
    )
    parser.add_argument("--task", help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--data", type=Path, help="directory of the task's files")
    parser.add_argument("--checkpoint", type=Path, help="HF-format model directory with vocab.txt")
    parser.add_argument("--output", type=Path, help="directory for the model, predictions, scores")
    parser.add_argument(
        "--grid", help='"paper", "default" (the task\'s), or "lr=... batch=... epochs=..."'
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument(
        "--init",
        choices=INITS,
        default=DEFAULT_INIT,
        help="pretrained: start from the checkpoint's weights (default); random: from fresh "
        "weights of its architecture and vocabulary, drawn from each seed (the baseline)",
    )
    parser.add_argument("--max-seq-length", type=int, help="default: 128, SQuAD 384")
    parser.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, e.g. doc_stride=128 or text_a=premise (repeat; default: none)",
    )
    parser.add_argument("--select-metric", help='metric to maximise, e.g. "dev/accuracy"')
    add_arguments(parser, TrainSettings)
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 on GPU, fp32 on CPU), fast (bf16 also on a CPU with native bf16: "
        "AVX512-BF16 or AMX), bf16, fp32 (default: %(default)s)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default, one per core); give each of N runs side "
        "by side 1/N of the cores (default: %(default)s)",
    )
    parser.add_argument("--no-test", action="store_true", help="do not predict the test files")
    parser.add_argument(
        "--max-train-examples", type=int, help="use only the first N training examples"
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="--checkpoint is a model fine-tuned here: score it, no training",
    )
    parser.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="OUTPUT",
        help="print one results table for these output directories and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Command line entry point."""
    parser = build_parser()
    args = parser.parse_args(command_line(argv, "BERT_FINETUNE_ARGS"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.summarize:
        print(summarize(args.summarize), end="")
        return None
    missing = [
        flag for flag in ("task", "data", "checkpoint", "output") if getattr(args, flag) is None
    ]
    if args.eval_only and "task" in missing:
        missing.remove("task")
    if args.eval_only and args.init != DEFAULT_INIT:
        parser.error("--init chooses where training starts; --eval-only trains nothing")
    if missing:
        parser.error(
            "the following arguments are required: " + ", ".join(f"--{m}" for m in missing)
        )
    options = {}
    for item in args.task_option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--task-option {item!r}: use KEY=VALUE")
        options[key] = value
    settings = TrainSettings(**chosen(TrainSettings, args))
    try:
        check(settings)
    except ValueError as err:
        parser.error(str(err))
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    placement = resolve_placement(args.device, args.precision, args.compile)
    try:
        with output_lock(str(args.output)):  # one run per --output; refused before any work
            results = _run_command(args, options, settings, placement)
    except (DataError, TokenizerError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(results_table([results]), end="")
    return results


def _run_command(
    args: argparse.Namespace,
    options: dict[str, str],
    settings: TrainSettings,
    placement: Placement,
) -> dict[str, Any]:
    """The fine-tuning job, or with --eval-only the evaluation, of the command line."""
    if args.eval_only:
        info = read_task_info(args.checkpoint)
        name = task_name(args.task) if args.task else info["task"]
        task = get_task(name, info.get("options", {}) | options)
        return evaluate_saved(
            args.checkpoint,
            args.data,
            args.output,
            task=task,
            settings=settings,
            placement=placement,
            max_seq_length=args.max_seq_length,
            predict_test=not args.no_test,
        )
    task = get_task(args.task, options)
    job = FineTuneJob(
        task=task,
        data_dir=args.data,
        checkpoint=args.checkpoint,
        output_dir=args.output,
        grid=parse_grid(args.grid, task.default_grid),
        seeds=parse_seeds(args.seeds),
        max_seq_length=args.max_seq_length,
        settings=settings,
        placement=placement,
        predict_test=not args.no_test,
        max_train_examples=args.max_train_examples,
        select_metric=args.select_metric,
        init=args.init,
    )
    return run_finetune(job)


if __name__ == "__main__":
    main()
