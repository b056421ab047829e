"""ALBERT's sentence-order labels (--sentence-order): the plans with a seeded rng, and the real
job on articles of the Wikipedia sample, checked against the documents' own tokens."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Helpers shared with the job's tests, in this directory.
from test_pairs import ScriptedRandom
from test_pretraining_data import (
    ROOT,
    document_row,
    make_vocab_dir,
    occurrences,
    read_examples,
    sample_articles,
    shard_bytes,
    unmasked,
    write_documents,
)

from pipelines import pretraining_data
from pipelines.pretraining.pairs import (
    PairPlan,
    create_pair_plans,
    pack_pairs,
    plans_to_array,
    sentence_bounds,
)
from pipelines.pretraining_data import read_vocabulary_files
from pipelines.validate import validate
from schemas.documents import document_id
from schemas.pretraining import IN_ORDER, IS_NEXT, NOT_NEXT, SWAPPED

CLS, SEP = 101, 102
MAX_LENGTH = 512  # every document of the corpus fits in one pair: nothing is truncated
SOP_ARGS = [
    "--sentence-order", "--max-seq-lengths", f"128,{MAX_LENGTH}", "--dupe-factor", "8",
    "--num-shards", "3", "--seed", "11",
]  # fmt: skip


def sop_plans(bounds, rng, max_num_tokens=25, num_documents=5, doc_rank=2, short_seq_prob=0.1):
    return create_pair_plans(
        list(bounds),
        rng,
        max_num_tokens=max_num_tokens,
        short_seq_prob=short_seq_prob,
        num_documents=num_documents,
        doc_rank=doc_rank,
        sentence_order=True,
    )


# -- planning and packing, with a seeded rng -------------------------------------------------


def test_a_sentence_order_plan_is_an_isnext_plan_and_a_coin_that_swaps_it():
    # Four sentences of 10 tokens, budget 25. Draws: target (0.5: the maximum), where A ends,
    # the swap coin; no IsNext/NotNext coin and no random document.
    rng = ScriptedRandom([0.5, 0.7, 0.3, 0.6, 0.9, 0.8])
    result = sop_plans([0, 10, 20, 30, 40], rng, num_documents=1, doc_rank=0)
    # Chunk s0..s2 (30 tokens reach 25); A = s0 s1 (1 + int(0.7 * 2)), B = s2; 0.3 swaps it.
    assert result[0] == PairPlan(0, 20, 20, 30, -1, 0.0, 0, True)
    # s3 alone at the document's end: s2 becomes A, as for IsNext; 0.8 keeps the order.
    assert result[1] == PairPlan(20, 30, 30, 40, -1, 0.0, 0, False)
    assert [p.next_sentence_label for p in result] == [SWAPPED, IN_ORDER]
    assert len(result) == 2 and rng.values == []


def test_seeded_plans_are_adjacent_spans_of_whole_sentences_and_half_are_swapped():
    gen = np.random.default_rng(4)
    swapped, count = 0, 0
    for seed in range(400):
        # Lengths up to the budget: many chunks are one sentence, which NSP's reference would
        # have made NotNext; here they take a neighbour, as IsNext does.
        bounds = sentence_bounds(gen.integers(1, 26, gen.integers(1, 12))).tolist()
        plans = sop_plans(bounds, random.Random(seed), num_documents=1, doc_rank=0)
        again = sop_plans(bounds, random.Random(seed), num_documents=1, doc_rank=0)
        assert plans == again  # the seed decides everything
        for p in plans:
            assert p.random_doc_rank == -1 and p.b_start == p.a_end  # one document, adjacent
            assert {p.a_start, p.a_end, p.b_end} <= set(bounds) and p.a_start < p.a_end < p.b_end
        swapped += sum(p.swapped for p in plans)
        count += len(plans)
    assert count > 1000
    assert abs(swapped / count - 0.5) < 4 * math.sqrt(0.25 / count)


def test_a_swapped_pair_is_packed_b_first_and_truncated_as_in_order():
    doc = np.arange(1000, 1060, dtype=np.uint16)
    in_order = plans_to_array([PairPlan(0, 40, 40, 60, -1, 0.0, 0, False)])
    swapped = plans_to_array([PairPlan(0, 40, 40, 60, -1, 0.0, 0, True)])
    options = {"max_num_tokens": 25, "cls_id": CLS, "sep_id": SEP}
    kept = pack_pairs(doc, in_order, [], np.random.default_rng(2), **options)
    turned = pack_pairs(doc, swapped, [], np.random.default_rng(2), **options)
    ids, a_len = kept.input_ids.tolist(), int(kept.segment_a_lengths[0])
    a, b = ids[1 : a_len + 1], ids[a_len + 2 : -1]
    assert (len(a), len(b)) == (13, 12)  # truncated: A is cut from 40 tokens, B from 20
    # The same draws cut the same tokens; the swapped pair is [CLS] B [SEP] A [SEP], and its
    # first segment (token type 0) is B.
    assert turned.input_ids.tolist() == [CLS, *b, SEP, *a, SEP]
    assert turned.segment_a_lengths.tolist() == [12]
    assert kept.next_sentence_labels.tolist() == [IN_ORDER]
    assert turned.next_sentence_labels.tolist() == [SWAPPED]


def test_a_notnext_pair_cannot_be_swapped():
    planned = plans_to_array([PairPlan(0, 5, 0, 0, 1, 0.5, 5, True)])
    with pytest.raises(ValueError, match="cannot be swapped"):
        pack_pairs(
            np.arange(10), planned, [np.arange(3)], np.random.default_rng(0),
            max_num_tokens=25, cls_id=CLS, sep_id=SEP,
        )  # fmt: skip


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
def job(documents_dir, vocab_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("job") / "pretraining"
    return output, run_job(documents_dir, vocab_dir, output, *SOP_ARGS)


@pytest.fixture(scope="module")
def documents(documents_dir, vocab_dir) -> dict[str, tuple[np.ndarray, set[int]]]:
    """doc_id -> its token ids (special tokens typed in the text as [UNK], as the job does) and
    the token offsets where its sentences start or end."""
    import pyarrow as pa

    _, tokenizer, _ = read_vocabulary_files(str(vocab_dir))
    found = {}
    for shard in sorted(documents_dir.glob("*.arrow")):
        for row in pa.ipc.open_file(shard).read_all().to_pylist():
            encoded = tokenizer.encode_batch(row["sentences"], add_special_tokens=False)
            ids = [i if i not in (0, CLS, SEP, 103) else 100 for e in encoded for i in e.ids]
            bounds = sentence_bounds(np.array([len(e.ids) for e in encoded])).tolist()
            found[row["doc_id"]] = (np.asarray(ids), set(bounds))
    return found


def segments(row: dict) -> tuple[list[int], list[int]]:
    """The two packed segments of an example, masks undone: (first, second)."""
    ids = unmasked(row)
    a = row["segment_a_length"]
    assert ids[0] == CLS and ids[a + 1] == SEP and ids[-1] == SEP
    return ids[1 : a + 1], ids[a + 2 : -1]


def whole_sentences_in_a_row(tokens: np.ndarray, bounds: set[int], *parts: list[int]) -> bool:
    """Whether the parts, one after another, are consecutive whole sentences of the document."""
    joined = [t for part in parts for t in part]
    for start in occurrences(tokens.tolist(), joined).tolist():
        edges, at = [start], start
        for part in parts:
            at += len(part)
            edges.append(at)
        if set(edges) <= bounds:
            return True
    return False


def test_half_of_the_pairs_are_swapped_and_the_manifest_says_sentence_order(job):
    output, manifests = job
    for length in (128, MAX_LENGTH):
        manifest, table = read_examples(output / f"seq{length}")
        labels = table.column("next_sentence_label").to_numpy()
        n = len(labels)
        assert n > 500
        assert set(labels.tolist()) == {IN_ORDER, SWAPPED}
        # Fair coins: the share within 4 standard errors of a half for this many examples.
        assert abs(labels.mean() - 0.5) < 4 * math.sqrt(0.25 / n)
        assert manifest.config["sentence_order"] is True  # what the trainer reads
        counters = manifests[length]["counters"]
        assert counters[f"seq{length}_swapped"] == int((labels == SWAPPED).sum())
        assert f"seq{length}_not_next" not in counters


def test_both_segments_are_adjacent_whole_sentences_of_one_document_in_the_labelled_order(
    job, documents
):
    output, _ = job
    longest = max(len(tokens) for tokens, _ in documents.values())
    assert longest <= MAX_LENGTH - 3  # so no pair is truncated and the check below is exact
    _, table = read_examples(output / f"seq{MAX_LENGTH}")
    one_sentence = document_id("sample", "one-sentence")
    pairs_of = set()
    for row in table.to_pylist():
        assert row["b_doc_id"] == row["doc_id"] != one_sentence  # never two documents
        tokens, bounds = documents[row["doc_id"]]
        first, second = segments(row)
        assert first and second
        if row["next_sentence_label"] == SWAPPED:
            # Put back in order, B's sentences follow A's; as packed, they do not.
            assert whole_sentences_in_a_row(tokens, bounds, second, first)
            assert not whole_sentences_in_a_row(tokens, bounds, first, second)
        else:
            assert whole_sentences_in_a_row(tokens, bounds, first, second)
        pairs_of.add(row["doc_id"])
    assert len(pairs_of) == len(documents) - 1  # every document but the one-sentence one


def test_truncated_pairs_still_come_from_one_document(job, documents):
    output, _ = job
    _, table = read_examples(output / "seq128")
    for row in table.to_pylist():
        assert row["b_doc_id"] == row["doc_id"]
        tokens, _ = documents[row["doc_id"]]
        first, second = segments(row)
        assert len(occurrences(tokens.tolist(), first)) and len(
            occurrences(tokens.tolist(), second)
        )
        assert len(first) + len(second) <= 128 - 3


def test_validation_passes_and_reports_the_swapped_share(job, vocab_dir):
    output, _ = job
    for length in (128, MAX_LENGTH):
        stats = validate(str(output / f"seq{length}"), vocab_dir=str(vocab_dir))
        assert stats["passed"] and set(stats["error_counts"].values()) == {0}
        assert "not_next_share" not in stats and 0.4 < stats["swapped_share"] < 0.6
        check = next(c for c in stats["checks"] if c["name"] == "swapped_share")
        assert check["passed"] and check["expected"] == 0.5


def test_beams_shuffle_gives_the_same_bytes_as_the_local_files_exchange(
    job, documents_dir, vocab_dir, tmp_path
):
    output, _ = job
    other = tmp_path / "pretraining"
    run_job(documents_dir, vocab_dir, other, *SOP_ARGS, "--exchange", "shuffle",
            "--docs-per-bucket", "7")  # fmt: skip
    assert shard_bytes(other) == shard_bytes(output)


def test_two_worker_processes_give_the_same_bytes(job, documents_dir, vocab_dir, tmp_path):
    output, _ = job
    other = tmp_path / "pretraining"
    done = subprocess.run(
        [
            sys.executable, "-m", "pipelines.pretraining_data",
            "--documents", str(documents_dir), "--vocab", str(vocab_dir), "--output", str(other),
            *SOP_ARGS,
            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2",
            "--docs-per-bucket", "5", "--min-buckets", "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert shard_bytes(other) == shard_bytes(output)


def test_without_the_flag_the_data_is_nsp_and_its_manifest_config_as_before(
    job, documents_dir, vocab_dir, tmp_path
):
    output, _ = job
    nsp = tmp_path / "nsp"
    args = [a for a in SOP_ARGS if a != "--sentence-order"]
    manifests = run_job(documents_dir, vocab_dir, nsp, *args)
    for length in (128, MAX_LENGTH):
        config = manifests[length]["config"]
        # Not recorded when off: data written before the option keeps its config hash.
        assert "sentence_order" not in config
        sop_config = json.loads((output / f"seq{length}" / "manifest.json").read_text())["config"]
        assert {k: v for k, v in sop_config.items() if k != "sentence_order"} == config
        assert f"seq{length}_not_next" in manifests[length]["counters"]
        _, table = read_examples(nsp / f"seq{length}")
        labels = table.column("next_sentence_label").to_numpy()
        other_doc = np.array(table.column("doc_id").to_pylist()) != np.array(
            table.column("b_doc_id").to_pylist()
        )
        assert (other_doc == (labels == NOT_NEXT)).all() and (labels == IS_NEXT).any()
        assert validate(str(nsp / f"seq{length}"))["not_next_share"] > 0.4
    assert shard_bytes(nsp) != shard_bytes(output)


@pytest.mark.parametrize("exchange", ["local", "shuffle"])
def test_a_corpus_of_one_document_gives_sentence_order_pairs(
    exchange, sample_dump, vocab_dir, tmp_path
):
    rows = sample_articles(sample_dump, 1, 40)
    docs = write_documents(rows, tmp_path / "docs", 1)
    output = tmp_path / "out"
    run_job(docs, vocab_dir, output, "--sentence-order", "--max-seq-lengths", "64",
            "--dupe-factor", "4", "--exchange", exchange)  # fmt: skip
    _, table = read_examples(output / "seq64")
    assert table.num_rows > 40
    assert set(table.column("doc_id").to_pylist()) == {rows[0]["doc_id"]}
    assert set(table.column("b_doc_id").to_pylist()) == {rows[0]["doc_id"]}
    assert validate(str(output / "seq64"))["passed"]
