"""Streams pretraining shards to the trainer: split without overlap, shuffled, exactly resumable.

The order of the examples is a pure function of the seed, the shards, the number of streams
and the micro-batch size, never of timing, worker count or how often the run was restarted:

- Every optimizer step consumes one micro-batch from each of J = world_size x grad_accum
  *streams*; rank r owns streams r*A .. r*A + A - 1, one per micro-step. Each epoch the shards
  are permuted (seeded by seed and epoch) and dealt to the streams, so streams never share a
  shard (with fewer shards than streams, streams take every J-th row instead). One process
  with accumulation A and A processes without it therefore train on the same global batches.
- A stream cuts its epoch into blocks of `shuffle_buffer` rows and permutes each block with a
  generator seeded by (seed, J, stream, epoch, block): a shuffle buffer that can start at any
  position, so the state of a run is just its step.
- The DataLoader workers of a rank take turns: worker w builds micro-batches w, w+W, ... Each
  builds its batch by position, so the batches do not depend on W.

Shards are read through model.pretraining_batch (checksums, schema, collate, dynamic masking).
gs:// shards (any fsspec URL) are copied once into a local cache, named by their sha256.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.pretraining_batch import (
    DynamicMasking,
    PretrainingBatch,
    PretrainingDataError,
    PretrainingShards,
    collate,
)
from schemas.manifest import MANIFEST_NAME, Manifest, ShardInfo, manifest_hash
from schemas.validation import SchemaMismatchError, check_schema

log = logging.getLogger(__name__)

# Tags that keep the generators of different purposes apart.
_SHARD_ORDER, _BLOCK_ORDER = 1, 2
_DOWNLOAD_CHUNK = 8 << 20


class LoadedBatch(NamedTuple):
    """One micro-batch as the trainer receives it."""

    step: int  # optimizer step it belongs to (within the phase)
    micro_step: int  # 0 .. grad_accum - 1
    batch: PretrainingBatch  # padded tensors, see model.pretraining_batch
    token_index: torch.Tensor  # (R,) flat indices of the real tokens, for model.bert.Unpadding

    def pin_memory(self) -> LoadedBatch:
        return LoadedBatch(
            self.step, self.micro_step, self.batch.pin_memory(), self.token_index.pin_memory()
        )


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def is_remote(path: str) -> bool:
    """True for fsspec URLs other than local files (gs://, s3://, memory://, ...)."""
    return "://" in path and not path.startswith("file://")


def set_storage_options(url: str, options: dict[str, Any]) -> None:
    """Make `options` the defaults of the fsspec filesystem of `url`'s protocol (gs, s3, ...)
    in this process and the loader workers it starts, so that every read of the data uses them."""
    if options and is_remote(url):
        protocol = url.split("://", 1)[0]
        fsspec.config.conf.setdefault(protocol, {}).update(options)


def split_shards(
    shards: list[ShardInfo], validation_shards: int
) -> tuple[list[ShardInfo], list[ShardInfo]]:
    """(training, validation): the last `validation_shards` are held out; -1: 1%, at least one
    when there are two or more."""
    if validation_shards < 0:
        validation_shards = max(1, round(0.01 * len(shards))) if len(shards) > 1 else 0
    if validation_shards >= len(shards):
        raise PretrainingDataError(
            f"cannot hold out {validation_shards} of {len(shards)} shard(s) for validation and "
            "still train; write more shards (pipelines.pretraining_data --num-shards) or set "
            "data.validation_shards=0 or data.validation_dir"
        )
    cut = len(shards) - validation_shards
    return shards[:cut], shards[cut:]


def find_vocab_hash(shards: PretrainingShards) -> str | None:
    """The manifest hash of the vocabulary the data was built from: the input whose own
    manifest is a 'vocab' stage's; None when no input can be read."""
    for ref in shards.manifest.inputs:
        if ref.manifest_hash is None:
            continue
        try:
            with fsspec.open(ref.path.rstrip("/") + "/" + MANIFEST_NAME, "rb") as f:
                data = f.read()
            if manifest_hash(data) != ref.manifest_hash:
                continue
            if Manifest.from_json(data, source=ref.path).stage == "vocab":
                return ref.manifest_hash
        except (OSError, ValueError):
            continue
    return None


def check_shards(shards: PretrainingShards, infos: list[ShardInfo]) -> None:
    """Refuse, at open, shards that are missing or disagree with the manifest (size; rows, for
    local files), naming the shard: a run must not train a step and then die on a row that the
    manifest promised. Checksums are checked as each shard is read."""
    fs, root = fsspec.core.url_to_fs(shards.directory)
    local = not is_remote(shards.directory)
    for info in infos:
        path = shards.directory.rstrip("/") + "/" + info.path
        try:
            size = fs.size(root.rstrip("/") + "/" + info.path)
        except FileNotFoundError:
            raise PretrainingDataError(
                f"{path}: shard listed in the manifest is missing; re-run the pretraining data "
                "stage (pipelines.pretraining_data) for this directory"
            ) from None
        if size != info.bytes:
            raise PretrainingDataError(
                f"{path}: {size} bytes, the manifest says {info.bytes}; the shard is damaged "
                "or was changed after the stage finished: re-run the pretraining data stage"
            )
        if local:
            rows = arrow_file_rows(path)
            if rows != info.rows:
                raise PretrainingDataError(
                    f"{path}: {rows} rows, the manifest says {info.rows}; the manifest was "
                    "changed after the stage finished: re-run the pretraining data stage"
                )


def arrow_file_rows(path: str) -> int:
    """Rows of an Arrow IPC file, from its batches' headers (memory-mapped: no data is read)."""
    try:
        with pa.memory_map(path) as source:
            reader = pa.ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except pa.ArrowInvalid as err:
        raise PretrainingDataError(f"{path}: not a readable Arrow file ({err})") from err


class ShardReader:
    """Tables of one directory's shards: a small in-memory LRU and a local cache for URLs."""

    def __init__(self, shards: PretrainingShards, *, cache_dir: str, keep: int = 2) -> None:
        self.shards = shards
        self.cache_dir = cache_dir
        self.keep = keep
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()

    def table(self, info: ShardInfo) -> pa.Table:
        """The shard's rows, checksum and schema checked (once per process and LRU stay)."""
        if info.path in self._tables:
            self._tables.move_to_end(info.path)
            return self._tables[info.path]
        if is_remote(self.shards.directory):
            table = self._read_cached(info)
        else:
            try:
                table = self.shards.read_shard(info)
            except FileNotFoundError:
                raise PretrainingDataError(
                    f"{self.shards.directory.rstrip('/')}/{info.path}: shard listed in the "
                    "manifest is missing"
                ) from None
        if table.num_rows != info.rows:  # rows are taken by position: a mismatch must stop here
            raise PretrainingDataError(
                f"{self.shards.directory.rstrip('/')}/{info.path}: {table.num_rows} rows, the "
                f"manifest says {info.rows}; re-run the pretraining data stage"
            )
        self._tables[info.path] = table
        while len(self._tables) > self.keep:
            self._tables.popitem(last=False)
        return table

    def take(self, infos: list[ShardInfo], shard_ids: np.ndarray, rows: np.ndarray) -> pa.Table:
        """Rows (shard_ids[i], rows[i]) in that order, as one table."""
        parts, order = [], np.empty(len(rows), dtype=np.int64)
        done = 0
        for shard in dict.fromkeys(shard_ids.tolist()):  # first-seen order
            where = np.flatnonzero(shard_ids == shard)
            parts.append(self.table(infos[shard]).take(pa.array(rows[where])))
            order[where] = np.arange(done, done + len(where))
            done += len(where)
        return pa.concat_tables(parts).take(pa.array(order))

    def _read_cached(self, info: ShardInfo) -> pa.Table:
        url = self.shards.directory.rstrip("/") + "/" + info.path
        local = Path(self.cache_dir) / f"{info.sha256}.arrow"
        if not local.is_file():
            download(url, local, info.sha256)
        data = local.read_bytes()
        if hashlib.sha256(data).hexdigest() != info.sha256:
            local.unlink(missing_ok=True)
            raise PretrainingDataError(
                f"{local} (cached copy of {url}): checksum differs from the manifest; the "
                "cached file was removed, run again to fetch it afresh"
            )
        try:
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
            check_schema(table.schema, self.shards.spec, source=url)
        except (pa.ArrowInvalid, SchemaMismatchError) as err:
            raise PretrainingDataError(f"{url}: {err}") from err
        return table


def download(url: str, local: Path, sha256: str) -> None:
    """Copy `url` to `local` atomically, once across processes, checking its sha256."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with open(local.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other workers wait, then find the file in place
        if local.is_file():
            return
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
        digest = hashlib.sha256()
        try:
            with fsspec.open(url, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_DOWNLOAD_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != sha256:
                raise PretrainingDataError(
                    f"{url}: checksum differs from the manifest; the shard is corrupt or was "
                    "changed after the stage finished"
                )
            os.replace(tmp, local)
        except FileNotFoundError as err:
            raise PretrainingDataError(f"{url}: shard listed in the manifest is missing") from err
        finally:
            tmp.unlink(missing_ok=True)


class _Layout(NamedTuple):
    shards: np.ndarray  # shard indices in the order this stream reads them this epoch
    starts: np.ndarray  # (len(shards) + 1,) first row of each shard in the concatenation
    length: int  # rows of this stream in this epoch


class StreamPlan:
    """Where the examples of one stream come from, position by position, epoch after epoch."""

    def __init__(
        self,
        shard_rows: list[int],
        *,
        num_streams: int,
        stream: int,
        shuffle_buffer: int,
        seed: int,
    ) -> None:
        if not 0 <= stream < num_streams:
            raise ValueError(f"stream {stream} is not in [0, {num_streams})")
        if sum(shard_rows) == 0:
            raise PretrainingDataError("the shards hold no examples")
        self.rows = np.asarray(shard_rows, dtype=np.int64)
        self.num_streams = num_streams
        self.stream = stream
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.split_by_shard = len(shard_rows) >= num_streams  # else every J-th row
        self._epoch_starts = [0]
        self._layouts: OrderedDict[int, _Layout] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def shard_order(self, epoch: int) -> np.ndarray:
        """The permutation of all shards used in `epoch` (the same for every stream)."""
        return _rng(self.seed, _SHARD_ORDER, epoch).permutation(len(self.rows))

    def layout(self, epoch: int) -> _Layout:
        if epoch not in self._layouts:
            order = self.shard_order(epoch)
            J, j = self.num_streams, self.stream
            shards = order[j::J] if self.split_by_shard else order
            starts = np.zeros(len(shards) + 1, dtype=np.int64)
            np.cumsum(self.rows[shards], out=starts[1:])
            total = int(starts[-1])
            length = total if self.split_by_shard else len(range(j, total, J))
            self._layouts[epoch] = _Layout(shards, starts, length)
            if len(self._layouts) > 4:
                self._layouts.popitem(last=False)
        return self._layouts[epoch]

    def epoch_start(self, epoch: int) -> int:
        """Stream position of the first example of `epoch`."""
        while len(self._epoch_starts) <= epoch:
            e = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[e] + self.layout(e).length)
        return self._epoch_starts[epoch]

    def epoch_of(self, position: int) -> int:
        epoch = 0
        while self.epoch_start(epoch + 1) <= position:
            epoch += 1
        return epoch

    def _block(self, epoch: int, block: int, length: int) -> np.ndarray:
        key = (epoch, block)
        if key not in self._blocks:
            rng = _rng(self.seed, _BLOCK_ORDER, self.num_streams, self.stream, epoch, block)
            self._blocks[key] = rng.permutation(length)
            if len(self._blocks) > 4:
                self._blocks.popitem(last=False)
        return self._blocks[key]

    def locate(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(epoch, shard index, row in shard) of stream positions [start, start + count)."""
        epochs, shards, rows = [], [], []
        position, end = start, start + count
        epoch = self.epoch_of(position)
        while position < end:
            first, layout = self.epoch_start(epoch), self.layout(epoch)
            stop = min(end, first + layout.length)
            if stop > position:
                local = np.arange(position - first, stop - first)  # positions in the epoch
                S = self.shuffle_buffer
                sequence = np.empty_like(local)
                for block in np.unique(local // S):
                    where = local // S == block
                    size = min(S, layout.length - block * S)
                    sequence[where] = (
                        block * S + self._block(epoch, int(block), size)[local[where] - block * S]
                    )
                if not self.split_by_shard:
                    sequence = self.stream + sequence * self.num_streams
                k = np.searchsorted(layout.starts, sequence, side="right") - 1
                epochs.append(np.full(len(local), epoch))
                shards.append(layout.shards[k])
                rows.append(sequence - layout.starts[k])
                position = stop
            epoch += 1
        return np.concatenate(epochs), np.concatenate(shards), np.concatenate(rows)


@dataclass(frozen=True, kw_only=True)
class StreamSpec:
    """What a rank's training stream needs; small and picklable for the loader workers."""

    directory: str  # a pretraining output directory (seq128/ ...)
    vocab_dir: str | None  # needed for dynamic masking
    shards: list[ShardInfo]  # the training split
    num_streams: int  # J = world_size x grad_accum
    streams: list[int]  # this rank's streams, one per micro-step
    micro_batch_size: int
    shuffle_buffer: int
    seed: int
    cache_dir: str


class PretrainingStream(IterableDataset):
    """A rank's micro-batches from `start_step` on, endlessly, in the same order every time."""

    def __init__(self, spec: StreamSpec, *, start_step: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.start_step = start_step
        self._data: PretrainingShards | None = None

    def state_dict(self) -> dict[str, Any]:
        """What makes the order: a resumed run with the same values sees the same batches."""
        return loader_state(self.spec, self.start_step)

    def _open(self) -> None:
        spec = self.spec
        self._data = PretrainingShards(spec.directory, vocab_dir=spec.vocab_dir)
        self._reader = ShardReader(self._data, cache_dir=spec.cache_dir)
        self._masking = DynamicMasking.for_data(self._data) if self._data.dynamic_masking else None
        self._plans = {
            j: StreamPlan(
                [s.rows for s in spec.shards],
                num_streams=spec.num_streams,
                stream=j,
                shuffle_buffer=spec.shuffle_buffer,
                seed=spec.seed,
            )
            for j in spec.streams
        }

    def batch(self, step: int, micro_step: int) -> LoadedBatch:
        """The micro-batch of (step, micro_step), built from scratch."""
        if self._data is None:
            self._open()
        spec, data = self.spec, self._data
        B = spec.micro_batch_size
        epochs, shard_ids, rows = self._plans[spec.streams[micro_step]].locate(step * B, B)
        table = self._reader.take(spec.shards, shard_ids, rows)
        if self._masking is not None:
            parts = [
                self._masking.mask_table(table.filter(pa.array(epochs == e)), int(e))
                for e in np.unique(epochs)
            ]
            table = pa.concat_tables(parts)
        num_predictions = (
            self._masking.max_predictions_per_seq if self._masking else data.max_predictions_per_seq
        )
        batch = collate(
            table,
            num_predictions=num_predictions,
            seq_length=data.max_seq_length,
            pad_id=data.pad_id,
        )
        token_index = batch.attention_mask.flatten().nonzero().squeeze(1)
        return LoadedBatch(step, micro_step, batch, token_index)

    def __iter__(self) -> Iterator[LoadedBatch]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        accumulation = len(self.spec.streams)
        index = worker_id  # micro-batches since start_step, dealt round-robin to the workers
        while True:
            step, micro_step = divmod(index, accumulation)
            yield self.batch(self.start_step + step, micro_step)
            index += num_workers


def loader_state(spec: StreamSpec, step: int) -> dict[str, Any]:
    """The loader's checkpoint state: its position and everything that fixes the order."""
    shards_digest = hashlib.sha256("".join(s.sha256 for s in spec.shards).encode()).hexdigest()
    return {
        "step": step,
        "seed": spec.seed,
        "num_streams": spec.num_streams,
        "micro_batch_size": spec.micro_batch_size,
        "shuffle_buffer": spec.shuffle_buffer,
        "shards_sha256": shards_digest,
    }


def order_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields (other than the step) that differ: a resume will not see the same batches."""
    return sorted(k for k in saved if k != "step" and saved.get(k) != current.get(k))


def train_loader(
    spec: StreamSpec,
    *,
    start_step: int,
    num_workers: int,
    prefetch_factor: int,
    pin_memory: bool,
) -> DataLoader:
    """A DataLoader over the rank's stream: workers in the background, pinned, prefetched."""
    return DataLoader(
        PretrainingStream(spec, start_step=start_step),
        batch_size=None,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def validation_batches(
    data: PretrainingShards,
    shards: list[ShardInfo],
    *,
    examples: int,
    micro_batch_size: int,
    rank: int,
    world_size: int,
    cache_dir: str,
) -> Iterator[LoadedBatch]:
    """The first `examples` validation sequences (0: all) in manifest order; rank r takes
    every world_size-th one. The same sequences, and masks, at every evaluation."""
    total = sum(s.rows for s in shards)
    examples = total if examples <= 0 else min(examples, total)
    starts = np.concatenate([[0], np.cumsum([s.rows for s in shards])])
    mine = np.arange(rank, examples, world_size)
    reader = ShardReader(data, cache_dir=cache_dir, keep=1)
    masking = DynamicMasking.for_data(data) if data.dynamic_masking else None
    for first in range(0, len(mine), micro_batch_size):
        positions = mine[first : first + micro_batch_size]
        shard_ids = np.searchsorted(starts, positions, side="right") - 1
        table = reader.take(shards, shard_ids, positions - starts[shard_ids])
        if masking is not None:
            table = masking.mask_table(table, 0)
        batch = collate(
            table,
            num_predictions=masking.max_predictions_per_seq
            if masking
            else data.max_predictions_per_seq,
            seq_length=data.max_seq_length,
            pad_id=data.pad_id,
        )
        token_index = batch.attention_mask.flatten().nonzero().squeeze(1)
        yield LoadedBatch(0, 0, batch, token_index)
