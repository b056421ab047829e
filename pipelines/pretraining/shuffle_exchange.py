"""The pretraining data job with Beam's shuffle between its steps: for Dataflow and gs:// paths.

- Documents are ordered by a hash of their id and cut into buckets of consecutive hashes; a
  bucket (about --docs-per-bucket documents) is the unit of work. A document's rank in that
  order does not depend on the number of buckets or workers.
- B of a NotNext pair is a random other document's rank; the request goes to that document's
  bucket, which answers with B's tokens, and the answer goes back to the asking bucket.
  Sentence-order and packed data have no NotNext pair, hence no request; full-sentences
  packing puts whole streams of documents in each bucket (packing.py).
- Examples go to their shard (rank mod num_shards) through a GroupByKey.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.arrow_shards import ReadArrowShards, write_shard_index
from pipelines.options import PretrainingDataConfig
from pipelines.pretraining.allocator import BulkDataStep
from pipelines.pretraining.common import (
    BadInputError,
    Vocabulary,
    checked_num_shards,
    doc_hash,
)
from pipelines.pretraining.packing import bucket_of_stream, stream_of
from pipelines.pretraining.pairs import random_next_span
from pipelines.pretraining.records import (
    Answers,
    DocumentPlanner,
    DocumentTokenizer,
    ExampleAssembler,
    TokenizedDocument,
    example_offsets,
    shard_tables,
    too_few_documents,
    write_example_shard,
)
from schemas.documents import DOCUMENTS
from schemas.pretraining import token_id_type

REQUEST_DTYPE = np.dtype(
    [
        ("src_bucket", np.int64),
        ("src_index", np.int64),  # the asking document's index in its bucket
        ("length_index", np.int64),
        ("dupe", np.int64),
        ("pair", np.int64),
        ("target_index", np.int64),  # B's document's index in this bucket
        ("random_start", np.float64),
        ("b_target_length", np.int64),
    ]
)
ANSWER_KEY = ["src_index", "length_index", "dupe", "pair"]


class RandomNextAnswers(NamedTuple):
    """B segments for the NotNext pairs of one bucket's documents."""

    keys: np.ndarray  # REQUEST_DTYPE rows of the requests answered
    b_doc_ids: list[str]
    tokens: np.ndarray  # the B segments, one after another
    offsets: np.ndarray  # (num_answers + 1,)


def bucket_of(hash64: int, num_buckets: int) -> int:
    """Buckets are ranges of consecutive hashes, so the order by hash runs bucket by bucket."""
    return (hash64 * num_buckets) >> 64


def num_buckets_for(
    num_documents: int,
    docs_per_bucket: int,
    min_buckets: int,
    document_bytes: int = 0,
    bucket_bytes: int = 0,
) -> int:
    """Units of work: about docs_per_bucket documents each, and at most about bucket_bytes of
    the documents shards (as stored) each, so that long documents (books) make small buckets:
    a bucket's memory follows its text: 40-80 MB per MB stored (dupe factor 5, one length;
    bench/results/scale.md)."""
    by_bytes = math.ceil(document_bytes / bucket_bytes) if bucket_bytes else 0
    return max(min_buckets, math.ceil(num_documents / docs_per_bucket), by_bytes, 1)


def document_offsets(bucket_counts: Iterable[tuple[int, int]], num_buckets: int) -> np.ndarray:
    """Rank of the first document of each bucket: (num_buckets + 1,) int64."""
    counts = np.zeros(num_buckets, dtype=np.int64)
    for bucket, count in bucket_counts:
        counts[bucket] += count
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


class TokenizeDocuments(BulkDataStep):
    """Document rows -> (bucket, TokenizedDocument). With `num_streams` (full-sentences
    packing) a bucket holds whole streams (pipelines/pretraining/packing.py)."""

    def __init__(self, vocab_dir: str, num_buckets: int, token_dtype: str, num_streams: int = 0):
        self.tokenizer = DocumentTokenizer(vocab_dir, token_dtype)
        self.num_buckets = num_buckets
        self.num_streams = num_streams

    def prepare(self) -> None:
        self.tokenizer.setup()

    def process(self, row: dict) -> Iterator[tuple[int, TokenizedDocument]]:
        h = doc_hash(row["doc_id"])
        doc = self.tokenizer.tokenize(row["doc_id"], h, row["sentences"])
        if doc is not None and self.num_streams:
            stream = stream_of(h, self.num_streams)
            yield bucket_of_stream(stream, self.num_streams, self.num_buckets), doc
        elif doc is not None:
            yield bucket_of(h, self.num_buckets), doc


class PlanPairs(beam.DoFn):
    """A bucket of documents -> planned documents, NotNext requests and example counts."""

    REQUESTS = "requests"
    COUNTS = "counts"

    def __init__(self, config: PretrainingDataConfig, num_buckets: int):
        self.planner = DocumentPlanner(config)
        self.config = config
        self.num_lengths = len(config.max_seq_lengths)
        self.num_buckets = num_buckets

    def process(self, element, doc_counts):
        bucket, docs = element
        offsets = document_offsets(doc_counts, self.num_buckets)
        num_documents = int(offsets[-1])
        refused = too_few_documents(self.config, num_documents)
        if refused:
            raise BadInputError(refused)
        docs = sorted(docs, key=lambda d: (d.hash64, d.doc_id))
        planned = self.planner.plan_bucket(docs, int(offsets[bucket]), num_documents)
        yield bucket, planned
        for li in range(self.num_lengths):
            total = sum(len(p) for doc in planned for p in doc.plans[li])
            yield beam.pvalue.TaggedOutput(self.COUNTS, (li, bucket, total))
        # Packed rows take nothing from other buckets: no request.
        rows = np.zeros(0, REQUEST_DTYPE) if self.config.packed else _requests(bucket, planned)
        if len(rows):
            # Until here target_index held B's document rank: find its bucket and index.
            ranks = rows["target_index"]
            target_bucket = np.searchsorted(offsets, ranks, side="right") - 1
            rows["target_index"] = ranks - offsets[target_bucket]
            for tb in np.unique(target_bucket):
                yield beam.pvalue.TaggedOutput(self.REQUESTS, (int(tb), rows[target_bucket == tb]))


def _requests(bucket: int, planned) -> np.ndarray:
    """REQUEST_DTYPE rows of the bucket's NotNext pairs; target_index holds B's document rank."""
    parts = []
    for index, doc in enumerate(planned):
        for li, per_dupe in enumerate(doc.plans):
            for dupe, plans in enumerate(per_dupe):
                pairs = np.flatnonzero(plans["random_doc_rank"] >= 0)
                if len(pairs) == 0:
                    continue
                rows = np.zeros(len(pairs), dtype=REQUEST_DTYPE)
                rows["src_bucket"], rows["src_index"] = bucket, index
                rows["length_index"], rows["dupe"], rows["pair"] = li, dupe, pairs
                rows["target_index"] = plans["random_doc_rank"][pairs]
                rows["random_start"] = plans["random_start"][pairs]
                rows["b_target_length"] = plans["b_target_length"][pairs]
                parts.append(rows)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=REQUEST_DTYPE)


class AnswerRandomNext(beam.DoFn):
    """(bucket, {docs, requests}) -> B segments, sent back to the asking buckets."""

    def process(self, element) -> Iterator[tuple[int, RandomNextAnswers]]:
        bucket, grouped = element
        batches = list(grouped["requests"])
        if not batches:
            return
        planned = [d for group in grouped["docs"] for d in group]
        if not planned:
            raise RuntimeError(f"bucket {bucket}: requests for B but the bucket has no document")
        rows = np.concatenate(batches)
        bounds: dict[tuple[int, int], list[int]] = {}
        for src_bucket in np.unique(rows["src_bucket"]):
            mine = rows[rows["src_bucket"] == src_bucket]
            segments, ids = [], []
            for target, li, start, b_target in zip(
                mine["target_index"].tolist(),
                mine["length_index"].tolist(),
                mine["random_start"].tolist(),
                mine["b_target_length"].tolist(),
                strict=True,
            ):
                doc = planned[target]
                if (target, li) not in bounds:
                    bounds[target, li] = doc.bounds[li].tolist()
                s, e = random_next_span(bounds[target, li], start, b_target)
                segments.append(doc.doc.tokens[s:e])
                ids.append(doc.doc.doc_id)
            lengths = np.fromiter(map(len, segments), np.int64, len(segments))
            offsets = np.zeros(len(segments) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            yield int(src_bucket), RandomNextAnswers(mine, ids, np.concatenate(segments), offsets)


def table_to_stream_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def table_from_stream_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


class AssembleExamples(BulkDataStep):
    """(bucket, {docs, answers}) -> per length: (shard, Arrow table of examples)."""

    def __init__(self, config: PretrainingDataConfig, vocab_dir: str, num_buckets: int):
        self.assembler = ExampleAssembler(config, vocab_dir)
        self.config = config
        self.num_buckets = num_buckets

    def prepare(self) -> None:
        self.assembler.setup()

    def process(self, element, example_counts):
        bucket, grouped = element
        planned = [d for group in grouped["docs"] for d in group]
        answers: Answers = {}
        for batch in grouped["answers"]:
            keys = zip(*(batch.keys[k].tolist() for k in ANSWER_KEY), strict=True)
            for i, key in enumerate(keys):
                segment = batch.tokens[batch.offsets[i] : batch.offsets[i + 1]]
                answers[key] = (batch.b_doc_ids[i], segment)
        for li, length in enumerate(self.config.max_seq_lengths):
            offsets = example_offsets(example_counts, li, self.num_buckets)
            num_shards = self.config.num_shards_for(int(offsets[-1]))
            last = int(offsets[bucket])
            for part in self.assembler.parts(planned, answers, li, int(offsets[bucket])):
                last = int(part.rank[-1]) + 1
                for shard, table in shard_tables(part, num_shards):
                    yield beam.pvalue.TaggedOutput(
                        f"seq{length}", (shard, table_to_stream_bytes(table))
                    )
            if last != offsets[bucket + 1]:
                raise RuntimeError(f"bucket {bucket}: example count differs from the plan")


class _WriteExampleShard(beam.DoFn):
    def __init__(self, output_dir: str, token_type: str):
        self.output_dir = output_dir
        self.token_type = token_type

    def process(self, element, num_shards: int) -> Iterator[dict]:
        index, parts = element
        tables = [table_from_stream_bytes(p) for p in parts if p is not None]
        yield write_example_shard(self.output_dir, self.token_type, index, num_shards, tables)


class WriteExampleShards(beam.PTransform):
    """(shard, table bytes) -> equal-size shards of one length, every shard written."""

    def __init__(self, output_dir: str, token_type: str, num_shards):
        super().__init__()
        self.output_dir = output_dir
        self.token_type = token_type
        self.num_shards = num_shards  # a singleton PCollection: known only once counted

    def expand(self, parts):
        num_shards = beam.pvalue.AsSingleton(self.num_shards)
        placeholders = self.num_shards | "AllShards" >> beam.FlatMap(
            lambda n: [(i, None) for i in range(n)]
        )
        return (
            (parts, placeholders)
            | "Flatten" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(_WriteExampleShard(self.output_dir, self.token_type), num_shards)
            | "CollectShardInfo" >> beam.combiners.ToList()
            | "WriteShardIndex" >> beam.Map(write_shard_index, self.output_dir)
        )


def _num_shards(cfg: PretrainingDataConfig, counts, li: int) -> int:
    total = sum(n for i, _, n in counts if i == li)
    return checked_num_shards(cfg, total, cfg.max_seq_lengths[li])


class CreatePretrainingExamples(beam.PTransform):
    """Document rows -> {length: (shard, table bytes)}: pairs, NotNext draws and masks."""

    def __init__(self, config: PretrainingDataConfig, vocab: Vocabulary, num_buckets: int):
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.num_buckets = num_buckets

    def expand(self, rows):
        cfg, k = self.config, self.num_buckets
        token_type = token_id_type(len(self.vocab.tokens))
        docs = rows | "Tokenize" >> beam.ParDo(
            TokenizeDocuments(
                self.vocab.directory, k, np.dtype(token_type).str, cfg.packing_streams
            )
        )
        doc_counts = (
            docs
            | "OnePerDocument" >> beam.Map(lambda kv: (kv[0], 1))
            | "DocumentsPerBucket" >> beam.CombinePerKey(sum)
        )
        planned = (
            docs
            | "GroupDocuments" >> beam.GroupByKey()
            | "PlanPairs"
            >> beam.ParDo(PlanPairs(cfg, k), beam.pvalue.AsList(doc_counts)).with_outputs(
                PlanPairs.REQUESTS, PlanPairs.COUNTS, main="planned"
            )
        )
        answers = (
            {"docs": planned.planned, "requests": planned[PlanPairs.REQUESTS]}
            | "GroupRequests" >> beam.CoGroupByKey()
            | "AnswerRandomNext" >> beam.ParDo(AnswerRandomNext())
        )
        tags = [f"seq{L}" for L in cfg.max_seq_lengths]
        examples = (
            {"docs": planned.planned, "answers": answers}
            | "GroupAnswers" >> beam.CoGroupByKey()
            | "AssembleExamples"
            >> beam.ParDo(
                AssembleExamples(cfg, self.vocab.directory, k),
                beam.pvalue.AsList(planned[PlanPairs.COUNTS]),
            ).with_outputs(*tags)
        )
        counts = planned[PlanPairs.COUNTS]
        out = {}
        for li, length in enumerate(cfg.max_seq_lengths):
            num_shards = (
                counts
                | f"Total{length}" >> beam.combiners.ToList()
                | f"NumShards{length}" >> beam.Map(lambda c, li=li: _num_shards(cfg, c, li))
            )
            out[length] = (examples[f"seq{length}"], num_shards)
        return out


def build_pipeline(
    pipeline: beam.Pipeline,
    config: PretrainingDataConfig,
    vocab: Vocabulary,
    documents_dir: str,
    output_dirs: dict[int, str],
    num_buckets: int,
) -> None:
    """Adds the job to `pipeline`: read documents, build examples, write each length."""
    token_type = token_id_type(len(vocab.tokens))
    outputs = (
        pipeline
        | "ReadDocuments" >> ReadArrowShards(documents_dir, DOCUMENTS)
        | "Examples" >> CreatePretrainingExamples(config, vocab, num_buckets)
    )
    for length, (parts, num_shards) in outputs.items():
        _ = parts | f"Write{length}" >> WriteExampleShards(
            output_dirs[length], token_type, num_shards
        )
