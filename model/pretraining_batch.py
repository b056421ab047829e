"""Pretraining shards -> padded torch batches for BertForPreTraining-style models.

    data = PretrainingShards("gs://bucket/pretraining/seq128", vocab_dir="gs://bucket/vocab")
    for batch in iter_batches(data, batch_size=256, rank=rank, world_size=world_size):
        output = model(**batch.to(device).as_dict())  # model.bert.BertForPreTraining

Reads the manifest (local or gs:// through fsspec), checks schema, checksums and, given the
vocabulary directory, that the data was built from it. Every rank gets a contiguous range of
the examples of equal size (within one), whatever the number of shards. Data written with
dynamic masking is masked here, afresh for every epoch, with an rng seeded by (seed, epoch,
example identity) so that a resumed epoch sees the same masks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, fields

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from bertdata.masking import MaskingConfig, MaskingVocab, mask_one
from bertdata.paths import join
from bertdata.shards import CorruptShardError, checked_reader
from schemas.manifest import MANIFEST_NAME, Manifest, ManifestError, ShardInfo, manifest_hash
from schemas.pretraining import PRETRAINING_NAME, PRETRAINING_VERSION, pretraining_spec

IGNORE_INDEX = -100  # masked_lm_labels at padding: ignored by torch's cross-entropy


class PretrainingDataError(ValueError):
    """Pretraining data that this reader refuses, with the file it came from."""


@dataclass(frozen=True)
class PretrainingBatch:
    """One padded batch; B sequences of T tokens with P prediction slots each."""

    input_ids: torch.Tensor  # (B, T) long, [PAD] after each sequence
    token_type_ids: torch.Tensor  # (B, T) long, 0 for [CLS] A [SEP], 1 for B [SEP], 0 at padding
    attention_mask: torch.Tensor  # (B, T) bool, True on real tokens
    masked_lm_positions: torch.Tensor  # (B, P) long, 0 at unused slots
    masked_lm_labels: torch.Tensor  # (B, P) long, original ids; IGNORE_INDEX at unused slots
    next_sentence_label: torch.Tensor  # (B,) long, 0 IsNext, 1 NotNext

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PretrainingBatch:
        return PretrainingBatch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The fields by name: the keyword arguments of model.bert.BertForPreTraining."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def pin_memory(self) -> PretrainingBatch:
        return PretrainingBatch(
            **{f.name: getattr(self, f.name).pin_memory() for f in fields(self)}
        )

    def token_labels(self) -> torch.Tensor:
        """(B, T) labels in Hugging Face's form: the original id at masked tokens, else -100."""
        labels = torch.full_like(self.input_ids, IGNORE_INDEX)
        used = self.masked_lm_labels != IGNORE_INDEX
        rows = torch.arange(labels.shape[0]).unsqueeze(1).expand_as(self.masked_lm_positions)
        labels[rows[used], self.masked_lm_positions[used]] = self.masked_lm_labels[used]
        return labels


def _read(path: str) -> bytes:
    with fsspec.open(path, "rb") as f:
        return f.read()


class PretrainingShards:
    """One pretraining output directory (seq128/, seq512/), read through its manifest."""

    def __init__(self, directory: str, *, vocab_dir: str | None = None):
        self.directory = str(directory)
        source = join(self.directory, MANIFEST_NAME)
        try:
            data = _read(source)
        except FileNotFoundError:
            raise ManifestError(
                f"{source}: no manifest; the pretraining data stage has not finished here"
            ) from None
        self.manifest = Manifest.from_json(data, source=source)
        self.manifest_hash = manifest_hash(data)
        self.manifest.expect(
            schema_name=PRETRAINING_NAME, schema_version=PRETRAINING_VERSION, source=source
        )
        self.config = self.manifest.config
        self.spec = pretraining_spec(self.config["token_id_type"])
        self.vocab_tokens: list[str] | None = None
        if vocab_dir is not None:
            vocab_source = join(str(vocab_dir), MANIFEST_NAME)
            vocab_hash = manifest_hash(_read(vocab_source))
            if all(ref.manifest_hash != vocab_hash for ref in self.manifest.inputs):
                raise PretrainingDataError(
                    f"{source}: built from another vocabulary than {vocab_dir} ({vocab_source} "
                    "has a different hash); use the matching vocabulary or rebuild the data"
                )
            text = _read(join(str(vocab_dir), "vocab.txt")).decode("utf-8")
            self.vocab_tokens = text.rstrip("\n").split("\n")
            if len(self.vocab_tokens) != self.config["vocab_size"]:
                raise PretrainingDataError(
                    f"{vocab_dir}/vocab.txt: {len(self.vocab_tokens)} tokens, the data's "
                    f"manifest says {self.config['vocab_size']}"
                )

    @property
    def max_seq_length(self) -> int:
        return int(self.config["max_seq_length"])

    @property
    def max_predictions_per_seq(self) -> int:
        return int(self.config["max_predictions_per_seq"])

    @property
    def pad_id(self) -> int:
        return int(self.config["special_token_ids"]["[PAD]"])

    @property
    def dynamic_masking(self) -> bool:
        return bool(self.config.get("dynamic_masking", False))

    @property
    def num_examples(self) -> int:
        return self.manifest.total_rows

    def read_shard(self, info: ShardInfo) -> pa.Table:
        """One shard, its checksum and schema checked."""
        path = join(self.directory, info.path)
        try:
            return checked_reader(_read(path), info, self.spec, path).read_all()
        except CorruptShardError as err:
            raise PretrainingDataError(str(err)) from err
        except pa.ArrowInvalid as err:  # a readable footer over a damaged body
            raise PretrainingDataError(f"{path}: {err}") from err

    def example_range(self, rank: int, world_size: int) -> tuple[int, int]:
        """The rank's share of the examples, [start, stop): sizes differ by at most one."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        total = self.num_examples
        return rank * total // world_size, (rank + 1) * total // world_size

    def iter_tables(self, rank: int = 0, world_size: int = 1) -> Iterator[pa.Table]:
        """The rank's examples, a shard (or part of one) at a time, in manifest order."""
        start, stop = self.example_range(rank, world_size)
        at = 0
        for info in self.manifest.shards:
            lo, hi = max(start, at), min(stop, at + info.rows)
            if lo < hi:
                yield self.read_shard(info).slice(lo - at, hi - lo)
            at += info.rows


@dataclass(frozen=True, kw_only=True)
class DynamicMasking:
    """Masks unmasked pairs for one epoch by the data stage's rule (bertdata/masking.py)."""

    tables: MaskingVocab
    config: MaskingConfig  # the data's own settings unless overridden
    seed: int = 12345  # with the epoch and the example's identity, seeds its rng

    @property
    def max_predictions_per_seq(self) -> int:
        return self.config.max_predictions_per_seq

    @classmethod
    def for_data(cls, shards: PretrainingShards, **overrides) -> DynamicMasking:
        """Masking with the data's own settings (any MaskingConfig field or `seed` given in
        `overrides` wins); needs the shards opened with vocab_dir."""
        if shards.vocab_tokens is None:
            raise PretrainingDataError(
                f"{shards.directory}: dynamic masking needs the vocabulary; open the shards "
                "with vocab_dir="
            )
        cfg = shards.config
        settings = {
            "masked_lm_prob": cfg["masked_lm_prob"],
            "max_predictions_per_seq": cfg["max_predictions_per_seq"],
            "whole_word_mask": cfg["whole_word_mask"],
            "span_masking": cfg.get("span_masking", False),  # absent from older data
            **overrides,
        }
        seed = settings.pop("seed", cfg["seed"])
        return cls(
            tables=MaskingVocab.from_tokens(shards.vocab_tokens),
            config=MaskingConfig(**settings),
            seed=seed,
        )

    def example_rng(self, epoch: int, doc_id: str, dupe_index: int, pair_index: int):
        """The rng of one example in one epoch."""
        text = f"{self.seed}\x1fdynamic\x1f{epoch}\x1f{doc_id}\x1f{dupe_index}\x1f{pair_index}"
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")
        return np.random.Generator(np.random.PCG64(seed))

    def mask(self, input_ids: np.ndarray, rng: np.random.Generator):
        """(masked ids, positions, original ids) of one sequence."""
        return mask_one(input_ids, rng, self.tables, self.config)

    def mask_table(self, table: pa.Table, epoch: int) -> pa.Table:
        """The table with input_ids, masked_lm_positions and masked_lm_ids for this epoch."""
        ids_col = table.column("input_ids").combine_chunks()
        offsets = ids_col.offsets.to_numpy()
        values = ids_col.flatten().to_numpy()
        base = offsets[0]
        doc_ids = table.column("doc_id").to_pylist()
        dupes = table.column("dupe_index").to_pylist()
        pairs = table.column("pair_index").to_pylist()
        new_ids, positions, originals = [], [], []
        for i in range(table.num_rows):
            seq = values[offsets[i] - base : offsets[i + 1] - base]
            rng = self.example_rng(epoch, doc_ids[i], dupes[i], pairs[i])
            masked, pos, orig = self.mask(seq, rng)
            new_ids.append(masked)
            positions.append(pos.astype(np.uint16))
            originals.append(orig)
        id_type = table.schema.field("input_ids").type
        return (
            table.set_column(
                table.schema.get_field_index("input_ids"),
                table.schema.field("input_ids"),
                pa.array(new_ids, type=id_type),
            )
            .set_column(
                table.schema.get_field_index("masked_lm_positions"),
                table.schema.field("masked_lm_positions"),
                pa.array(positions, type=pa.list_(pa.uint16())),
            )
            .set_column(
                table.schema.get_field_index("masked_lm_ids"),
                table.schema.field("masked_lm_ids"),
                pa.array(originals, type=id_type),
            )
        )


def _padded(
    column: pa.ChunkedArray | pa.Array, width: int, fill: int
) -> tuple[np.ndarray, np.ndarray]:
    """A list column as a (rows, width) int64 array padded with `fill`, and the row lengths."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    lengths = np.diff(offsets)
    if len(lengths) and lengths.max() > width:
        raise PretrainingDataError(f"a row has {lengths.max()} values, more than {width}")
    values = column.flatten().to_numpy().astype(np.int64)
    out = np.full((len(lengths), width), fill, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[rows, cols] = values
    return out, lengths


def collate(
    table: pa.Table,
    *,
    num_predictions: int,
    seq_length: int | None = None,
    pad_id: int = 0,
) -> PretrainingBatch:
    """Rows of a pretraining table as one padded batch.

    seq_length: T; None pads to the longest row (fewer wasted tokens), a fixed value keeps
    shapes static (for torch.compile). num_predictions: P, usually max_predictions_per_seq.
    """
    ids = table.column("input_ids")
    if seq_length is None:
        lengths = pc.list_value_length(ids).to_numpy()
        seq_length = int(lengths.max()) if len(lengths) else 0
    input_ids, lengths = _padded(ids, seq_length, pad_id)
    positions, num_masked = _padded(table.column("masked_lm_positions"), num_predictions, 0)
    labels, _ = _padded(table.column("masked_lm_ids"), num_predictions, IGNORE_INDEX)
    a_len = table.column("segment_a_length").to_numpy().astype(np.int64)
    cols = np.arange(seq_length)
    attention = cols[None, :] < lengths[:, None]  # (B, T)
    token_types = (cols[None, :] >= a_len[:, None] + 2) & attention  # (B, T)
    return PretrainingBatch(
        input_ids=torch.from_numpy(input_ids),
        token_type_ids=torch.from_numpy(token_types.astype(np.int64)),
        attention_mask=torch.from_numpy(attention),
        masked_lm_positions=torch.from_numpy(positions),
        masked_lm_labels=torch.from_numpy(labels),
        next_sentence_label=torch.from_numpy(
            table.column("next_sentence_label").to_numpy().astype(np.int64)
        ),
    )


def iter_batches(
    shards: PretrainingShards,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    masking: DynamicMasking | None = None,
    pad_to_max_length: bool = True,
    drop_last: bool = False,
) -> Iterator[PretrainingBatch]:
    """The rank's examples as padded batches, in shard order (shards are shuffled inside).

    Data written for dynamic masking needs `masking` (DynamicMasking.for_data(shards)).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shards.dynamic_masking and masking is None:
        raise PretrainingDataError(
            f"{shards.directory}: written for dynamic masking; pass masking="
            "DynamicMasking.for_data(shards)"
        )
    seq_length = shards.max_seq_length if pad_to_max_length else None
    pending: list[pa.Table] = []
    pending_rows = 0
    for table in shards.iter_tables(rank, world_size):
        pending.append(table)
        pending_rows += table.num_rows
        while pending_rows >= batch_size:
            joined = pa.concat_tables(pending)
            batch, rest = joined.slice(0, batch_size), joined.slice(batch_size)
            yield _batch(batch, shards, seq_length, epoch, masking)
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows and not drop_last:
        yield _batch(pa.concat_tables(pending), shards, seq_length, epoch, masking)


def _batch(table, shards, seq_length, epoch, masking) -> PretrainingBatch:
    if masking is not None:
        table = masking.mask_table(table, epoch)
        num_predictions = masking.max_predictions_per_seq
    else:
        num_predictions = shards.max_predictions_per_seq
    return collate(
        table, num_predictions=num_predictions, seq_length=seq_length, pad_id=shards.pad_id
    )
