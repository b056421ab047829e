"""Extraction with local files between its steps: flat memory on one machine (DirectRunner).

Beam's GroupByKey on the DirectRunner keeps every document in memory until the end of the job
(about 4 bytes of memory per byte of XML, bench/results/scale.md). Here the documents go
through files in `<output>/.work/` and Beam moves only file, shard and partition numbers; each
step waits for the one before through a side input:

1. spill: each input file is read and cleaned as by the shuffle path (the same DoFns), and its
   documents appended, a few MB at a time, to one stream file per output shard
   (`docs-FFFFFF-SSSSS.arrow`, shard by the hash of doc_id), with their normalised text hash.
2. dedupe ids: each shard's spill files are read together, sorted by (doc_id, text hash) and
   the first of each doc_id kept (as `_KeepFirst` does) into `kept-SSSSS.arrow`; the shard's
   (text hash, doc_id) pairs go to `hashes-SSSSS.arrow`, ordered by hash partition.
3. dedupe text: each hash partition reads its slice of every hashes file; of the documents
   that share a text hash the one with the smallest doc_id stays, the others are listed in
   `losers-PPPPP.arrow`, ordered by shard.
4. write: each shard drops its losers from its kept file and writes the output shard with the
   same function and row order as the shuffle path, so the bytes are the same.

A step holds one shard's documents (or one partition's hashes), never the corpus: with shards
of the size the option advises (100-500 MB), memory does not grow with the corpus. Input files
are spread over worker processes; one input file is read and cleaned by one worker. The work
directory is removed after the run; a killed run leaves it behind and the next run starts it
afresh.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines.arrow_shards import (
    ROWS_PER_BATCH,
    read_work_table,
    shard_name,
    shard_of,
    write_shard_index,
    write_work_table,
)
from pipelines.beam_runner import Spread
from schemas.documents import DOCUMENTS
from schemas.validation import validate_table

SPILL_CHARS = 4_000_000  # characters of text buffered per input file before they are appended
HASH = "text_hash"
SPILL_SCHEMA = pa.schema([*DOCUMENTS.arrow_schema, pa.field(HASH, pa.string(), nullable=False)])


def _path(work: str, kind: str, *numbers: int) -> str:
    return os.path.join(work, f"{kind}-" + "-".join(f"{n:06d}" for n in numbers) + ".arrow")


def _write_sorted_by(path: str, table: pa.Table, key: str, num_parts: int) -> None:
    """table ordered by its int column `key`, with the row offsets of each part beside it."""
    table = table.sort_by(key)
    counts = np.bincount(table.column(key).to_numpy(), minlength=num_parts)
    np.save(f"{path}.offsets.npy", np.concatenate([[0], np.cumsum(counts)]))
    write_work_table(path, table)


def _read_part(path: str, part: int) -> pa.Table:
    """Rows of one part of a file written by _write_sorted_by."""
    offsets = np.load(f"{path}.offsets.npy")
    start, end = int(offsets[part]), int(offsets[part + 1])
    return read_work_table(path).slice(start, end - start)


def hash_partition(text_hash: str, num_partitions: int) -> int:
    return int(text_hash[:8], 16) % num_partitions


class SpillDocuments(beam.DoFn):
    """(file index, path, format) -> documents appended to per-shard stream files. `read` and
    `build` are the shuffle path's ReadSourceFile and BuildDocument DoFns, run here in turn."""

    def __init__(self, read, build, text_hash: Callable, work: str, num_shards: int):
        self.read = read
        self.build = build
        self.text_hash = text_hash
        self.work = work
        self.num_shards = num_shards

    def setup(self) -> None:
        self.build.setup()

    def finish_bundle(self) -> None:
        self.build.finish_bundle()

    def process(self, element: tuple[int, tuple[str, str]]) -> Iterator[int]:
        index, path_and_format = element
        writers: dict[int, tuple[str, pa.OSFile, pa.ipc.RecordBatchStreamWriter]] = {}
        buffered: dict[int, list[dict]] = {}
        chars = 0
        try:
            for raw in self.read.process(path_and_format):
                for doc in self.build.process(raw):
                    doc[HASH] = self.text_hash(doc["sentences"])
                    buffered.setdefault(shard_of(doc["doc_id"], self.num_shards), []).append(doc)
                    chars += doc["num_chars"]
                if chars >= SPILL_CHARS:
                    self._append(index, buffered, writers)
                    buffered, chars = {}, 0
            self._append(index, buffered, writers)
        finally:
            for _, sink, writer in writers.values():
                writer.close()
                sink.close()
        for shard, (tmp, _, _) in writers.items():
            os.replace(tmp, _path(self.work, "docs", index, shard))
        yield index

    def _append(self, index: int, buffered: dict[int, list[dict]], writers: dict) -> None:
        for shard, docs in sorted(buffered.items()):
            if shard not in writers:
                tmp = f"{_path(self.work, 'docs', index, shard)}.tmp-{os.getpid()}"
                sink = pa.OSFile(tmp, "wb")
                writers[shard] = (tmp, sink, pa.ipc.new_stream(sink, SPILL_SCHEMA))
            writers[shard][2].write_table(pa.Table.from_pylist(docs, schema=SPILL_SCHEMA))


def _spilled(work: str, shard: int) -> pa.Table:
    tables = []
    for path in sorted(glob.glob(os.path.join(work, f"docs-*-{shard:06d}.arrow"))):
        with pa.memory_map(path) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if tables else SPILL_SCHEMA.empty_table()


def _firsts(column: pa.ChunkedArray) -> np.ndarray:
    """Whether each row of a sorted column differs from the row before it."""
    values = column.combine_chunks()
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    differs = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1))
    return np.concatenate([[True], differs.to_numpy(zero_copy_only=False)])


class DedupeIds(beam.DoFn):
    """A shard's spilled documents -> one per doc_id (the smallest text hash), by doc_id.
    Only the keys are sorted; the documents are copied ROWS_PER_BATCH at a time from the
    memory-mapped spill files."""

    def __init__(self, work: str, num_shards: int, dedup_text: bool):
        self.work = work
        self.num_shards = num_shards
        self.dedup_text = dedup_text
        self.dropped = Metrics.counter("extract", "skipped_duplicate_ids")

    def process(self, shard: int) -> Iterator[int]:
        docs = _spilled(self.work, shard)
        keys = docs.select(["doc_id", HASH])
        order = pc.sort_indices(keys, sort_keys=[("doc_id", "ascending"), (HASH, "ascending")])
        first = _firsts(keys.column("doc_id").take(order))
        if not first.all():
            self.dropped.inc(int((~first).sum()))
        kept = pa.array(order.to_numpy()[first])
        _write_rows(_path(self.work, "kept", shard), docs, kept)
        if self.dedup_text:
            hashes = keys.column(HASH).take(kept).combine_chunks()
            parts = [hash_partition(h, self.num_shards) for h in hashes.to_pylist()]
            table = pa.table(
                {
                    HASH: hashes,
                    "doc_id": keys.column("doc_id").take(kept),
                    "shard": pa.array(np.full(len(parts), shard, dtype=np.int64)),
                    "part": pa.array(parts, pa.int64()),
                }
            )
            _write_sorted_by(_path(self.work, "hashes", shard), table, "part", self.num_shards)
        yield shard


class DedupeText(beam.DoFn):
    """A hash partition's (text hash, doc_id) pairs from every shard -> the documents that
    repeat an earlier doc_id's text, listed by shard."""

    def __init__(self, work: str, num_shards: int):
        self.work = work
        self.num_shards = num_shards
        self.dropped = Metrics.counter("extract", "skipped_duplicate_documents")

    def process(self, part: int) -> Iterator[int]:
        slices = [
            _read_part(_path(self.work, "hashes", shard), part) for shard in range(self.num_shards)
        ]
        pairs = pa.concat_tables(slices).sort_by([(HASH, "ascending"), ("doc_id", "ascending")])
        losers = pairs.filter(pa.array(~_firsts(pairs.column(HASH)))).select(["doc_id", "shard"])
        self.dropped.inc(losers.num_rows)
        _write_sorted_by(_path(self.work, "losers", part), losers, "shard", self.num_shards)
        yield part


class WriteDocumentShard(beam.DoFn):
    """A shard's kept documents, less the text duplicates, -> the output shard, written
    ROWS_PER_BATCH rows at a time: the record batches of the shuffle path's one-table write."""

    def __init__(self, work: str, output_dir: str, num_shards: int, dedup_text: bool):
        self.work = work
        self.output_dir = output_dir
        self.num_shards = num_shards
        self.dedup_text = dedup_text

    def process(self, shard: int) -> Iterator[dict]:
        docs = read_work_table(_path(self.work, "kept", shard))
        rows = np.arange(docs.num_rows)
        if self.dedup_text:
            losers = pa.concat_arrays(
                [
                    _read_part(_path(self.work, "losers", part), shard)
                    .column("doc_id")
                    .combine_chunks()
                    for part in range(self.num_shards)
                ]
            )
            if len(losers):
                dropped = pc.is_in(docs.column("doc_id"), losers).to_numpy(zero_copy_only=False)
                rows = rows[~dropped]
        name = shard_name(DOCUMENTS, shard, self.num_shards)
        schema = DOCUMENTS.arrow_schema

        def batches() -> Iterator[pa.RecordBatch]:
            for start in range(0, len(rows), ROWS_PER_BATCH):
                part = docs.take(pa.array(rows[start : start + ROWS_PER_BATCH]))
                part = part.select(schema.names).cast(schema).combine_chunks()
                validate_table(part, DOCUMENTS, source=name)
                yield from part.to_batches()

        yield _write_shard_file(os.path.join(self.output_dir, name), name, schema, batches())


def _write_rows(path: str, table: pa.Table, rows: pa.Array) -> None:
    """table's rows in the order given, ROWS_PER_BATCH at a time, uncompressed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for start in range(0, len(rows), ROWS_PER_BATCH):
            writer.write_table(table.take(rows.slice(start, ROWS_PER_BATCH)))
    os.replace(tmp, path)


class _Hashing:
    """A file sink that also takes the SHA-256 and the size of what goes through it."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    @property
    def closed(self) -> bool:
        return self.f.closed

    def close(self) -> None:
        self.f.close()


def _write_shard_file(path: str, name: str, schema: pa.Schema, batches) -> dict:
    """An output shard from record batches, zstd as write_shard; renamed into place. Returns
    its manifest entry."""
    tmp = f"{path}.tmp-{os.getpid()}"
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    rows = 0
    with open(tmp, "wb") as f:
        sink = _Hashing(f)
        with pa.ipc.new_file(pa.PythonFile(sink, mode="w"), schema, options=options) as writer:
            for batch in batches:
                rows += batch.num_rows
                writer.write_batch(batch)
    os.replace(tmp, path)
    return {"path": name, "rows": rows, "bytes": sink.size, "sha256": sink.sha.hexdigest()}


def _after(pipeline: beam.Pipeline, label: str, items, done) -> beam.PCollection:
    """items, each once every element of `done` exists (a side input), spread over workers."""
    return (
        pipeline
        | f"List{label}" >> beam.Create(list(items), reshuffle=False)
        | f"After{label}" >> beam.Map(lambda x, _: x, beam.pvalue.AsList(done))
    )


def add_local_steps(
    pipeline: beam.Pipeline,
    files: list[tuple[str, str]],
    output_dir: str,
    num_shards: int,
    dedup: bool,
    spill: SpillDocuments,
    one_worker: bool,
) -> None:
    """Adds the four steps to `pipeline`; the work directory is made afresh here."""
    work = spill.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    shards = range(num_shards)
    spilled = (
        pipeline
        | "ListFiles" >> beam.Create(list(enumerate(files)), reshuffle=False)
        | "SpreadFiles" >> Spread(one_worker)
        | "Spill" >> beam.ParDo(spill)
    )
    start = pipeline | "Start" >> beam.Create([None])
    kept = (
        _after(pipeline, "Shards", shards, spilled)
        | "SpreadShards" >> Spread(one_worker)
        | "DedupeIds" >> beam.ParDo(DedupeIds(work, num_shards, dedup))
    )
    losers = start
    if dedup:
        losers = (
            _after(pipeline, "Partitions", shards, kept)
            | "SpreadPartitions" >> Spread(one_worker)
            | "DedupeText" >> beam.ParDo(DedupeText(work, num_shards))
        )
    written = (
        _after(pipeline, "ShardsAgain", shards, (kept, losers) | "KeptAndLosers" >> beam.Flatten())
        | "SpreadShardsAgain" >> Spread(one_worker)
        | "Write" >> beam.ParDo(WriteDocumentShard(work, output_dir, num_shards, dedup))
    )
    _ = start | "WriteShardIndex" >> beam.Map(
        lambda _, infos: _finish(work, output_dir, infos), beam.pvalue.AsList(written)
    )


def _finish(work: str, output_dir: str, infos: list[dict]) -> None:
    """The shard index, once every shard is written; then the work files go."""
    write_shard_index(infos, output_dir)
    shutil.rmtree(work, ignore_errors=True)
