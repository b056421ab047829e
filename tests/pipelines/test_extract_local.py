"""Extraction through local files (pipelines/extract_local.py) against Beam's shuffle: the same
bytes and counters with duplicates across files, one or two worker processes, small spills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import extract, extract_local
from pipelines.arrow_shards import WORK_DIR_NAME
from schemas.manifest import MANIFEST_NAME

SENTENCES = [
    "The river rises in the northern hills and flows south for two hundred kilometres.",
    "Its valley has been farmed since the Bronze Age, and several villages line its banks.",
    "A railway bridge built in 1887 crosses it near the town of Easton.",
    "Later a mill was added by the monks of the abbey on the eastern bank.",
]


def document(n: int) -> str:
    """A document of its own text: the sentences with the number n worked in."""
    return "\n".join(f"{s[:-1]}, as record {n} says." for s in SENTENCES)


@pytest.fixture
def corpus(tmp_path) -> list[Path]:
    """Two files of the same name (so the same doc_ids) in two folders, and a JSONL file.

    a/books.txt holds documents 0-19; b/books.txt holds 0-9 again (ids and text repeated),
    10-19 with other text (ids repeated, text new) and 20-29 with new text. corpus.jsonl
    repeats the text of documents 0-4 in upper case (new ids, text repeated) and has five of
    its own.
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = tmp_path / "a" / "books.txt"
    a.write_text("\n\n".join(document(n) for n in range(20)) + "\n")
    b = tmp_path / "b" / "books.txt"
    b_docs = [document(n) for n in range(10)] + [document(100 + n) for n in range(10)]
    b.write_text("\n\n".join(b_docs + [document(n) for n in range(30, 40)]) + "\n")
    jsonl = tmp_path / "corpus.jsonl"
    records = [{"text": document(n).upper().replace("\n", " ")} for n in range(5)]
    records += [{"text": document(200 + n).replace("\n", " ")} for n in range(5)]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    return [a, b, jsonl]


def run_job(inputs: list[Path], output: Path, *extra: str) -> dict:
    argv = [a for i in inputs for a in ("--input", str(i))] + ["--output", str(output)]
    return extract.run([*argv, "--num-shards", "7", "--min-document-chars", "50", *extra])


def outputs(directory: Path) -> tuple[dict[str, bytes], dict]:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    shards = {p.name: p.read_bytes() for p in sorted(directory.glob("*.arrow"))}
    return shards, manifest


MULTI = ("--direct_running_mode", "multi_processing", "--direct_num_workers", "2")


def test_local_files_give_the_shuffle_paths_bytes_with_one_and_two_workers(corpus, tmp_path):
    run_job(corpus, tmp_path / "shuffle", "--exchange", "shuffle")
    run_job(corpus, tmp_path / "local", "--exchange", "local")
    run_job(corpus, tmp_path / "local2", *MULTI)  # auto: local paths, so local files
    shuffle_shards, shuffle = outputs(tmp_path / "shuffle")
    assert len(shuffle_shards) == 7
    c = shuffle["counters"]
    # 20 + 30 + 10 documents read; ids 0-19 twice; the text of 0-4 under a third id.
    assert c["records_read"] == 60
    assert c["skipped_duplicate_ids"] == 20
    assert c["skipped_duplicate_documents"] == 5
    assert shuffle["total_rows"] == 35
    for name in ("local", "local2"):
        shards, manifest = outputs(tmp_path / name)
        assert shards == shuffle_shards, name
        assert manifest["counters"] == c and manifest["shards"] == shuffle["shards"]
        assert not (tmp_path / name / WORK_DIR_NAME).exists()


def test_the_documents_kept_are_the_ones_the_rules_name(corpus, tmp_path):
    import pyarrow as pa

    run_job(corpus, tmp_path / "out")
    rows = []
    for shard in sorted((tmp_path / "out").glob("*.arrow")):
        rows += pa.ipc.open_file(shard).read_all().to_pylist()
    by_id: dict[tuple[str, str], str] = {(r["source"], r["original_id"]): r for r in rows}
    # Of an id seen with two texts, the copy with the smaller normalised text hash stays.
    for n in range(10, 20):
        copies = [document(n).split("\n"), document(100 + n - 10).split("\n")]
        kept = min(copies, key=extract.normalized_text_hash)
        assert by_id[("books.txt", str(n))]["sentences"] == kept
    # The text of documents 0-4 stays once, under one of its two doc_ids.
    texts = [" ".join(r["sentences"]).casefold() for r in rows]
    for n in range(5):
        assert sum(f"record {n} says" in t for t in texts) == 1


def test_small_spills_and_a_stale_work_directory_change_nothing(corpus, tmp_path, monkeypatch):
    run_job(corpus, tmp_path / "once")
    out = tmp_path / "spilled"
    work = out / WORK_DIR_NAME
    work.mkdir(parents=True)
    # A killed run's leftovers, under the names the steps read: the next run starts afresh.
    (work / "docs-000000-000003.arrow").write_bytes(b"not arrow")
    (work / "docs-000009-000001.arrow").write_bytes(b"not arrow")
    monkeypatch.setattr(extract_local, "SPILL_CHARS", 1)  # a batch per document
    run_job(corpus, out)
    assert outputs(out)[0] == outputs(tmp_path / "once")[0]
    assert not work.exists()


def test_more_shards_than_documents_writes_empty_shards_as_the_shuffle_path(tmp_path):
    text = tmp_path / "few.txt"
    text.write_text("\n\n".join(document(n) for n in range(3)) + "\n")
    run_job([text], tmp_path / "local", "--num-shards", "9")
    run_job([text], tmp_path / "shuffle", "--num-shards", "9", "--exchange", "shuffle")
    local, manifest = outputs(tmp_path / "local")
    assert local == outputs(tmp_path / "shuffle")[0]
    assert len(local) == 9 and sum(s["rows"] == 0 for s in manifest["shards"]) >= 6


def test_local_files_are_refused_for_gcs_output(corpus):
    with pytest.raises(ValueError, match="--exchange local needs local"):
        run_job(corpus, "gs://bucket/documents", "--exchange", "local")
