"""`finetune-bert`: a checkpoint and a list of tasks (and a grid) -> fine-tuned models and scores.

One fine-tuning stage per task and init (finetune.inits: from the checkpoint's weights, from
random weights of its shape, or both), side by side on the flow's task runner (a Prefect
concurrency limit on the `gpu` tag caps how many share the accelerators). Each is cached like
any stage: the same checkpoint, task, grid and code give the stored scores back at once.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows import storage
from flows.checkpoints import finetune_ready, fingerprint
from flows.params import (
    PRESETS,
    FinetuneParams,
    Init,
    PresetName,
    overlay,
    with_deployment_sections,
)
from flows.report import init_comparison
from flows.runner import kill_stage_processes, stage_outcome, submit_in_lanes
from flows.stages import (
    InputRef,
    StageResult,
    finetune_call,
    finetune_output,
    finetuned_task,
    task_data_dir,
)


def resolve_finetune_params(preset: str, finetune: FinetuneParams | dict | None) -> FinetuneParams:
    """The preset's fine-tuning section with the fields set in `finetune` laid over it."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    merged = overlay(PRESETS[preset]().finetune, finetune)
    assert isinstance(merged, FinetuneParams)
    if not merged.tasks:
        raise ValueError("finetune.tasks is empty: name at least one task")
    return merged


# A run is named for its task alone: Prefect would add a random suffix to tell runs apart.
@task(
    name="prepare-checkpoint",
    task_run_name="prepare-checkpoint",
    retries=2,
    retry_delay_seconds=5,
)
def prepare_checkpoint(checkpoint: str, vocab: str | None, staging: str) -> str:
    """The checkpoint as fine-tuning loads it: weights plus the vocabulary's vocab.txt."""
    return finetune_ready(checkpoint, vocab, staging)


def finetune_checkpoint(
    params: FinetuneParams,
    *,
    checkpoint: str,
    checkpoint_inputs: list[InputRef],
    output: str,
    vocab: str | None = None,
    workdir: str | None = None,
    inits: list[Init] | None = None,
    name_suffix: str = "",
) -> list[StageResult]:
    """Fine-tune and evaluate `checkpoint` on every task from each init (default
    `params.inits`), side by side; results in init order, then task order. A random init's
    tasks go to `output`-random. `name_suffix` tells apart the stages of several checkpoints."""
    model_dir = prepare_checkpoint(checkpoint, vocab, storage.join(output, "pretrained"))
    calls = [
        finetune_call(
            params,
            task=spec,
            checkpoint=model_dir,
            checkpoint_inputs=checkpoint_inputs,
            output=storage.join(finetune_output(output, init), spec.name),
            data_dir=task_data_dir(params, spec, workdir),
            init=init,
        )
        for init in inits or params.inits
        for spec in params.task_specs()
    ]
    if name_suffix:
        calls = [c.model_copy(update={"name": f"{c.name}-{name_suffix}"}) for c in calls]
    # At most one stage per core runs at a time, each with its share of the cores (all six of
    # the small recipe's stages at once on 2 cores ran at a third of the speed each, and a
    # stage's torch threads beyond its share only switch).
    lanes = max(1, min(len(calls), os.cpu_count() or 1))
    share = ["--threads", str(max(1, (os.cpu_count() or 1) // lanes))]
    calls = [c.model_copy(update={"runtime_args": [*c.runtime_args, *share]}) for c in calls]
    futures = submit_in_lanes(calls, lanes)
    return [stage_outcome(f) for f in futures]


def default_output(checkpoint: str) -> str:
    """`<parent>/finetuned-<checkpoint name>`: next to the checkpoint, never inside it."""
    checkpoint = checkpoint.rstrip("/")
    parent, name = (
        posixpath.split(checkpoint)
        if storage.is_remote(checkpoint)
        else (storage.absolute(checkpoint).rsplit("/", 1))
    )
    return storage.join(parent, f"finetuned-{name}")


@flow(name="finetune-bert", validate_parameters=True)
def finetune_bert(
    checkpoint: str,
    output: str | None = None,
    vocab: str | None = None,
    preset: PresetName = "sample",
    finetune: FinetuneParams | None = None,
) -> dict[str, Any]:
    """Fine-tune a pretrained checkpoint on each task and report the best dev scores.

    Args:
        checkpoint: A pretrained checkpoint directory (local or gs://), e.g. a pretraining
            stage's output.
        output: Where the fine-tuned models and scores go; default: finetuned-<name> next to
            the checkpoint.
        vocab: The vocabulary directory, when the checkpoint has no vocab.txt and no
            trainer.json that names it.
        preset: Whose fine-tuning settings to start from: 'sample', 'base' or 'base-dataflow'.
        finetune: Tasks, grid and inits (from the pretrained weights, random ones or both);
            fields you set override the deployment's (a run from a deployment), else the
            preset's.
    """
    logger = get_run_logger()
    params = resolve_finetune_params(
        preset, with_deployment_sections(finetune=finetune)["finetune"]
    )
    checkpoint = storage.absolute(checkpoint)
    if not storage.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint: {checkpoint} does not exist")
    output = storage.absolute(output) if output else default_output(checkpoint)
    try:
        results = finetune_checkpoint(
            params,
            checkpoint=checkpoint,
            checkpoint_inputs=[InputRef(path=checkpoint, manifest_hash=fingerprint(checkpoint))],
            output=output,
            vocab=storage.absolute(vocab) if vocab else None,
        )
    finally:
        kill_stage_processes()
    rows = [
        {
            "task": finetuned_task(r)[0],
            "init": finetuned_task(r)[1],
            **{k: r.summary.get(k) for k in ("metric", "score")},
        }
        for r in results
    ]
    create_table_artifact(key="finetune-bert-scores", table=rows, description=f"`{checkpoint}`")
    for row in rows:
        logger.info("%s (%s): %s = %s", row["task"], row["init"], row["metric"], row["score"])
    comparison = init_comparison(results)
    if comparison:
        create_table_artifact(
            key="finetune-bert-inits",
            table=comparison,
            description="pretrained against random initialisation (dev)",
        )
    return {"checkpoint": checkpoint, "output": output, "scores": rows, "inits": comparison}
