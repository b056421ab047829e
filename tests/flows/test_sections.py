"""The flows' parameter sections come from the stages' option declarations, so a new option,
a bound or a default lives in one place (bertdata/options.py, flows/sections.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from bertdata.options import add_arguments, chosen, described, option
from flows.params import BeamParams, PretrainingDataParams
from flows.sections import section_base, stage_argv
from flows.stages import StageResult, pretraining_data_call
from pipelines.pretraining_options import PretrainingDataConfig


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


def test_the_pretraining_data_section_has_every_option_with_the_same_bounds():
    schema = PretrainingDataParams.model_json_schema()["properties"]
    names = [d.name for d in described(PretrainingDataConfig)]
    assert [name for name in schema if name != "extra_args"] == names
    assert schema["dupe_factor"]["maximum"] == 65535  # one bound, not the flows' own
    with pytest.raises(ValidationError, match="dupe_factor"):
        PretrainingDataParams(dupe_factor=0)
    # a rule across fields is the job's own check, run on the flow's values
    with pytest.raises(ValidationError, match="needs one value per length"):
        PretrainingDataParams(max_seq_lengths=[128], max_predictions_per_seq=[20, 80])


def test_the_job_gets_every_value_the_flow_was_given():
    from pipelines.pretraining_data import parse_args

    given = PretrainingDataParams(
        max_seq_lengths=[64, 256], max_predictions_per_seq=[9, 40], masked_lm_prob=0.2,
        short_seq_prob=0.3, dupe_factor=7, whole_word_mask=True, dynamic_masking=True, seed=3,
        num_shards=5, examples_per_shard=900, max_position_embeddings=256,
    )  # fmt: skip
    documents, vocab = (
        StageResult(name=name, kind=name, output=f"/w/{name}", markers={"manifest.json": "h"})
        for name in ("documents", "vocab")
    )
    call = pretraining_data_call(
        given, BeamParams(), workdir="/w", documents=documents, vocab=vocab
    )
    _, config, _ = parse_args(call.args + call.runtime_args)
    assert config == given.config()
    assert config.dupe_factor == 7 and config.max_predictions_per_seq == (9, 40)
