"""Flow parameters: validated, described pydantic models, and the presets they start from.

A flow takes a preset name and optional sections. A section you give overrides only the fields
you set in it; every other field comes from the deployment's section of that name (a run from a
deployment), else from the preset. Field constraints (ranges, choices, patterns, unknown names)
are part of the deployment's parameter schema, so the Prefect server rejects a bad value when
the run is created and names the field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.sample_tasks import TASKS as CORPUS_TASKS
from flows.sections import ExtraArgs, Section, recipe_base, section_base
from model.finetune import TrainSettings
from model.inits import Init
from model.train_config import PretrainConfig
from pipelines.options import (
    ExtractConfig,
    PretrainingDataConfig,
    ValidationConfig,
    VocabConfig,
)

PresetName = Literal["sample", "small", "base", "base-dataflow"]
StageName = Literal[
    "extract", "vocab", "pretraining_data", "validate", "pretrain_phase1", "pretrain_phase2",
    "finetune",
]  # fmt: skip
STAGE_ORDER: tuple[str, ...] = StageName.__args__
ModelPreset = Literal[
    "bert_tiny", "bert_mini", "bert_small", "bert_medium", "bert_base", "bert_large",
    "bert_l3_h768_a12", "bert_l6_h768_a3", "bert_l6_h768_a12", "bert_l12_h1024_a16",
]  # fmt: skip
Precision = Literal["auto", "fast", "fp32", "bf16"]
PRECISION_HELP = (
    "'auto': bf16 on GPU, fp32 on CPU; 'fast': bf16 also on a CPU that computes it natively "
    "(AVX512-BF16 or AMX), fp32 on other CPUs."
)
SAMPLE_CORPUS = "sample"  # stands for the embedded Wikipedia excerpt
# Stands for the English prose that registry packages ship (pipelines/corpora.py): its train
# split in extract.inputs, its held-out split in extract.heldout_inputs.
PROSE_CORPUS = "prose"
SAMPLE_TASKS_DIR = "sample-tasks"  # data_dir value: the tasks built from the corpus itself
GCS_URI = r"^gs://[a-z0-9][-_.a-z0-9]{1,221}(/.*)?$"

# The Dataflow rule in JSON schema, put on a flow's `beam` parameter (next to, not inside,
# its "BeamParams or null" choice) so that the server refuses a run without the project and
# names what is missing.
DATAFLOW_RULE = {
    "if": {"properties": {"runner": {"const": "dataflow"}}, "required": ["runner"]},
    "then": {
        "required": ["project", "region", "temp_location"],
        "properties": {
            "project": {"minLength": 1},
            "region": {"minLength": 1},
            "temp_location": {"pattern": "^gs://"},
        },
    },
}


class BeamParams(Section):
    """Where the Beam stages (extraction, vocabulary, pretraining data, validation) run."""

    runner: Literal["direct", "dataflow"] = Field(
        "direct",
        description="'direct': Beam's local engine on this worker; 'dataflow': Google Cloud "
        "Dataflow (needs project, region and a gs:// temp_location).",
    )
    direct_num_workers: int = Field(
        1, ge=1, le=1024, description="Local engine: parallel workers (processes or threads)."
    )
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = Field(
        "in_memory", description="Local engine: how its workers run."
    )
    project: str = Field("", description="Dataflow: the Google Cloud project id.")
    region: str = Field("", description="Dataflow: the region, e.g. 'europe-west4'.")
    temp_location: str = Field(
        "",
        description="Dataflow: a gs:// folder for temporary files.",
        json_schema_extra={"pattern": r"^$|^gs://"},
    )
    sdk_container_image: str = Field(
        "",
        description="Dataflow: the worker image built from dataflow/Dockerfile "
        "(the project's code and text libraries on the Beam SDK image).",
    )
    max_num_workers: int = Field(0, ge=0, description="Dataflow: autoscaling cap; 0: Dataflow's.")
    extra_args: ExtraArgs = []

    @model_validator(mode="after")
    def _dataflow_needs_a_project(self) -> BeamParams:
        if self.runner == "dataflow":
            for name in ("project", "region", "temp_location"):
                if not getattr(self, name):
                    raise ValueError(f"beam.{name} is required when beam.runner is 'dataflow'")
        return self

    def args(self) -> list[str]:
        """Beam pipeline options for a stage's command line."""
        if self.runner == "direct":
            args = [
                f"--direct_num_workers={self.direct_num_workers}",
                f"--direct_running_mode={self.direct_running_mode}",
            ]
        else:
            args = [
                "--runner=DataflowRunner",
                f"--project={self.project}",
                f"--region={self.region}",
                f"--temp_location={self.temp_location}",
            ]
            if self.sdk_container_image:
                args.append(f"--sdk_container_image={self.sdk_container_image}")
            if self.max_num_workers:
                args.append(f"--max_num_workers={self.max_num_workers}")
        return args + list(self.extra_args)


class CorpusFields(Section):
    """Which files extraction reads (the flow's own fields of the `extract` section)."""

    inputs: list[str] = Field(
        [SAMPLE_CORPUS],
        description="Corpus files or globs, local or gs:// (Wikipedia XML dumps, plain text, "
        "JSONL, Parquet). 'sample' is the embedded Wikipedia excerpt; 'prose' the train split "
        "of the English prose that registry packages ship (pipelines/corpora.py).",
    )
    heldout_inputs: list[str] = Field(
        [],
        description="Corpus files held out of pretraining, in the same format: their documents "
        "give the held-out MLM/NSP evaluation and the fine-tuning tasks built from the corpus. "
        "'prose': the held-out split of the registry prose. []: evaluate on held-out shards.",
    )
    prose_heldout_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="'prose': share of its documents held out (chosen by a hash of the id).",
    )


class ExtractParams(
    section_base("ExtractSection", ExtractConfig, defaults={"num_shards": 64}, base=CorpusFields)
):
    """Extraction: corpus files -> sentence-split document shards (python -m pipelines.extract);
    beside the corpus, its fields are the job's options (pipelines/options.py)."""


class VocabParams(section_base("VocabSection", VocabConfig)):
    """WordPiece vocabulary from the documents (python -m pipelines.vocab); beside vocab_file,
    its fields are the job's options (pipelines/options.py)."""

    vocab_file: str = Field(
        "", description="Adopt this existing vocab.txt instead of learning one ('' = learn)."
    )


class PretrainingDataParams(section_base("PretrainingDataSection", PretrainingDataConfig)):
    """Pre-masked A/B pairs with NSP labels (python -m pipelines.pretraining_data); its fields
    are the job's options, declared once in pipelines/options.py."""

    @model_validator(mode="after")
    def _valid_together(self) -> PretrainingDataParams:
        try:
            self.config().validate()
        except ValueError as err:
            raise ValueError(f"pretraining_data: {err}") from err
        return self

    def config(self) -> PretrainingDataConfig:
        """The job's configuration these parameters give."""
        values = self.model_dump(exclude={"extra_args"})
        return PretrainingDataConfig(
            **{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
        )


class ValidationParams(section_base("ValidationSection", ValidationConfig)):
    """Checks of the pretraining data; a broken invariant fails the run (pipelines.validate).
    Its fields are the job's tolerances (pipelines/options.py)."""


# The flows' pretraining recipe: each field sets the trainer's settings at these dotted paths
# (model/train_config.py, `--set path=value`), and takes its help and bounds from the first.
PRETRAIN_RECIPE: dict[str, tuple[str, ...]] = {
    "total_steps": ("schedule.total_steps",),
    "phase1_fraction": ("schedule.phase1_fraction",),
    "phase1_batch_size": ("phase1.global_batch_size",),
    "phase2_batch_size": ("phase2.global_batch_size",),
    "micro_batch_size": ("phase1.micro_batch_size", "phase2.micro_batch_size"),
    "learning_rate": ("optim.lr",),
    "warmup_fraction": ("optim.warmup_fraction",),
    "weight_decay": ("optim.weight_decay",),
    "checkpoint_every": ("checkpoint.every", "eval.every"),
    "keep_checkpoints": ("checkpoint.keep_last",),
    "log_every": ("log.every",),
    "precision": ("runtime.precision",),
    "seed": ("runtime.seed",),
    "stop_on_collapse": ("health.stop_on_collapse",),
    "loader_workers": ("data.num_workers",),  # how, not what: not part of the stage's key
}


class PretrainModel(Section):
    """Which model to pretrain: the flow's own field of the `pretrain` section."""

    model: ModelPreset = Field("bert_base", description="Model size (model/config.py presets).")


class PretrainParams(
    recipe_base(
        "PretrainSection",
        PretrainConfig,
        PRETRAIN_RECIPE,
        defaults={"loader_workers": 4},
        base=PretrainModel,
    )
):
    """Pretraining, phase 1 at the shortest length, phase 2 at the longest
    (python -m model.pretrain); the recipe's fields are the trainer's settings."""

    nproc_per_node: int = Field(
        1, ge=1, le=64, description="Processes (GPUs) per machine; >1 launches with torchrun."
    )
    extra_args: ExtraArgs = []

    def phase_steps(self) -> tuple[int, int]:
        """(phase-1 steps, phase-2 steps), as the trainer splits them."""
        first = round(self.total_steps * self.phase1_fraction)
        return first, self.total_steps - first


class TaskSpec(Section):
    """One fine-tuning task: which processor, where its files are, its options."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Short name: output folder and label."
    )
    task: str = Field(
        description="model.finetune task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, "
        "squad_v1, squad_v2, conll2003, swag or custom."
    )
    data: str = Field(
        "", description="Folder of the task's files; relative = under finetune.data_dir; '' = name."
    )
    options: dict[str, str] = Field(
        {}, description="Task options (--task-option KEY=VALUE), e.g. text_a for custom tasks."
    )


class FinetuneFields(Section):
    """Tasks, grid, seeds and inits: the flow's own fields of the `finetune` section."""

    tasks: list[TaskSpec | str] = Field(
        ["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte", "squad_v1"],
        description="Tasks to fine-tune and evaluate, one stage each (fanned out): a task name "
        "(its files in <data_dir>/<name>) or a full task spec.",
    )
    data_dir: str = Field(
        "",
        description="Folder holding one sub-folder of files per task (local); '' = <workdir>/tasks.",
    )
    learning_rates: list[Annotated[float, Field(gt=0.0)]] = Field(
        [5e-5, 3e-5, 2e-5], min_length=1, description="Grid: learning rates; best on dev wins."
    )
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        [32], min_length=1, description="Grid: batch sizes."
    )
    epochs: list[Annotated[int, Field(ge=1)]] = Field(
        [3], min_length=1, description="Grid: epochs."
    )
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        [0], min_length=1, description="Seeds per grid point; the best mean on dev wins."
    )
    inits: list[Init] = Field(
        ["pretrained"],
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="Where fine-tuning starts, one stage per task and init: 'pretrained' (the "
        "checkpoint's weights; output finetuned/<task>) and 'random' (fresh weights of the "
        "checkpoint's architecture and vocabulary, drawn from each seed; output "
        "finetuned-random/<task>). With both, the report compares them per task. "
        "evaluate-bert scores checkpoints, so it fine-tunes from 'pretrained' only.",
    )
    max_seq_length: int = Field(0, ge=0, le=4096, description="Longest input; 0 = the task's.")
    max_train_examples: int = Field(
        0, ge=0, description="Train on the first N examples only; 0 = all."
    )
    precision: Precision = Field("auto", description=PRECISION_HELP)
    build_sample_tasks: bool = Field(
        False,
        description="pretrain-bert: first build the sample's sentence-order task from the "
        "corpus into data_dir.",
    )

    def task_specs(self) -> list[TaskSpec]:
        """Every task as a full spec."""
        return [TaskSpec(name=t, task=t) if isinstance(t, str) else t for t in self.tasks]


class FinetuneParams(section_base("FinetuneSection", TrainSettings, base=FinetuneFields)):
    """Fine-tuning and evaluation on downstream tasks (python -m model.finetune): the tasks,
    grid, seeds and inits, then the optimizer and loop settings (model/finetune.py's
    TrainSettings)."""

    @model_validator(mode="after")
    def _each_init_once(self) -> FinetuneParams:
        if len(set(self.inits)) != len(self.inits):
            raise ValueError(f"finetune.inits repeats a value: {self.inits}")
        return self


# Built from the corpus by flows/sample_tasks.py: are two consecutive sentences in order?
def corpus_task(name: str) -> TaskSpec:
    """A task that flows/sample_tasks.py builds from the corpus, as a fine-tuning task spec."""
    return TaskSpec(
        name=name, task="custom", data=name, options=CORPUS_TASKS[name].finetune_options
    )


SAMPLE_ORDER_TASK = corpus_task("sentence-order")


class PretrainBertParams(BaseModel):
    """Everything `pretrain-bert` needs, resolved from a preset and the sections given."""

    model_config = ConfigDict(extra="forbid")

    preset: PresetName
    workdir: str = Field(description="Where every stage writes its output (local or gs://).")
    stop_after: StageName | None = Field(
        None, description="Run the chain up to this stage, then write the report."
    )
    extract: ExtractParams
    vocab: VocabParams
    pretraining_data: PretrainingDataParams
    validation: ValidationParams
    pretrain: PretrainParams
    finetune: FinetuneParams
    beam: BeamParams

    @model_validator(mode="after")
    def _consistent(self) -> PretrainBertParams:
        if not self.extract.inputs:
            raise ValueError("extract.inputs is empty: give the corpus files or globs")
        if not self.finetune.tasks and self.stop_after in (None, "finetune"):
            raise ValueError("finetune.tasks is empty: give a task, or set stop_after")
        return self


# The presets. `sample` runs in minutes on a laptop CPU; `base` is BERT-base as in the paper.


def sample_preset() -> PretrainBertParams:
    """The embedded Wikipedia sample and the tiny model: minutes on a laptop CPU."""
    return PretrainBertParams(
        preset="sample",
        workdir="runs/sample",
        extract=ExtractParams(inputs=[SAMPLE_CORPUS], num_shards=4),
        vocab=VocabParams(vocab_size=8000),
        pretraining_data=PretrainingDataParams(max_seq_lengths=[128, 512], dupe_factor=1),
        validation=ValidationParams(),
        pretrain=PretrainParams(
            model="bert_tiny",
            total_steps=30,
            phase1_fraction=0.8,
            phase1_batch_size=8,
            phase2_batch_size=2,
            learning_rate=1e-3,
            warmup_fraction=0.1,
            checkpoint_every=12,
            log_every=4,
            loader_workers=0,
        ),
        finetune=FinetuneParams(
            tasks=[SAMPLE_ORDER_TASK],
            learning_rates=[1e-3],
            batch_sizes=[32],
            epochs=[1],
            inits=["pretrained", "random"],  # the paper's comparison, one seed each
            max_seq_length=64,
            build_sample_tasks=True,
        ),
        beam=BeamParams(),
    )


def small_preset() -> PretrainBertParams:
    """The recipe measured to learn on a 2-core CPU in about an hour (docs/recipes.md):
    bert_mini on the English prose of registry packages, evaluated on held-out documents."""
    return PretrainBertParams(
        preset="small",
        workdir="runs/small",
        extract=ExtractParams(
            inputs=[PROSE_CORPUS],
            heldout_inputs=[PROSE_CORPUS],
            input_format="jsonl",
            id_field="id",
            title_field="title",
            num_shards=4,
        ),
        vocab=VocabParams(vocab_size=16000),
        pretraining_data=PretrainingDataParams(max_seq_lengths=[128], dupe_factor=3, num_shards=8),
        validation=ValidationParams(),
        pretrain=PretrainParams(
            model="bert_mini",
            total_steps=4000,
            phase1_fraction=1.0,
            phase1_batch_size=32,
            phase2_batch_size=32,
            learning_rate=5e-4,
            warmup_fraction=0.1,
            checkpoint_every=500,
            log_every=50,
            loader_workers=1,
            precision="fast",
            # No dropout while pretraining (a model this far from fitting its data only loses
            # steps to it; fine-tuning puts BERT's 0.1 back).
            extra_args=[
                "--set",
                "eval.examples=2000",
                "--set",
                "model.hidden_dropout_prob=0",
                "--set",
                "model.attention_probs_dropout_prob=0",
            ],  # fmt: skip
        ),
        finetune=FinetuneParams(
            tasks=[corpus_task("same-document"), corpus_task("source"), SAMPLE_ORDER_TASK],
            learning_rates=[1e-4],
            batch_sizes=[32],
            epochs=[3],
            seeds=[0, 1, 2],
            inits=["pretrained", "random"],
            max_seq_length=128,
            dropout=0.1,
            precision="fast",
            build_sample_tasks=True,
        ),
        beam=BeamParams(),
    )


def base_preset() -> PretrainBertParams:
    """BERT-base as in the paper, on your corpus (give extract.inputs), trained on GPUs."""
    # Not validated here: without its corpus the preset alone is not a valid run.
    return PretrainBertParams.model_construct(
        preset="base",
        workdir="runs/base",
        extract=ExtractParams(inputs=[]),  # your corpus: a run without one is refused
        vocab=VocabParams(),
        pretraining_data=PretrainingDataParams(),
        validation=ValidationParams(),
        pretrain=PretrainParams(),
        finetune=FinetuneParams(),
        beam=BeamParams(direct_num_workers=4, direct_running_mode="multi_processing"),
    )


def base_dataflow_preset() -> PretrainBertParams:
    """`base` with the Beam stages on Dataflow (give beam.project, region, temp_location)."""
    params = base_preset()
    beam = BeamParams.model_construct(**(BeamParams().model_dump() | {"runner": "dataflow"}))
    return params.model_copy(update={"preset": "base-dataflow", "beam": beam})


PRESETS = {
    "sample": sample_preset,
    "small": small_preset,
    "base": base_preset,
    "base-dataflow": base_dataflow_preset,
}


def overlay(base: BaseModel, given: BaseModel | dict | None) -> BaseModel:
    """`base` with the fields explicitly set in `given` replaced."""
    if given is None:
        return base
    if isinstance(given, dict):
        given = type(base).model_validate(given)
    updates = given.model_dump(include=given.model_fields_set)
    return type(base).model_validate(base.model_dump() | updates)


def over_deployment(
    sections: dict[str, Any], deployment: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's sections, each laid over the deployment's section of the same name; and the
    fields that came from the deployment's, by dotted name.

    Prefect passes a run's parameters whole: `--param finetune='{"tasks": ["mrpc"]}'` replaces
    the deployment's whole `finetune`, its data_dir included. Laid over it, the run's section
    overrides only the fields it sets, as it does over the preset's. A section the run does not
    give arrives as the deployment's own and comes back unchanged.
    """
    out, kept = dict(sections), {}
    for name, given in sections.items():
        section = deployment.get(name)
        if given is None or not isinstance(section, dict):
            continue
        if isinstance(given, BaseModel):
            given = given.model_dump(include=given.model_fields_set)
        kept |= {f"{name}.{k}": v for k, v in section.items() if k not in given}
        out[name] = section | given
    return out, kept


def deployment_parameters() -> dict[str, Any]:
    """The parameters of the deployment this flow run was created from; {} for a direct call."""
    from prefect import runtime
    from prefect.client.orchestration import get_client

    deployment_id = runtime.deployment.id
    if not deployment_id:
        return {}
    with get_client(sync_client=True) as client:
        return client.read_deployment(deployment_id).parameters or {}


def with_deployment_sections(**sections: Any) -> dict[str, Any]:
    """`over_deployment` with this flow run's deployment; the run's log names the fields that
    came from the deployment's sections."""
    from prefect import get_run_logger

    deployment = deployment_parameters()
    merged, kept = over_deployment(sections, deployment)
    if kept:
        get_run_logger().info(
            "from the deployment's sections (the run's sections do not set them): %s",
            ", ".join(f"{name}={json.dumps(value)}" for name, value in kept.items()),
        )
    return merged


def resolve_pretrain_params(
    preset: str = "sample",
    *,
    workdir: str | None = None,
    stop_after: str | None = None,
    **sections: Any,
) -> PretrainBertParams:
    """The preset's parameters with the given sections' set fields laid over them."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    base = PRESETS[preset]()
    unknown = set(sections) - set(PretrainBertParams.model_fields)
    if unknown:
        raise ValueError(f"unknown parameter section(s): {', '.join(sorted(unknown))}")
    merged = {
        name: overlay(getattr(base, name), value).model_dump()
        for name, value in sections.items()
        if value is not None
    }
    body = base.model_dump() | merged
    if workdir:
        body["workdir"] = workdir
    body["stop_after"] = stop_after
    return PretrainBertParams.model_validate(body)
