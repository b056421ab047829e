"""The extraction job, run for real with Beam on temporary files of each input format."""

from __future__ import annotations

import bz2
import json
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import extract
from pipelines.beam_runner import local_runner
from schemas.documents import DOCUMENTS, document_id
from schemas.manifest import MANIFEST_NAME, Manifest
from schemas.validation import check_schema

PROSE = (
    "The river rises in the northern hills and flows south for two hundred kilometres. "
    "Its valley has been farmed since the Bronze Age, and several villages line its banks. "
    "A railway bridge built in 1887 crosses it near the town of Easton."
)


def page_xml(title: str, page_id: int, text: str, ns: int = 0, redirect: str | None = None):
    redirect_tag = f'<redirect title="{redirect}" />' if redirect else ""
    return (
        f"<page><title>{title}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}"
        f'<revision><id>{page_id * 10}</id><text xml:space="preserve">{text}</text>'
        "</revision></page>"
    )


def dump_xml(pages: list[str]) -> bytes:
    head = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">'
    return (
        head + "<siteinfo><sitename>Test</sitename></siteinfo>" + "".join(pages) + "</mediawiki>"
    ).encode()


def wiki_pages() -> list[str]:
    article = (
        "'''River Ease''' is a river.{{Infobox river|name=Ease|length=200 km}} "
        + PROSE
        + "&lt;ref&gt;Smith 2001, p. 4.&lt;/ref&gt;\n\n== History ==\n"
        + "The [[Roman Empire|Romans]] built a fort at its mouth. "
        + "Later a [[mill]] was added by monks of the abbey.\n"
        + "[[Category:Rivers]]"
    )
    return [
        page_xml("River Ease", 12, article),
        page_xml("Ease River", 13, "", redirect="River Ease"),
        page_xml("Talk:River Ease", 14, PROSE, ns=1),
        page_xml("Ease (disambiguation)", 15, "'''Ease''' may refer to: {{disambiguation}}"),
        page_xml("Stub", 16, "Tiny."),
    ]


def read_documents(directory: Path) -> tuple[Manifest, list[dict]]:
    manifest = Manifest.from_json((directory / MANIFEST_NAME).read_text())
    rows: list[dict] = []
    for shard in manifest.shards:
        table = pa.ipc.open_file(directory / shard.path).read_all()
        check_schema(table.schema, DOCUMENTS, source=shard.path)
        rows.extend(table.to_pylist())
    return manifest, rows


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.arrow"))}


def run_job(inputs: list[Path | str], output: Path | str, *extra: str) -> dict:
    argv = [a for i in inputs for a in ("--input", str(i))] + ["--output", str(output)]
    return extract.run([*argv, "--num-shards", "3", *extra])


# -- transforms ---------------------------------------------------------------------------


def test_extract_documents_transform_filters_and_deduplicates(tmp_path):
    text = tmp_path / "books.txt"
    long_doc = "\n".join(f"Sentence number {i} of the long document is here." for i in range(8))
    text.write_text(
        f"{long_doc}\n\nToo short.\nReally.\n\n{long_doc.upper()}\n\nOne single but long "
        f"enough sentence that runs on and on well beyond the minimum length of a document, "
        f"{'and on ' * 30}.\n"
    )
    config = extract.ExtractConfig(min_document_chars=100)
    with TestPipeline(runner=local_runner()) as p:
        docs = (
            p
            | beam.Create([(str(text), "text")])
            | extract.ExtractDocuments(config)
            | beam.Map(lambda d: (d["original_id"], len(d["sentences"])))
        )
        # Document 2 duplicates document 0 up to case; the short ones are filtered out.
        assert_that(docs, equal_to([("0", 8)]))


# -- whole job, each format ------------------------------------------------------------------


def test_wiki_dump_bz2_to_shards(tmp_path):
    dump = tmp_path / "testwiki-pages-articles.xml.bz2"
    dump.write_bytes(bz2.compress(dump_xml(wiki_pages())))
    manifest = run_job([dump], tmp_path / "docs", "--min-document-chars", "50")
    assert manifest["total_rows"] == 1
    _, rows = read_documents(tmp_path / "docs")
    (doc,) = rows
    assert doc["title"] == "River Ease"
    assert doc["doc_id"] == document_id(dump.name, "12")
    text = " ".join(doc["sentences"])
    assert "Romans built a fort" in text and "Bronze Age" in text
    for markup in ("{{", "}}", "[[", "]]", "<ref", "Smith 2001", "Category", "==", "'''"):
        assert markup not in text, markup
    assert doc["num_chars"] == sum(len(s) for s in doc["sentences"])
    assert doc["num_words"] == len(text.split())
    counters = manifest["counters"]
    assert counters["skipped_redirects"] == 1
    assert counters["skipped_non_article_pages"] == 1
    assert counters["skipped_disambiguation_pages"] == 1
    assert counters["skipped_short_documents"] == 1
    assert len(list((tmp_path / "docs").glob("*.arrow"))) == 3


def test_disambiguation_and_headings_options(tmp_path):
    dump = tmp_path / "testwiki.xml"
    dump.write_bytes(dump_xml(wiki_pages()))
    run_job(
        [dump],
        tmp_path / "docs",
        "--min-document-chars",
        "10",
        "--min-sentences",
        "1",
        "--keep-disambiguation",
        "--keep-headings",
    )
    _, rows = read_documents(tmp_path / "docs")
    by_title = {r["title"]: r for r in rows}
    assert "Ease (disambiguation)" in by_title
    assert "History" in by_title["River Ease"]["sentences"]


def test_plain_text_format_keeps_lines_as_sentences(tmp_path):
    corpus = tmp_path / "corpus.txt"
    docs = [
        [f"Doc {d} line {i} says something about topic {d}." for i in range(5)] for d in range(4)
    ]
    corpus.write_text("\n\n".join("\n".join(lines) for lines in docs) + "\n")
    manifest = run_job([corpus], tmp_path / "out", "--min-document-chars", "10")
    _, rows = read_documents(tmp_path / "out")
    assert manifest["total_rows"] == 4
    assert sorted(r["sentences"] for r in rows) == sorted(docs)
    assert {r["original_id"] for r in rows} == {"0", "1", "2", "3"}


def test_jsonl_and_parquet_with_field_mapping(tmp_path):
    records = [
        {"body": f"{PROSE} Record {i} adds a closing remark.", "key": f"k{i}", "name": f"T{i}"}
        for i in range(5)
    ]
    jsonl = tmp_path / "part.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records[:3]) + "\n")
    parquet = tmp_path / "part.parquet"
    pq.write_table(pa.Table.from_pylist(records[3:]), parquet)
    manifest = run_job(
        [tmp_path / "part.*"],
        tmp_path / "out",
        "--text-field",
        "body",
        "--id-field",
        "key",
        "--title-field",
        "name",
    )
    _, rows = read_documents(tmp_path / "out")
    assert manifest["total_rows"] == 5
    assert {(r["original_id"], r["title"]) for r in rows} == {(f"k{i}", f"T{i}") for i in range(5)}
    assert all(len(r["sentences"]) == 4 for r in rows)
    assert {i["path"].rsplit("/", 1)[-1] for i in manifest["inputs"]} == {
        "part.jsonl",
        "part.parquet",
    }


def test_sample_dump_end_to_end(sample_dump, tmp_path):
    manifest = run_job([sample_dump], tmp_path / "docs")
    _, rows = read_documents(tmp_path / "docs")
    c = manifest["counters"]
    assert c["wiki_pages_read"] == 206
    assert c["skipped_redirects"] > 90
    assert 80 <= manifest["total_rows"] <= 110
    assert sum(len(r["sentences"]) for r in rows) > 15_000
    assert len({r["doc_id"] for r in rows}) == len(rows)
    for r in rows:
        text = " ".join(r["sentences"])
        for markup in ("{{", "[[", "<ref", "{|", "|}", "&nbsp;"):
            assert markup not in text, (r["title"], markup)
    # Shards are sorted by doc_id and each document sits in the shard its hash names.
    for shard in (tmp_path / "docs").glob("*.arrow"):
        ids = pa.ipc.open_file(shard).read_all().column("doc_id").to_pylist()
        assert ids == sorted(ids)


# -- determinism, re-runs, atomicity ---------------------------------------------------------


def test_same_bytes_in_memory_and_multi_processing(sample_dump, tmp_path):
    run_job([sample_dump], tmp_path / "a", "--direct_running_mode", "in_memory")
    run_job(
        [sample_dump],
        tmp_path / "b",
        "--direct_running_mode",
        "multi_processing",
        "--direct_num_workers",
        "2",
    )
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    a = json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())
    b = json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())
    assert a["shards"] == b["shards"] and a["counters"] == b["counters"]


def test_rerun_is_a_no_op_and_a_changed_config_rewrites(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"{PROSE}\nDocument {d} ends here." for d in range(6)))
    out = tmp_path / "out"
    run_job([corpus], out)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    run_job([corpus], out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    extract.run(["--input", str(corpus), "--output", str(out), "--num-shards", "2"])
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "documents-00000-of-00002.arrow",
        "documents-00001-of-00002.arrow",
        MANIFEST_NAME,
    ]


def test_failed_run_leaves_no_manifest(tmp_path):
    good = tmp_path / "good.xml.bz2"
    good.write_bytes(bz2.compress(dump_xml(wiki_pages())))
    out = tmp_path / "out"
    run_job([good], out, "--min-document-chars", "50")
    assert (out / MANIFEST_NAME).exists()
    truncated = tmp_path / "cut.xml.bz2"
    truncated.write_bytes(bz2.compress(dump_xml(wiki_pages() * 40))[:-400])
    with pytest.raises(Exception, match="cut.xml.bz2"):
        run_job([good, truncated], out, "--min-document-chars", "50")
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob(".tmp-*"))


# -- bad input ----------------------------------------------------------------------------


def test_truncated_dump_can_keep_pages_read_before_the_break(tmp_path):
    # A multistream dump, as Wikipedia publishes them: 100 pages per bz2 stream.
    pages = [page_xml(f"Page {i}", 100 + i, f"{PROSE} Page {i}.") for i in range(300)]
    xml = dump_xml(pages)
    cuts = (
        [0]
        + [xml.index(b"<page>", xml.index(f"<id>{100 + k}<".encode()) - 80) for k in (100, 200)]
        + [len(xml)]
    )
    data = b"".join(bz2.compress(xml[a:b]) for a, b in zip(cuts, cuts[1:], strict=False))
    dump = tmp_path / "cut.xml.bz2"
    dump.write_bytes(data[: len(data) * 3 // 4])
    manifest = run_job([dump], tmp_path / "out", "--allow-truncated")
    assert manifest["counters"]["truncated_files"] == 1
    assert 0 < manifest["total_rows"] < 300


def test_malformed_page_and_invalid_utf8_are_counted(tmp_path):
    pages = [
        page_xml("Good", 1, PROSE),
        "<page><title>Broken</title><ns>zero</ns></page>",
        page_xml("Also good", 2, PROSE + " Caf@INVALID@"),
    ]
    data = dump_xml(pages).replace(b"@INVALID@", b"\xff")
    dump = tmp_path / "odd.xml"
    dump.write_bytes(data)
    manifest = run_job([dump], tmp_path / "out", "--min-document-chars", "50")
    c = manifest["counters"]
    assert manifest["total_rows"] == 2
    assert c["skipped_malformed_records"] == 1
    assert c["invalid_utf8_bytes_in_dumps"] == 1


def test_bad_jsonl_lines_are_counted_or_fail_naming_the_line(tmp_path):
    jsonl = tmp_path / "mixed.jsonl"
    good = json.dumps({"text": PROSE})
    jsonl.write_bytes(
        f'{good}\nnot json at all\n{{"title": "no text"}}\n'.encode()
        + b'{"text": "'
        + PROSE.encode()
        + b' \xff caf\xe9."}\n'
    )
    manifest = run_job([jsonl], tmp_path / "out")
    assert manifest["total_rows"] == 2
    assert manifest["counters"]["skipped_malformed_records"] == 2
    assert manifest["counters"]["invalid_utf8_lines"] == 1
    with pytest.raises(Exception, match=r"mixed.jsonl line 2: not JSON"):
        run_job([jsonl], tmp_path / "out2", "--on-bad-record", "fail")


def test_empty_glob_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing-\*\.jsonl"):
        run_job([tmp_path / "nothing-*.jsonl"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fifty_megabyte_document_is_split_into_parts_without_loss(tmp_path):
    sentence = "Sentence {:07d} is part of a very long single document about rivers. "
    text = "".join(sentence.format(i) for i in range(50_000_000 // len(sentence.format(0))))
    jsonl = tmp_path / "huge.jsonl"
    jsonl.write_text(json.dumps({"text": text}) + "\n")
    manifest = run_job([jsonl], tmp_path / "out")
    assert manifest["counters"]["long_documents_split"] == 1
    _, rows = read_documents(tmp_path / "out")
    assert len(rows) >= 50
    assert sum(len(r["sentences"]) for r in rows) == text.count("rivers.")
    assert max(r["num_chars"] for r in rows) <= 1_000_000


def test_long_sentences_are_split_at_whitespace(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("word " * 600 + "\nA normal closing sentence follows here.\n")
    manifest = run_job([corpus], tmp_path / "out", "--max-sentence-chars", "500")
    _, rows = read_documents(tmp_path / "out")
    assert manifest["counters"]["long_sentences_split"] == 1
    assert all(len(s) <= 500 for s in rows[0]["sentences"])
    assert " ".join(rows[0]["sentences"]).count("word") == 600


# -- gs:// and Dataflow -------------------------------------------------------------------


def test_gcs_input_and_output_against_emulator(gcs_emulator, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    bucket = gcs_emulator()
    local = tmp_path / "corpus.txt"
    local.write_text("\n\n".join(f"{PROSE}\nDocument {d} ends here." for d in range(5)))
    with FileSystems.create(f"gs://{bucket}/in/corpus.txt") as f:
        f.write(local.read_bytes())
    out = f"gs://{bucket}/out/documents"
    manifest = run_job([f"gs://{bucket}/in/*.txt"], out)
    assert manifest["total_rows"] == 5
    local_out = tmp_path / "local"
    run_job([local], local_out, "--source-name", "corpus.txt")
    for shard in manifest["shards"]:
        with FileSystems.open(f"{out}/{shard['path']}") as f:
            assert f.read() == (local_out / shard["path"]).read_bytes()
    # A second run finds the finished output on GCS and does nothing.
    assert run_job([f"gs://{bucket}/in/*.txt"], out) == manifest


def test_dataflow_pipeline_builds_without_network(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    corpus = tmp_path / "c.txt"
    corpus.write_text(PROSE)
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=europe-west4",
            "--temp_location=gs://my-bucket/tmp",
            "--dry_run=True",
            "--sdk_container_image=europe-docker.pkg.dev/my-project/beam/bert-pipeline:1",
            "--no_auth",
            "--sdk_location=container",
            "--job_name=extract-test",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    inputs = [extract.InputRef(path=str(corpus), bytes=corpus.stat().st_size)]
    extract.build_pipeline(pipeline, extract.ExtractConfig(), inputs, "gs://my-bucket/docs")
    result = pipeline.run()
    job = result.job.proto
    assert job.name == "extract-test"
    assert job.type.name == "JOB_TYPE_BATCH"
    graph = result.job.proto_pipeline
    images = [env.payload for env in graph.components.environments.values()]
    assert any(b"europe-docker.pkg.dev/my-project/beam/bert-pipeline:1" in p for p in images)
    steps = {t.unique_name for t in graph.components.transforms.values()}
    assert {"Extract/BuildDocuments", "Write/WriteShard"} <= steps


def test_command_line_help_and_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--num-shards" in out.stdout and "Dataflow" in out.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.extract",
            "--input",
            str(tmp_path / "none*.txt"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "matches no file" in bad.stderr


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)
