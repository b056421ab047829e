"""The chain's stages, declared: entry point, command line from parameters, outputs, summary.

Every stage runs through one generic task (flows/runner.py) as a subprocess,
`python -m <module> <args>`. A `StageCall` is one such run, fully described by plain data:
what runs, what it reads (with the manifest hashes that identify those inputs), where it
writes and which files, written last, say that it finished. Its cache key is made of exactly
the things that decide the output: module, arguments, inputs and the source of every project
module the stage imports. How it runs (Beam runner flags, torchrun, environment) is kept out of the key.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flows import storage
from flows.params import (
    PRETRAIN_RECIPE,
    PROSE_CORPUS,
    SAMPLE_CORPUS,
    BeamParams,
    ExtractParams,
    FinetuneParams,
    Init,
    PretrainingDataParams,
    PretrainParams,
    TaskSpec,
    ValidationParams,
    VocabParams,
)
from flows.sections import stage_argv
from model.finetune import TrainSettings
from pipelines.options import (
    ExtractConfig,
    PretrainingDataConfig,
    ValidationConfig,
    VocabConfig,
)
from schemas.manifest import MANIFEST_NAME, Manifest, ManifestError, canonical_json

ROOT = Path(__file__).resolve().parents[1]
GPU_TAG = "gpu"  # tag of training task runs: a Prefect concurrency limit on it caps GPU use
METRICS_NAME = "metrics.jsonl"  # training curves, one JSON object per logged step
SCORES_NAME = "scores.json"  # fine-tuning: every run's dev scores and the selection
# What a random-init fine-tuning run reads of its checkpoint: architecture and tokenizer only.
RANDOM_INIT_READS = ("config.json", "vocab.txt", "tokenizer_config.json")


class StageUnavailableError(RuntimeError):
    """The stage's entry point is not part of this checkout (yet)."""


class InputRef(BaseModel):
    """What a stage reads: another stage's output (by manifest hash) or a raw file (by size)."""

    path: str
    manifest_hash: str | None = None
    bytes: int | None = None


class StageCall(BaseModel):
    """One run of a stage: a subprocess, its inputs and the files that say it finished."""

    name: str = Field(description="Task run name, e.g. 'extract' or 'finetune-mrpc'.")
    kind: str = Field(description="Key into STAGES: how to read the output's summary.")
    module: str = Field(description="Run as `python -m <module>`.")
    args: list[str] = Field(description="Arguments that decide the output (in the cache key).")
    runtime_args: list[str] = Field(
        default_factory=list, description="Arguments that only decide how it runs (not in the key)."
    )
    launcher: list[str] = Field(
        default_factory=list, description="Command before `-m <module>`; [] = this Python."
    )
    output: str = Field(description="The stage's output directory.")
    markers: list[str] = Field(
        description="Files (relative to output) written last: present and unchanged = done."
    )
    inputs: list[InputRef] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Facts for reading the output (not in the key)."
    )

    def command(self) -> list[str]:
        """The full command line."""
        launcher = self.launcher or [sys.executable]
        return [*launcher, "-m", self.module, *self.args, *self.runtime_args]

    def code_version(self) -> str:
        return code_version(self.module)

    def cache_key(self) -> str:
        """sha256 of what decides the output: module, args, inputs and code version."""
        body = {
            "kind": self.kind,
            "module": self.module,
            "args": self.args,
            "inputs": [i.model_dump() for i in self.inputs],
            "code_version": self.code_version(),
        }
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    def check_available(self) -> None:
        """Raise StageUnavailableError if `python -m <module>` cannot run here."""
        try:
            found = importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise StageUnavailableError(
                f"stage '{self.name}' runs `python -m {self.module}`, which this checkout "
                "does not have"
            )


class StageResult(BaseModel):
    """What a finished stage hands on: where its output is, its fingerprint, a few figures."""

    name: str
    kind: str
    output: str
    markers: dict[str, str] = Field(description="Marker file (relative) -> its sha256.")
    summary: dict[str, Any] = Field(default_factory=dict, description="Small figures.")
    links: dict[str, str] = Field(default_factory=dict, description="Label -> path of outputs.")
    seconds: float = 0.0  # how long the stage ran (when it last ran)
    cache_key: str = ""
    cached: bool = False  # set when this flow run took the result from the cache

    @property
    def manifest_hash(self) -> str:
        """sha256 of the output's main manifest: how the next stage names this input."""
        return self.markers.get(MANIFEST_NAME) or next(iter(self.markers.values()))

    def as_input(self, path: str | None = None) -> InputRef:
        if path is None:
            return InputRef(path=self.output, manifest_hash=self.manifest_hash)
        relative = path[len(self.output) :].strip("/")
        return InputRef(path=path, manifest_hash=self.markers[f"{relative}/{MANIFEST_NAME}"])


# Reading what a stage wrote.


def marker_hashes(output: str, markers: list[str]) -> dict[str, str] | None:
    """sha256 of each marker file, or None if any is missing."""
    hashes = {}
    for marker in markers:
        digest = storage.sha256_file(storage.join(output, marker))
        if digest is None:
            return None
        hashes[marker] = digest
    return hashes


def outputs_intact(result: StageResult) -> str | None:
    """None if the output still is what `result` recorded; otherwise what changed."""
    for marker, digest in result.markers.items():
        path = storage.join(result.output, marker)
        current = storage.sha256_file(path)
        if current is None:
            return f"{path} is gone"
        if current != digest:
            return f"{path} changed since the stage ran"
        if marker.endswith(MANIFEST_NAME):
            try:
                manifest = Manifest.from_json(storage.read_bytes(path), source=path)
            except ManifestError as err:
                return str(err)
            directory = path[: -len(MANIFEST_NAME)].rstrip("/")
            for shard in manifest.shards:
                shard_path = storage.join(directory, shard.path)
                if storage.size(shard_path) != shard.bytes:
                    return f"{shard_path} is missing or has another size than its manifest says"
    return None


def _manifest(output: str, relative: str = MANIFEST_NAME) -> dict[str, Any]:
    return json.loads(storage.read_bytes(storage.join(output, relative)))


def _manifest_figures(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    figures = {
        f"{prefix}rows": body["total_rows"],
        f"{prefix}shards": len(body["shards"]),
        f"{prefix}bytes": sum(s["bytes"] for s in body["shards"]),
    }
    # A counter already named for its folder ("seq128_examples" in seq128/) keeps one name.
    scope = prefix.replace(".", "_") if prefix else None
    figures.update(
        {
            f"{prefix}{k.removeprefix(scope) if scope else k}": v
            for k, v in body.get("counters", {}).items()
        }
    )
    return figures


def summarize_manifests(call: StageCall) -> dict[str, Any]:
    """Row, shard and byte counts and the counters of each manifest the stage wrote."""
    figures: dict[str, Any] = {}
    for marker in call.markers:
        prefix = "" if marker == MANIFEST_NAME else marker.split("/")[0] + "."
        figures.update(_manifest_figures(_manifest(call.output, marker), prefix))
    return figures


def summarize_vocab(call: StageCall) -> dict[str, Any]:
    """Vocabulary size, counters, and the numbers of quality.json."""
    figures = {"tokens": _manifest(call.output)["total_rows"]}
    figures.update(_manifest(call.output).get("counters", {}))
    quality = storage.join(call.output, "quality.json")
    if storage.exists(quality):
        figures.update(flatten_numbers(json.loads(storage.read_bytes(quality)), prefix="quality."))
    return figures


def summarize_stats(call: StageCall) -> dict[str, Any]:
    """The headline numbers of the validation stage's stats.json."""
    body = json.loads(storage.read_bytes(storage.join(call.output, call.markers[0])))
    keys = (
        "passed",
        "examples",
        "shards",
        "mean_length",
        "mean_segment_a_length",
        "not_next_share",
        "swapped_share",  # sentence-order data (ALBERT) in place of not_next_share
        "mask_rate",
        "masked_per_example",
        "unknown_token_rate",
    )
    return {k: body[k] for k in keys if k in body}


def summarize_training(call: StageCall) -> dict[str, Any]:
    """Last loss and accuracies of the phase, its mean throughput and last evaluation."""
    phase = call.meta.get("phase")
    every = read_metrics(storage.join(call.output, METRICS_NAME))
    records = [r for r in every if phase is None or r.get("phase") == phase]
    train = [r for r in records if r.get("event") == "train"]
    figures: dict[str, Any] = {}
    starts = [r for r in every if r.get("event") == "start"]
    if starts:  # the model's size, and what its binary head predicts (NSP or sentence order)
        figures.update(
            {k: starts[-1][k] for k in ("parameters", "sentence_task") if k in starts[-1]}
        )
    if train:
        last = train[-1]
        keys = ("step", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "lr")
        keys += ("rtd_loss", "rtd_accuracy", "replaced_share")  # ELECTRA's discriminator
        keys += ("sbo_loss", "sbo_accuracy")  # SpanBERT's span-boundary head
        figures.update({k: last[k] for k in keys if k in last})
        for k in ("sequences_per_s", "tokens_per_s"):
            values = [r[k] for r in train if isinstance(r.get(k), int | float)]
            if values:
                figures[f"mean_{k}"] = sum(values) / len(values)
    evals = [r for r in records if r.get("event") == "eval"]
    if evals:
        figures.update(
            {f"eval_{k}": v for k, v in flatten_numbers(evals[-1]).items() if k != "phase"}
        )
    checks = [r for r in records if r.get("event") == "health" and "mlm_accuracy_ratio" in r]
    if checks:  # the trainer's last check against the unigram baseline (model/health.py)
        last = checks[-1]
        figures["health"] = last["status"]
        figures["health_problems"] = ", ".join(last["problems"]) or "none"
        keys = ("mlm_accuracy_ratio", "unigram_accuracy", "token_cosine", "nsp_chance")
        figures.update({f"health_{k}": last[k] for k in keys if k in last})
    probes = [r for r in records if r.get("event") == "fill_mask"]
    if probes:  # what the phase's export predicts for the probe sentences
        figures["fill_mask"] = [
            {"text": p["text"], "pieces": p["pieces"]} for p in probes[-1]["predictions"]
        ]
    figures["checkpoints"] = len(_checkpoint_dirs(call.output))
    return figures


def phase_markers(records: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """Where each training phase but the last ends, for the curves: (its last step, label)."""
    last: dict[int, float] = {}
    for r in records:
        if isinstance(r.get("phase"), int) and isinstance(r.get("step"), int | float):
            last[r["phase"]] = max(last.get(r["phase"], 0.0), float(r["step"]))
    phases = sorted(last)
    return [(last[p], f"end of phase {p}") for p in phases[:-1]]


def _checkpoint_dirs(output: str) -> list[str]:
    return [d for d in storage.list_dirs(storage.join(output, "checkpoints")) if "/step-" in d]


def summarize_scores(call: StageCall) -> dict[str, Any]:
    """A fine-tuning run's main dev score (mean over seeds), other metrics and choice."""
    body = json.loads(storage.read_bytes(storage.join(call.output, call.markers[0])))
    metric = body.get("select_metric", "")
    dev = body.get("dev", {})
    figures: dict[str, Any] = {
        "task": body.get("task", call.meta.get("task", "")),
        "init": body.get("init", "pretrained"),
        "metric": metric,
        "score": (dev.get(metric) or {}).get("mean"),
        "std": (dev.get(metric) or {}).get("std"),
    }
    for name, summary in dev.items():
        if name != metric and isinstance(summary, dict):
            figures[name] = summary.get("mean")
    for key, value in (body.get("selected") or {}).items():
        figures[f"selected.{key}"] = value
    paper = [
        p for p in body.get("paper", []) if p.get("metric") == metric and p.get("model") == "base"
    ]
    if paper:
        figures["paper_bert_base"] = paper[0]["value"]
        figures["paper_split"] = paper[0]["split"]
    return figures


def summarize_corpora(call: StageCall) -> dict[str, Any]:
    """Documents and words per source and split of the registry prose (corpus.json)."""
    body = json.loads(storage.read_bytes(storage.join(call.output, CORPUS_NAME)))
    figures: dict[str, Any] = {}
    for name, source in sorted(body["sources"].items()):
        figures[f"{name}_package"] = f"{source['package']}=={source['version']}"
        for split, counts in sorted(source["splits"].items()):
            figures[f"{name}_{split}_documents"] = counts["documents"]
            figures[f"{name}_{split}_words"] = counts["words"]
    return figures


def summarize_sample_tasks(call: StageCall) -> dict[str, Any]:
    """Examples per task and split."""
    body = _manifest(call.output)
    return {s["path"].removesuffix(".jsonl"): s["rows"] for s in body["shards"]}


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file; [] when there is none."""
    if not storage.exists(path):
        return []
    records = []
    for line in storage.read_text(path).splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash: the rest is still good
    return records


def flatten_numbers(body: Any, prefix: str = "", limit: int = 60) -> dict[str, Any]:
    """Numbers, booleans and short strings of nested JSON as dotted keys (at most `limit`)."""
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            out[prefix + key] = value
        elif isinstance(value, str) and len(value) <= 80:
            out[prefix + key] = value

    walk(body, "")
    return out


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """How to run and read one kind of stage."""

    module: str  # the stage's entry point, `python -m <module>`
    summarize: Callable[[StageCall], dict[str, Any]]  # figures of a finished output
    gpu: bool = False  # trains on an accelerator: gets the GPU tag
    options: type | None = None  # the config dataclass declaring the stage's options


STAGES: dict[str, StageSpec] = {
    "corpora": StageSpec(module="pipelines.corpora", summarize=summarize_corpora),
    "extract": StageSpec(
        module="pipelines.extract", summarize=summarize_manifests, options=ExtractConfig
    ),
    "vocab": StageSpec(module="pipelines.vocab", summarize=summarize_vocab, options=VocabConfig),
    "pretraining_data": StageSpec(
        module="pipelines.pretraining_data",
        summarize=summarize_manifests,
        options=PretrainingDataConfig,
    ),
    "validate": StageSpec(
        module="pipelines.validate", summarize=summarize_stats, options=ValidationConfig
    ),
    "sample_tasks": StageSpec(module="flows.sample_tasks", summarize=summarize_sample_tasks),
    "pretrain": StageSpec(module="model.pretrain", summarize=summarize_training, gpu=True),
    "finetune": StageSpec(
        module="model.finetune", summarize=summarize_scores, gpu=True, options=TrainSettings
    ),
    "features_extract": StageSpec(module="model.features", summarize=summarize_manifests, gpu=True),
    "features_train": StageSpec(module="model.features", summarize=summarize_scores),
}


PROJECT_PACKAGES = ("schemas", "bertdata", "pipelines", "wordpiece", "model", "flows")
# ast.parse from concurrent threads (stages run side by side as task-runner threads) can fail
# with "SystemError: AST constructor recursion depth mismatch" on CPython 3.11.7.
_AST_LOCK = threading.Lock()


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(path: Path, module: str) -> set[str]:
    """Modules a source file imports (absolute names; relative imports resolved)."""
    with _AST_LOCK:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


def module_sources(module: str) -> dict[str, Path]:
    """The stage module and every project module it imports, directly or not (read statically)."""
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _module_file(name)
        if path is None:
            continue
        found[name] = path
        for parent in range(name.count(".")):  # a package's __init__ runs before its modules
            todo.append(name.rsplit(".", parent + 1)[0])
        todo.extend(n for n in _imports(path, name) if n.split(".")[0] in PROJECT_PACKAGES)
    return found


@cache
def _digest(stamp: tuple[tuple[str, str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, path, _, _ in stamp:
        digest.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()


def code_version(module: str) -> str:
    """Project version plus a hash of the sources the stage runs: an edit elsewhere (another
    stage, a test) keeps its cached results."""
    try:
        version = metadata.version("bert-pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    sources = module_sources(module)
    stamp = tuple(
        (name, str(path), path.stat().st_mtime_ns, path.stat().st_size)
        for name, path in sorted(sources.items())
    )
    return f"{version} {module}:{_digest(stamp)[:16]}"


def make_call(
    kind: str,
    *,
    name: str | None = None,
    args: list[str],
    output: str,
    markers: list[str],
    inputs: list[InputRef],
    runtime_args: list[str] | None = None,
    launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
) -> StageCall:
    """A StageCall for a registered kind of stage."""
    spec = STAGES[kind]
    return StageCall(
        name=name or kind,
        kind=kind,
        module=spec.module,
        args=args,
        runtime_args=runtime_args or [],
        launcher=launcher or [],
        output=output,
        markers=markers,
        inputs=inputs,
        tags=[GPU_TAG] if spec.gpu else [],
        env=env or {},
        meta=meta or {},
    )


def summarize(call: StageCall) -> dict[str, Any]:
    return STAGES[call.kind].summarize(call)


# Building each stage's command line from the flow parameters.


def beam_call(
    kind: str,
    params: BaseModel,
    beam: BeamParams,
    *,
    args: list[str],
    output: str,
    inputs: list[InputRef],
    markers: list[str] | None = None,
    name: str | None = None,
) -> StageCall:
    """A Beam job's call: its arguments, the section's own options and extra_args, Beam's
    runner flags (not part of the cache key)."""
    return make_call(
        kind,
        name=name,
        args=args + stage_argv(STAGES[kind].options, params) + list(params.extra_args),
        runtime_args=beam.args(),
        output=output,
        markers=markers or [MANIFEST_NAME],
        inputs=inputs,
    )


def _flag(name: str, value: Any) -> list[str]:
    return [f"--{name}", str(value)]


CORPUS_NAME = "corpus.json"  # pipelines/corpora.py's record of what it fetched, written last


def corpora_call(*, workdir: str, heldout_fraction: float) -> StageCall:
    """The registry prose (pipelines/corpora.py): train/ and heldout/ JSONL files per source."""
    output = storage.join(workdir, "corpus")
    return make_call(
        "corpora",
        args=["--output", output, *_flag("heldout-fraction", heldout_fraction)],
        output=output,
        markers=[CORPUS_NAME],
        inputs=[],
    )


def corpus_inputs(
    patterns: list[str],
    sample_dump: str | None,
    *,
    prose: StageResult | None = None,
    split: str = "train",
) -> list[InputRef]:
    """The corpus files, with sizes: a new or changed file changes the extraction's key.

    'sample' is the sample dump; 'prose' the `split` of the registry prose in `prose`.
    """
    refs: list[InputRef] = []
    for pattern in patterns:
        if pattern == SAMPLE_CORPUS:
            if sample_dump is None:
                raise ValueError("the 'sample' corpus needs the sample dump's path")
            pattern = sample_dump
        elif pattern == PROSE_CORPUS:
            if prose is None:
                raise ValueError("the 'prose' corpus needs the corpora stage's output")
            pattern = storage.join(prose.output, split, "*.jsonl")
        files = storage.glob_files(storage.absolute(pattern))
        if not files:
            raise FileNotFoundError(f"extract.inputs: '{pattern}' matches no file")
        refs.extend(InputRef(path=path, bytes=size) for path, size in files)
    return sorted({r.path: r for r in refs}.values(), key=lambda r: r.path)


def extract_call(
    params: ExtractParams,
    beam: BeamParams,
    *,
    workdir: str,
    corpus: list[InputRef],
    heldout: bool = False,
) -> StageCall:
    """Documents of the corpus, or (heldout) of the files held out of pretraining."""
    output = storage.join(workdir, "heldout-documents" if heldout else "documents")
    args = ["--output", output]
    for ref in corpus:
        args += ["--input", ref.path]
    name = "extract-heldout" if heldout else None
    return beam_call("extract", params, beam, args=args, output=output, inputs=corpus, name=name)


def vocab_call(
    params: VocabParams, beam: BeamParams, *, workdir: str, documents: StageResult
) -> StageCall:
    output = storage.join(workdir, "vocab")
    args = ["--documents", documents.output, "--output", output]
    inputs = [documents.as_input()]
    if params.vocab_file:
        args += _flag("vocab-file", params.vocab_file)
        inputs.append(InputRef(path=params.vocab_file, bytes=storage.size(params.vocab_file)))
    return beam_call("vocab", params, beam, args=args, output=output, inputs=inputs)


def pretraining_data_call(
    params: PretrainingDataParams,
    beam: BeamParams,
    *,
    workdir: str,
    documents: StageResult,
    vocab: StageResult,
    heldout: bool = False,
    variant: str = "",
) -> StageCall:
    """Pre-masked pairs; for held-out documents (heldout) one copy in one shard per length.
    A `variant` (an ablation arm with data of its own) writes beside the shared data."""
    if heldout:
        params = params.model_copy(update={"dupe_factor": 1, "num_shards": 1})
    output = storage.join(workdir, "heldout-pretraining" if heldout else "pretraining")
    output += f"-{variant}" if variant else ""
    name = "pretraining-data-heldout" if heldout else "pretraining-data"
    args = ["--documents", documents.output, "--vocab", vocab.output, "--output", output]
    return beam_call(
        "pretraining_data",
        params,
        beam,
        args=args,
        output=output,
        inputs=[documents.as_input(), vocab.as_input()],
        markers=[f"seq{n}/{MANIFEST_NAME}" for n in params.max_seq_lengths],
        name=f"{name}-{variant}" if variant else (name if heldout else None),
    )


def validate_call(
    params: ValidationParams,
    beam: BeamParams,
    *,
    data: StageResult,
    length: int,
    vocab: StageResult,
    variant: str = "",
) -> StageCall:
    directory = storage.join(data.output, f"seq{length}")
    args = ["--data", directory, "--vocab", vocab.output]
    args += stage_argv(STAGES["validate"].options, params)
    runtime = [a for a in beam.args() if not a.startswith("--direct_")]  # small job: one worker
    return make_call(
        "validate",
        name=f"validate-seq{length}" + (f"-{variant}" if variant else ""),
        args=args + list(params.extra_args),
        runtime_args=runtime if beam.runner == "dataflow" else [],
        output=directory,
        markers=["stats.json"],
        inputs=[data.as_input(directory), vocab.as_input()],
    )


def torch_launcher(nproc_per_node: int) -> list[str]:
    """`torchrun` for several processes per machine, this Python for one."""
    if nproc_per_node <= 1:
        return []
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]


def _set(name: str, value: Any) -> list[str]:
    return ["--set", f"{name}={value}"]


def pretrain_run_dir(params: PretrainParams, *, workdir: str, data: StageResult) -> str:
    """The trainer's run directory: one per configuration, so a changed parameter starts
    afresh while the same one resumes from its newest checkpoint."""
    body = {"params": params.model_dump(exclude={"nproc_per_node", "loader_workers"}),
            "data": data.markers}  # fmt: skip
    digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:10]
    return storage.join(workdir, "pretrain", f"{params.model}-{digest}")


def pretrain_call(
    params: PretrainParams,
    *,
    workdir: str,
    phase: int,
    data: StageResult,
    lengths: list[int],
    vocab: StageResult,
    validation: StageResult | None = None,
) -> StageCall:
    """Phase 1 at the shortest length, phase 2 at the longest, in one run directory;
    evaluated on `validation` (pretraining data of held-out documents) when given."""
    output = pretrain_run_dir(params, workdir=workdir, data=data)
    args = ["--preset", params.model, "--data", data.output, "--vocab", vocab.output]
    args += ["--output", output, "--phase", str(phase)]
    args += _set("phase1.seq_length", lengths[0]) + _set("phase2.seq_length", lengths[-1])
    runtime = _set("log.progress", "false")
    for name, paths in PRETRAIN_RECIPE.items():
        value = getattr(params, name)
        for path in paths:
            setting = _set(path, value)
            if path == "data.num_workers":
                runtime += setting
            else:
                args += setting
    inputs = [data.as_input(storage.join(data.output, f"seq{n}")) for n in sorted(set(lengths))]
    if validation is not None:
        args += _set("data.validation_dir", validation.output)
        inputs += [
            validation.as_input(storage.join(validation.output, f"seq{n}"))
            for n in sorted(set(lengths))
        ]
    return make_call(
        "pretrain",
        name=f"pretrain-phase{phase}",
        args=args + list(params.extra_args),
        runtime_args=runtime,
        launcher=torch_launcher(params.nproc_per_node),
        output=output,
        markers=[f"phase{phase}/config.json", f"phase{phase}/model.safetensors"],
        inputs=inputs + [vocab.as_input()],
        meta={"phase": phase},
    )


def task_data_dir(params: FinetuneParams, task: TaskSpec, workdir: str | None) -> str:
    """Where a task's files are: its own `data`, under finetune.data_dir or <workdir>/tasks."""
    base = params.data_dir or (storage.join(workdir, "tasks") if workdir else "")
    data = task.data or task.name
    if storage.is_remote(data) or data.startswith("/"):
        return data
    if not base:
        raise ValueError(f"finetune.data_dir is needed to find task {task.name!r}'s files")
    return storage.join(storage.absolute(base), data)


def finetune_stage_name(task: str, init: Init) -> str:
    """`finetune-TASK` from the pretrained weights, `finetune-TASK-random` from random ones."""
    return f"finetune-{task}" if init == "pretrained" else f"finetune-{task}-{init}"


def finetune_output(output: str, init: Init) -> str:
    """Where one init's fine-tuned tasks go: `output`, or `output`-random beside it."""
    return output if init == "pretrained" else f"{output.rstrip('/')}-{init}"


def finetuned_task(result: StageResult) -> tuple[str, str]:
    """(task name, init) of a fine-tuning stage's result."""
    init = result.summary.get("init", "pretrained")
    name = result.name.removeprefix("finetune-")
    return (name if init == "pretrained" else name.removesuffix(f"-{init}")), init


def finetune_call(
    params: FinetuneParams,
    *,
    task: TaskSpec,
    checkpoint: str,
    checkpoint_inputs: list[InputRef],
    output: str,
    data_dir: str,
    init: Init = "pretrained",
) -> StageCall:
    """One task: grid search on dev over the given seeds, the best model saved with scores.

    A random init reads only the checkpoint's config and tokenizer, so those files are its
    inputs instead of `checkpoint_inputs`: newer weights of the same shape keep its cached result.
    """
    grid = (
        f"lr={','.join(map(str, params.learning_rates))} "
        f"batch={','.join(map(str, params.batch_sizes))} "
        f"epochs={','.join(map(str, params.epochs))}"
    )
    args = ["--task", task.task, "--data", data_dir, "--checkpoint", checkpoint]
    args += ["--output", output, "--grid", grid, "--seeds", ",".join(map(str, params.seeds))]
    args += _flag("init", init)
    if params.max_seq_length:
        args += _flag("max-seq-length", params.max_seq_length)
    if params.max_train_examples:
        args += _flag("max-train-examples", params.max_train_examples)
    args += stage_argv(STAGES["finetune"].options, params)
    if params.precision != "auto":
        args += _flag("precision", params.precision)
    args += _task_options(task)
    data_files = _task_files(data_dir)
    if init == "random":
        checkpoint_inputs = [
            InputRef(path=path, manifest_hash=digest)
            for path in (storage.join(checkpoint, name) for name in RANDOM_INIT_READS)
            if (digest := storage.sha256_file(path)) is not None
        ]
    return make_call(
        "finetune",
        name=finetune_stage_name(task.name, init),
        args=args + list(params.extra_args),
        output=output,
        markers=[SCORES_NAME],
        inputs=checkpoint_inputs + data_files,
        meta={"task": task.name, "init": init},
    )


def sample_tasks_call(*, workdir: str, documents: StageResult, data_dir: str) -> StageCall:
    """The sample's fine-tuning task, built from the corpus (flows/sample_tasks.py)."""
    return make_call(
        "sample_tasks",
        args=["--documents", documents.output, "--output", storage.absolute(data_dir)],
        output=storage.absolute(data_dir),
        markers=[MANIFEST_NAME],
        inputs=[documents.as_input()],
    )


def _task_options(task: TaskSpec) -> list[str]:
    """--task-option KEY=VALUE for each of the task's options, in a stable order."""
    return [part for k, v in sorted(task.options.items()) for part in ("--task-option", f"{k}={v}")]


def _task_files(data_dir: str) -> list[InputRef]:
    return [
        InputRef(path=path, bytes=size)
        for path, size in storage.glob_files(storage.join(data_dir, "*"))
    ]


def features_extract_call(
    params: FinetuneParams,
    *,
    task: TaskSpec,
    checkpoint: str,
    checkpoint_inputs: list[InputRef],
    output: str,
    data_dir: str,
    layers: list[int],
) -> StageCall:
    """The paper's feature-based approach, step 1: the frozen encoder's chosen layers,
    concatenated, for every example of the task (python -m model.features extract)."""
    args = ["extract", "--task", task.task, "--data", data_dir, "--checkpoint", checkpoint]
    args += ["--output", output, f"--layers={','.join(map(str, layers))}", "--combine", "concat"]
    if params.max_seq_length:
        args += _flag("max-seq-length", params.max_seq_length)
    args += _task_options(task)
    return make_call(
        "features_extract",
        name=f"features-{task.name}",
        args=args,
        output=output,
        markers=[MANIFEST_NAME],
        inputs=checkpoint_inputs + _task_files(data_dir),
        meta={"task": task.name},
    )


def features_train_call(
    params: FinetuneParams, *, task: TaskSpec, features: StageResult, output: str
) -> StageCall:
    """Step 2: a small model trained on the frozen features over the fine-tuning seeds, scored
    on dev (python -m model.features train)."""
    args = ["train", "--features", features.output, "--output", output]
    args += ["--seeds", ",".join(map(str, params.seeds))]
    return make_call(
        "features_train",
        name=f"feature-based-{task.name}",
        args=args,
        output=output,
        markers=[SCORES_NAME],
        inputs=[features.as_input()],
        meta={"task": task.name, "init": "feature-based"},
    )
