"""Flow parameters: presets, overrides, and the checks the server makes when a run is created."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from prefect import flow as flow_decorator
from prefect.utilities.schema_tools import ValidationError, validate
from pydantic import ValidationError as PydanticError

from flows.ablate_bert import ablate_bert
from flows.evaluate_bert import evaluate_bert
from flows.finetune_bert import finetune_bert, resolve_finetune_params
from flows.params import (
    FinetuneParams,
    ModelPreset,
    PretrainBertParams,
    over_deployment,
    resolve_pretrain_params,
    sample_preset,
    with_deployment_sections,
)
from flows.pretrain_bert import planned_stages, pretrain_bert
from model.train_config import PretrainConfig, apply_overrides

ROOT = Path(__file__).resolve().parents[2]
CORPUS = {"inputs": ["gs://bucket/dumps/*.xml.bz2"]}
FLOWS = {
    "ablate-bert": ablate_bert,
    "pretrain-bert": pretrain_bert,
    "finetune-bert": finetune_bert,
    "evaluate-bert": evaluate_bert,
}


def server_check(flow, params: dict) -> None:
    """What the Prefect server does with a deployment's parameters when a run is created."""
    validate(params, flow.parameters.model_dump(), raise_on_error=True)


def test_a_section_overrides_only_the_fields_it_sets():
    params = resolve_pretrain_params("sample", vocab={"vocab_size": 500})
    preset = sample_preset()
    assert params.vocab.vocab_size == 500
    assert params.vocab.min_frequency == preset.vocab.min_frequency
    assert params.pretrain == preset.pretrain  # other sections untouched
    base = resolve_pretrain_params("base", extract=CORPUS, pretrain={"total_steps": 1000})
    assert (base.pretrain.model, base.pretrain.total_steps) == ("bert_base", 1000)
    assert base.extract.num_shards == 64  # the preset's, not the sample's


def test_the_presets_differ_where_they_should():
    sample, base = (
        resolve_pretrain_params("sample"),
        resolve_pretrain_params("base", extract=CORPUS),
    )
    assert (sample.pretrain.model, base.pretrain.model) == ("bert_tiny", "bert_base")
    assert base.pretrain.total_steps == 1_000_000 and base.pretrain.phase_steps() == (
        900_000,
        100_000,
    )
    assert base.pretraining_data.max_seq_lengths == [128, 512]
    assert sample.finetune.build_sample_tasks and not base.finetune.build_sample_tasks


def test_dataflow_needs_a_project_and_gives_the_runner_flags():
    with pytest.raises(PydanticError, match=r"beam\.project is required"):
        resolve_pretrain_params("base-dataflow", extract=CORPUS)
    params = resolve_pretrain_params(
        "base-dataflow",
        extract=CORPUS,
        beam={"project": "my-proj", "region": "europe-west4", "temp_location": "gs://b/tmp"},
    )
    args = params.beam.args()
    assert "--runner=DataflowRunner" in args and "--project=my-proj" in args
    assert not any(a.startswith("--direct_") for a in args)


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"vocab": {"vocab_size": 5}}, "vocab.vocab_size", "less than the minimum of 6"),
        ({"extract": {"num_shard": 3}}, "extract", "'num_shard' was unexpected"),
        ({"stop_after": "vocabulary"}, "stop_after", "is not one of"),
        ({"preset": "large"}, "preset", "is not one of"),
        ({"pretrain": {"model": "bert_huge"}}, "pretrain.model", "is not one of"),
        ({"beam": {"runner": "dataflow"}}, "beam", "'project' is a required property"),
        (
            {
                "beam": {
                    "runner": "dataflow",
                    "project": "p",
                    "region": "r",
                    "temp_location": "/tmp",
                }
            },
            "beam.temp_location",
            "does not match",
        ),  # fmt: skip
        ({"pretraining_data": {"masked_lm_prob": 1.5}}, "pretraining_data.masked_lm_prob", "1.5"),
        ({"finetune": {"inits": ["scratch"]}}, "finetune.inits[0]", "is not one of"),
        ({"finetune": {"inits": ["random", "random"]}}, "finetune.inits", "non-unique"),
        ({"finetune": {"inits": []}}, "finetune.inits", "should be non-empty"),
        ({"objective": "xlnet"}, "objective", "is not one of"),
    ],
)
def test_the_server_refuses_bad_parameters_and_names_the_field(params, field, reason):
    with pytest.raises(ValidationError) as info:
        server_check(pretrain_bert, params)
    message = str(info.value)
    assert f"Validation failed for field '{field}'" in message and reason in message


def test_good_parameters_pass_the_server_check():
    server_check(
        pretrain_bert, {"preset": "base", "workdir": "gs://b/run", "vocab": {"vocab_size": 50000}}
    )
    server_check(evaluate_bert, {"checkpoints": "gs://b/run", "finetune": {"tasks": ["mrpc"]}})
    both = {"finetune": {"inits": ["pretrained", "random"]}}
    server_check(finetune_bert, {"checkpoint": "runs/sample/model", **both})
    server_check(pretrain_bert, both)
    server_check(pretrain_bert, {"preset": "small", "objective": "electra"})


def test_an_objective_sets_its_arms_data_and_trainer_settings_over_the_preset():
    """pretrain-bert's `objective`: one switch, the same fields as the ablation flow's arm,
    after the preset's own trainer settings (which it keeps)."""
    from flows.pretrain_bert import with_objective

    small = resolve_pretrain_params("small")
    assert with_objective(small, "bert") is small
    albert = with_objective(small, "albert")
    assert albert.pretraining_data.sentence_order is True
    preset_args = small.pretrain.extra_args
    assert albert.pretrain.extra_args == [*preset_args, "--set", "model.embedding_size=128",
                                          "--set", "model.share_layers=true"]  # fmt: skip
    spanbert = with_objective(small, "spanbert")
    assert spanbert.pretraining_data.span_masking is True
    assert spanbert.pretraining_data.packing == "full-sentences"
    assert "objective.span_boundary=true" in spanbert.pretrain.extra_args
    electra = with_objective(small, "electra")
    assert electra.pretraining_data == small.pretraining_data  # the MLM data as it is
    config = PretrainConfig(output="o")
    config.data.dir = "d"
    apply_overrides(config, electra.pretrain.extra_args[1::2])
    config.validate()
    assert config.objective.name == "electra" and config.model["hidden_dropout_prob"] == 0
    # A section that contradicts the objective's data is refused, naming both.
    ordered = resolve_pretrain_params("small", pretraining_data={"sentence_order": True})
    with pytest.raises(PydanticError, match="--sentence-order needs --packing pairs"):
        with_objective(ordered, "roberta")


def test_fine_tuning_starts_from_the_pretrained_weights_unless_inits_say_otherwise():
    assert resolve_pretrain_params("base", extract=CORPUS).finetune.inits == ["pretrained"]
    params = resolve_finetune_params("base", {"tasks": ["mrpc"], "inits": ["random"]})
    assert params.inits == ["random"] and params.seeds == [0]
    with pytest.raises(PydanticError, match=r"finetune.inits repeats a value"):
        resolve_pretrain_params("sample", finetune={"inits": ["pretrained", "pretrained"]})


def test_every_deployment_in_prefect_yaml_passes_the_server_check():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in config["deployments"]:
        flow_file, function = deployment["entrypoint"].split(":")
        flow = next(f for f in FLOWS.values() if f.fn.__name__ == function)
        assert (ROOT / flow_file).exists()
        names.add(f"{flow.name}/{deployment['name']}")
        # Environment placeholders ({{ $BERT_WORKDIR }}) stand for strings given at deploy time.
        server_check(flow, _fill(deployment.get("parameters", {})))
    assert {"pretrain-bert/sample", "pretrain-bert/base", "pretrain-bert/base-dataflow",
            "finetune-bert/sample", "evaluate-bert/sample", "evaluate-bert/base",
            "ablate-bert/sample", "ablate-bert/small", "ablate-bert/gpu"} <= names  # fmt: skip
    evaluate = [d for d in config["deployments"] if d["entrypoint"].endswith(":evaluate_bert")]
    assert all(d["schedules"][0]["cron"] for d in evaluate)


def _fill(value):
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if isinstance(value, str) and value.startswith("{{ $"):
        return "gs://bucket/x" if "TEMP" in value else "value"
    return value


def test_model_choices_are_the_trainers_presets():
    from model.config import PRESETS

    assert set(typing.get_args(ModelPreset)) == set(PRESETS)


def test_stop_after_and_a_missing_phase_2_shorten_the_plan():
    assert planned_stages(resolve_pretrain_params("sample"))[-3:] == [
        "pretrain_phase1", "pretrain_phase2", "finetune"
    ]  # fmt: skip
    assert planned_stages(resolve_pretrain_params("sample", stop_after="vocab")) == [
        "extract",
        "vocab",
    ]
    one_phase = resolve_pretrain_params("sample", pretrain={"phase1_fraction": 1.0})
    assert "pretrain_phase2" not in planned_stages(one_phase)


def test_the_base_preset_needs_a_corpus():
    with pytest.raises(PydanticError, match="extract.inputs is empty: give the corpus"):
        resolve_pretrain_params("base")


def test_empty_tasks_are_refused_unless_the_run_stops_before_fine_tuning():
    with pytest.raises(PydanticError, match="finetune.tasks is empty"):
        resolve_pretrain_params("sample", finetune={"tasks": []})
    params = resolve_pretrain_params("sample", finetune={"tasks": []}, stop_after="validate")
    assert isinstance(params, PretrainBertParams)
    with pytest.raises(ValueError, match="finetune.tasks is empty"):
        resolve_finetune_params("sample", {"tasks": []})


def prefect_yaml_parameters(flow_name: str, deployment: str) -> dict:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (found,) = [
        d["parameters"]
        for d in spec["deployments"]
        if d["name"] == deployment and d["entrypoint"].endswith(f":{flow_name.replace('-', '_')}")
    ]
    return found


def test_a_runs_section_is_laid_over_the_deployments_not_swapped_for_it():
    """`--param finetune='{"tasks": [...]}'` reaches the flow as the whole section: the fields it
    does not set keep the deployment's values (finetune-bert/sample's data_dir)."""
    deployment = prefect_yaml_parameters("finetune-bert", "sample")
    assert deployment["finetune"]["data_dir"] == "runs/sample/tasks"
    given = FinetuneParams.model_validate({"tasks": ["mrpc"], "epochs": [2]})  # as Prefect does
    sections, kept = over_deployment({"finetune": given, "vocab": None}, deployment)
    assert kept == {"finetune.data_dir": "runs/sample/tasks"} and sections["vocab"] is None
    params = resolve_finetune_params("sample", sections["finetune"])
    assert (params.data_dir, params.task_specs()[0].name, params.epochs) == (
        "runs/sample/tasks",
        "mrpc",
        [2],
    )
    assert params.learning_rates == sample_preset().finetune.learning_rates  # the preset's
    # The run's own value wins; a run without the section gets the deployment's unchanged.
    sections, kept = over_deployment({"finetune": {"data_dir": "/data/glue"}}, deployment)
    assert (sections["finetune"]["data_dir"], kept) == ("/data/glue", {})
    sections, kept = over_deployment({"finetune": deployment["finetune"]}, deployment)
    assert (sections["finetune"], kept) == (deployment["finetune"], {})


@flow_decorator(name="show-finetune")
def show_finetune(finetune: FinetuneParams | None = None) -> dict:
    return with_deployment_sections(finetune=finetune)["finetune"]


def test_a_flow_run_from_a_deployment_reads_the_deployments_sections(prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("show-finetune")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="sample",
            parameters={"finetune": {"data_dir": "runs/sample/tasks", "epochs": [2]}},
        )
        flow_run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"finetune": {"tasks": ["mrpc"]}}
        )
    section = run_flow(show_finetune, flow_run=flow_run, parameters=flow_run.parameters)
    assert section == {"data_dir": "runs/sample/tasks", "epochs": [2], "tasks": ["mrpc"]}
    # Called directly, not from a deployment: the section as given.
    direct = show_finetune(finetune={"tasks": ["mrpc"]})
    assert direct.model_fields_set == {"tasks"} and direct.data_dir == ""
