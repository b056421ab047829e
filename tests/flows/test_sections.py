"""The flows' parameter sections come from the stages' option declarations, so a new option,
a bound or a default lives in one place (bertdata/options.py, flows/sections.py)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from bertdata.options import add_arguments, chosen, described, described_at, option
from flows.params import (
    PRETRAIN_RECIPE,
    BeamParams,
    ExtractParams,
    FinetuneParams,
    PretrainingDataParams,
    PretrainParams,
    TaskSpec,
    ValidationParams,
    VocabParams,
)
from flows.sections import section_base, stage_argv
from flows.stages import (
    StageResult,
    extract_call,
    finetune_call,
    pretrain_call,
    pretraining_data_call,
    validate_call,
    vocab_call,
)
from model.finetune import TrainSettings
from model.train_config import PretrainConfig
from pipelines.options import ExtractConfig, PretrainingDataConfig, ValidationConfig, VocabConfig

ROOT = Path(__file__).resolve().parents[2]


def test_an_option_added_to_a_stage_config_appears_in_its_cli_and_its_flow_section():
    @dataclass(frozen=True, kw_only=True)
    class Extended(PretrainingDataConfig):
        sentence_budget: int = option(40, "sentences per document kept", ge=2, le=1000)

    parser = argparse.ArgumentParser()
    add_arguments(parser, Extended)
    assert "--sentence-budget" in parser.format_help()
    section = section_base("Extended", Extended)
    field = section.model_json_schema()["properties"]["sentence_budget"]
    assert (field["default"], field["minimum"], field["maximum"]) == (40, 2, 1000)
    assert field["description"] == "sentences per document kept"
    with pytest.raises(ValidationError, match="sentence_budget"):
        section(sentence_budget=1)
    # the flow's value reaches the stage's configuration through the command line
    argv = stage_argv(Extended, section(sentence_budget=77, dupe_factor=2))
    config = Extended(**chosen(Extended, parser.parse_args(argv)))
    assert (config.sentence_budget, config.dupe_factor) == (77, 2)


def test_the_pretraining_data_section_checks_bounds_and_rules_as_the_job_does():
    schema = PretrainingDataParams.model_json_schema()["properties"]
    assert schema["dupe_factor"]["maximum"] == 65535  # one bound, not the flows' own
    with pytest.raises(ValidationError, match="dupe_factor"):
        PretrainingDataParams(dupe_factor=0)
    # a rule across fields is the job's own check, run on the flow's values
    with pytest.raises(ValidationError, match="needs one value per length"):
        PretrainingDataParams(max_seq_lengths=[128], max_predictions_per_seq=[20, 80])


DOCUMENTS, VOCAB = (
    StageResult(name=name, kind=name, output=f"/w/{name}", markers={"manifest.json": "h"})
    for name in ("documents", "vocab")
)
# Every option of each job set to a value other than its default.
NOT_DEFAULT = {
    "extract": {
        "num_shards": 3, "input_format": "jsonl", "source_name": "news", "text_field": "body",
        "id_field": "key", "title_field": "headline", "line_breaks": "space",
        "keep_headings": True, "skip_disambiguation": False, "min_document_chars": 10,
        "min_sentences": 1, "max_sentence_chars": 300, "long_sentences": "drop",
        "max_document_chars": 5000, "dedup": False, "on_bad_record": "fail",
        "allow_truncated": True,
    },
    "vocab": {
        "vocab_size": 900, "lowercase": False, "tokenize_chinese_chars": False,
        "max_input_chars_per_word": 50, "min_frequency": 3, "limit_alphabet": 70,
        "num_unused": 10, "max_distinct_words": 1000, "heldout_fraction": 0.1,
    },
    "finetune": {
        "warmup_proportion": 0.2, "weight_decay": 0.0, "adam_epsilon": 1e-8,
        "max_grad_norm": 5.0, "eval_batch_size": 8, "log_every": 7, "dropout": 0.0,
    },
    "validation": {
        "mask_rate_tolerance": 0.02, "share_slack": 0.05, "not_next_slack": 0.03, "z": 3.0,
        "max_unknown_rate": 0.2,
    },
    "pretraining_data": {
        "max_seq_lengths": [64, 256], "max_predictions_per_seq": [9, 40], "masked_lm_prob": 0.2,
        "short_seq_prob": 0.3, "dupe_factor": 7, "whole_word_mask": True, "span_masking": True,
        # Packed rows have no sentence order: the job refuses both (sentence_order: below).
        "sentence_order": False, "packing": "doc-sentences", "dynamic_masking": True, "seed": 3,
        "num_shards": 5, "examples_per_shard": 900, "max_position_embeddings": 256,
    },
}  # fmt: skip


def job_config(stage: str, values: dict):
    """Build the stage's command line from flow values as the flows do, and parse it as the job."""
    if stage == "extract":
        from pipelines.extract import parse_args

        call = extract_call(ExtractParams(**values), BeamParams(), workdir="/w", corpus=[])
        argv = [*call.args, "--input", "/data/a.jsonl"]
        return ExtractConfig, parse_args(argv)[1]
    if stage == "vocab":
        from pipelines.vocab import parse_args

        call = vocab_call(VocabParams(**values), BeamParams(), workdir="/w", documents=DOCUMENTS)
        return VocabConfig, parse_args(call.args)[1]
    if stage == "validation":
        from pipelines.validate import build_parser

        data = StageResult(
            name="data", kind="data", output="/w/pretraining",
            markers={"seq128/manifest.json": "h"},
        )  # fmt: skip
        call = validate_call(ValidationParams(**values), BeamParams(), data=data, length=128,
                             vocab=VOCAB)  # fmt: skip
        args = build_parser().parse_args(call.args)
        return ValidationConfig, ValidationConfig(**chosen(ValidationConfig, args))
    if stage == "finetune":
        from model.finetune import build_parser

        task = TaskSpec(name="mrpc", task="mrpc")
        call = finetune_call(FinetuneParams(**values), task=task, checkpoint="/w/model",
                             checkpoint_inputs=[], output="/w/ft", data_dir="/w/tasks")  # fmt: skip
        return TrainSettings, TrainSettings(
            **chosen(TrainSettings, build_parser().parse_args(call.args))
        )
    from pipelines.pretraining_data import parse_args

    params = PretrainingDataParams(**values)
    call = pretraining_data_call(
        params, BeamParams(), workdir="/w", documents=DOCUMENTS, vocab=VOCAB
    )
    return PretrainingDataConfig, parse_args(call.args)[1]


@pytest.mark.parametrize("stage", sorted(NOT_DEFAULT))
def test_every_option_of_a_job_reaches_it_from_the_flow(stage):
    config_class, config = job_config(stage, NOT_DEFAULT[stage])
    names = [d.name for d in described(config_class)]
    assert sorted(NOT_DEFAULT[stage]) == sorted(names), "NOT_DEFAULT misses an option"
    for name, value in NOT_DEFAULT[stage].items():
        got = getattr(config, name)
        assert (list(got) if isinstance(got, tuple) else got) == value, name
    _, defaults = job_config(stage, {})
    assert defaults == config_class(**({"num_shards": 64} if stage == "extract" else {}))


def test_sentence_order_reaches_the_job_and_packing_with_it_is_refused():
    _, config = job_config("pretraining_data", {"sentence_order": True})
    assert config.sentence_order is True and config.packing == "pairs"
    with pytest.raises(ValueError, match="--sentence-order needs --packing pairs"):
        PretrainingDataParams(sentence_order=True, packing="full-sentences")


@pytest.mark.parametrize(
    ("section", "config_class"),
    [(ExtractParams, ExtractConfig), (VocabParams, VocabConfig),
     (PretrainingDataParams, PretrainingDataConfig), (FinetuneParams, TrainSettings),
     (ValidationParams, ValidationConfig)],
)  # fmt: skip
def test_each_section_holds_every_option_with_its_help_and_bounds(section, config_class):
    schema = section.model_json_schema()["properties"]
    for d in described(config_class):
        field = schema[d.name]
        assert field["description"] == d.spec.help
        bounds = field.get("items") or field.get("anyOf", [field])[0]
        for key, bound in (("minimum", d.spec.ge), ("maximum", d.spec.le),
                           ("exclusiveMinimum", d.spec.gt), ("exclusiveMaximum", d.spec.lt)):  # fmt: skip
            assert bounds.get(key) == bound, (d.name, key)
        if d.spec.choices:
            assert field["enum"] == list(d.spec.choices)


def test_every_field_of_the_pretraining_recipe_reaches_the_trainer():
    from model.pretrain import parse_args

    given = {
        "total_steps": 500, "phase1_fraction": 0.8, "phase1_batch_size": 64,
        "phase2_batch_size": 16, "micro_batch_size": 8, "learning_rate": 3e-4,
        "warmup_fraction": 0.06, "weight_decay": 0.02, "checkpoint_every": 50,
        "keep_checkpoints": 2, "log_every": 5, "precision": "bf16", "seed": 9,
        "stop_on_collapse": True, "loader_workers": 2,
    }  # fmt: skip
    assert sorted(given) == sorted(PRETRAIN_RECIPE), "the test misses a recipe field"
    params = PretrainParams(model="bert_mini", **given)
    data = StageResult(name="data", kind="data", output="/w/pretraining",
                       markers={"seq64/manifest.json": "a", "seq256/manifest.json": "b"})  # fmt: skip
    call = pretrain_call(params, workdir="/w", phase=1, data=data, lengths=[64, 256], vocab=VOCAB)
    config = parse_args(call.args + call.runtime_args)
    for name, paths in PRETRAIN_RECIPE.items():
        for path in paths:
            section, field = path.split(".")
            assert getattr(getattr(config, section), field) == given[name], path
    schema = PretrainParams.model_json_schema()["properties"]
    for name, paths in PRETRAIN_RECIPE.items():
        d = described_at(PretrainConfig, paths[0])
        assert schema[name]["description"] == d.spec.help
        assert schema[name].get("minimum") == d.spec.ge and schema[name].get("maximum") == d.spec.le
    with pytest.raises(ValidationError, match="warmup_fraction"):
        PretrainParams(warmup_fraction=1.0)  # the trainer's bound: [0, 1)


def test_the_environment_scales_a_flows_pretraining_down(tmp_path):
    """BERT_PRETRAIN_ARGS is appended and wins, also over the recipe's --set lines."""
    params = PretrainParams(model="bert_mini", total_steps=4000, checkpoint_every=500)
    data = StageResult(name="data", kind="data", output=str(tmp_path),
                       markers={"seq128/manifest.json": "a"})  # fmt: skip
    call = pretrain_call(params, workdir="/w", phase=1, data=data, lengths=[128], vocab=VOCAB)
    env = os.environ | {"BERT_PRETRAIN_ARGS": "--steps 12 --set eval.every=6"}
    shown = subprocess.run(
        [sys.executable, "-m", "model.pretrain", *call.args, *call.runtime_args, "--print-config"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True,
    )  # fmt: skip
    config = json.loads(shown.stdout)
    assert config["schedule"]["total_steps"] == 12 and config["eval"]["every"] == 6
    assert config["checkpoint"]["every"] == 500 and config["optim"]["lr"] == params.learning_rate
