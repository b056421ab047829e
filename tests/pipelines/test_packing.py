"""RoBERTa's packed inputs (--packing full-sentences / doc-sentences): the packing function on
seeded random documents, and the real job on articles of the Wikipedia sample, checked against
the documents' own tokens."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

# Helpers shared with the job's tests, in this directory.
from test_pretraining_data import (
    ROOT,
    document_row,
    make_vocab_dir,
    read_examples,
    sample_articles,
    shard_bytes,
    unmasked,
    write_documents,
)
from test_validate import broken_copy, each_row, failed_checks, first_row

from pipelines import pretraining_data
from pipelines.pretraining.common import doc_hash
from pipelines.pretraining.local_exchange import stream_bucket_ranks
from pipelines.pretraining.packing import (
    bucket_of_stream,
    num_streams_for,
    pack_rows,
    plan_rows,
    stream_of,
)
from pipelines.pretraining.pairs import sentence_bounds
from pipelines.pretraining_data import read_vocabulary_files
from pipelines.validate import validate
from schemas.manifest import Manifest

CLS, SEP = 101, 102
LENGTHS = (128, 512)
PACKED_ARGS = [
    "--max-seq-lengths", ",".join(map(str, LENGTHS)), "--dupe-factor", "3", "--num-shards", "3",
    "--seed", "11",
]  # fmt: skip


# -- the packing function, on seeded random documents ----------------------------------------


def sequences(batch) -> list[list[int]]:
    return [ids.tolist() for ids in np.split(batch.input_ids, batch.offsets[1:-1])]


def packed(bounds: list[list[int]], budget: int, cross: bool) -> list[tuple]:
    first, rows = plan_rows(bounds, budget, cross_documents=cross)
    return [(int(f), *r) for f, r in zip(first, rows.tolist(), strict=True)]


def test_rows_take_whole_sentences_and_full_sentences_run_on_after_a_separator():
    # Three documents: sentences of 3, 4, 3 tokens; 2; 5, 1. Budget 8 content tokens.
    bounds = [[0, 3, 7, 10], [0, 2], [0, 5, 6]]
    # (first document, start, documents run on into, end, index in the unit)
    assert packed(bounds, 8, cross=True) == [
        (0, 0, 0, 7, 0),  # 3 + 4; the next 3 would make 10
        (0, 7, 1, 2, 1),  # 3, [SEP], 2: 6 tokens; [SEP] + 5 would make 12
        (2, 0, 0, 6, 2),  # 5 + 1, the stream's last row
    ]
    assert packed(bounds, 8, cross=False) == [
        (0, 0, 0, 7, 0),
        (0, 7, 0, 10, 1),  # a document's last row may be short
        (1, 0, 0, 2, 0),  # indices count within each document
        (2, 0, 0, 6, 0),
    ]
    docs = [np.arange(100, 110), np.arange(200, 202), np.arange(300, 306)]
    first, rows = plan_rows(bounds, 8, cross_documents=True)
    batch = pack_rows(docs, first, rows, cls_id=1, sep_id=2)
    got = sequences(batch)
    assert got[1] == [1, 107, 108, 109, 2, 200, 201, 2]
    assert batch.segment_a_lengths.tolist() == [len(g) - 2 for g in got]  # all token type 0
    assert batch.next_sentence_labels.tolist() == [0, 0, 0]
    assert batch.last_docs.tolist() == [0, 1, 2]


def test_a_sentence_over_the_budget_is_refused_not_lost():
    with pytest.raises(ValueError, match="a sentence of 9 tokens, more than 8"):
        plan_rows([[0, 9]], 8, cross_documents=True)


@pytest.mark.parametrize("cross", [True, False])
def test_seeded_random_documents_are_packed_greedily_whole_and_exactly_once(cross):
    gen = np.random.default_rng(7)
    budget = 30
    for _ in range(300):
        lengths = [
            gen.integers(1, budget + 1, gen.integers(1, 8)) for _ in range(gen.integers(1, 6))
        ]
        bounds = [sentence_bounds(s).tolist() for s in lengths]
        docs = [gen.integers(1000, 2000, b[-1]) for b in bounds]
        first, rows = plan_rows(bounds, budget, cross_documents=cross)
        batch = pack_rows(docs, first, rows, cls_id=1, sep_id=2)
        seqs = sequences(batch)
        assert all(s[0] == 1 and s[-1] == 2 and len(s) - 2 <= budget for s in seqs)
        if cross:
            # The rows one after another are the documents with [SEP] between them; a row
            # that ends with its document leaves that [SEP] to its own end.
            stream = [t for d, doc in enumerate(docs) for t in [*([2] if d else []), *doc]]
            joined = []
            for i, s in enumerate(seqs):
                if i and first[i] != batch.last_docs[i - 1]:
                    joined.append(2)
                joined += s[1:-1]
            assert joined == stream
            assert rows["unit_index"].tolist() == list(range(len(rows)))
        else:
            assert (rows["docs"] == 0).all()
            for d, doc in enumerate(docs):
                mine = [s[1:-1] for s, f in zip(seqs, first, strict=True) if f == d]
                assert [t for s in mine for t in s] == doc.tolist()
                assert rows["unit_index"][first == d].tolist() == list(range(len(mine)))
        for i in range(len(rows)):
            # Whole sentences: a row starts and ends at sentence boundaries...
            d0, d1 = first[i], first[i] + rows["docs"][i]
            assert rows["start"][i] in bounds[d0] and rows["end"][i] in bounds[d1]
            # ...and is closed only when its unit's next sentence does not fit.
            nxt = i + 1
            if nxt < len(rows) and (cross or first[nxt] == d0):
                d2, start = first[nxt], rows["start"][nxt]
                b = bounds[d2]
                sentence = b[b.index(start) + 1] - start
                separator = 1 if d2 != d1 else 0
                assert len(seqs[i]) - 2 + separator + sentence > budget


def test_buckets_hold_whole_streams_alike_in_both_exchanges():
    gen = np.random.default_rng(3)
    hashes = np.sort(gen.integers(0, 1 << 63, 500, dtype=np.uint64) * np.uint64(2))
    for num_buckets in (1, 3, 16, 40):
        for num_streams in (1, 2, 7, 64):
            # The local exchange's ranges of ranks; the shuffle exchange's bucket per document.
            local = np.concatenate(
                [
                    np.full(len(stream_bucket_ranks(hashes, num_buckets, num_streams, b)), b)
                    for b in range(num_buckets)
                ]
            )
            streams = [stream_of(int(h), num_streams) for h in hashes]
            shuffle = [bucket_of_stream(s, num_streams, num_buckets) for s in streams]
            assert local.tolist() == shuffle
            # No stream is split between two buckets.
            assert len({(s, b) for s, b in zip(streams, shuffle, strict=True)}) == len(set(streams))


# -- the job on real text ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents_dir(sample_dump, tmp_path_factory) -> Path:
    """80 short real articles (their first six sentences), and a one-sentence document."""
    rows = sample_articles(sample_dump, 80, 6)
    rows.append(document_row("one-sentence", [rows[0]["sentences"][0]]))
    return write_documents(rows, tmp_path_factory.mktemp("docs") / "docs")


@pytest.fixture(scope="module")
def vocab_dir(documents_dir, tmp_path_factory) -> Path:
    return make_vocab_dir(documents_dir, tmp_path_factory.mktemp("vocab") / "vocab")


def run_job(documents: Path, vocab: Path, output: Path, *args: str) -> dict:
    argv = ["--documents", str(documents), "--vocab", str(vocab), "--output", str(output)]
    return pretraining_data.run([*argv, *args])


@pytest.fixture(scope="module")
def full(documents_dir, vocab_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("full") / "pretraining"
    args = ["--packing", "full-sentences", *PACKED_ARGS]
    return output, run_job(documents_dir, vocab_dir, output, *args)


@pytest.fixture(scope="module")
def doc(documents_dir, vocab_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("doc") / "pretraining"
    args = ["--packing", "doc-sentences", *PACKED_ARGS]
    return output, run_job(documents_dir, vocab_dir, output, *args)


@pytest.fixture(scope="module")
def documents(documents_dir, vocab_dir) -> dict[str, tuple[list[int], list[int]]]:
    """doc_id -> its token ids (special tokens typed in the text as [UNK], as the job does) and
    its sentence boundaries."""
    _, tokenizer, _ = read_vocabulary_files(str(vocab_dir))
    found = {}
    for shard in sorted(documents_dir.glob("*.arrow")):
        for row in pa.ipc.open_file(shard).read_all().to_pylist():
            encoded = tokenizer.encode_batch(row["sentences"], add_special_tokens=False)
            ids = [i if i not in (0, CLS, SEP, 103) else 100 for e in encoded for i in e.ids]
            bounds = sentence_bounds(np.array([len(e.ids) for e in encoded])).tolist()
            found[row["doc_id"]] = (ids, bounds)
    return found


def identities(table: pa.Table) -> list[tuple]:
    """(doc_id, dupe_index, pair_index) per row: what dynamic masking seeds each row's rng with."""
    columns = (table.column(c).to_pylist() for c in ("doc_id", "dupe_index", "pair_index"))
    return list(zip(*columns, strict=True))


def units_of(table: pa.Table, key) -> dict[tuple, list[dict]]:
    """Rows by (unit, copy), masks undone, in their order in the unit (pair_index)."""
    units = defaultdict(list)
    for row in table.to_pylist():
        row["tokens"] = unmasked(row)
        units[key(row), row["dupe_index"]].append(row)
    for rows in units.values():
        rows.sort(key=lambda r: r["pair_index"])
        assert [r["pair_index"] for r in rows] == list(range(len(rows)))
    return units


def check_unit(rows: list[dict], docs: list[str], documents, budget: int) -> None:
    """The rows of one unit, in order, hold the documents' tokens in order, each once, with one
    [SEP] between two documents; each row is whole sentences and closed only when the next
    sentence does not fit."""
    # The unit's tokens with [SEP] between documents, and where each token comes from.
    stream, where = [], []
    for d, doc_id in enumerate(docs):
        if d:
            stream.append(SEP)
            where.append(None)
        tokens, _ = documents[doc_id]
        stream += tokens
        where += [(doc_id, t) for t in range(len(tokens))]
    at, ends = 0, []
    for row in rows:
        tokens = row["tokens"]
        assert tokens[0] == CLS and tokens[-1] == SEP and len(tokens) - 2 == row["segment_a_length"]
        if where[at] is None:  # the row before ended with its document: no [SEP] to start with
            at += 1
        content = tokens[1:-1]
        assert content == stream[at : at + len(content)]
        assert (row["doc_id"], row["b_doc_id"]) == (where[at][0], where[at + len(content) - 1][0])
        ends.append((at, at + len(content)))
        at += len(content)
    assert at == len(stream)  # nothing lost, nothing twice
    for i, (start, end) in enumerate(ends):
        # Whole sentences: the row starts and ends at sentence boundaries of its documents,
        # unless inside a sentence over the budget, which the job cuts into pieces.
        (first_doc, first), (last_doc, last) = where[start], where[end - 1]
        for doc_id, t in ((first_doc, first), (last_doc, last + 1)):
            bounds = documents[doc_id][1]
            k = int(np.searchsorted(bounds, t))
            assert bounds[k] == t or bounds[k] - bounds[k - 1] > budget
        if i + 1 < len(ends):  # greedy: the next row's first sentence did not fit in this one
            next_start = ends[i + 1][0]
            doc_id, t = where[next_start]
            bounds = documents[doc_id][1]
            if t in bounds and bounds[bounds.index(t) + 1] - t <= budget:
                separator = 1 if next_start != end else 0
                assert end - start + separator + bounds[bounds.index(t) + 1] - t > budget


def test_full_sentences_rows_run_through_each_stream_in_order(full, documents, documents_dir):
    output, manifests = full
    corpus = Manifest.from_json((documents_dir / "manifest.json").read_text())
    num_streams = num_streams_for(corpus.total_rows, sum(s.bytes for s in corpus.shards))
    assert num_streams == 2  # 81 short documents: two streams of about 40
    for length in LENGTHS:
        manifest, table = read_examples(output / f"seq{length}")
        config = manifest.config
        assert config["packing"] == "full-sentences" and config["short_seq_prob"] == 0.0
        streams = config["packing_streams"]
        assert streams == num_streams
        assert set(table.column("next_sentence_label").to_pylist()) == {0}
        units = units_of(table, lambda r, n=streams: stream_of(doc_hash(r["doc_id"]), n))
        assert len(units) == streams * 3
        order = sorted(documents, key=lambda d: (doc_hash(d), d))
        for (stream, _), rows in units.items():
            docs = [d for d in order if stream_of(doc_hash(d), streams) == stream]
            check_unit(rows, docs, documents, length - 2)
            # The copies are the same rows (they differ by their masks only).
            copy0 = [r["tokens"] for r in units[stream, 0]]
            assert [r["tokens"] for r in rows] == copy0
        across = np.array(table.column("doc_id").to_pylist()) != np.array(
            table.column("b_doc_id").to_pylist()
        )
        assert across.mean() > 0.3  # short articles: many rows run across documents
        lengths = np.diff(table.column("input_ids").combine_chunks().offsets.to_numpy())
        assert lengths.mean() / length > 0.85  # whole sentences: full to within a sentence
        assert f"seq{length}_not_next" not in manifests[length]["counters"]


def test_doc_sentences_rows_stay_in_their_document_and_cover_it_once_per_copy(doc, documents):
    output, _ = doc
    for length in LENGTHS:
        manifest, table = read_examples(output / f"seq{length}")
        assert manifest.config["packing"] == "doc-sentences"
        assert "packing_streams" not in manifest.config
        assert table.column("doc_id").to_pylist() == table.column("b_doc_id").to_pylist()
        units = units_of(table, lambda r: r["doc_id"])
        assert len(units) == len(documents) * 3  # the one-sentence document too
        for (doc_id, _), rows in units.items():
            check_unit(rows, [doc_id], documents, length - 2)
            assert all(r["tokens"].count(SEP) == 1 for r in rows)


def test_every_row_has_its_own_identity(full, doc):
    for output, _ in (full, doc):
        for length in LENGTHS:
            _, table = read_examples(output / f"seq{length}")
            assert len(set(identities(table))) == table.num_rows


def test_validation_passes_on_both_and_reports_the_fill(full, doc, vocab_dir):
    fill = {}
    for (output, _), name in ((full, "full-sentences"), (doc, "doc-sentences")):
        for length in LENGTHS:
            stats = validate(str(output / f"seq{length}"), vocab_dir=str(vocab_dir))
            assert stats["passed"] and set(stats["error_counts"].values()) == {0}, name
            assert "not_next_share" not in stats and "swapped_share" not in stats
            # Whole sentences seldom fill a row to the token (a row cut mid-sentence would).
            assert stats["full_share"] < 0.2
            check = next(c for c in stats["checks"] if c["name"] == "packed_fill")
            assert check["passed"]
            fill[name, length] = stats["mean_fill"]
    for length in LENGTHS:
        # Six-sentence articles: rows that stop at a document's end are far from full.
        assert fill["full-sentences", length] > 0.85 > fill["doc-sentences", length]


@pytest.mark.parametrize(
    ("packing", "change", "failed"),
    [
        ("full-sentences", lambda r: r.update(next_sentence_label=1), "bad_labels"),
        ("doc-sentences", lambda r: r.update(next_sentence_label=1), "bad_labels"),
        # A second segment (token type 1) at the end of the row.
        ("full-sentences", lambda r: r.update(segment_a_length=r["segment_a_length"] - 1),
         "bad_segment_lengths"),
        # A doc-sentences row that names two documents.
        ("doc-sentences", lambda r: r.update(b_doc_id="another"), "doc_sentences_across_documents"),
    ],
)  # fmt: skip
def test_validation_fails_a_broken_row(packing, change, failed, full, doc, tmp_path):
    output = (full if packing == "full-sentences" else doc)[0] / "seq128"
    broken = broken_copy(output, tmp_path / "broken", first_row(change))
    found, _ = failed_checks(broken)
    assert failed in found


def test_validation_fails_a_separator_inside_a_doc_sentences_row(doc, tmp_path):
    def insert_separator(row: dict) -> None:
        ids = row["input_ids"]
        row["input_ids"] = [*ids[:3], SEP, *ids[4:]]  # a token replaced: the length is kept

    output = doc[0] / "seq128"
    where = lambda r: not r["masked_lm_positions"] or 3 not in r["masked_lm_positions"]  # noqa: E731
    broken = broken_copy(output, tmp_path / "broken", first_row(insert_separator, where))
    found, _ = failed_checks(broken)
    assert "bad_document_separators" in found


def test_validation_fails_rows_cut_short(full, tmp_path):
    def cut_short(row: dict) -> None:  # five content tokens, as if packing stopped early
        keep = [i for i, p in enumerate(row["masked_lm_positions"]) if p < 6]
        row["masked_lm_positions"] = [row["masked_lm_positions"][i] for i in keep]
        row["masked_lm_ids"] = [row["masked_lm_ids"][i] for i in keep]
        row["input_ids"] = [*row["input_ids"][:6], SEP]
        row["segment_a_length"] = 5

    output = full[0] / "seq128"
    broken = broken_copy(output, tmp_path / "broken", each_row(cut_short))
    found, body = failed_checks(broken)
    assert "packed_fill" in found and body["mean_fill"] < 0.1


def test_beams_shuffle_gives_the_same_bytes_as_the_local_files_exchange(
    full, documents_dir, vocab_dir, tmp_path
):
    output, _ = full
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other, "--packing", "full-sentences", *PACKED_ARGS,
            "--exchange", "shuffle", "--docs-per-bucket", "7")  # fmt: skip
    assert shard_bytes(other) == shard_bytes(output)


def test_two_worker_processes_and_one_bucket_give_the_same_bytes(
    full, documents_dir, vocab_dir, tmp_path
):
    output, _ = full
    other = tmp_path / "pretraining"
    done = subprocess.run(
        [
            sys.executable, "-m", "pipelines.pretraining_data",
            "--documents", str(documents_dir), "--vocab", str(vocab_dir), "--output", str(other),
            "--packing", "full-sentences", *PACKED_ARGS,
            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
            "--docs-per-bucket", "1000", "--min-buckets", "1",  # both streams in one bucket
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert shard_bytes(other) == shard_bytes(output)


@pytest.mark.parametrize("masking", ["--whole-word-mask", "--span-masking", "--dynamic-masking"])
def test_each_masking_applies_to_the_same_packed_rows(masking, full, documents_dir, vocab_dir,
                                                      tmp_path):  # fmt: skip
    output, _ = full
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other, "--packing", "full-sentences", *PACKED_ARGS,
            "--max-seq-lengths", "128", masking)  # fmt: skip
    _, table = read_examples(other / "seq128")
    _, static = read_examples(output / "seq128")

    def rows(t: pa.Table) -> list:
        return sorted(zip(identities(t), map(unmasked, t.to_pylist()), strict=True))

    assert rows(table) == rows(static)  # the packing does not depend on the masking
    masked = sum(map(len, table.column("masked_lm_positions").to_pylist()))
    assert (masked == 0) == (masking == "--dynamic-masking")
    assert validate(str(other / "seq128"))["passed"]


def test_without_the_option_the_data_is_pairs_and_its_manifest_config_as_before(
    full, documents_dir, vocab_dir, tmp_path
):
    output, _ = full
    pairs = tmp_path / "pairs"
    manifests = run_job(documents_dir, vocab_dir, pairs, *PACKED_ARGS)
    for length in LENGTHS:
        config = manifests[length]["config"]
        # Not recorded when off: data written before the option keeps its config hash.
        assert "packing" not in config and "packing_streams" not in config
        assert config["short_seq_prob"] == 0.1
        _, table = read_examples(pairs / f"seq{length}")
        assert set(table.column("next_sentence_label").to_pylist()) == {0, 1}
        assert f"seq{length}_not_next" in manifests[length]["counters"]


def test_packing_with_sentence_order_is_refused(documents_dir, vocab_dir, tmp_path):
    for packing in ("full-sentences", "doc-sentences"):
        with pytest.raises(ValueError, match="--sentence-order needs --packing pairs"):
            run_job(documents_dir, vocab_dir, tmp_path / "o", "--packing", packing,
                    "--sentence-order")  # fmt: skip
    assert not (tmp_path / "o").exists()
