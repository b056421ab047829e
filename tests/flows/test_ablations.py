"""The ablation flow's arms, scales and report: one change per arm, the paper's rows beside
ours, bad settings refused before anything runs."""

import pytest
from pydantic import ValidationError

from flows.ablate_bert import (
    SCALES,
    arm_pretrain_params,
    feature_layers,
    resolve_ablation_params,
)
from flows.ablation_report import ArmResult, chart, paper_rows, table_rows
from flows.ablations import PAPER, TABLES, build_arms, objective_arm, parse_size
from flows.stages import StageResult
from model.train_config import PretrainConfig, apply_overrides
from pipelines.options import PretrainingDataConfig


def test_each_table_adds_its_arms_and_the_base_arm_is_shared():
    arms = build_arms(list(TABLES), ["80/10/10", "100/0/0", "0/0/100"], ["2/128/2", "4/256/4"],
                      "4/256/4")  # fmt: skip
    assert [a.name for a in arms] == [
        "base",
        "no-nsp",
        "ltr-no-nsp",
        "mask-100-0-0",
        "mask-0-0-100",
        "size-L2-H128-A2",
        "albert",
        "spanbert",
        "roberta",
        "electra",
    ]  # fmt: skip  (80/10/10 and the recipe's own size are the base arm)
    assert arms[0].tables == TABLES and arms[0].sets == () and arms[0].data == ()
    assert build_arms(["tasks"], ["100/0/0"], ["2/128/2"], "4/256/4")[-1].name == "ltr-no-nsp"
    only = build_arms(["objectives"], [], [], "4/256/4", ["spanbert"])
    assert [a.name for a in only] == ["base", "spanbert"]
    # Only the objectives' arms write data of their own.
    assert [a.name for a in arms if a.data] == ["albert", "spanbert", "roberta"]


def test_objective_arms_set_what_their_papers_change():
    albert, spanbert, roberta = (objective_arm(n) for n in ("albert", "spanbert", "roberta"))
    assert dict(albert.data) == {"sentence_order": True}
    assert dict(spanbert.data) == {"span_masking": True, "packing": "full-sentences"}
    assert dict(roberta.data) == {"packing": "full-sentences", "dynamic_masking": True}
    config = PretrainConfig()
    apply_overrides(config, list(roberta.sets))
    assert config.objective.nsp is False and config.optim.betas == (0.9, 0.98)
    config = PretrainConfig(preset="bert_mini")
    apply_overrides(config, list(albert.sets))
    built = config.model_config(vocab_size=16000, pad_token_id=0)
    assert built.embedding_size == 128 and built.share_layers and built.is_albert
    config = PretrainConfig()
    apply_overrides(config, list(spanbert.sets))
    assert config.objective.nsp is False and config.objective.span_boundary is True
    for name, value in albert.data + spanbert.data + roberta.data:  # fields the data job has
        assert getattr(PretrainingDataConfig(), name) is not value
    # ELECTRA trains on the shared data; its trainer settings pass the trainer's checks.
    electra = objective_arm("electra")
    assert electra.data == ()
    config = PretrainConfig(output="o")
    config.data.dir = "d"
    apply_overrides(config, list(electra.sets))
    config.validate()
    assert (config.objective.name, config.objective.nsp) == ("electra", False)
    assert config.objective.mask_mix == "100/0/0"  # the paper masks with [MASK] only
    with pytest.raises(ValueError, match="unknown objective"):
        objective_arm("xlnet")


def test_every_arm_setting_is_a_trainer_override_that_the_trainer_accepts():
    arms = build_arms(list(TABLES), ["0/20/80"], ["3/96/3"], "2/128/2")
    for arm in arms:
        config = PretrainConfig(output="x", data=PretrainConfig().data)
        config.data.dir = "d"
        apply_overrides(config, list(arm.sets))
        config.validate()
    ltr = next(a for a in arms if a.name == "ltr-no-nsp")
    config = PretrainConfig()
    apply_overrides(config, list(ltr.sets))
    assert config.objective.name == "ltr" and config.objective.nsp is False
    assert config.model_config(vocab_size=100, pad_token_id=0).is_decoder
    size = next(a for a in arms if a.name.startswith("size-"))
    config = PretrainConfig(preset="bert_tiny")
    apply_overrides(config, list(size.sets))
    built = config.model_config(vocab_size=100, pad_token_id=0)
    assert (built.num_hidden_layers, built.hidden_size, built.intermediate_size) == (3, 96, 384)


def test_arm_settings_reach_the_pretraining_stage_and_change_its_run_directory():
    params = resolve_ablation_params("sample")
    recipe = params.recipe.pretrain
    arms = params.arms()
    extra = [arm_pretrain_params(recipe, arm).extra_args for arm in arms]
    assert extra[0] == recipe.extra_args
    assert extra[1][-2:] == ["--set", "objective.nsp=false"]
    # Every arm differs in its trainer settings or its data (SpanBERT is no-NSP on span data).
    assert len({(tuple(e), arm.data) for e, arm in zip(extra, arms, strict=True)}) == len(arms)


def test_scales_are_valid_and_overrides_are_laid_over_them():
    for name in SCALES:
        params = resolve_ablation_params(name)
        assert params.scale == name and params.tables == list(TABLES)
    params = resolve_ablation_params(
        "small", workdir="/w", tables=["tasks"], pretrain={"total_steps": 7},
        finetune={"seeds": [4]},
    )  # fmt: skip
    assert params.recipe.workdir == "/w" and params.tables == ["tasks"]
    assert params.recipe.pretrain.total_steps == 7
    assert params.recipe.pretrain.model == "bert_mini"  # the rest stays the scale's
    assert params.recipe.finetune.seeds == [4] and params.base_size == "4/256/4"
    with pytest.raises(ValidationError, match="MASK/SAME/RND"):
        resolve_ablation_params("sample", mask_mixes=["50/50"])
    with pytest.raises(ValidationError, match="A must divide H"):
        resolve_ablation_params("sample", sizes=["2/100/3"])
    with pytest.raises(ValueError, match="scale must be one of"):
        resolve_ablation_params("huge")


def test_feature_based_uses_the_last_four_layers_or_all_of_a_smaller_model():
    arms = build_arms(["masking", "size"], ["100/0/0"], ["1/64/2"], "4/256/4")
    assert feature_layers(arms[0], "4/256/4") == [-4, -3, -2, -1]
    assert feature_layers(arms[0], "12/768/12") == [-4, -3, -2, -1]
    assert feature_layers(arms[-1], "4/256/4") == [-1]
    with pytest.raises(ValueError, match="L/H/A"):
        parse_size("4x256")


def _result(name: str, **summary) -> StageResult:
    return StageResult(name=name, kind="finetune", output="/o", markers={}, summary=summary,
                       seconds=12.0)  # fmt: skip


def test_report_rows_put_each_arm_beside_the_papers_row():
    arms = build_arms(list(TABLES), ["0/0/100"], ["2/128/2"], "4/256/4")
    results = []
    for i, arm in enumerate(arms):
        pretrain = _result("pretrain", eval_mlm_accuracy=0.1 + i / 100, eval_mlm_loss=2.0)
        r = ArmResult(arm=arm, pretrain=pretrain)
        r.finetuned["genre"] = _result("ft", score=80.0 + i, std=1.5)
        if arm.name == "base":
            r.random["genre"] = _result("ft", score=30.0, std=5.0)
        if "masking" in arm.tables:
            r.feature_based["genre"] = _result("fb", score=70.0 + i, std=0.5)
        results.append(r)
    tasks = table_rows("tasks", results, ["genre"], "4/256/4")
    assert [r["arm"] for r in tasks][-1] == "no pretraining (random init)"
    assert tasks[0]["genre"] == "80.0 ± 1.5" and tasks[-1]["genre"] == "30.0 ± 5.0"
    assert [r["paper MNLI-m"] for r in tasks[:3]] == [84.4, 83.9, 82.1]
    masking = table_rows("masking", results, ["genre"], "4/256/4")
    assert [(r["arm"], r["genre (feature-based)"]) for r in masking] == [
        ("80/10/10", "70.0 ± 0.5"), ("0/0/100", "73.0 ± 0.5"),
    ]  # fmt: skip
    assert masking[1]["paper MNLI-m"] == 83.6
    objectives = table_rows("objectives", results, ["genre"], "4/256/4")
    assert [r["arm"] for r in objectives] == [
        "BERT (MLM + NSP, 80/10/10)", "ALBERT (E=128, shared layers, SOP)",
        "SpanBERT (span masks, span boundaries, single segments)",
        "RoBERTa inputs (full sentences, dynamic masks, no NSP, beta2 0.98)",
        "ELECTRA (generator 1/4 wide, replaced-token detection, no NSP)",
    ]  # fmt: skip
    assert "paper MNLI-m" not in objectives[0]
    # The binary task's accuracy is named by its task; ELECTRA's with the rate to beat.
    electra = next(r for r in results if r.arm.name == "electra")
    electra.pretrain.summary |= {"eval_rtd_accuracy": 0.912, "eval_replaced_share": 0.141}
    base = results[0].pretrain.summary
    base |= {"sentence_task": "nsp", "eval_nsp_accuracy": 0.66}
    rows = table_rows("objectives", results, ["genre"], "4/256/4")
    assert [r["binary task acc"] for r in rows] == ["NSP 0.660", "", "", "",
                                                    "RTD 0.912 (base 0.859)"]  # fmt: skip
    size = table_rows("size", results, ["genre"], "4/256/4")
    assert [r["arm"] for r in size] == ["L=4 H=256 A=4", "L=2 H=128 A=2"]
    assert size[0]["MLM ppl"] == pytest.approx(7.39, abs=0.01)
    assert len(paper_rows("size")) == 6 and paper_rows("size")[3]["L/H/A"] == "12/768/12"
    svg = chart("masking", masking, ["genre"])
    assert svg.count("<rect") >= 1 + 4  # background, two arms x (fine-tuned, feature-based)
    assert "0/0/100" in svg and "73" in svg


def test_the_papers_tables_have_a_value_per_column():
    for table in PAPER.values():
        assert all(len(v) == len(table.columns) for v in table.rows.values())
