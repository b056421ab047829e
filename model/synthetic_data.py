"""Pretraining shards of random tokens in the real schema, with a real manifest.

For tests and benchmarks that need data of a given size and shape without running the data
stage (which needs Beam); the trainer and the loader read them exactly like the stage's output.
Ids follow the layout of a vocabulary without reserved slots: [PAD]=0 [UNK]=1 [CLS]=2
[SEP]=3 [MASK]=4; other tokens are drawn uniformly from 5 .. vocab_size - 1.
`write_synthetic_vocab` writes a matching vocabulary directory (vocab.txt and a manifest).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from bertdata.paths import write_atomic
from schemas.manifest import MANIFEST_NAME, InputRef, Manifest, ShardInfo, manifest_hash
from schemas.pretraining import pretraining_spec, token_id_type

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL_TOKEN_IDS = {"[PAD]": PAD, "[UNK]": UNK, "[CLS]": CLS, "[SEP]": SEP, "[MASK]": MASK}
FIRST_WORD_ID = 5


def synthetic_rows(
    num_examples: int,
    *,
    max_seq_length: int,
    vocab_size: int,
    max_predictions_per_seq: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    first_index: int = 0,
    masked: bool = True,
) -> list[dict]:
    """`[CLS] A [SEP] B [SEP]` rows, masked unless `masked` is False (for dynamic masking);
    a share short_seq_prob of them shorter than max."""
    rows = []
    for i in range(num_examples):
        length = max_seq_length
        if rng.random() < short_seq_prob:
            length = int(rng.integers(8, max_seq_length + 1))
        a_len = int(rng.integers(1, length - 3))
        words = rng.integers(FIRST_WORD_ID, vocab_size, length - 3)
        ids = np.concatenate([[CLS], words[:a_len], [SEP], words[a_len:], [SEP]])
        maskable = np.flatnonzero(ids >= FIRST_WORD_ID)
        count = min(max_predictions_per_seq, max(1, round(0.15 * len(maskable))))
        positions = np.sort(rng.choice(maskable, count if masked else 0, replace=False))
        labels = ids[positions].copy()
        ids[positions] = MASK
        rows.append(
            {
                "input_ids": ids.tolist(),
                "segment_a_length": a_len,
                "masked_lm_positions": positions.tolist(),
                "masked_lm_ids": labels.tolist(),
                "next_sentence_label": int(rng.integers(0, 2)),
                "doc_id": f"{first_index + i:016x}",
                "b_doc_id": f"{first_index + i:016x}",
                "dupe_index": 0,
                "pair_index": 0,
            }
        )
    return rows


def write_synthetic_pretraining_data(
    directory: str | os.PathLike[str],
    *,
    num_examples: int,
    num_shards: int,
    max_seq_length: int = 128,
    vocab_size: int = 1000,
    max_predictions_per_seq: int | None = None,
    short_seq_prob: float = 0.1,
    seed: int = 0,
    inputs: list[InputRef] | None = None,
    dynamic_masking: bool = False,
) -> Manifest:
    """Write `num_shards` shards of random examples and their manifest; returns the manifest.

    `inputs` are recorded in the manifest, e.g. write_synthetic_vocab's reference; data for
    dynamic masking is stored unmasked and needs that vocabulary to be read.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if max_predictions_per_seq is None:
        max_predictions_per_seq = -(-max_seq_length * 5 // 32)  # 20 at 128, 80 at 512
    id_type = token_id_type(vocab_size)
    spec = pretraining_spec(id_type)
    rng = np.random.default_rng(seed)
    shards = []
    for index in range(num_shards):
        first = index * num_examples // num_shards
        count = (index + 1) * num_examples // num_shards - first
        rows = synthetic_rows(
            count,
            max_seq_length=max_seq_length,
            vocab_size=vocab_size,
            max_predictions_per_seq=max_predictions_per_seq,
            short_seq_prob=short_seq_prob,
            rng=rng,
            first_index=first,
            masked=not dynamic_masking,
        )
        table = pa.Table.from_pylist(rows, schema=spec.arrow_schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(
            sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")
        ) as w:
            w.write_table(table, max_chunksize=1024)
        data = sink.getvalue().to_pybytes()
        name = f"{spec.name}-{index:05d}-of-{num_shards:05d}.arrow"
        (directory / name).write_bytes(data)
        shards.append(
            ShardInfo(
                path=name, rows=count, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
    manifest = Manifest(
        stage="pretraining_data",
        schema_name=spec.name,
        schema_version=spec.version,
        shards=shards,
        config={
            "synthetic": True,
            "max_seq_length": max_seq_length,
            "max_predictions_per_seq": max_predictions_per_seq,
            "masked_lm_prob": 0.15,
            "short_seq_prob": short_seq_prob,
            "whole_word_mask": False,
            "dynamic_masking": dynamic_masking,
            "seed": seed,
            "vocab_size": vocab_size,
            "special_token_ids": SPECIAL_TOKEN_IDS,
            "token_id_type": id_type,
        },
        inputs=inputs or [],
    )
    write_atomic(directory / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def write_synthetic_vocab(directory: str | os.PathLike[str], *, vocab_size: int) -> InputRef:
    """A vocabulary directory for synthetic data: vocab.txt and a 'vocab' stage manifest.

    Returns the InputRef (path and manifest hash) to pass as `inputs` of the data.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = [*SPECIAL_TOKEN_IDS, *(f"w{i}" for i in range(FIRST_WORD_ID, vocab_size))]
    data = ("\n".join(tokens) + "\n").encode()
    (directory / "vocab.txt").write_bytes(data)
    manifest = Manifest(
        stage="vocab",
        schema_name="vocab",
        schema_version=1,
        shards=[
            ShardInfo(
                path="vocab.txt",
                rows=len(tokens),
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        ],
        config={"synthetic": True, "vocab_size": vocab_size},
        inputs=[],
    )
    text = manifest.to_json()
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return InputRef(path=str(directory), manifest_hash=manifest_hash(text.encode()))
