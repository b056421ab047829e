"""Typed configuration of a pretraining run, one keyword-only dataclass per component.

Every field can be overridden from the command line with a dotted name:
`--set optim.lr=5e-5 --set phase1.micro_batch_size=64 --set model.hidden_dropout_prob=0.0`.
Defaults are the paper's (Devlin et al., 2018): AdamW lr 1e-4, betas 0.9/0.999, weight decay
0.01, 1% warm-up then linear decay, batch 256, 1,000,000 steps, 90% at 128 tokens, 10% at 512.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from bertdata.options import check, option
from model.config import PRESETS, BertConfig


def parse_mask_mix(text: str) -> tuple[float, float, float]:
    """ "80/10/10" -> (0.8, 0.1, 0.1): shares of chosen tokens replaced by [MASK], kept, and
    replaced by a random token; ValueError unless three non-negative percentages sum to 100."""
    parts = text.split("/")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 100.0) > 1e-6:
        raise ValueError(
            f"objective.mask_mix must be MASK/SAME/RND percentages summing to 100 "
            f"(e.g. 80/10/10), got {text!r}"
        )
    return values[0] / 100, values[1] / 100, values[2] / 100


@dataclass(kw_only=True)
class DataConfig:
    """Where the pretraining shards are and how they are fed to the GPU."""

    dir: str = ""  # pretraining stage output holding seq128/, seq512/ (local or gs://)
    vocab: str = ""  # vocabulary dir the data must have been built from; "": not checked
    validation_dir: str = ""  # a separately built pretraining output to evaluate on
    # Shards of each length held out of `dir` for evaluation when validation_dir is "";
    # -1: 1% of them, at least one when there are two or more.
    validation_shards: int = -1
    shuffle_buffer: int = 10_000  # rows shuffled together, seeded by (seed, epoch, stream, block)
    # Background loader processes per rank; 0 loads in the training process; -1: from the
    # machine (min(4, cores / 2 per rank): on a 2-core CPU one, so that the loader does not
    # take the cores that the model computes on).
    num_workers: int = option(
        -1,
        "background data loader processes per rank; 0: in the training process; -1: from the "
        "machine (half the cores per rank, at most 4)",
        ge=-1,
    )
    prefetch_factor: int = 4  # batches each worker prepares ahead
    pin_memory: bool = True  # page-locked batches for asynchronous copies (CUDA only)
    cache_dir: str = ""  # local copies of gs:// shards; "": <output>/shard_cache
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec options, e.g. token


@dataclass(kw_only=True)
class PhaseConfig:
    """One sequence-length phase: which shards and how many sequences per step."""

    seq_length: int  # reads <data.dir>/seq<seq_length>
    global_batch_size: int = option(
        256, "sequences per optimizer step, over all ranks and micro-steps", ge=1
    )
    micro_batch_size: int = option(
        0, "sequences per rank per forward/backward pass; 0: the whole batch per rank", ge=0
    )


@dataclass(kw_only=True)
class ScheduleConfig:
    """How long to train and where the phases change."""

    total_steps: int = option(
        1_000_000, "optimizer steps of both phases together (paper: 1M)", ge=1
    )
    phase1_fraction: float = option(
        0.9,
        "share of the steps in phase 1, at the shortest length (paper: 0.9); 1: no phase 2",
        gt=0.0,
        le=1.0,
    )


@dataclass(kw_only=True)
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: str = "adamw"  # "adamw" (the paper's Adam with decoupled decay) or "lamb" (big batches)
    lr: float = option(1e-4, "peak learning rate, reached at the end of warm-up", gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's beta1, beta2
    eps: float = 1e-6  # Adam's epsilon, as in the original BERT code
    weight_decay: float = option(
        0.01, "decoupled weight decay; never on biases or LayerNorm weights", ge=0.0
    )
    warmup_fraction: float = option(
        0.01, "share of the steps of linear warm-up (paper: 10k of 1M)", ge=0.0, lt=1.0
    )
    grad_clip: float = 1.0  # largest global gradient norm; 0 turns clipping off
    fused: bool = True  # fused AdamW kernel on CUDA (ignored on CPU and for LAMB)


@dataclass(kw_only=True)
class CheckpointConfig:
    """When to save and what to keep."""

    every: int = option(10_000, "steps between checkpoints; phase ends are always saved", ge=0)
    keep_last: int = option(3, "newest checkpoints kept", ge=1)
    keep_best: bool = True  # also keep the lowest validation loss of each phase


@dataclass(kw_only=True)
class EvalConfig:
    """Held-out evaluation."""

    every: int = 10_000  # steps between evaluations; 0: at the end of each phase only
    examples: int = 10_000  # validation sequences per evaluation (the same ones each time); 0: all
    micro_batch_size: int = 0  # sequences per forward; 0: the phase's micro batch


@dataclass(kw_only=True)
class LogConfig:
    """What people read while it runs."""

    every: int = option(100, "steps between log lines (JSONL, TensorBoard, progress bar)", ge=1)
    tensorboard: bool = True  # write TensorBoard scalars if the tensorboard package is installed
    progress: bool = True  # a progress bar on rank 0's terminal (log lines when not a tty)


@dataclass(kw_only=True)
class RuntimeConfig:
    """Device, precision and speed switches; none of them changes the maths."""

    device: str = "auto"  # "auto" (cuda when available), "cuda" or "cpu"
    # "bf16" autocast or "fp32"; auto: bf16 on CUDA, fp32 on CPU; fast: bf16 on CUDA and on
    # CPUs that compute it natively (AVX512-BF16 or AMX: 1.4x the tokens/s of fp32 on 2 cores
    # here, docs/recipes.md), fp32 on other CPUs, where bf16 is emulated and slower.
    precision: str = option(
        "auto",
        "'auto': bf16 on GPU, fp32 on CPU; 'fast': bf16 also on a CPU that computes it "
        "natively (AVX512-BF16 or AMX), fp32 on other CPUs",
        choices=("auto", "fast", "bf16", "fp32"),
    )
    compile: bool | None = None  # torch.compile the model; None: on CUDA only
    unpad: bool = True  # run every layer but attention on real tokens only
    seed: int = option(12345, "seed of initialisation, data order and dropout", ge=0)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    # Estimate the memory each phase needs before training and refuse a run that cannot fit
    # (model/memory_estimate.py); false tries anyway.
    memory_check: bool = True


# What a model that learned fills in from the context, and a collapsed one does not.
FILL_MASK_PROBES = (
    "The [MASK] of the United States signed the treaty.",
    "He opened the [MASK] and walked into the room.",
    "Paris is the capital of [MASK].",
    "The war ended in [MASK] with the surrender of the army.",
    "She [MASK] the letter and put it on the table.",
    "The patient was taken to the [MASK] for surgery.",
)


@dataclass(kw_only=True)
class HealthConfig:
    """When a run counts as not learning (model/health.py), and what to do about it."""

    # Steps before the learning checks apply; -1: twice the learning-rate warm-up. A healthy
    # run sits at the unigram baseline for a while after the warm-up, as a collapsed one does.
    after_steps: int = -1
    patience: int = 2  # consecutive failing checks before --stop-on-collapse ends the run
    # Mean cosine between different tokens' final hidden states above which the
    # representations count as collapsed.
    collapse_cosine: float = 0.95
    # MLM loss within this share of the unigram entropy (either side) counts as stuck there.
    entropy_margin: float = 0.02
    # NSP accuracy within this of the majority label's share counts as chance.
    nsp_margin: float = 0.02
    probe_tokens: int = 512  # real tokens of the probe batch whose cosines are averaged
    # Sentences with [MASK] whose top predictions each phase's export logs ("fill_mask" in
    # metrics.jsonl; the flows' report shows them): the quickest look at whether predictions
    # depend on the context. English by default; give your corpus's language, [] for none.
    fill_mask_probes: list[str] = field(default_factory=lambda: list(FILL_MASK_PROBES))
    stop_on_collapse: bool = option(
        False,
        "end pretraining when, after the health checks' warm-up, `patience` checks in a row "
        "find collapsed representations or MLM accuracy no better than the unigram baseline",
    )


# objective.name's choices (see ObjectiveConfig).
OBJECTIVES = ("mlm", "ltr", "electra")


@dataclass(kw_only=True)
class ObjectiveConfig:
    """What the model learns to predict: the paper's MLM + NSP, or one of its ablations."""

    # "mlm": masked LM on the slots the data chose; "ltr": left-to-right LM (causal attention,
    # every next token predicted), the paper's "LTR & No NSP" arm of Table 5; "electra":
    # replaced-token detection (Clark et al. 2020), a generator filling the masked slots and a
    # discriminator, the model one fine-tunes, judging every token (needs nsp=false).
    name: str = "mlm"
    nsp: bool = True  # add the next-sentence loss; False: the "No NSP" arms of Table 5
    # Replacement of the chosen tokens as "MASK/SAME/RND" percentages, redrawn every step
    # (Table 8: 80/10/10, 100/0/0, 80/0/20, 80/20/0, 0/20/80, 0/0/100); "": as the data has it.
    mask_mix: str = ""
    # ELECTRA: the generator's hidden size, heads and feed-forward size as a share of the
    # discriminator's (the paper: 1/4 for Small, 1/3 for Base and Large), and the weight of
    # the discriminator's loss (lambda = 50).
    generator_width: float = 0.25
    discriminator_weight: float = 50.0
    # SpanBERT's span-boundary objective: each masked token also predicted from its span's
    # two boundary tokens and its place in the span (model/span_boundary.py), for "mlm".
    span_boundary: bool = False


@dataclass(kw_only=True)
class PretrainConfig:
    """A whole pretraining run: model, data, phases, optimiser, checkpoints and logs."""

    preset: str = "bert_base"  # a name from model.config.PRESETS
    # BertConfig fields that differ from the preset; vocab_size and pad_token_id come from
    # the data unless given here.
    model: dict[str, Any] = field(default_factory=dict)
    output: str = ""  # run directory: checkpoints/, metrics.jsonl, tensorboard/, phase1/, phase2/
    phase: str = "all"  # "all", "1" (stop after phase 1) or "2" (phase 2 only)
    init_from: str = ""  # HF-format weights (an export or a checkpoint) for a fresh run
    data: DataConfig = field(default_factory=DataConfig)
    phase1: PhaseConfig = field(default_factory=lambda: PhaseConfig(seq_length=128))
    phase2: PhaseConfig = field(default_factory=lambda: PhaseConfig(seq_length=512))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        self.model_config(vocab_size=self.model.get("vocab_size", 30522), pad_token_id=0)
        if not self.output:
            raise ValueError("output: a run directory is required")
        if not self.data.dir:
            raise ValueError("data.dir: the pretraining data directory is required")
        if self.phase not in ("all", "1", "2"):
            raise ValueError(f"phase must be 'all', '1' or '2', got {self.phase!r}")
        for section in SECTIONS:
            check(getattr(self, section), prefix=f"{section}.")
        _positive(self, "phase1.seq_length", "phase2.seq_length", "data.shuffle_buffer")
        _at_least_zero(self, "eval.every", "eval.examples")
        _at_least_zero(self, "eval.micro_batch_size", "runtime.threads")
        _positive(self, "data.prefetch_factor")
        if self.optim.name not in ("adamw", "lamb"):
            raise ValueError(f"optim.name must be 'adamw' or 'lamb', got {self.optim.name!r}")
        if not all(0.0 <= b < 1.0 for b in self.optim.betas) or len(self.optim.betas) != 2:
            raise ValueError(f"optim.betas must be two values in [0, 1), got {self.optim.betas}")
        if self.optim.grad_clip < 0 or self.optim.eps <= 0:
            raise ValueError("optim.grad_clip must be >= 0, optim.eps > 0")
        _positive(self, "health.probe_tokens", "health.patience")
        if self.health.after_steps < -1:
            raise ValueError(
                f"health.after_steps must be -1 or >= 0, got {self.health.after_steps}"
            )
        if not 0.0 < self.health.collapse_cosine <= 1.0:
            raise ValueError(
                f"health.collapse_cosine must be in (0, 1], got {self.health.collapse_cosine}"
            )
        if not (0.0 <= self.health.entropy_margin < 1.0 and 0.0 <= self.health.nsp_margin < 0.5):
            raise ValueError(
                "health.entropy_margin must be in [0, 1), health.nsp_margin in [0, 0.5)"
            )
        if self.objective.name not in OBJECTIVES:
            raise ValueError(
                f"objective.name must be one of {', '.join(OBJECTIVES)}, got "
                f"{self.objective.name!r}"
            )
        if self.objective.span_boundary and self.objective.name != "mlm":
            raise ValueError(
                "objective.span_boundary adds to the masked LM: it needs objective.name=mlm"
            )
        if self.objective.name == "electra":
            if self.objective.nsp:
                raise ValueError(
                    "objective.name=electra trains no sentence task: set objective.nsp=false"
                )
            if not 0.0 < self.objective.generator_width <= 1.0:
                raise ValueError(
                    "objective.generator_width must be in (0, 1], got "
                    f"{self.objective.generator_width}"
                )
            if self.objective.discriminator_weight <= 0:
                raise ValueError("objective.discriminator_weight must be > 0")
        if self.objective.mask_mix:
            if self.objective.name == "ltr":
                raise ValueError("objective.mask_mix applies to 'mlm' only: 'ltr' masks nothing")
            parse_mask_mix(self.objective.mask_mix)
        if self.runtime.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"runtime.device must be auto, cuda or cpu: {self.runtime.device!r}")

    def model_config(self, *, vocab_size: int, pad_token_id: int) -> BertConfig:
        """The preset with the data's vocabulary, the `model` overrides and what the objective
        needs (causal attention for "ltr")."""
        values = {"vocab_size": vocab_size, "pad_token_id": pad_token_id} | self.model
        if self.objective.name == "ltr":  # a left-to-right LM needs causal attention
            if values.get("is_decoder") is False:
                raise ValueError("objective.name=ltr needs model.is_decoder true (its default)")
            values["is_decoder"] = True
        return PRESETS[self.preset](**values)

    def phase_steps(self) -> tuple[int, int]:
        """(phase-1 steps, phase-2 steps): the paper's 90/10 split of total_steps by default."""
        first = round(self.schedule.total_steps * self.schedule.phase1_fraction)
        return first, self.schedule.total_steps - first

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field, as logs and checkpoints record it.

        storage_options may hold credentials: only their names are kept.
        """
        values = dataclasses.asdict(self)
        values["data"]["storage_options"] = {k: "<hidden>" for k in self.data.storage_options}
        return values


# The sections of a PretrainConfig, each a dataclass of settings.
SECTIONS = (
    "data", "phase1", "phase2", "schedule", "optim", "checkpoint", "eval", "log", "runtime",
    "health", "objective",
)  # fmt: skip


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _positive(config: PretrainConfig, *names: str) -> None:
    for name in names:
        value = _get(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _at_least_zero(config: PretrainConfig, *names: str) -> None:
    for name in names:
        value = _get(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def parse_value(text: str, annotation: Any, *, name: str) -> Any:
    """A command-line string as a value of the field's type; errors name the field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    try:
        if origin in (typing.Union, types.UnionType) and type(None) in args:
            if text.lower() in ("none", "auto", "null"):
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return parse_value(text, inner, name=name)
        if annotation is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if annotation is int:
            number = float(text.replace("_", ""))
            if not number.is_integer():
                raise ValueError("expected an integer")
            return int(number)
        if annotation is float:
            return float(text)
        if annotation is str:
            return text
        if origin is tuple:
            parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
            if len(parts) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values")
            return tuple(
                parse_value(p.strip(), a, name=name) for p, a in zip(parts, args, strict=True)
            )
        if origin is list:
            value = json.loads(text)
            if not isinstance(value, list):
                raise ValueError("expected a JSON list")
            return [
                parse_value(v if isinstance(v, str) else json.dumps(v), args[0], name=name)
                for v in value
            ]
        if origin is dict or annotation is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"--set {name}={text}: {err}") from None
    raise ValueError(f"--set {name}: fields of type {annotation} cannot be set from text")


def apply_override(config: PretrainConfig, assignment: str) -> None:
    """Apply one `dotted.name=value` override in place; unknown names list the valid ones."""
    if "=" not in assignment:
        raise ValueError(f"--set {assignment}: expected name=value")
    name, text = assignment.split("=", 1)
    name = name.strip()
    parts = name.split(".")
    if parts[0] == "model" and len(parts) == 2:
        hints = typing.get_type_hints(BertConfig)
        if parts[1] not in hints:
            raise ValueError(
                f"--set {name}: BertConfig has no field {parts[1]!r}; fields: {', '.join(hints)}"
            )
        config.model[parts[1]] = parse_value(text, hints[parts[1]], name=name)
        return
    target: Any = config
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(type(target))
        if part not in hints:
            where = ".".join(parts[:depth]) or "the config"
            raise ValueError(
                f"--set {name}: {where} has no field {part!r}; fields: {', '.join(hints)}"
            )
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(hints[part]):
                raise ValueError(f"--set {name}: name a field inside it, e.g. {name}.<field>")
            setattr(target, part, parse_value(text, hints[part], name=name))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"--set {name}: {'.'.join(parts[: depth + 1])} has no fields")


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set NAME=VALUE`, repeatable, into `overrides`: any field of the config."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override any field of the trainer's config, e.g. {example}",
    )


def add_shortcut(parser: argparse.ArgumentParser, flag: str, name: str, help: str) -> None:
    """`flag N`: the same as `--set name=N`, in command-line order with the --set overrides."""
    parser.add_argument(
        flag,
        dest="overrides",
        action="append",
        default=[],
        type=lambda text: f"{name}={text}",
        metavar="N",
        help=f"{name}: {help}",
    )


def apply_overrides(config: PretrainConfig, assignments: list[str]) -> PretrainConfig:
    """Apply `dotted.name=value` overrides in order; returns the same config."""
    for assignment in assignments:
        apply_override(config, assignment)
    return config
