"""Deterministic Arrow shard writing and reading for Beam pipelines, local or gs://.

Beam's own sharded sinks place records by bundle, so the same input can land in different
shards from run to run. Here each row goes to a shard by a hash of its key, each shard is sorted,
written under a temporary name and renamed, so the same rows always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from bertdata.shards import CorruptShardError, checked_reader
from schemas.manifest import MANIFEST_NAME, Manifest, ManifestError, ShardInfo, manifest_hash
from schemas.spec import SchemaSpec
from schemas.validation import rows_to_table

SHARD_INDEX_NAME = "_shards.json"  # written by the pipeline, folded into the manifest, removed
ROWS_PER_BATCH = 1024


def join(directory: str, name: str) -> str:
    """Join a file name onto a local or gs:// directory."""
    if "://" in directory:
        return posixpath.join(directory, name)
    return FileSystems.join(directory, name)


def shard_name(spec: SchemaSpec, index: int, num_shards: int) -> str:
    return f"{spec.name}-{index:05d}-of-{num_shards:05d}.arrow"


def shard_of(key: str, num_shards: int) -> int:
    """The shard a key belongs to: a stable hash, independent of worker and run."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_atomic(path: str, data: bytes) -> None:
    """Write under a temporary name in the same directory, then rename into place."""
    directory, name = posixpath.split(path) if "://" in path else FileSystems.split(path)
    tmp = join(directory, f".tmp-{uuid.uuid4().hex}-{name}")
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def table_to_ipc_bytes(table: pa.Table, compression: str | None) -> bytes:
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=ROWS_PER_BATCH):
            writer.write_batch(batch)
    return sink.getvalue()


class _WriteShard(beam.DoFn):
    def __init__(self, output_dir, spec, num_shards, sort_key, compression):
        self.output_dir = output_dir
        self.spec = spec
        self.num_shards = num_shards
        self.sort_key = sort_key
        self.compression = compression

    def process(self, element: tuple[int, Iterable[Any]]) -> Iterator[dict]:
        index, rows = element
        rows = sorted((r for r in rows if r is not None), key=self.sort_key)
        name = shard_name(self.spec, index, self.num_shards)
        table = rows_to_table(rows, self.spec, source=name)
        yield write_shard(self.output_dir, name, table, self.compression)


def write_shard(output_dir: str, name: str, table: pa.Table, compression: str | None) -> dict:
    """Write one shard atomically; returns its entry for the manifest (path, rows, bytes, sha256)."""
    data = table_to_ipc_bytes(table, compression)
    write_atomic(join(output_dir, name), data)
    return {
        "path": name,
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


WORK_DIR_NAME = ".work"  # a job's files between its steps, inside its output; removed at the end


def work_dir_for(output: str) -> str:
    """The work directory of a job that writes `output` (a local path)."""
    return os.path.join(output, WORK_DIR_NAME)


def write_work_table(path: str, table: pa.Table) -> None:
    """A local work file between the steps of a job: one uncompressed record batch (read
    back memory-mapped), renamed into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=max(table.num_rows, 1))
    os.replace(tmp, path)


def read_work_table(path: str) -> pa.Table:
    """A table written by write_work_table, memory-mapped: nothing is read until used."""
    return pa.ipc.open_file(pa.BufferReader(map_file(path))).read_all()


def write_shard_index(infos: list[dict], output_dir: str) -> None:
    """The list of written shards that StageRun.finish folds into the manifest."""
    infos = sorted(infos, key=lambda i: i["path"])
    write_atomic(join(output_dir, SHARD_INDEX_NAME), json.dumps(infos).encode())


class WriteArrowShards(beam.PTransform):
    """Write dict rows as `num_shards` sorted Arrow files; every shard exists, even if empty."""

    def __init__(
        self,
        output_dir: str,
        spec: SchemaSpec,
        num_shards: int,
        *,
        shard_key: Callable[[dict], str],
        sort_key: Callable[[dict], Any],
        compression: str | None = "zstd",
    ):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {num_shards}")
        self.output_dir = output_dir
        self.spec = spec
        self.num_shards = num_shards
        self.shard_key = shard_key
        self.sort_key = sort_key
        self.compression = compression

    def expand(self, rows):
        n = self.num_shards
        shard_key = self.shard_key
        keyed = rows | "KeyByShard" >> beam.Map(lambda r: (shard_of(shard_key(r), n), r))
        # One placeholder per shard so that shards with no rows are still written.
        placeholders = rows.pipeline | "AllShards" >> beam.Create([(i, None) for i in range(n)])
        return (
            (keyed, placeholders)
            | "Flatten" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                _WriteShard(self.output_dir, self.spec, n, self.sort_key, self.compression)
            )
            | "CollectShardInfo" >> beam.combiners.ToList()
            | "WriteShardIndex" >> beam.Map(write_shard_index, self.output_dir)
        )


def read_manifest(directory: str) -> tuple[Manifest, str]:
    """Read a stage's manifest and its hash; a missing manifest means the stage did not finish."""
    path = join(directory, MANIFEST_NAME)
    if not FileSystems.exists(path):
        raise ManifestError(
            f"{path}: no manifest; the stage that writes {directory} has not finished "
            "(run it first, or re-run it if it was interrupted)"
        )
    data = read_bytes(path)
    return Manifest.from_json(data, source=path), manifest_hash(data)


def read_shard(directory: str, info: ShardInfo, spec: SchemaSpec) -> pa.Table:
    """Read one shard, check its checksum and schema, and return it as a table."""
    return _checked_reader(directory, info, spec, mapped=False).read_all()


def map_file(path: str) -> pa.Buffer:
    """A local file's bytes, memory-mapped. The file is closed at once (the mapping stays),
    so a process may keep thousands mapped."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return pa.py_buffer(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b"")


def iter_shard_batches(
    directory: str, info: ShardInfo, spec: SchemaSpec
) -> Iterator[pa.RecordBatch]:
    """A shard's record batches one at a time, after checking its checksum and schema.

    A local shard is memory-mapped and decompressed a batch at a time, so a large shard never
    sits in memory whole; a gs:// shard is read whole first.
    """
    reader = _checked_reader(directory, info, spec, mapped=True)
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)


def _checked_reader(
    directory: str, info: ShardInfo, spec: SchemaSpec, *, mapped: bool
) -> pa.ipc.RecordBatchFileReader:
    """A shard's Arrow reader once its checksum and schema match the manifest entry; `mapped`
    maps a local file instead of reading it."""
    path = join(directory, info.path)
    try:
        data = map_file(path) if mapped and "://" not in path else pa.py_buffer(read_bytes(path))
    except OSError as err:
        raise CorruptShardError(
            f"{path}: cannot read shard listed in the manifest ({err})"
        ) from err
    return checked_reader(data, info, spec, path)


class _ReadShard(beam.DoFn):
    def __init__(self, directory: str, spec: SchemaSpec):
        self.directory = directory
        self.spec = spec

    def process(self, info: ShardInfo) -> Iterator[dict]:
        for batch in iter_shard_batches(self.directory, info, self.spec):
            yield from batch.to_pylist()


class ReadArrowShards(beam.PTransform):
    """Rows of a finished stage's shards, after checking its manifest, schema and checksums."""

    def __init__(self, directory: str, spec: SchemaSpec):
        super().__init__()
        self.directory = directory
        self.spec = spec
        manifest, _ = read_manifest(directory)
        manifest.expect(
            schema_name=spec.name,
            schema_version=spec.version,
            source=join(directory, MANIFEST_NAME),
        )
        self.shards = manifest.shards

    def expand(self, pbegin):
        return (
            pbegin
            | "ListShards" >> beam.Create(self.shards)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShard" >> beam.ParDo(_ReadShard(self.directory, self.spec))
        )
