"""The pretraining data job with local files between its steps: for one machine (DirectRunner).

Beam's shuffle on the DirectRunner keeps every stage's data in the memory of its processes and
costs more CPU than the work itself (bench/results/pretraining_data.md). Here the data goes
through files in `<output>/.work/`, memory-mapped where they are read, and Beam moves only
work items: file, bucket and shard numbers. One pipeline, each step waiting for the one before
through a side input:

1. tokenize: each documents shard -> `tokens-NNNNN-PPPP.arrow` (doc_id, hash, token ids, sentence
   boundaries, and per length the boundaries with over-long sentences cut); then all
   documents are ordered by (hash, doc id), as the shuffle exchange does (rank -> file, row,
   hash in three .npy files), and consecutive ranks form the buckets.
2. plan: each bucket -> `plans-NNNNNN.npz`, its pairs (or packed rows) per length and
   duplicate; the example counts of all buckets give every example's rank and the number of
   shards. For full-sentences packing a bucket holds whole streams (packing.py): its ranks
   are those of a range of hashes, as in the shuffle exchange.
3. assemble: each bucket -> per length `seq<L>/bucket-NNNNNN.arrow`, its masked examples
   grouped by shard; B of a NotNext pair is read from the token files (sentence-order data
   has none: both segments come from the bucket's own documents).
4. write: each shard reads its rows from every bucket's file and writes them in the order of
   their random keys.

The records are built by the same functions as the shuffle exchange (pipelines/pretraining/
records.py), so the shards are byte-identical to it. The work directory is removed
after the run; a killed run leaves it behind, and the next run starts it afresh.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa

from bertdata.masking import gather_runs
from pipelines.arrow_shards import (
    CorruptShardError,
    iter_shard_batches,
    read_work_table,
    write_shard_index,
    write_work_table,
)
from pipelines.beam_runner import Spread, make_pipeline, run_pipeline, runs_in_one_worker
from pipelines.options import PretrainingDataConfig
from pipelines.pretraining.allocator import BulkDataStep
from pipelines.pretraining.common import (
    BadInputError,
    Vocabulary,
    checked_num_shards,
    doc_hash,
)
from pipelines.pretraining.packing import bucket_hash_range
from pipelines.pretraining.pairs import (
    SPECIAL_TOKENS_PER_PAIR,
    random_next_spans,
    split_long_sentences,
)
from pipelines.pretraining.records import (
    Answers,
    DocumentPlanner,
    DocumentTokenizer,
    ExampleAssembler,
    ExampleColumns,
    PlannedDocument,
    TokenizedDocument,
    example_offsets,
    examples_by_shard,
    too_few_documents,
    write_example_shard,
)
from schemas.documents import DOCUMENTS
from schemas.manifest import ShardInfo
from schemas.pretraining import token_id_type

TOKEN_FILES_NAME = "token_files.json"
ERROR_NAME = "error.txt"  # a bad input's message, for the driver
TOKENS_PER_FILE = 1 << 25  # token ids per token file (64 MB at 16 bits): the tokenizer's memory
# Memory-mapped files each step of a worker keeps (token files, or one length's bucket
# files): Linux allows 65,530 mappings per process by default.
OPEN_FILES = 8192


def _plans_path(work: str, bucket: int) -> str:
    return os.path.join(work, f"plans-{bucket:06d}.npz")


def _spill_path(work: str, length: int, bucket: int) -> str:
    return os.path.join(work, f"seq{length}", f"bucket-{bucket:06d}.arrow")


class _OpenFiles:
    """Memory-mapped tables of a worker, opened on demand. When full it keeps what it holds and
    opens the others for the moment: files are read in the same order shard after shard, and
    evicting the oldest would evict each file just before it is needed again."""

    def __init__(self, open_fn: Callable[[str], object]):
        self.open_fn = open_fn
        self.files: dict[str, object] = {}

    def get(self, path: str):
        found = self.files.get(path)
        if found is None:
            found = self.open_fn(path)
            if len(self.files) < OPEN_FILES:
                self.files[path] = found
        return found


@dataclass(frozen=True)
class _TokenFile:
    """A token file's columns as numpy views of the mapped file."""

    doc_ids: pa.StringArray
    tokens: np.ndarray
    token_offsets: np.ndarray
    bounds: np.ndarray
    bound_offsets: np.ndarray
    cut: list[tuple[np.ndarray, np.ndarray]]  # per length index: boundaries, their offsets

    @classmethod
    def open(cls, path: str) -> _TokenFile:
        table = read_work_table(path)

        def flat(name):
            column = table.column(name).chunk(0) if table.num_rows else None
            if column is None:
                return np.zeros(0), np.zeros(1, np.int64)
            return column.values.to_numpy(), column.offsets.to_numpy()

        tokens, token_offsets = flat("tokens")
        bounds, bound_offsets = flat("bounds")
        doc_ids = table.column("doc_id").combine_chunks()
        cuts = sorted(n for n in table.column_names if n.startswith("cut"))
        cut = [flat(name) for name in sorted(cuts, key=lambda n: int(n[3:]))]
        return cls(doc_ids, tokens, token_offsets, bounds, bound_offsets, cut)

    def document(self, row: int, hash64: int) -> TokenizedDocument:
        t0, t1 = self.token_offsets[row], self.token_offsets[row + 1]
        b0, b1 = self.bound_offsets[row], self.bound_offsets[row + 1]
        doc_id = self.doc_ids[row].as_py()
        return TokenizedDocument(doc_id, hash64, self.tokens[t0:t1], self.bounds[b0:b1])


class _Corpus:
    """The documents in rank order, read from the token files on demand."""

    def __init__(self, work: str):
        self.work = work
        self.files = _OpenFiles(_TokenFile.open)
        self.file_of_rank = np.load(os.path.join(work, "file_of_rank.npy"), mmap_mode="r")
        self.row_of_rank = np.load(os.path.join(work, "row_of_rank.npy"), mmap_mode="r")
        self.hash_of_rank = np.load(os.path.join(work, "hash_of_rank.npy"), mmap_mode="r")
        with open(os.path.join(work, TOKEN_FILES_NAME)) as f:
            self.paths = [os.path.join(work, name) for name in json.load(f)]

    @property
    def num_documents(self) -> int:
        return len(self.file_of_rank)

    def bucket_ranks(self, config: PretrainingDataConfig, num_buckets: int, bucket: int) -> range:
        """The ranks of one bucket (whole streams for full-sentences packing)."""
        if config.packing_streams:
            return stream_bucket_ranks(
                self.hash_of_rank, num_buckets, config.packing_streams, bucket
            )
        return bucket_ranks(self.num_documents, num_buckets, bucket)

    def document(self, rank: int) -> TokenizedDocument:
        token_file = self.files.get(self.paths[int(self.file_of_rank[rank])])
        return token_file.document(int(self.row_of_rank[rank]), int(self.hash_of_rank[rank]))

    def random_next_sources(self, ranks: np.ndarray, li: int):
        """For documents by rank: their ids, token ids, and sentence boundaries at length
        index li (over-long sentences cut) as one array with offsets."""
        files = np.asarray(self.file_of_rank[ranks])
        rows = np.asarray(self.row_of_rank[ranks]).astype(np.int64)
        doc_ids: list = [None] * len(ranks)
        tokens: list = [None] * len(ranks)
        sizes = np.zeros(len(ranks), dtype=np.int64)
        cut_parts, cut_where = [], []
        for f in np.unique(files).tolist():
            where = np.flatnonzero(files == f)
            token_file = self.files.get(self.paths[f])
            r = rows[where]
            for i, doc_id in zip(
                where.tolist(), token_file.doc_ids.take(r).to_pylist(), strict=True
            ):
                doc_ids[i] = doc_id
            t = token_file.tokens
            for i, t0, t1 in zip(
                where.tolist(),
                token_file.token_offsets[r].tolist(),
                token_file.token_offsets[r + 1].tolist(),
                strict=True,
            ):
                tokens[i] = t[t0:t1]
            values, offsets = token_file.cut[li]
            sizes[where] = offsets[r + 1] - offsets[r]
            cut_parts.append(values[gather_runs(offsets[r], sizes[where])])
            cut_where.append(where)
        doc_offsets = np.zeros(len(ranks) + 1, dtype=np.int64)
        np.cumsum(sizes, out=doc_offsets[1:])
        bounds = np.zeros(int(doc_offsets[-1]), dtype=np.int64)
        for where, part in zip(cut_where, cut_parts, strict=True):
            bounds[gather_runs(doc_offsets[where], sizes[where])] = part
        return doc_ids, tokens, bounds, doc_offsets


def bucket_ranks(num_documents: int, num_buckets: int, bucket: int) -> range:
    """The ranks of one bucket: consecutive, sizes equal within one."""
    return range(num_documents * bucket // num_buckets, num_documents * (bucket + 1) // num_buckets)


def stream_bucket_ranks(
    hash_of_rank: np.ndarray, num_buckets: int, num_streams: int, bucket: int
) -> range:
    """The ranks of one bucket that holds whole streams (full-sentences packing): those whose
    hash is in the bucket's range, as the shuffle exchange assigns them."""

    def first_rank_from(hash64: int) -> int:  # hash64 may be 2**64: past every document
        if hash64 >= 1 << 64:
            return len(hash_of_rank)
        return int(np.searchsorted(hash_of_rank, np.uint64(hash64), side="left"))

    low, high = bucket_hash_range(bucket, num_buckets, num_streams)
    return range(first_rank_from(low), first_rank_from(high))


class TokenizeShard(BulkDataStep):
    """(index, documents shard) -> token files `tokens-<index>-<part>.arrow`; yields their names.

    The shard is read a record batch at a time and a token file is written every
    TOKENS_PER_FILE token ids, so memory is bounded whatever the shard's size.
    """

    def __init__(
        self, config: PretrainingDataConfig, documents_dir: str, work: str, vocab_dir: str,
        token_dtype: str,
    ):  # fmt: skip
        self.max_num_tokens = [L - SPECIAL_TOKENS_PER_PAIR for L in config.max_seq_lengths]
        self.documents_dir = documents_dir
        self.work = work
        self.token_dtype = token_dtype
        self.tokenizer = DocumentTokenizer(vocab_dir, token_dtype)

    def prepare(self) -> None:
        self.tokenizer.setup()

    def process(self, element: tuple[int, ShardInfo]) -> Iterator[str]:
        index, info = element
        docs: list[TokenizedDocument] = []
        num_tokens, part = 0, 0
        batches = iter_shard_batches(self.documents_dir, info, DOCUMENTS)
        try:
            first = next(batches, None)  # the checksum and schema are checked here
        except CorruptShardError as err:
            _refuse(self.work, err)
        for batch in itertools.chain([] if first is None else [first], batches):
            for doc_id, sentences in zip(
                batch.column("doc_id").to_pylist(),
                batch.column("sentences").to_pylist(),
                strict=True,
            ):
                doc = self.tokenizer.tokenize(doc_id, doc_hash(doc_id), sentences)
                if doc is not None:
                    docs.append(doc)
                    num_tokens += len(doc.tokens)
                if num_tokens >= TOKENS_PER_FILE:
                    yield self._write(f"tokens-{index:05d}-{part:04d}.arrow", docs)
                    docs, num_tokens, part = [], 0, part + 1
        if docs:
            yield self._write(f"tokens-{index:05d}-{part:04d}.arrow", docs)

    def _write(self, name: str, docs: list[TokenizedDocument]) -> str:
        # B of a NotNext pair is read with the sentence cut of its length (pairs.py)
        cuts = {
            f"cut{li}": _large_lists(
                [split_long_sentences(d.bounds, m)[0] for d in docs], np.dtype(np.int64)
            )
            for li, m in enumerate(self.max_num_tokens)
        }
        table = pa.table(
            {
                "doc_id": pa.array([d.doc_id for d in docs], pa.string()),
                "hash": pa.array(np.array([d.hash64 for d in docs], dtype=np.uint64)),
                "tokens": _large_lists([d.tokens for d in docs], np.dtype(self.token_dtype)),
                "bounds": _large_lists([d.bounds for d in docs], np.dtype(np.int64)),
                **cuts,
            }
        )
        write_work_table(os.path.join(self.work, name), table)
        return name


def _large_lists(arrays: list[np.ndarray], dtype: np.dtype) -> pa.LargeListArray:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def corpus_order(hashes: np.ndarray, doc_id: Callable[[int], str]) -> np.ndarray:
    """Indices that sort documents by (hash, doc id); doc ids are looked up only for hashes
    that occur more than once."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    same = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    start = 0
    while start < len(same):
        end = start
        while end + 1 < len(same) and same[end + 1] == same[end] + 1:
            end += 1
        lo, hi = int(same[start]), int(same[end]) + 2
        order[lo:hi] = sorted(order[lo:hi].tolist(), key=doc_id)
        start = end + 1
    return order


def write_corpus_index(work: str, names: list[str]) -> int:
    """Orders the documents of the token files; writes rank -> (file, row, hash) and the
    files' names. Returns the number of documents."""
    names = sorted(names)
    hashes, files, rows, tables = [], [], [], {}
    for index, name in enumerate(names):
        table = read_work_table(os.path.join(work, name))
        tables[index] = table
        hashes.append(np.asarray(table.column("hash").to_numpy(), dtype=np.uint64))
        files.append(np.full(table.num_rows, index, dtype=np.uint32))
        rows.append(np.arange(table.num_rows, dtype=np.uint32))
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    all_files = np.concatenate(files) if files else np.zeros(0, np.uint32)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.uint32)

    def doc_id(i: int) -> str:
        return tables[int(all_files[i])].column("doc_id")[int(all_rows[i])].as_py()

    order = corpus_order(all_hashes, doc_id)
    np.save(os.path.join(work, "file_of_rank.npy"), all_files[order])
    np.save(os.path.join(work, "row_of_rank.npy"), all_rows[order])
    np.save(os.path.join(work, "hash_of_rank.npy"), all_hashes[order])
    with open(os.path.join(work, TOKEN_FILES_NAME), "w") as f:
        json.dump(names, f)
    return len(order)


class PlanBucket(beam.DoFn):
    """bucket -> `plans-<bucket>.npz`; yields (bucket, examples per length)."""

    def __init__(self, config: PretrainingDataConfig, work: str, num_buckets: int):
        self.planner = DocumentPlanner(config)
        self.config = config
        self.work = work
        self.num_buckets = num_buckets

    def setup(self) -> None:
        self.corpus = None  # opened on first use: the index is written in this pipeline

    def process(self, bucket: int, num_documents: int) -> Iterator[tuple[int, list[int]]]:
        if self.corpus is None:
            self.corpus = _Corpus(self.work)
        n = self.corpus.num_documents
        if n != num_documents:
            raise RuntimeError(f"{self.work}: the corpus index changed during the run")
        ranks = self.corpus.bucket_ranks(self.config, self.num_buckets, bucket)
        docs = [self.corpus.document(r) for r in ranks]
        planned = self.planner.plan_bucket(docs, ranks.start, n)
        arrays, counts = {}, []
        for li in range(len(self.config.max_seq_lengths)):
            per_group = [p for doc in planned for p in doc.plans[li]]
            sizes = np.array([len(p) for p in per_group], dtype=np.int64)
            arrays[f"plans{li}"] = (
                np.concatenate(per_group)
                if per_group
                else np.zeros(0, dtype=self.planner.plan_dtype)
            )
            arrays[f"sizes{li}"] = sizes
            counts.append(int(sizes.sum()))
        tmp = _plans_path(self.work, bucket) + f".tmp-{os.getpid()}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, _plans_path(self.work, bucket))
        yield bucket, counts


def _read_plans(path: str, num_lengths: int, num_docs: int, dupe_factor: int):
    """plans[li][doc][dupe] from a plans file."""
    with np.load(path) as data:
        out = []
        for li in range(num_lengths):
            plans, sizes = data[f"plans{li}"], data[f"sizes{li}"]
            offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
            np.cumsum(sizes, out=offsets[1:])
            groups = [plans[offsets[g] : offsets[g + 1]] for g in range(len(sizes))]
            out.append([groups[d * dupe_factor : (d + 1) * dupe_factor] for d in range(num_docs)])
    return out


class AssembleBucket(BulkDataStep):
    """bucket -> per length its examples, grouped by shard, in `seq<L>/bucket-<bucket>.arrow`."""

    def __init__(self, config: PretrainingDataConfig, vocab_dir: str, work: str, num_buckets: int):
        self.assembler = ExampleAssembler(config, vocab_dir)
        self.config = config
        self.work = work
        self.num_buckets = num_buckets

    def prepare(self) -> None:
        self.assembler.setup()
        self.corpus = None  # opened on first use: the index is written in this pipeline

    def process(self, bucket: int, layout: ExampleLayout) -> Iterator[int]:
        if self.corpus is None:
            self.corpus = _Corpus(self.work)
        cfg = self.config
        ranks = self.corpus.bucket_ranks(cfg, self.num_buckets, bucket)
        docs = [self.corpus.document(r) for r in ranks]
        plans = _read_plans(
            _plans_path(self.work, bucket), len(cfg.max_seq_lengths), len(docs), cfg.dupe_factor
        )
        planned = [
            PlannedDocument(doc, [], [plans[li][d] for li in range(len(plans))])
            for d, doc in enumerate(docs)
        ]
        answers = self._answers(planned)
        for li, length in enumerate(cfg.max_seq_lengths):
            first = layout.offsets[li][bucket]
            parts = list(self.assembler.parts(planned, answers, li, first))
            last = int(parts[-1].rank[-1]) + 1 if parts else first
            if last != layout.offsets[li][bucket + 1]:
                raise RuntimeError(f"bucket {bucket}: example count differs from the plan")
            if parts:
                # rows by shard, in rank order
                merged = ExampleColumns.concatenate(parts)
                table, shard = examples_by_shard(merged, layout.num_shards[li])
                table = table.append_column("_shard", pa.array(shard.astype(np.uint32)))
                write_work_table(_spill_path(self.work, length, bucket), table)
        yield bucket

    def _answers(self, planned: list[PlannedDocument]) -> Answers:
        """B of every NotNext pair of the bucket, read from the token files."""
        answers: Answers = {}
        if self.config.packed:
            return answers  # packed rows take nothing from other documents' files
        for li in range(len(self.config.max_seq_lengths)):
            keys, requests = [], []
            for index, doc in enumerate(planned):
                for dupe, plans in enumerate(doc.plans[li]):
                    pairs = np.flatnonzero(plans["random_doc_rank"] >= 0)
                    if len(pairs):
                        keys.append((index, dupe, pairs.tolist()))
                        requests.append(plans[pairs])
            if not requests:
                continue
            rows = np.concatenate(requests)
            ranks, target = np.unique(rows["random_doc_rank"], return_inverse=True)
            doc_ids, tokens, bounds, doc_offsets = self.corpus.random_next_sources(ranks, li)
            starts, ends = random_next_spans(
                bounds, doc_offsets, target, rows["random_start"], rows["b_target_length"]
            )
            spans = zip(target.tolist(), starts.tolist(), ends.tolist(), strict=True)
            for index, dupe, pairs in keys:
                for pair in pairs:
                    t, s, e = next(spans)
                    answers[index, li, dupe, pair] = (doc_ids[t], tokens[t][s:e])
        return answers


class _SpillFile:
    def __init__(self, path: str):
        self.table = read_work_table(path)
        self.shard = self.table.column("_shard").chunk(0).to_numpy()

    def rows_of(self, shard: int) -> pa.Table:
        lo, hi = np.searchsorted(self.shard, [shard, shard + 1])
        return self.table.slice(int(lo), int(hi - lo))


def _has_rows(first: int, end: int, shard: int, num_shards: int) -> bool:
    """Whether ranks first..end-1 hold one that goes to `shard` (rank mod num_shards)."""
    return end - first >= num_shards or (shard - first) % num_shards < end - first


class GatherShard(BulkDataStep):
    """shard index -> the shard, its rows read from every bucket's file of one length."""

    def __init__(self, work: str, length_index: int, length: int, num_buckets: int,
                 output_dir: str, token_type: str):  # fmt: skip
        self.work = work
        self.length_index = length_index
        self.length = length
        self.num_buckets = num_buckets
        self.output_dir = output_dir
        self.token_type = token_type

    def prepare(self) -> None:
        self.spills = _OpenFiles(_SpillFile)

    def process(self, shard: int, layout: ExampleLayout, assembled) -> Iterator[dict]:
        del assembled  # only orders this step after every bucket's
        offsets = layout.offsets[self.length_index]
        num_shards = layout.num_shards[self.length_index]
        tables = []
        for bucket in range(self.num_buckets):
            if not _has_rows(offsets[bucket], offsets[bucket + 1], shard, num_shards):
                continue
            path = _spill_path(self.work, self.length, bucket)
            if not os.path.exists(path):
                raise RuntimeError(
                    f"{path}: missing; was {self.work} removed or used by another run?"
                )
            tables.append(self.spills.get(path).rows_of(shard))
        rows = sum(t.num_rows for t in tables)
        expected = len(range(shard, offsets[-1], num_shards))
        if rows != expected:
            raise RuntimeError(
                f"shard {shard} of seq{self.length}: {rows} examples in {self.work}, "
                f"{expected} planned; was it used by another run?"
            )
        yield write_example_shard(self.output_dir, self.token_type, shard, num_shards, tables)


class ExampleLayout(NamedTuple):
    """Where each bucket's examples go, known once every bucket is planned."""

    offsets: list[list[int]]  # [length index][bucket]: rank of its first example, then the total
    num_shards: list[int]  # per length index


def example_layout(
    config: PretrainingDataConfig, num_buckets: int, counts: list[tuple[int, list[int]]]
) -> ExampleLayout:
    """The layout from the plan counts (bucket, examples per length); no example at a length
    is an error."""
    per_length = [(li, b, n) for b, ns in counts for li, n in enumerate(ns)]
    offsets = [
        example_offsets(per_length, li, num_buckets) for li in range(len(config.max_seq_lengths))
    ]
    num_shards = [
        checked_num_shards(config, int(offsets[li][-1]), length)
        for li, length in enumerate(config.max_seq_lengths)
    ]
    return ExampleLayout([o.tolist() for o in offsets], num_shards)


def _refuse(work: str, err: ValueError) -> None:
    """Raise err after leaving its message for the driver: a worker process's exception
    reaches the driver as Beam's RuntimeError, whatever its type."""
    with open(os.path.join(work, ERROR_NAME), "w") as f:
        f.write(str(err))
    raise err


def _ordered(work: str, config: PretrainingDataConfig, names: list[str]) -> int:
    """The corpus order, written once every token file is; returns the document count."""
    num_documents = write_corpus_index(work, names)
    refused = too_few_documents(config, num_documents)
    if refused:
        _refuse(work, BadInputError(refused))
    return num_documents


def _checked_layout(
    work: str, config: PretrainingDataConfig, num_buckets: int, counts
) -> ExampleLayout:
    try:
        return example_layout(config, num_buckets, counts)
    except BadInputError as err:
        _refuse(work, err)
        raise


def _on_all(pipeline: beam.Pipeline, label: str, pcoll, fn: Callable[[list], object]):
    """fn(every element of pcoll), once they all exist: a side input, no GroupByKey."""
    return (
        pipeline
        | f"Start{label}" >> beam.Create([None])
        | label >> beam.Map(lambda _, items: fn(items), beam.pvalue.AsList(pcoll))
    )


def run_local(
    config: PretrainingDataConfig,
    vocab: Vocabulary,
    documents_dir: str,
    shards: list[ShardInfo],
    output_dirs: dict[int, str],
    work: str,
    num_buckets: int,
    beam_args: list[str],
):
    """Runs the job with the local exchange; returns the pipeline's result. Each step waits for
    the one before through a side input, so the files it reads are complete. The work
    directory is made afresh and removed after a successful run."""
    shutil.rmtree(work, ignore_errors=True)
    for length in config.max_seq_lengths:
        os.makedirs(os.path.join(work, f"seq{length}"))
    pipeline = make_pipeline(beam_args)
    token_type = token_id_type(len(vocab.tokens))
    token_dtype = np.dtype(token_type).str
    k = num_buckets
    # Create(..., reshuffle=False): each list is spread between workers by the Spread that
    # follows it (none with one worker); a step that needs all of a PCollection runs _on_all.
    one_worker = runs_in_one_worker(beam_args)
    token_files = (
        pipeline
        | "ListShards" >> beam.Create(list(enumerate(shards)), reshuffle=False)
        | "SpreadShards" >> Spread(one_worker)
        | "Tokenize"
        >> beam.ParDo(TokenizeShard(config, documents_dir, work, vocab.directory, token_dtype))
    )
    num_documents = _on_all(
        pipeline, "Order", token_files, lambda names: _ordered(work, config, names)
    )
    plan_counts = (
        pipeline
        | "ListBuckets" >> beam.Create(range(k), reshuffle=False)
        | "SpreadBuckets" >> Spread(one_worker)
        | "Plan" >> beam.ParDo(PlanBucket(config, work, k), beam.pvalue.AsSingleton(num_documents))
    )
    layout = beam.pvalue.AsSingleton(
        _on_all(pipeline, "Layout", plan_counts, lambda c: _checked_layout(work, config, k, c))
    )
    assembled = beam.pvalue.AsList(
        pipeline
        | "ListBucketsAgain" >> beam.Create(range(k), reshuffle=False)
        | "AfterLayout" >> beam.Map(lambda b, _: b, layout)
        | "SpreadBucketsAgain" >> Spread(one_worker)
        | "Assemble" >> beam.ParDo(AssembleBucket(config, vocab.directory, work, k), layout)
    )
    for li, length in enumerate(config.max_seq_lengths):
        out = output_dirs[length]
        written = (
            pipeline
            | f"Start{length}" >> beam.Create([li])
            | f"ListShards{length}" >> beam.FlatMap(lambda i, t: range(t.num_shards[i]), layout)
            | f"SpreadShards{length}" >> Spread(one_worker)
            | f"Write{length}"
            >> beam.ParDo(GatherShard(work, li, length, k, out, token_type), layout, assembled)
        )
        _on_all(
            pipeline,
            f"WriteShardIndex{length}",
            written,
            partial(write_shard_index, output_dir=out),
        )
    try:
        result = run_pipeline(pipeline)
    except Exception as err:
        error_path = os.path.join(work, ERROR_NAME)
        if os.path.exists(error_path):
            with open(error_path) as f:
                raise BadInputError(f.read()) from err
        raise
    shutil.rmtree(work, ignore_errors=True)
    return result
