"""Pretrain BERT on the pretraining stage's shards: phase 1 at 128 tokens, then phase 2 at 512.

    python -m model.pretrain --preset bert_base --data out/pretraining --output runs/bert-base
    torchrun --nproc_per_node 8 -m model.pretrain --preset bert_base \
        --data gs://bucket/pretraining --output runs/bert-base --set phase1.micro_batch_size=32

A run resumes by itself from the newest checkpoint under --output, and then sees exactly the
batches, dropout masks and learning rates that an uninterrupted run would have. `Trainer` holds
the run: set up (data, model, optimizer, resume), then phases, then steps: `train_step`
(micro-steps with gradient accumulation, clip, optimizer step) and `after_step` (log,
evaluate, export at a phase's end, checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import psutil
import torch

from bertdata.output_lock import OutputError, output_lock
from bertdata.paths import join
from bertdata.tokens import TOKENIZER_FILES
from model.bert import PreTrainingLoss, Unpadding
from model.checkpointing import (
    CheckpointError,
    checkpoint_name,
    latest_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    remove_leftovers,
    save_checkpoint,
)
from model.command_line import command_line
from model.config import PRESETS, BertConfig
from model.fill_mask import probe_records
from model.health import HealthMonitor, HealthReport
from model.memory_estimate import (
    MemoryEstimate,
    estimate_phase,
    gib,
    largest_fitting_micro_batch,
)
from model.metrics_log import MetricsLog
from model.objectives import Objective, batch_generator
from model.optim import WarmupLinearDecay, build_optimizer, clip_gradients
from model.parallelize import (
    Distributed,
    all_gather_objects,
    all_reduce_sum,
    autocast,
    barrier,
    close_distributed,
    init_distributed,
    mark_dynamic_tokens,
    parallelize,
    resolve_precision,
)
from model.pretraining_batch import PretrainingDataError, PretrainingShards
from model.pretraining_model import (
    PretrainingModel,
    build_pretraining_model,
    encoder_of,
    load_pretraining_weights,
    model_configs,
    save_pretraining_model,
)
from model.shard_loader import (
    LoadedBatch,
    StreamSpec,
    check_shards,
    find_vocab_hash,
    loader_state,
    order_changes,
    set_storage_options,
    split_shards,
    train_loader,
    validation_batches,
)
from model.tasks.tokenize import TokenizerError
from model.train_config import PretrainConfig, add_set_argument, add_shortcut, apply_overrides
from schemas.manifest import ManifestError, ShardInfo

log = logging.getLogger("model.pretrain")

CHECKPOINTS_DIR = "checkpoints"
_DROPOUT = 3  # tag of the dropout generator's seed
_OBJECTIVE = 4  # tag of the objective's generator (mask mixes) in training
_EVAL = 5  # tag of the objective's generator for evaluation and health batches


class PretrainError(RuntimeError):
    """The run cannot start or go on; the message says why and what to change."""


class NonFiniteLossError(PretrainError):
    """The loss or the gradients became NaN or infinite."""


class NotLearningError(PretrainError):
    """--stop-on-collapse: the run collapsed or does not learn (model/health.py)."""


class BatchTooLargeError(PretrainError):
    """A micro-batch does not fit in the device's memory."""


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One sequence-length phase of the run, in global optimizer steps."""

    index: int  # 1 or 2
    seq_length: int  # T: reads <data>/seq<T>
    first_step: int  # first global step of the phase
    end_step: int  # one past its last step
    global_batch_size: int  # sequences per optimizer step over all ranks
    micro_batch_size: int  # sequences per rank per forward/backward
    grad_accum: int  # micro-steps per optimizer step on each rank


def plan_phases(config: PretrainConfig, world_size: int) -> list[Phase]:
    """The phases this invocation may run (config.phase), with their step ranges and batches."""
    phase1_steps, _ = config.phase_steps()
    ranges = {1: (0, phase1_steps), 2: (phase1_steps, config.schedule.total_steps)}
    wanted = {"all": (1, 2), "1": (1,), "2": (2,)}[config.phase]
    phases = []
    for index in wanted:
        first, end = ranges[index]
        if end <= first:
            continue
        settings = config.phase1 if index == 1 else config.phase2
        micro = settings.micro_batch_size or settings.global_batch_size // world_size
        if micro < 1 or settings.global_batch_size % (micro * world_size):
            raise PretrainError(
                f"phase{index}.global_batch_size {settings.global_batch_size} is not a multiple "
                f"of micro_batch_size {micro} x world_size {world_size}; set "
                f"phase{index}.micro_batch_size to a divisor of "
                f"{settings.global_batch_size // world_size}"
            )
        phases.append(
            Phase(
                index=index,
                seq_length=settings.seq_length,
                first_step=first,
                end_step=end,
                global_batch_size=settings.global_batch_size,
                micro_batch_size=micro,
                grad_accum=settings.global_batch_size // (micro * world_size),
            )
        )
    if not phases:
        raise PretrainError(f"phase {config.phase} has no steps with schedule {config.schedule}")
    return phases


@dataclass(frozen=True, kw_only=True)
class PhaseData:
    """The checked shards of one phase: the training split and the validation split."""

    train: PretrainingShards
    train_shards: list[ShardInfo]
    validation: PretrainingShards | None
    validation_shards: list[ShardInfo]
    vocab_hash: str | None  # manifest hash of the vocabulary the data was built from


def open_phase_data(config: PretrainConfig, phase: Phase) -> PhaseData:
    """Open <data>/seq<T> (and its validation split), checking manifest, schema and vocabulary."""
    vocab_dir = config.data.vocab or None
    directory = join(config.data.dir, f"seq{phase.seq_length}")
    train = PretrainingShards(directory, vocab_dir=vocab_dir)
    if train.max_seq_length != phase.seq_length:
        raise PretrainError(
            f"{directory}: holds sequences of {train.max_seq_length} tokens, phase {phase.index} "
            f"expects {phase.seq_length}"
        )
    if config.data.validation_dir:
        train_shards = list(train.manifest.shards)
        validation = PretrainingShards(
            join(config.data.validation_dir, f"seq{phase.seq_length}"), vocab_dir=vocab_dir
        )
        validation_shards = list(validation.manifest.shards)
    else:
        train_shards, validation_shards = split_shards(
            list(train.manifest.shards), config.data.validation_shards
        )
        validation = train if validation_shards else None
    check_shards(train, train_shards)  # a missing or edited shard stops the run before step 1
    if validation is not None:
        check_shards(validation, validation_shards)
    return PhaseData(
        train=train,
        train_shards=train_shards,
        validation=validation,
        validation_shards=validation_shards,
        vocab_hash=find_vocab_hash(train),
    )


FINAL_MODEL_DIR = "model"  # <output>/model: the last finished phase's export


def tokenizer_files(vocab_dir: str) -> dict[str, bytes]:
    """The vocabulary's tokenizer files (local or gs://) that go with each phase's export, so
    that transformers' AutoTokenizer loads the export as it is; none without --vocab."""
    if not vocab_dir:
        return {}
    fs, root = fsspec.core.url_to_fs(vocab_dir)
    files = {}
    for name in TOKENIZER_FILES:
        path = join(root, name)
        if fs.exists(path):
            files[name] = fs.cat_file(path)
    if "vocab.txt" not in files:
        raise PretrainingDataError(
            f"{vocab_dir}: no vocab.txt; --vocab must name a vocab stage output"
        )
    return files


def available_memory(device: torch.device) -> int:
    """Bytes this rank can still allocate: free device memory, or this machine's available
    memory shared by the ranks on it."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return psutil.virtual_memory().available // max(1, ranks_here)


def check_memory(
    config: PretrainConfig,
    phases: list[Phase],
    datas: dict[int, PhaseData],
    model_configs: list[BertConfig],
    device: torch.device,
    precision: str,
) -> list[dict[str, Any]]:
    """Refuse a phase whose estimated memory exceeds what is available, naming the
    micro-batch size that fits; warn when it is close. Runs before the first step; returns
    the estimates, as metrics records."""
    available = available_memory(device)
    rss = psutil.Process().memory_info().rss
    records = []
    for phase in phases:

        def estimate(micro: int, phase: Phase = phase) -> MemoryEstimate:
            # ELECTRA's two encoders: the sum (its shared embeddings counted twice)
            parts = [
                estimate_phase(
                    model_config,
                    micro_batch_size=micro,
                    seq_length=phase.seq_length,
                    max_predictions=datas[phase.index].train.max_predictions_per_seq,
                    optimizer=config.optim.name,
                    half_precision=precision == "bf16",
                )
                for model_config in model_configs
            ]
            return MemoryEstimate(
                parameters=sum(part.parameters for part in parts),
                states=sum(part.states for part in parts),
                activations=sum(part.activations for part in parts),
            )

        needed = estimate(phase.micro_batch_size)
        log.info(
            "memory: phase %d adds about %s (gradients and optimizer %s, activations %s at "
            "micro-batch %d x %d tokens); %s available",
            phase.index,
            gib(needed.total),
            gib(needed.states),
            gib(needed.activations),
            phase.micro_batch_size,
            phase.seq_length,
            gib(available),
        )
        records.append(
            {
                "event": "memory",
                "phase": phase.index,
                "micro_batch_size": phase.micro_batch_size,
                "estimate_bytes": needed.total,
                "rss_bytes": rss,
                "available_bytes": available,
            }
        )
        if needed.total <= available:
            if needed.total > 0.8 * available:
                log.warning("memory: phase %d is close to the memory available", phase.index)
            continue
        if not config.runtime.memory_check:
            log.warning("memory: phase %d may not fit; runtime.memory_check=false", phase.index)
            continue
        fits = largest_fitting_micro_batch(
            estimate, phase.micro_batch_size, phase.global_batch_size, available
        )
        advice = (
            f"--set phase{phase.index}.micro_batch_size={fits} (gradient accumulation: the same "
            "maths, more steps)"
            if fits
            else "a smaller --preset or shorter sequences"
        )
        raise PretrainError(
            f"phase {phase.index} needs about {gib(needed.total)} more memory than the model "
            f"itself (gradients and optimizer {gib(needed.states)}, activations "
            f"{gib(needed.activations)} at micro-batch {phase.micro_batch_size} x "
            f"{phase.seq_length} tokens), but {gib(available)} is available on {device}; use "
            f"{advice}, or --set runtime.memory_check=false to try anyway"
        )
    return records


def loader_workers(configured: int, ranks_here: int) -> int:
    """data.num_workers, with -1 resolved from the machine: half its cores per rank, at most 4.
    More workers than cores make torch warn and slow the CPU training they feed."""
    if configured >= 0:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 1) // (2 * max(1, ranks_here))))


def log_fill_mask(
    model: PretrainingModel,
    export: Path,
    probes: list[str],
    metrics: MetricsLog,
    step: int,
    phase: Phase,
) -> None:
    """What the exported model predicts for the probe sentences, as a "fill_mask" record and
    log lines. A probe that cannot be encoded is reported, never fatal: the export is done."""
    if not probes:
        return
    try:
        records = probe_records(model, export, probes)
    except (TokenizerError, ValueError, OSError) as err:
        log.warning("fill-mask probes skipped: %s", err)
        return
    metrics.write(
        {"event": "fill_mask", "step": step, "phase": phase.index, "predictions": records}
    )
    for r in records:
        log.info("fill-mask at step %d: %s -> %s", step, r["text"], ", ".join(r["pieces"]))


def export_tokenizer_files(files: dict[str, bytes], seq_length: int) -> dict[str, bytes]:
    """The tokenizer files of one phase's export: tokenizer_config.json says the length the
    model was trained at (transformers truncates there with plain truncation=True) and a BERT
    tokenizer class (AutoTokenizer then reads do_lower_case; a generic class ignores it)."""
    if "tokenizer_config.json" not in files:
        return files
    body = json.loads(files["tokenizer_config.json"])
    body |= {"tokenizer_class": "BertTokenizer", "model_max_length": seq_length}
    return files | {"tokenizer_config.json": (json.dumps(body, indent=2) + "\n").encode()}


def data_vocabulary(shards: PretrainingShards) -> str:
    """The vocab stage output that the data was built from, as its manifest names it ('' when
    it names none, as synthetic data). The export needs its tokenizer: without it
    transformers' AutoTokenizer silently falls back to a vocabulary that maps words to [UNK]."""
    vocab_hash = find_vocab_hash(shards)
    if vocab_hash is not None:
        return next(r.path for r in shards.manifest.inputs if r.manifest_hash == vocab_hash)
    named = [r.path for r in shards.manifest.inputs if r.manifest_hash]
    if not named:
        return ""
    raise PretrainingDataError(
        f"{shards.directory}: its manifest names its inputs {named}, but none of them is "
        "a readable vocabulary with the same manifest (moved, or relative to another directory); "
        "pass --vocab with the vocab stage's output"
    )


def publish_final(output: Path, export: Path) -> Path:
    """<output>/model: a stable name for the last finished phase's export (a relative link,
    replaced atomically), so that fine-tuning commands need not know how many phases ran."""
    link = output / FINAL_MODEL_DIR
    tmp = output / f".{FINAL_MODEL_DIR}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(export.name, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link


def check_same_vocabulary(datas: list[PhaseData]) -> None:
    """All phases (and validation sets) must use one vocabulary, with the same ids."""
    first = datas[0].train
    for data in datas:
        for shards in (data.train, data.validation):
            if shards is None:
                continue
            for key in ("vocab_size", "special_token_ids"):
                if shards.config[key] != first.config[key]:
                    raise PretrainError(
                        f"{shards.directory}: {key} {shards.config[key]} differs from "
                        f"{first.directory}'s {first.config[key]}; build both from one vocabulary"
                    )
        if data.vocab_hash and datas[0].vocab_hash and data.vocab_hash != datas[0].vocab_hash:
            raise PretrainError(
                f"{data.train.directory}: built from vocabulary {data.vocab_hash[:12]}, but "
                f"{first.directory} from vocabulary {datas[0].vocab_hash[:12]}"
            )


def _sentence_task_of(config: dict[str, Any]) -> str:
    if config.get("packing", "pairs") != "pairs":
        return "none"
    return "sop" if config.get("sentence_order") else "nsp"


def sentence_task(datas: list[PhaseData], *, nsp: bool) -> str:
    """What the data's labels ask the binary head: "nsp" (is B the next segment, BERT), "sop"
    (are A and B swapped, ALBERT's sentence order) or "none" (packed single segments,
    RoBERTa, which `nsp` must then leave out); every phase must ask the same."""
    tasks = {
        shards.directory: _sentence_task_of(shards.config)
        for data in datas
        for shards in (data.train, data.validation)
        if shards is not None
    }
    if len(set(tasks.values())) > 1:
        raise PretrainError(
            "the phases' data mix next-sentence and sentence-order labels: "
            + ", ".join(f"{directory} {task}" for directory, task in tasks.items())
            + "; build every length with the same --sentence-order and --packing"
        )
    task = next(iter(tasks.values()))
    if task == "none" and nsp:
        raise PretrainError(
            f"{next(iter(tasks))}: packed data (--packing) holds single segments with no "
            "sentence labels; set objective.nsp=false, as RoBERTa trains"
        )
    return task


def model_config_for(config: PretrainConfig, data: PretrainingShards) -> BertConfig:
    """The run's BertConfig: the preset, the data's vocabulary, the overrides."""
    vocab_size = int(data.config["vocab_size"])
    if "vocab_size" in config.model and config.model["vocab_size"] != vocab_size:
        raise PretrainError(
            f"model.vocab_size is {config.model['vocab_size']} but {data.directory} was built "
            f"with a vocabulary of {vocab_size} tokens; drop the override to use the data's"
        )
    try:
        return config.model_config(vocab_size=vocab_size, pad_token_id=data.pad_id)
    except ValueError as err:
        raise PretrainError(f"model: {err}") from err


def _without_nsp(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics for the health checks of a run that does not train NSP: no NSP accuracy."""
    return {k: v for k, v in metrics.items() if k != "nsp_accuracy"}


def dropout_seed(seed: int, step: int, stream: int) -> int:
    """Seed of the dropout masks of one micro-batch: the same for any world size or restart."""
    return int(np.random.SeedSequence([seed, _DROPOUT, step, stream]).generate_state(1)[0])


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in text


def _memory_advice(phase: Phase, dist: Distributed, last_checkpoint: str) -> str:
    what = (
        f"phase {phase.index}: a micro-batch of {phase.micro_batch_size} sequences x "
        f"{phase.seq_length} tokens does not fit in {dist.device} memory."
    )
    per_rank = phase.global_batch_size // dist.world_size
    smaller = [d for d in range(1, phase.micro_batch_size) if per_rank % d == 0]
    if smaller:
        knob = (
            f"Lower phase{phase.index}.micro_batch_size (e.g. --set phase{phase.index}."
            f"micro_batch_size={smaller[-1]}); gradient accumulation keeps the global batch at "
            f"{phase.global_batch_size} sequences."
        )
    else:
        knob = "Use a smaller --preset, runtime.precision=bf16 or a device with more memory."
    return f"{what} {knob} Nothing was saved since {last_checkpoint}."


@torch.no_grad()
def evaluate(
    model: PretrainingModel,
    data: PhaseData,
    *,
    config: PretrainConfig,
    phase: Phase,
    dist: Distributed,
    precision: str,
    objective: Objective | None = None,
) -> dict[str, float]:
    """Loss and accuracies on the validation split, summed over ranks (token-weighted MLM).
    The loss is the objective's (default: the config's): without NSP, the MLM loss alone."""
    objective = objective or Objective(config.objective)
    was_training = model.training
    model.eval()
    # loss sums: mlm loss x count, nsp loss x sequences; then counts
    sums = torch.zeros(6, dtype=torch.float64, device=dist.device)
    extra: dict[str, torch.Tensor] = {}  # the objective's own figures (loss x count, counts)
    batches = validation_batches(
        data.validation,
        data.validation_shards,
        examples=config.eval.examples,
        micro_batch_size=config.eval.micro_batch_size or phase.micro_batch_size,
        rank=dist.rank,
        world_size=dist.world_size,
        cache_dir=_cache_dir(config),
    )
    for index, loaded in enumerate(batches):
        batch = objective.prepare(loaded.batch, batch_generator(config.runtime.seed, _EVAL, index))
        batch = batch.to(dist.device)
        unpadding = None
        if config.runtime.unpad:
            B, T = batch.input_ids.shape
            unpadding = Unpadding(loaded.token_index.to(dist.device), B, T)
        with autocast(dist.device, precision):
            out = model.pretraining_loss(**batch.as_dict(), unpadding=unpadding, nsp=objective.nsp)
        sequences = batch.input_ids.size(0)
        sums += torch.stack(
            [
                out.mlm_loss.double() * out.mlm_count,
                out.nsp_loss.double() * sequences,
                out.mlm_correct.double(),
                out.mlm_count.double(),
                out.nsp_correct.double(),
                torch.tensor(float(sequences), dtype=torch.float64, device=dist.device),
            ]
        )
        for name, value in objective_sums(out, weighted=True).items():
            extra[name] = extra[name] + value if name in extra else value
    names = list(extra)  # the same on every rank: the model's loss fields
    figures = all_reduce_sum(torch.cat([sums, stack(extra, names, dist.device)]), dist).tolist()
    mlm_sum, nsp_sum, mlm_correct, mlm_count, nsp_correct, sequences = figures[:6]
    model.train(was_training)
    mlm_loss = mlm_sum / max(mlm_count, 1)
    nsp_loss = nsp_sum / max(sequences, 1)
    evaluation = {
        "loss": mlm_loss + nsp_loss if objective.nsp else mlm_loss,
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss,
        "mlm_accuracy": mlm_correct / max(mlm_count, 1),
        "nsp_accuracy": nsp_correct / max(sequences, 1),
        "examples": int(sequences),
    }
    own = objective_figures(dict(zip(names, figures[6:], strict=True)))
    for task, weight in model.objective_weights.items():  # as the training loss weighs them
        evaluation["loss"] += weight * own[f"{task}_loss"]
    return evaluation | own


# The figures of an objective beyond BERT's, after BERT's six in its loss tuple: per task
# (rtd: ELECTRA's replaced-token detection, sbo: SpanBERT's span boundaries), <task>_loss
# (a mean), <task>_correct and <task>_count; and ELECTRA's replaced_count.
_BERT_FIELDS = len(PreTrainingLoss._fields)


def objective_sums(out: PreTrainingLoss, *, weighted: bool) -> dict[str, torch.Tensor]:
    """The objective's own figures of one micro-batch, to be summed: each <task>_loss as it is
    (a mean per micro-batch) or, `weighted`, times its count (token-weighted means)."""
    sums = {}
    for name in out._fields[_BERT_FIELDS:]:
        value = getattr(out, name).detach().double()
        if weighted and name.endswith("_loss"):
            value = value * getattr(out, name.removesuffix("_loss") + "_count")
        sums[name] = value
    return sums


def objective_figures(sums: dict[str, float], micro_batches: float = 0) -> dict[str, float]:
    """<task>_loss and <task>_accuracy from objective_sums' sums; the losses are divided by
    `micro_batches` when given (means of means), else by their counts. ELECTRA's
    replaced_share is the share of real tokens the generator's samples changed, so that
    1 - replaced_share is what answering "original" everywhere scores."""
    figures = {}
    for name in sums:
        if not name.endswith("_loss"):
            continue
        task = name.removesuffix("_loss")
        count = max(sums[f"{task}_count"], 1)
        figures[name] = sums[name] / (micro_batches or count)
        figures[f"{task}_accuracy"] = sums[f"{task}_correct"] / count
    if "replaced_count" in sums:
        figures["replaced_share"] = sums["replaced_count"] / max(sums["rtd_count"], 1)
    return figures


def stack(values: dict[str, torch.Tensor], names: list[str], device: torch.device) -> torch.Tensor:
    """values[name] for the names in order, as one float64 tensor (empty without names)."""
    if not names:
        return torch.zeros(0, dtype=torch.float64, device=device)
    return torch.stack([values[name].to(device, torch.float64) for name in names])


def health_batches(
    config: PretrainConfig, data: PhaseData, phase: Phase, objective: Objective | None = None
) -> Iterator[Any]:
    """The batches the health checks measure their baseline on: the evaluation's own (as the
    objective makes them; default: the config's), or the first training examples when the
    phase has no validation split."""
    objective = objective or Objective(config.objective)
    shards, shard_list = data.validation, data.validation_shards
    if shards is None:
        shards, shard_list = data.train, data.train_shards
    batches = validation_batches(
        shards,
        shard_list,
        examples=config.eval.examples,
        micro_batch_size=config.eval.micro_batch_size or phase.micro_batch_size,
        rank=0,
        world_size=1,
        cache_dir=_cache_dir(config),
    )
    return (
        objective.prepare(loaded.batch, batch_generator(config.runtime.seed, _EVAL, index))
        for index, loaded in enumerate(batches)
    )


def report_health(
    report: HealthReport, metrics: MetricsLog, config: PretrainConfig, phase: Phase
) -> None:
    """Log and record one health check; end the run if asked to and it is not learning."""
    metrics.write(report.record() | {"phase": phase.index})
    (log.warning if report.problems else log.info)("%s", report.line())
    if config.health.stop_on_collapse and report.failing_checks >= config.health.patience:
        raise NotLearningError(
            f"stopped at step {report.step} (--stop-on-collapse, {report.failing_checks} failing "
            "checks in a row): " + "; ".join(report.problems[kind] for kind in report.fatal)
        )


def _cache_dir(config: PretrainConfig) -> str:
    return config.data.cache_dir or str(Path(config.output) / "shard_cache")


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class TrainStats:
    """Sums over the steps since the last log line: kept on the device, read at log time."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        # loss, mlm loss, nsp loss (sums of micro-batch means), mlm correct, mlm count,
        # nsp correct, steps whose gradient norm was not finite
        self.sums = torch.zeros(7, dtype=torch.float64, device=self.device)
        self.extra: dict[str, torch.Tensor] = {}  # the objective's own (objective_sums)
        self.micro_batches = self.sequences = self.tokens = 0
        self.started = time.perf_counter()

    def add(self, out: PreTrainingLoss, sequences: int, tokens: int) -> None:
        values = [out.loss.detach(), out.mlm_loss.detach(), out.nsp_loss.detach()]
        values += [out.mlm_correct, out.mlm_count, out.nsp_correct]
        self.sums[:6] += torch.stack(values).double()
        for name, value in objective_sums(out, weighted=False).items():
            self.extra[name] = self.extra[name] + value if name in self.extra else value
        self.micro_batches += 1
        self.sequences += sequences
        self.tokens += tokens

    def add_grad_norm(self, grad_norm: torch.Tensor) -> None:
        self.sums[6] += (~torch.isfinite(grad_norm)).double()

    def summary(self, dist: Distributed) -> dict[str, float]:
        """Means over every rank's micro-batches since the last reset (waits for the device)."""
        counts = [self.micro_batches, self.sequences, self.tokens]
        counts = torch.tensor(counts, dtype=torch.float64, device=self.device)
        names = list(self.extra)
        extra = stack(self.extra, names, self.device)
        reduced = all_reduce_sum(torch.cat([self.sums, extra, counts]), dist).tolist()
        loss, mlm_loss, nsp_loss, mlm_ok, mlm_n, nsp_ok, bad_grads = reduced[:7]
        n, sequences, tokens = reduced[-3:]
        own = objective_figures(dict(zip(names, reduced[7:-3], strict=True)), n)
        elapsed = time.perf_counter() - self.started
        return {
            "loss": loss / n,
            "mlm_loss": mlm_loss / n,
            "nsp_loss": nsp_loss / n,
            "mlm_accuracy": mlm_ok / max(mlm_n, 1),
            "nsp_accuracy": nsp_ok / sequences,
            **own,
            "non_finite_grad_steps": bad_grads,
            "sequences_per_s": sequences / elapsed,
            "tokens_per_s": tokens / elapsed,
            "elapsed_s": elapsed,
        }


@dataclass
class Restored:
    """Where a run starts: its step, the checkpoint's loader state and path (if any)."""

    step: int
    loader: dict[str, Any] | None
    checkpoint: str


def restore(
    config: PretrainConfig,
    dist: Distributed,
    phases: list[Phase],
    vocab_hash: str | None,
    model: PretrainingModel,
    optimizer: torch.optim.Optimizer,
    scheduler: WarmupLinearDecay,
) -> Restored:
    """Resume from the newest checkpoint under --output, or start (from --init-from weights)."""
    checkpoints_dir = Path(config.output) / CHECKPOINTS_DIR
    if dist.is_main:
        remove_leftovers(checkpoints_dir)
    barrier(dist)
    resume = latest_checkpoint(checkpoints_dir)
    first_step = phases[0].first_step
    if resume is None:
        if config.init_from:
            try:
                fresh = load_pretraining_weights(model, config.init_from)
            except (ValueError, FileNotFoundError) as err:
                raise PretrainError(f"--init-from {config.init_from}: {err}") from err
            for part in fresh:  # e.g. a BERT export to go on from with the span-boundary head
                log.warning("--init-from %s has no %s: it starts fresh", config.init_from, part)
            scheduler.load_state_dict({"step_count": first_step})  # the schedule goes on
        elif phases[0].index == 2:
            raise PretrainError(
                "phase 2 starts from the phase-1 model: run it in the --output of phase 1 "
                "(which holds its checkpoints), or pass --init-from with the phase-1 export "
                "(<output>/phase1)"
            )
        return Restored(first_step, None, "the start of the run (no checkpoint yet)")

    saved_vocab = resume.info.get("vocab_hash")
    if saved_vocab and vocab_hash and saved_vocab != vocab_hash:
        raise PretrainError(
            f"{config.data.dir}: built from vocabulary {vocab_hash[:12]}, but checkpoint "
            f"{resume.path} was trained with vocabulary {saved_vocab[:12]}; use data built "
            "from that vocabulary, or a new --output"
        )
    if resume.step < first_step:
        raise PretrainError(
            f"checkpoint {resume.path} is at step {resume.step}, before phase "
            f"{phases[0].index} starts (step {first_step}); run phase 1 first"
        )
    try:
        fresh = load_pretraining_weights(model, resume.path)
        if fresh:
            raise ValueError(f"it has no {', '.join(fresh)}")
    except (ValueError, FileNotFoundError) as err:
        raise PretrainError(
            f"cannot resume from {resume.path}: {err}. This run's model config differs from "
            "the checkpoint's; use the same --preset and model overrides, or a new --output"
        ) from err
    state = load_trainer_state(resume, map_location=dist.device)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    _set_rng_state(rng[dist.rank] if len(rng) == dist.world_size else rng[0], dist.device)
    log.info("resuming from %s (step %d)", resume.path, resume.step)
    return Restored(resume.step, state.get("loader"), str(resume.path))


def train(config: PretrainConfig) -> dict[str, Any]:
    """Run or resume pretraining as configured; returns the last step and metrics."""
    config.validate()
    # One run per --output: a second one would resume from the live run's checkpoints and
    # race it to write them. Rank 0 holds the lock for all ranks (they share the output).
    lock = output_lock(config.output) if os.environ.get("RANK", "0") == "0" else nullcontext()
    with lock:
        dist = init_distributed(config.runtime.device)
        try:
            return Trainer(config, dist).run()
        finally:
            close_distributed()


class Trainer:
    """One pretraining run, in torchtitan's manner. `Trainer(config, dist)` sets it up: data,
    model, optimizer, health checks, metrics, and the step to start from (a checkpoint's, when
    there is one). `run()` trains phase by phase; each step is `train_step` (the micro-batches,
    clip, optimizer step), then `after_step`: log, evaluate, export at a phase's end,
    checkpoint."""

    def __init__(self, config: PretrainConfig, dist: Distributed) -> None:
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        self.config, self.dist = config, dist
        self.device, self.seed = dist.device, config.runtime.seed
        self.precision = resolve_precision(config.runtime.precision, self.device)
        use_compile = config.runtime.compile
        self.use_compile = self.device.type == "cuda" if use_compile is None else use_compile
        self.output = Path(config.output)
        self.checkpoints_dir = self.output / CHECKPOINTS_DIR

        for url in (config.data.dir, config.data.validation_dir, config.data.vocab):
            set_storage_options(url, config.data.storage_options)
        self.phases = plan_phases(config, dist.world_size)
        if not config.data.vocab:  # the data's own, opened with it (dynamic masking needs it)
            first = join(config.data.dir, f"seq{self.phases[0].seq_length}")
            config.data.vocab = data_vocabulary(PretrainingShards(first))
            if config.data.vocab and dist.is_main:
                log.info("vocabulary: %s (named by the data's manifest)", config.data.vocab)
        self.datas = {phase.index: open_phase_data(config, phase) for phase in self.phases}
        first_data = self.datas[self.phases[0].index]
        self.export_files = tokenizer_files(config.data.vocab)  # read once, written each export
        if config.objective.mask_mix and "vocab.txt" not in self.export_files:
            raise PretrainError(
                "objective.mask_mix draws random tokens: give the vocabulary (--vocab)"
            )
        vocab_text = self.export_files.get("vocab.txt", b"").decode("utf-8")
        self.objective = Objective(config.objective, vocab_text.rstrip("\n").split("\n"))
        check_same_vocabulary(list(self.datas.values()))
        self.sentence_task = sentence_task(list(self.datas.values()), nsp=config.objective.nsp)
        if config.objective.name == "electra":
            self.sentence_task = "none"  # ELECTRA's data may hold pairs: it asks no sentence task
        if config.objective.span_boundary and not first_data.train.config.get("span_masking"):
            log.warning(
                "objective.span_boundary on %s, which is not span-masked: most masked runs "
                "are one token long; SpanBERT's data is pipelines.pretraining_data "
                "--span-masking",
                first_data.train.directory,
            )
        self.vocab_hash = first_data.vocab_hash
        self.model_config = model_config_for(config, first_data.train)
        longest = max(phase.seq_length for phase in self.phases)
        if longest > self.model_config.max_position_embeddings:
            raise PretrainError(
                f"phase sequences of {longest} tokens exceed model.max_position_embeddings "
                f"{self.model_config.max_position_embeddings}"
            )
        torch.manual_seed(self.seed)  # the same initial weights on every rank
        try:
            self.model = build_pretraining_model(self.model_config, config.objective)
        except ValueError as err:
            raise PretrainError(str(err)) from err
        self.model.to(self.device)
        memory = check_memory(
            config, self.phases, self.datas, model_configs(self.model), self.device,
            self.precision,
        )  # fmt: skip
        self.optimizer = build_optimizer(self.model, config.optim, self.device)
        total_steps = config.schedule.total_steps
        warmup_steps = round(total_steps * config.optim.warmup_fraction)
        self.scheduler = WarmupLinearDecay(
            self.optimizer, warmup_steps=warmup_steps, total_steps=total_steps
        )
        after = config.health.after_steps
        self.health = HealthMonitor(
            config.health,
            after_steps=2 * warmup_steps if after < 0 else after,
            vocab_size=self.model_config.vocab_size,
        )
        self.restored = restore(
            config, dist, self.phases, self.vocab_hash, self.model, self.optimizer, self.scheduler
        )
        self.step, self.last_checkpoint = self.restored.step, self.restored.checkpoint
        # What runs the step: the model, wrapped for DDP and compiled where asked.
        self.trained = parallelize(
            self.model, dist, compile=self.use_compile, nsp=self.objective.nsp
        )
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.metrics = self.start_metrics(memory)
        self.last_train: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}

    def start_metrics(self, memory: list[dict[str, Any]]) -> MetricsLog:
        """The run's metrics log, opened at the start step with the run's first records."""
        metrics = MetricsLog(
            self.output,
            enabled=self.dist.is_main,
            start_step=self.step,
            total_steps=self.phases[-1].end_step,
            tensorboard=self.config.log.tensorboard,
            progress=self.config.log.progress,
            step_tokens=[
                (p.first_step, p.end_step, p.global_batch_size * p.seq_length) for p in self.phases
            ],
        )
        metrics.write(
            {
                "event": "start",
                "step": self.step,
                "world_size": self.dist.world_size,
                "device": str(self.device),
                "precision": self.precision,
                "compile": self.use_compile,
                "parameters": sum(p.numel() for p in self.parameters),
                # The nsp_* metrics are the binary head's: next sentence, or sentence order.
                "sentence_task": self.sentence_task,
                "config": self.config.to_dict(),
            }
        )
        for record in memory:  # what check_memory estimated, for bench/memory_estimate.py
            metrics.write(record | {"step": self.step})
        return metrics

    def run(self) -> dict[str, Any]:
        """Train every phase not finished yet; returns the last step, metrics and checkpoint."""
        try:
            for phase in self.phases:
                if self.step < phase.end_step:
                    self.train_phase(phase)
            self.metrics.write({"event": "end", "step": self.step})
        finally:
            self.metrics.close()
        return {
            "step": self.step,
            "train": self.last_train,
            "eval": self.last_eval,
            "checkpoint": self.last_checkpoint,
            "sentence_task": self.sentence_task,
        }

    def train_phase(self, phase: Phase) -> None:
        config, dist = self.config, self.dist
        data = self.datas[phase.index]
        A = phase.grad_accum
        spec = StreamSpec(
            directory=data.train.directory,
            vocab_dir=config.data.vocab or None,
            shards=data.train_shards,
            num_streams=dist.world_size * A,  # J: one per micro-batch of a global batch
            streams=[dist.rank * A + a for a in range(A)],
            micro_batch_size=phase.micro_batch_size,
            shuffle_buffer=config.data.shuffle_buffer,
            seed=self.seed,
            cache_dir=_cache_dir(config),
        )
        saved = self.restored.loader
        if saved is not None and saved.get("phase") == phase.index and dist.is_main:
            changed = order_changes(saved, loader_state(spec, 0) | {"phase": phase.index})
            if changed:
                log.warning(
                    "data order differs from the checkpoint's run (%s): the resumed run "
                    "will not see the batches an uninterrupted one would",
                    ", ".join(changed),
                )
        loader = iter(
            train_loader(
                spec,
                start_step=self.step - phase.first_step,
                num_workers=loader_workers(
                    config.data.num_workers, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
                ),
                prefetch_factor=config.data.prefetch_factor,
                pin_memory=config.data.pin_memory and self.device.type == "cuda",
            )
        )
        batches = health_batches(config, data, phase, self.objective)
        baseline = self.health.start_phase(batches, self.device)
        self.metrics.write({"event": "baseline", "step": self.step, "phase": phase.index}
                           | baseline.as_dict())  # fmt: skip
        stats = TrainStats(self.device)
        self.model.train()
        while self.step < phase.end_step:
            lr = self.scheduler.lr
            grad_norm = self.train_step(phase, loader, stats)
            self.after_step(phase, data, spec, stats, lr=lr, grad_norm=grad_norm)
        del loader  # stops the phase's loader workers

    def train_step(
        self, phase: Phase, loader: Iterator[LoadedBatch], stats: TrainStats
    ) -> torch.Tensor:
        """One optimizer step: A micro-batches here (A x world_size in all), clip, step.
        Returns the gradient norm before clipping."""
        A, B, step = phase.grad_accum, phase.micro_batch_size, self.step
        try:
            for micro_step in range(A):
                loaded = next(loader)
                expected = (step - phase.first_step, micro_step)
                if (loaded.step, loaded.micro_step) != expected:
                    raise RuntimeError(f"loader out of order: {loaded[:2]} != {expected}")
                stream = self.dist.rank * A + micro_step
                batch = loaded.batch
                if self.objective.changes_batches:
                    generator = batch_generator(self.seed, _OBJECTIVE, step, stream)
                    batch = self.objective.prepare(batch, generator)
                batch = batch.to(self.device, non_blocking=True)
                token_index = None
                if self.config.runtime.unpad:
                    token_index = loaded.token_index.to(self.device, non_blocking=True)
                    if self.use_compile:
                        mark_dynamic_tokens(token_index)
                # Dropout masks from (seed, step, stream): any world size, any restart.
                torch.manual_seed(dropout_seed(self.seed, step, stream))
                no_sync = self.trained.no_sync(micro_step < A - 1)
                with no_sync, autocast(self.device, self.precision):
                    out = self.trained.loss_module(**batch.as_dict(), token_index=token_index)
                (out.loss / A).backward()
                stats.add(out, B, loaded.token_index.numel())
        except RuntimeError as err:
            if _is_out_of_memory(err):
                advice = _memory_advice(phase, self.dist, self.last_checkpoint)
                raise BatchTooLargeError(advice) from None
            raise
        grad_norm = clip_gradients(self.parameters, self.config.optim.grad_clip)
        stats.add_grad_norm(grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.metrics.advance()
        return grad_norm

    def after_step(
        self,
        phase: Phase,
        data: PhaseData,
        spec: StreamSpec,
        stats: TrainStats,
        *,
        lr: float,
        grad_norm: torch.Tensor,
    ) -> None:
        """What is due after this step: log, evaluate (or check health on the training means
        without held-out data), export the phase's model at its end, checkpoint."""
        config, step = self.config, self.step
        phase_end = step == phase.end_step
        checkpoint_every, eval_every = config.checkpoint.every, config.eval.every
        do_checkpoint = phase_end or (checkpoint_every > 0 and step % checkpoint_every == 0)
        do_eval = data.validation is not None and (
            phase_end or (eval_every > 0 and step % eval_every == 0)
        )
        do_log = step % config.log.every == 0 or do_checkpoint or do_eval
        if do_log:
            self.log_training(phase, stats, lr=lr, grad_norm=grad_norm)
        validation_loss = None
        if do_eval:
            validation_loss = self.evaluate(phase, data)
        elif do_log and data.validation is None:  # no held-out data: the training means
            self.check_health(phase, self.last_train)
        if phase_end and self.dist.is_main:  # the model of each phase, for fine-tuning
            self.export(phase)
        if do_checkpoint:
            self.checkpoint(phase, data, spec, validation_loss)

    def log_training(
        self, phase: Phase, stats: TrainStats, *, lr: float, grad_norm: torch.Tensor
    ) -> None:
        """The means since the last log line; a non-finite loss or gradient ends the run."""
        summary = stats.summary(self.dist)
        if not math.isfinite(summary["loss"]) or summary["non_finite_grad_steps"]:
            self.metrics.write(
                {"event": "health", "step": self.step, "phase": phase.index,
                 "status": "failing", "problems": ["non_finite"], "loss": summary["loss"]}
            )  # fmt: skip
            raise NonFiniteLossError(
                f"step {self.step}: the training loss became {summary['loss']} (gradient "
                f"norm {float(grad_norm)}); stopped without saving. The last good "
                f"checkpoint is {self.last_checkpoint}. Resume from it with a lower "
                f"optim.lr (now {self.config.optim.lr}) or a longer optim.warmup_fraction"
                + (" or runtime.precision=fp32" if self.precision == "bf16" else "")
            )
        del summary["non_finite_grad_steps"]
        summary = self.asked(summary)
        self.last_train = {"event": "train", "step": self.step, "phase": phase.index}
        self.last_train |= {"seq_length": phase.seq_length, "lr": lr}
        self.last_train |= {"grad_norm": float(grad_norm)} | summary
        self.metrics.write(self.last_train)
        stats.reset()

    def evaluate(self, phase: Phase, data: PhaseData) -> float:
        """Held-out loss and accuracies, logged and checked for health; returns the loss."""
        evaluation = evaluate(
            self.model,
            data,
            config=self.config,
            phase=phase,
            dist=self.dist,
            precision=self.precision,
            objective=self.objective,
        )
        self.last_eval = {"event": "eval", "step": self.step, "phase": phase.index}
        evaluation = self.asked(evaluation)
        self.last_eval |= {"seq_length": phase.seq_length, **evaluation}
        self.metrics.write(self.last_eval)
        self.check_health(phase, evaluation)
        return evaluation["loss"]

    def asked(self, figures: dict[str, Any]) -> dict[str, Any]:
        """The figures without the sentence head's when the run asks no sentence task (packed
        data, ELECTRA): its head sees labels that are all 0, or none."""
        if self.sentence_task != "none":
            return figures
        return {k: v for k, v in figures.items() if k not in ("nsp_loss", "nsp_accuracy")}

    def check_health(self, phase: Phase, figures: dict[str, Any]) -> None:
        checked = figures if self.objective.nsp else _without_nsp(figures)
        report = self.health.check(encoder_of(self.model), self.step, checked)
        report_health(report, self.metrics, self.config, phase)

    def export(self, phase: Phase) -> None:
        """The phase's model in Hugging Face's layout, its fill-mask probes, and <output>/model."""
        export = save_pretraining_model(
            self.model,
            self.output / f"phase{phase.index}",
            export_tokenizer_files(self.export_files, phase.seq_length),
        )
        self.metrics.write({"event": "export", "step": self.step, "path": str(export)})
        probes = self.config.health.fill_mask_probes
        log_fill_mask(self.model, export, probes, self.metrics, self.step, phase)
        publish_final(self.output, export)

    def checkpoint(
        self, phase: Phase, data: PhaseData, spec: StreamSpec, validation_loss: float | None
    ) -> None:
        """Everything a resumed run needs to go on as if never stopped; rank 0 writes it."""
        rng = all_gather_objects(_rng_state(self.device), self.dist)
        if self.dist.is_main:
            path = save_checkpoint(
                self.checkpoints_dir,
                step=self.step,
                model=self.model,
                trainer_state={
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "loader": loader_state(spec, self.step - phase.first_step)
                    | {"phase": phase.index},
                    "rng": rng,
                },
                info={
                    "phase": phase.index,
                    "seq_length": phase.seq_length,
                    "validation_loss": validation_loss,
                    "vocab_hash": self.vocab_hash,
                    "data": data.train.directory,
                    "data_manifest_hash": data.train.manifest_hash,
                    "model": dataclasses.asdict(self.model_config),
                    "config": self.config.to_dict(),
                },
            )
            prune_checkpoints(
                self.checkpoints_dir,
                keep_last=self.config.checkpoint.keep_last,
                keep_best=self.config.checkpoint.keep_best,
            )
            self.metrics.write({"event": "checkpoint", "step": self.step, "path": str(path)})
        barrier(self.dist)
        self.last_checkpoint = str(self.checkpoints_dir / checkpoint_name(self.step))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.pretrain",
        description=(
            "Pretrain BERT (masked LM + next sentence prediction) on the pretraining stage's "
            "Arrow shards: phase 1 at 128 tokens, then phase 2 at 512 (90/10 of the steps). "
            "Resumes from the newest checkpoint in --output. Under torchrun, one process per "
            "GPU (NCCL) or per CPU worker (gloo)."
        ),
        epilog=(
            "examples:\n"
            "  python -m model.pretrain --preset bert_mini --data runs/sample/pretraining "
            "--output runs/mini --steps 2000 --set optim.lr=5e-4\n"
            "  torchrun --standalone --nproc_per_node 8 -m model.pretrain --preset bert_base "
            "--data gs://BUCKET/pretraining --output runs/bert-base\n"
            "--print-config shows every field and its value; docs/pretrain.md explains them."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        default="bert_base",
        choices=sorted(PRESETS),
        help="model size (default: %(default)s)",
    )
    parser.add_argument("--data", required=True, help="pretraining output dir (seq128/, seq512/)")
    parser.add_argument("--output", required=True, help="run directory (local)")
    parser.add_argument(
        "--vocab",
        default="",
        help="the vocab stage output the data was built from; its tokenizer goes with each "
        "export (default: the one the data's manifest names)",
    )
    parser.add_argument(
        "--phase",
        default="all",
        choices=("all", "1", "2"),
        help="1: stop after phase 1; 2: phase 2 only (default: %(default)s)",
    )
    parser.add_argument(
        "--init-from", default="", help="HF-format weights to start from (default: fresh weights)"
    )
    add_shortcut(parser, "--steps", "schedule.total_steps", "e.g. 1e6 (default: 1,000,000)")
    add_shortcut(
        parser,
        "--threads",
        "runtime.threads",
        "torch CPU threads (0: torch's default, one per core); give each of N runs side by "
        "side cores/N",
    )
    parser.add_argument(
        "--stop-on-collapse",
        dest="overrides",
        action="append_const",
        const="health.stop_on_collapse=true",
        help="health.stop_on_collapse: end the run (exit 1) after two failing health checks "
        "in a row from twice the warm-up on: collapsed representations, or MLM accuracy no "
        "better than the unigram baseline",
    )
    add_set_argument(parser, "--set optim.lr=5e-5 --set phase1.micro_batch_size=64")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> PretrainConfig:
    """The run's config from the command line."""
    parser = build_parser()
    args = parser.parse_args(command_line(argv, "BERT_PRETRAIN_ARGS"))
    config = PretrainConfig(preset=args.preset, output=args.output, phase=args.phase)
    config.data.dir = args.data
    config.data.vocab = args.vocab
    config.init_from = args.init_from
    try:
        # --steps, --threads, --stop-on-collapse and --set, in command-line order: the last
        # word wins (BERT_PRETRAIN_ARGS, appended, over a flow's recipe).
        apply_overrides(config, args.overrides)
        config.validate()
    except ValueError as err:
        parser.error(str(err))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        raise SystemExit(0)
    return config


def _short(err: BaseException) -> str:
    """The message of an error, without the traceback text a loader worker wraps it in."""
    text = str(err).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    try:
        summary = train(config)
    except (PretrainingDataError, ManifestError, OutputError) as err:
        # Bad data (named shard or manifest) or an output that is busy or cannot be written:
        # running again will not help (exit 2, not retried by the flows).
        print(f"error: {_short(err)}", file=sys.stderr)
        return 2
    except (PretrainError, CheckpointError) as err:
        print(f"error: {_short(err)}", file=sys.stderr)
        return 1
    train_metrics = summary["train"]
    if os.environ.get("RANK", "0") != "0":
        return 0
    if train_metrics:
        task = summary["sentence_task"]  # "none": packed data has no sentence labels
        sentences = (
            "" if task == "none" else f", {task} accuracy {train_metrics['nsp_accuracy']:.3f}"
        )
        if "rtd_accuracy" in train_metrics:  # ELECTRA: mlm is the generator's
            sentences += f", replaced-token accuracy {train_metrics['rtd_accuracy']:.3f}"
        if "sbo_accuracy" in train_metrics:  # SpanBERT's span-boundary head
            sentences += f", span-boundary accuracy {train_metrics['sbo_accuracy']:.3f}"
        print(
            f"step {summary['step']}: loss {train_metrics['loss']:.4f}, "
            f"mlm accuracy {train_metrics['mlm_accuracy']:.3f}{sentences}; "
            f"last checkpoint {summary['checkpoint']}"
        )
    else:
        print(f"nothing to do: the run is at step {summary['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
