"""`ablate-bert`: the paper's ablations (Tables 5, 6 and 8) as one flow.

    data stages once (as pretrain-bert) -> per arm: [its own pretraining data -> validate]
      -> pretrain -> export -> fine-tune per task (the base arm also from random weights)
      [-> feature-based per task for masking arms]
      -> report: one table per ablation beside the paper's numbers, with a chart

Each arm is a pretrain-bert pretraining with one trainer setting changed (flows/ablations.py),
and for the objectives after BERT its own data too; cached as any stage is: a rerun with more
arms or tasks reuses what already ran.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows import storage
from flows.ablation_report import ArmResult, write_ablation_report
from flows.ablations import (
    MASK_MIXES,
    OBJECTIVES,
    TABLES,
    Arm,
    ObjectiveName,
    TableName,
    arm_data_params,
    arm_pretrain_params,
    build_arms,
    parse_size,
)
from flows.finetune_bert import finetune_checkpoint, prepare_checkpoint
from flows.params import (
    ExtractParams,
    FinetuneParams,
    PretrainBertParams,
    PretrainParams,
    overlay,
    sample_preset,
    small_preset,
)
from flows.pretrain_bert import (
    PreparedData,
    Progress,
    export_model,
    prepare_data,
    pretrain_phases,
)
from flows.runner import kill_stage_processes, run_stage, stage_outcome, submit_stage
from flows.stages import (
    StageResult,
    features_extract_call,
    features_train_call,
    pretraining_data_call,
    task_data_dir,
    validate_call,
)
from model.config import PRESETS as MODEL_PRESETS
from model.train_config import parse_mask_mix

ScaleName = Literal["sample", "small", "gpu"]


class AblateBertParams(BaseModel):
    """Everything `ablate-bert` needs: the shared recipe and which arms to run."""

    model_config = ConfigDict(extra="forbid")

    scale: ScaleName
    recipe: PretrainBertParams = Field(
        description="Data, pretraining and fine-tuning of every arm."
    )
    tables: list[TableName] = Field(min_length=1, description="Which ablation tables to run.")
    mask_mixes: list[str] = Field(description="Table 8's MASK/SAME/RND mixes beside 80/10/10.")
    sizes: list[str] = Field(description="Table 6's model sizes as L/H/A.")
    objectives: list[ObjectiveName] = Field(
        default=list(OBJECTIVES), description="The objectives after BERT to compare with it."
    )
    feature_based: bool = Field(description="Also score the masking arms feature-based.")

    @model_validator(mode="after")
    def _valid_arms(self) -> AblateBertParams:
        for mix in self.mask_mixes:
            parse_mask_mix(mix)
        for size in self.sizes:
            parse_size(size)
        return self

    @property
    def base_size(self) -> str:
        config = MODEL_PRESETS[self.recipe.pretrain.model]()
        return f"{config.num_hidden_layers}/{config.hidden_size}/{config.num_attention_heads}"

    def arms(self) -> list[Arm]:
        return build_arms(self.tables, self.mask_mixes, self.sizes, self.base_size, self.objectives)


def sample_scale() -> AblateBertParams:
    """Minutes on a CPU: the sample's recipe (bert_tiny, 30 steps). Proves the plumbing only."""
    recipe = sample_preset()
    return AblateBertParams(
        scale="sample",
        recipe=recipe.model_copy(update={"workdir": "runs/ablate-sample"}),
        tables=list(TABLES),
        mask_mixes=list(MASK_MIXES),
        sizes=["1/128/2"],
        feature_based=True,
    )


def small_scale() -> AblateBertParams:
    """A 2-core CPU: the small recipe's data and model (bert_mini), 600 steps per arm, two
    held-out tasks with 3 seeds, at most 1,000 training examples each (docs/ablations.md)."""
    recipe = small_preset()
    pretrain = recipe.pretrain.model_copy(
        update={"total_steps": 600, "checkpoint_every": 300, "log_every": 50}
    )
    finetune = recipe.finetune.model_copy(
        update={"tasks": recipe.finetune.tasks[:2], "epochs": [2], "max_train_examples": 1000}
    )
    return AblateBertParams(
        scale="small",
        recipe=recipe.model_copy(
            update={"workdir": "runs/ablate-small", "pretrain": pretrain, "finetune": finetune}
        ),
        tables=list(TABLES),
        mask_mixes=list(MASK_MIXES),
        sizes=["2/128/2", "2/256/4"],
        feature_based=True,
    )


def gpu_scale() -> AblateBertParams:
    """One GPU: the small recipe's data with bert_small (L=4, H=512) for 20,000 steps of 128,
    and Table 6's shapes scaled to it."""
    recipe = small_preset()
    pretrain = recipe.pretrain.model_copy(
        update={
            "model": "bert_small",
            "total_steps": 20_000,
            "phase1_batch_size": 128,
            "learning_rate": 2e-4,
            "checkpoint_every": 5000,
            "log_every": 200,
            "loader_workers": 4,
        }  # fmt: skip
    )
    return AblateBertParams(
        scale="gpu",
        recipe=recipe.model_copy(update={"workdir": "runs/ablate-gpu", "pretrain": pretrain}),
        tables=list(TABLES),
        mask_mixes=list(MASK_MIXES),
        sizes=["2/512/8", "4/256/4", "8/512/8", "4/768/12"],
        feature_based=True,
    )


SCALES = {"sample": sample_scale, "small": small_scale, "gpu": gpu_scale}


def resolve_ablation_params(
    scale: str = "small",
    *,
    workdir: str | None = None,
    tables: list[TableName] | None = None,
    mask_mixes: list[str] | None = None,
    sizes: list[str] | None = None,
    objectives: list[ObjectiveName] | None = None,
    feature_based: bool | None = None,
    extract: ExtractParams | dict | None = None,
    pretrain: PretrainParams | dict | None = None,
    finetune: FinetuneParams | dict | None = None,
) -> AblateBertParams:
    """The scale's parameters with the given values and sections' set fields laid over them."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    base = SCALES[scale]()
    recipe = base.recipe.model_dump()
    for name, given in (("extract", extract), ("pretrain", pretrain), ("finetune", finetune)):
        if given is not None:
            recipe[name] = overlay(getattr(base.recipe, name), given).model_dump()
    if workdir:
        recipe["workdir"] = workdir
    body = base.model_dump() | {"recipe": recipe}
    for name, value in (("tables", tables), ("mask_mixes", mask_mixes), ("sizes", sizes),
                        ("objectives", objectives), ("feature_based", feature_based)):  # fmt: skip
        if value is not None:
            body[name] = value
    return AblateBertParams.model_validate(body)


def prepare_arm_data(
    params: AblateBertParams, arm: Arm, prepared: PreparedData, *, record: Any
) -> PreparedData:
    """The shared data, or for an arm that changes the data (Arm.data) its own pretraining
    data (and held-out data) from the same documents and vocabulary, validated."""
    if not arm.data:
        return prepared
    recipe = params.recipe
    workdir = storage.absolute(recipe.workdir)
    assert prepared.vocab is not None
    data_params = arm_data_params(recipe.pretraining_data, arm)
    own = {"beam": recipe.beam, "workdir": workdir, "vocab": prepared.vocab, "variant": arm.name}
    data = run_stage(pretraining_data_call(data_params, documents=prepared.documents, **own))
    record(data)
    heldout_data = None
    if prepared.heldout is not None:
        heldout_data = run_stage(
            pretraining_data_call(data_params, documents=prepared.heldout, heldout=True, **own)
        )
        record(heldout_data)
    futures = [
        submit_stage(
            validate_call(
                recipe.validation,
                recipe.beam,
                data=data,
                length=n,
                vocab=prepared.vocab,
                variant=arm.name,
            )
        )  # fmt: skip
        for n in data_params.max_seq_lengths
    ]
    record(*[stage_outcome(f) for f in futures])
    return prepared._replace(data=data, heldout_data=heldout_data)


def feature_layers(arm: Arm, base_size: str) -> list[int]:
    """The paper's best feature-based choice, the last four layers, or all of a smaller model."""
    layers = (arm.size or parse_size(base_size))[0]
    return list(range(-min(4, layers), 0))


def run_arm(
    params: AblateBertParams,
    arm: Arm,
    prepared: PreparedData,
    *,
    record: Any,
    progress: Progress,
) -> ArmResult:
    """Pretrain one arm, then fine-tune it (and score it feature-based) on every task."""
    recipe = params.recipe
    workdir = storage.absolute(recipe.workdir)
    assert prepared.vocab is not None
    prepared = prepare_arm_data(params, arm, prepared, record=record)
    checkpoint = pretrain_phases(
        arm_pretrain_params(recipe.pretrain, arm),
        prepared,
        workdir=workdir,
        lengths=recipe.pretraining_data.max_seq_lengths,
        record=record,
        progress=progress,
        name=arm.name,
    )
    arm_dir = storage.join(workdir, "ablations", arm.name)
    model_dir = export_model(checkpoint, prepared.vocab, storage.join(arm_dir, "model"))
    finetune = recipe.finetune
    inits = ["pretrained"]
    if arm.name == "base" and "random" in finetune.inits:
        inits.append("random")
    specs = finetune.task_specs()
    results = finetune_checkpoint(
        finetune,
        checkpoint=model_dir,
        checkpoint_inputs=[checkpoint.as_input()],
        output=storage.join(arm_dir, "finetuned"),
        vocab=prepared.vocab.output,
        workdir=workdir,
        inits=inits,
        name_suffix=arm.name,
    )
    record(*results)
    out = ArmResult(arm=arm, pretrain=checkpoint)
    for index, init in enumerate(inits):
        chosen = results[index * len(specs) : (index + 1) * len(specs)]
        target = out.finetuned if init == "pretrained" else out.random
        target.update({spec.name: r for spec, r in zip(specs, chosen, strict=True)})
    if params.feature_based and "masking" in arm.tables:
        ready = prepare_checkpoint(model_dir, prepared.vocab.output,
                                   storage.join(arm_dir, "finetuned", "pretrained"))  # fmt: skip
        for spec in specs:
            features = run_stage(
                features_extract_call(
                    finetune,
                    task=spec,
                    checkpoint=ready,
                    checkpoint_inputs=[checkpoint.as_input()],
                    output=storage.join(arm_dir, "features", spec.name),
                    data_dir=task_data_dir(finetune, spec, workdir),
                    layers=feature_layers(arm, params.base_size),
                ).model_copy(update={"name": f"features-{spec.name}-{arm.name}"})
            )
            scored = run_stage(
                features_train_call(
                    finetune,
                    task=spec,
                    features=features,
                    output=storage.join(arm_dir, "feature-based", spec.name),
                ).model_copy(update={"name": f"feature-based-{spec.name}-{arm.name}"})
            )
            record(features, scored)
            out.feature_based[spec.name] = scored
    progress.step()
    return out


@flow(name="ablate-bert", validate_parameters=True)
def ablate_bert(
    scale: ScaleName = "small",
    workdir: str | None = None,
    tables: list[TableName] | None = None,
    mask_mixes: list[str] | None = None,
    sizes: list[str] | None = None,
    objectives: list[ObjectiveName] | None = None,
    feature_based: bool | None = None,
    extract: ExtractParams | None = None,
    pretrain: PretrainParams | None = None,
    finetune: FinetuneParams | None = None,
) -> dict[str, Any]:
    """Pretrain one arm per ablation setting with the same budget, fine-tune each on the same
    tasks and seeds, and report the paper's Tables 5, 6 and 8 side by side with ours.

    Args:
        scale: 'sample' (minutes, plumbing only), 'small' (a 2-core CPU, about 18 minutes
            per arm, estimated) or 'gpu' (one GPU).
        workdir: Where every stage writes; default: the scale's.
        tables: Which tables: 'tasks' (no NSP, LTR), 'masking' (mixes), 'size' (L/H/A),
            'objectives' (ALBERT, SpanBERT, RoBERTa).
        mask_mixes: MASK/SAME/RND percentages to compare with 80/10/10.
        sizes: Model sizes L/H/A to compare with the recipe's model.
        objectives: Objectives after BERT for the objectives table: 'albert', 'spanbert',
            'roberta', 'electra'.
        feature_based: Also score the masking arms with frozen features (paper Table 8).
        extract: Corpus options; fields you set override the scale's.
        pretrain: Pretraining recipe shared by every arm; fields you set override the scale's.
        finetune: Tasks, grid and seeds; fields you set override the scale's.
    """
    params = resolve_ablation_params(
        scale, workdir=workdir, tables=tables, mask_mixes=mask_mixes, sizes=sizes,
        objectives=objectives, feature_based=feature_based, extract=extract, pretrain=pretrain,
        finetune=finetune,
    )  # fmt: skip
    logger = get_run_logger()
    arms = params.arms()
    recipe = params.recipe
    phases = 2 if recipe.pretrain.phase_steps()[1] else 1
    progress = Progress(4 + len(arms) * (phases + 1))
    done: list[StageResult] = []

    def record(*results: StageResult) -> None:
        for r in results:
            how = "from the cache" if r.cached else f"in {r.seconds:.1f} s"
            logger.info("stage %s done %s: %s", r.name, how, r.output)
        done.extend(results)

    try:
        prepared = prepare_data(
            recipe, record, progress, build_tasks=recipe.finetune.build_sample_tasks
        )
        logger.info("arms: %s", ", ".join(a.name for a in arms))
        results = [run_arm(params, arm, prepared, record=record, progress=progress)
                   for arm in arms]  # fmt: skip
        directory = storage.join(storage.absolute(recipe.workdir), "ablations")
        report = write_ablation_report(
            directory,
            tables=params.tables,
            results=results,
            tasks=[s.name for s in recipe.finetune.task_specs()],
            base_size=params.base_size,
            parameters=params.model_dump(),
        )
        logger.info("report: %s", report)
        return {"report": report, "arms": [a.name for a in arms],
                "stages": {r.name: r.model_dump() for r in done}}  # fmt: skip
    finally:
        kill_stage_processes()
