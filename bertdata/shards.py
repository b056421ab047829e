"""A stage's Arrow shard, checked against its manifest entry before anything reads its rows.

The bytes come from the caller (Beam's filesystems in the jobs, fsspec in the trainer, a
memory map for a local file), so both sides check a shard the same way: checksum, then an
Arrow file, then the stage's schema.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from schemas.manifest import ShardInfo
from schemas.spec import SchemaSpec
from schemas.validation import SchemaMismatchError, check_schema

CHECKSUM_BLOCK = 1 << 24  # bytes hashed at a time, so a mapped shard is never copied whole


class CorruptShardError(ValueError):
    """A shard's bytes do not match its manifest, or it is not a readable Arrow file."""


def checked_reader(
    data: pa.Buffer | bytes, info: ShardInfo, spec: SchemaSpec, path: str
) -> pa.ipc.RecordBatchFileReader:
    """An Arrow reader of the shard `data` read from `path`, once its checksum matches the
    manifest entry `info` and its schema is `spec`'s; otherwise CorruptShardError naming it."""
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(view), CHECKSUM_BLOCK):
        digest.update(view[start : start + CHECKSUM_BLOCK])
    if digest.hexdigest() != info.sha256:
        raise CorruptShardError(
            f"{path}: checksum differs from the manifest; the shard is corrupt or was "
            "changed after the stage finished; re-run the stage"
        )
    try:
        reader = pa.ipc.open_file(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise CorruptShardError(f"{path}: not a readable Arrow file ({err})") from err
    try:
        check_schema(reader.schema, spec, source=path)
    except SchemaMismatchError as err:
        raise CorruptShardError(str(err)) from err
    return reader
