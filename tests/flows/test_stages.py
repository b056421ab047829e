"""Stage declarations: command lines the stages accept, cache keys, output checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from flows import storage
from flows.params import resolve_pretrain_params
from flows.stages import (
    InputRef,
    StageCall,
    StageResult,
    corpora_call,
    corpus_inputs,
    extract_call,
    finetune_call,
    finetune_output,
    finetuned_task,
    marker_hashes,
    outputs_intact,
    phase_markers,
    pretrain_call,
    pretrain_run_dir,
    pretraining_data_call,
    summarize,
    task_data_dir,
    validate_call,
    vocab_call,
)
from schemas.manifest import Manifest, ShardInfo

PARAMS = resolve_pretrain_params("sample", workdir="/w")


def result(output: str, markers: dict[str, str] | None = None, name: str = "x") -> StageResult:
    return StageResult(
        name=name, kind=name, output=output, markers=markers or {"manifest.json": "h" + output}
    )


DOCUMENTS = result("/w/documents")
VOCAB = result("/w/vocab")
DATA = result("/w/pretraining", {"seq128/manifest.json": "a", "seq512/manifest.json": "b"})


def test_the_extraction_job_accepts_the_flows_command_line(tmp_path):
    from pipelines.extract import parse_args

    dump = tmp_path / "dump.xml.bz2"
    dump.write_bytes(b"x")
    corpus = corpus_inputs([str(tmp_path / "*.bz2")], None)
    call = extract_call(PARAMS.extract, PARAMS.beam, workdir="/w", corpus=corpus)
    args, config, beam_args = parse_args(call.args + call.runtime_args)
    assert args.input == [str(dump)] and args.output == "/w/documents"
    assert config.num_shards == PARAMS.extract.num_shards == 4
    assert beam_args == ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def test_the_vocabulary_job_accepts_the_flows_command_line():
    from pipelines.vocab import parse_args

    call = vocab_call(PARAMS.vocab, PARAMS.beam, workdir="/w", documents=DOCUMENTS)
    args, config, _ = parse_args(call.args + call.runtime_args)
    assert (args.documents, args.output, config.vocab_size) == ("/w/documents", "/w/vocab", 8000)
    assert call.inputs == [InputRef(path="/w/documents", manifest_hash="h/w/documents")]


def test_the_pretraining_data_job_accepts_the_flows_command_line():
    from pipelines.pretraining_data import parse_args

    call = pretraining_data_call(
        PARAMS.pretraining_data, PARAMS.beam, workdir="/w", documents=DOCUMENTS, vocab=VOCAB
    )
    args, config, _ = parse_args(call.args + call.runtime_args)[:3]
    assert config.max_seq_lengths == (128, 512) and config.dupe_factor == 1
    assert call.markers == ["seq128/manifest.json", "seq512/manifest.json"]


def test_the_trainer_accepts_the_flows_command_line_for_each_phase():
    from model.pretrain import parse_args

    params = PARAMS.pretrain
    for phase in (1, 2):
        call = pretrain_call(
            params, workdir="/w", phase=phase, data=DATA, lengths=[128, 512], vocab=VOCAB
        )
        config = parse_args(call.args + call.runtime_args)
        assert config.phase == str(phase) and config.preset == "bert_tiny"
        assert config.phase_steps() == params.phase_steps() == (24, 6)
        assert (config.phase1.seq_length, config.phase2.seq_length) == (128, 512)
        assert config.optim.lr == params.learning_rate and config.log.progress is False
        assert call.markers == [f"phase{phase}/config.json", f"phase{phase}/model.safetensors"]
        assert config.health.stop_on_collapse is False
    assert call.tags == ["gpu"]
    stopping = params.model_copy(update={"stop_on_collapse": True})
    call = pretrain_call(stopping, workdir="/w", phase=1, data=DATA, lengths=[128], vocab=VOCAB)
    assert parse_args(call.args + call.runtime_args).health.stop_on_collapse is True


def test_a_validation_per_length_reads_that_lengths_directory():
    call = validate_call(PARAMS.validation, PARAMS.beam, data=DATA, length=512, vocab=VOCAB)
    assert call.args[:2] == ["--data", "/w/pretraining/seq512"] and call.name == "validate-seq512"
    assert call.inputs[0] == InputRef(path="/w/pretraining/seq512", manifest_hash="b")


def test_fine_tuning_accepts_the_flows_command_line_for_each_init(tmp_path):
    from model.finetune import build_parser

    params = PARAMS.finetune.model_copy(update={"inits": ["pretrained", "random"]})
    (spec,) = params.task_specs()
    data_dir = tmp_path / "tasks" / spec.name
    data_dir.mkdir(parents=True)
    (data_dir / "train.jsonl").write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (model / name).write_text(name)

    def call(init: str, weights: str = "m"):
        return finetune_call(
            params,
            task=spec,
            checkpoint=str(model),
            checkpoint_inputs=[InputRef(path=str(model), manifest_hash=weights)],
            output=storage.join(finetune_output("/w/finetuned", init), spec.name),
            data_dir=task_data_dir(params, spec, str(tmp_path)),
            init=init,
        )

    for init in params.inits:
        args = build_parser().parse_args(call(init).args)
        assert (args.task, args.data, args.checkpoint) == ("custom", data_dir, model)
        assert args.grid == "lr=0.001 batch=32 epochs=1" and args.max_seq_length == 64
        assert "text_b=text_b" in args.task_option and args.init == init
        assert args.dropout is None  # the checkpoint's unless the flow says
        assert args.precision == "auto"
    with_dropout = params.model_copy(update={"dropout": 0.1, "precision": "fast"})
    args = build_parser().parse_args(
        finetune_call(
            with_dropout,
            task=spec,
            checkpoint=str(model),
            checkpoint_inputs=[],
            output="/w/finetuned/x",
            data_dir=task_data_dir(params, spec, str(tmp_path)),
        ).args
    )
    assert (args.dropout, args.precision) == (0.1, "fast")
    pretrained, scratch = call("pretrained"), call("random")
    assert (pretrained.name, pretrained.output) == (
        "finetune-sentence-order", "/w/finetuned/sentence-order"
    )  # fmt: skip
    assert (scratch.name, scratch.output) == (
        "finetune-sentence-order-random", "/w/finetuned-random/sentence-order"
    )  # fmt: skip
    assert [i.path for i in pretrained.inputs] == [str(model), str(data_dir / "train.jsonl")]
    # A random init reads the config and vocabulary, not the weights: new weights keep its cache.
    assert [i.path for i in scratch.inputs] == [
        str(model / "config.json"), str(model / "vocab.txt"), str(data_dir / "train.jsonl")
    ]  # fmt: skip
    assert call("random", weights="m2").cache_key() == scratch.cache_key()
    assert call("pretrained", weights="m2").cache_key() != pretrained.cache_key()
    (model / "config.json").write_text("another architecture")
    assert call("random").cache_key() != scratch.cache_key()

    done = StageResult(name=scratch.name, kind="finetune", output=scratch.output,
                       markers={"scores.json": "s"}, summary={"init": "random"})  # fmt: skip
    assert finetuned_task(done) == ("sentence-order", "random")
    old = done.model_copy(update={"name": pretrained.name, "summary": {}})
    assert finetuned_task(old) == ("sentence-order", "pretrained")


def test_the_cache_key_follows_what_decides_the_output():
    call = vocab_call(PARAMS.vocab, PARAMS.beam, workdir="/w", documents=DOCUMENTS)
    key = call.cache_key()
    # How it runs does not matter...
    same = call.model_copy(
        update={
            "runtime_args": ["--direct_num_workers=8"],
            "launcher": ["torchrun"],
            "env": {"A": "1"},
        }
    )
    assert same.cache_key() == key
    # ...what it computes does: arguments, inputs, code.
    assert call.model_copy(update={"args": [*call.args, "--cased"]}).cache_key() != key
    other_docs = result("/w/documents", {"manifest.json": "changed"})
    assert (
        vocab_call(PARAMS.vocab, PARAMS.beam, workdir="/w", documents=other_docs).cache_key() != key
    )
    assert call.model_copy(update={"module": "pipelines.extract"}).cache_key() != key


def test_the_code_version_covers_the_modules_a_stage_imports_and_no_others(tmp_path, monkeypatch):
    from flows.stages import code_version, module_sources

    sources = module_sources("model.pretrain")
    assert {"model.pretrain", "model.bert", "model.checkpointing", "schemas.manifest"} <= set(
        sources
    )
    assert "model.finetune" not in sources and "pipelines.extract" not in sources
    assert "pipelines.stage" in module_sources("pipelines.extract")
    # the shared core counts too: a change of the masking rule rebuilds the data and retrains
    data_sources = module_sources("pipelines.pretraining_data")
    assert {"bertdata.masking", "pipelines.pretraining.records"} <= set(data_sources)
    assert "bertdata.masking" in sources

    package = tmp_path / "toypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("from .helper import X\n")
    (package / "helper.py").write_text("X = 1\n")
    (package / "unrelated.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("flows.stages.PROJECT_PACKAGES", ("toypkg",))
    before = code_version("toypkg.stage")
    (package / "unrelated.py").write_text("Y = 2\n")
    assert code_version("toypkg.stage") == before
    (package / "helper.py").write_text("X = 2\n")
    assert code_version("toypkg.stage") != before


def test_a_pretraining_run_directory_per_configuration():
    base = pretrain_run_dir(PARAMS.pretrain, workdir="/w", data=DATA)
    lr = PARAMS.pretrain.model_copy(update={"learning_rate": 5e-4})
    gpus = PARAMS.pretrain.model_copy(update={"nproc_per_node": 8})
    assert pretrain_run_dir(lr, workdir="/w", data=DATA) != base
    assert pretrain_run_dir(gpus, workdir="/w", data=DATA) == base
    assert base.startswith("/w/pretrain/bert_tiny-")


def test_corpus_globs_that_match_nothing_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"extract.inputs: '.*nothing-\*.txt' matches no file"
    ):
        corpus_inputs([str(tmp_path / "nothing-*.txt")], None)


def _write_output(directory: Path, rows: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = b"a" * rows
    (directory / "part-0.bin").write_bytes(data)
    shard = ShardInfo(
        path="part-0.bin", rows=rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    manifest = Manifest(
        stage="t", schema_name="t", schema_version=1, shards=[shard], config={}, inputs=[]
    )
    (directory / "manifest.json").write_text(manifest.to_json())


def test_each_length_of_pretraining_data_names_its_figures_once(tmp_path):
    for length in (128, 512):
        _write_output(tmp_path / f"seq{length}", rows=3)
        path = tmp_path / f"seq{length}" / "manifest.json"
        body = json.loads(path.read_text())
        counters = {f"seq{length}_examples": 3, "documents_skipped": 1}
        path.write_text(json.dumps(body | {"counters": counters}))
    call = StageCall(
        name="pretraining_data", kind="pretraining_data", module="m", args=[],
        output=str(tmp_path), markers=["seq128/manifest.json", "seq512/manifest.json"],
    )  # fmt: skip
    figures = summarize(call)
    assert figures["seq128.examples"] == 3 and figures["seq512.documents_skipped"] == 1
    assert not [name for name in figures if name.count("seq") > 1]  # no seq128.seq128_examples


def test_the_curves_mark_the_last_step_of_each_phase_but_the_last():
    records = [
        {"event": "train", "step": s, "phase": 1 if s <= 8 else 2} for s in (2, 4, 6, 8, 10)
    ] + [{"event": "eval", "step": 8, "phase": 1}, {"event": "checkpoint"}]
    assert phase_markers(records) == [(8.0, "end of phase 1")]
    assert phase_markers([r for r in records if r.get("phase") == 1]) == []


def test_an_output_is_intact_until_its_manifest_or_a_shard_changes(tmp_path):
    out = tmp_path / "out"
    _write_output(out)
    recorded = StageResult(
        name="t", kind="t", output=str(out), markers=marker_hashes(str(out), ["manifest.json"])
    )
    assert outputs_intact(recorded) is None
    (out / "part-0.bin").write_bytes(b"abc")
    assert "part-0.bin is missing or has another size" in outputs_intact(recorded)
    _write_output(out, rows=3)  # rewritten by another configuration
    assert "changed since the stage ran" in outputs_intact(recorded)
    (out / "manifest.json").unlink()
    assert "is gone" in outputs_intact(recorded)
    assert marker_hashes(str(out), ["manifest.json"]) is None


def test_a_missing_entry_point_is_reported_before_it_runs():
    call = StageCall(
        name="future", kind="extract", module="pipelines.not_written_yet", args=[], output="/w",
        markers=["manifest.json"],
    )  # fmt: skip
    with pytest.raises(RuntimeError, match=r"python -m pipelines.not_written_yet"):
        call.check_available()


def test_stage_results_travel_as_json():
    assert StageResult.model_validate_json(DATA.model_dump_json()) == DATA
    assert json.loads(DATA.model_dump_json())["markers"]["seq512/manifest.json"] == "b"


def test_the_model_export_copies_weights_and_vocabulary_only_when_they_changed(tmp_path):
    from flows.pretrain_bert import export_model

    run = tmp_path / "pretrain" / "bert_tiny-abc"
    (run / "phase2").mkdir(parents=True)
    (run / "phase2" / "config.json").write_text('{"hidden_size": 8}')
    (run / "phase2" / "model.safetensors").write_bytes(b"weights-1")
    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir()
    (vocab_dir / "vocab.txt").write_text("[PAD]\n")
    phase2 = StageResult(name="pretrain-phase2", kind="pretrain", output=str(run),
                         markers={"phase2/model.safetensors": "w1"})  # fmt: skip
    vocab = result(str(vocab_dir))
    target = tmp_path / "model"
    assert export_model.fn(phase2, vocab, str(target)) == str(target)
    assert (target / "model.safetensors").read_bytes() == b"weights-1"
    assert (target / "vocab.txt").read_text() == "[PAD]\n"
    first = (target / "model.safetensors").stat().st_mtime_ns

    (run / "phase2" / "model.safetensors").write_bytes(b"weights-2")
    export_model.fn(phase2, vocab, str(target))  # same recorded hashes: nothing copied
    assert (target / "model.safetensors").stat().st_mtime_ns == first
    newer = phase2.model_copy(update={"markers": {"phase2/model.safetensors": "w2"}})
    export_model.fn(newer, vocab, str(target))
    assert (target / "model.safetensors").read_bytes() == b"weights-2"


def test_the_small_preset_holds_documents_out_of_pretraining(tmp_path):
    from model.pretrain import parse_args as pretrain_args
    from pipelines.corpora import parse_args as corpora_args
    from pipelines.extract import parse_args as extract_args
    from pipelines.pretraining_data import parse_args as data_args

    small = resolve_pretrain_params("small", workdir=str(tmp_path))
    call = corpora_call(workdir=str(tmp_path), heldout_fraction=0.2)
    args = corpora_args(call.args)
    assert (args.output, args.heldout_fraction) == (str(tmp_path / "corpus"), 0.2)
    for split in ("train", "heldout"):
        (tmp_path / "corpus" / split).mkdir(parents=True)
        (tmp_path / "corpus" / split / "wiki.jsonl").write_text("{}\n")
    prose = result(str(tmp_path / "corpus"), {"corpus.json": "c"}, name="corpora")
    calls = {}
    for heldout, split in ((False, "train"), (True, "heldout")):
        corpus = corpus_inputs(["prose"], None, prose=prose, split=split)
        assert [r.path for r in corpus] == [str(tmp_path / "corpus" / split / "wiki.jsonl")]
        calls[split] = extract_call(small.extract, small.beam, workdir="/w", corpus=corpus,
                                    heldout=heldout)  # fmt: skip
    assert (calls["train"].name, calls["heldout"].name) == ("extract", "extract-heldout")
    assert extract_args(calls["heldout"].args)[0].output == "/w/heldout-documents"
    with pytest.raises(ValueError, match="'prose' corpus needs the corpora stage"):
        corpus_inputs(["prose"], None)
    # held-out documents: one copy of each pair, in one shard, into their own directory
    heldout_docs = result("/w/heldout-documents")
    call = pretraining_data_call(small.pretraining_data, small.beam, workdir="/w",
                                 documents=heldout_docs, vocab=VOCAB, heldout=True)  # fmt: skip
    args, config, _ = data_args(call.args + call.runtime_args)[:3]
    assert (args.output, config.dupe_factor, config.num_shards) == ("/w/heldout-pretraining", 1, 1)
    assert call.name == "pretraining-data-heldout" and small.pretraining_data.dupe_factor == 3
    heldout_data = result("/w/heldout-pretraining", {"seq128/manifest.json": "v"})
    call = pretrain_call(small.pretrain, workdir="/w", phase=1, data=DATA, lengths=[128],
                         vocab=VOCAB, validation=heldout_data)  # fmt: skip
    config = pretrain_args(call.args + call.runtime_args)
    assert config.data.validation_dir == "/w/heldout-pretraining"
    assert config.preset == "bert_mini" and config.eval.examples == 2000
    assert "/w/heldout-pretraining/seq128" in [r.path for r in call.inputs]
