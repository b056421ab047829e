"""The pretraining reader: shards written here with pyarrow, read back as padded batches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from bertdata.masking import MaskingConfig, MaskingVocab, mask_sequences
from model.bert import BertForPreTraining
from model.pretraining_batch import (
    IGNORE_INDEX,
    DynamicMasking,
    PretrainingDataError,
    PretrainingShards,
    collate,
    iter_batches,
)
from schemas.manifest import InputRef, Manifest, ManifestError, ShardInfo
from schemas.pretraining import PRETRAINING_UINT16

TOKENS = [
    "[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "sat", "on", "mat", "play", "##ing", "un", "##believ", "##able", "dog", "ran",
]  # fmt: skip
PAD, UNK, CLS, SEP, MASK = 0, 2, 3, 4, 5
WORDS = list(range(6, len(TOKENS)))


def example(a: list[int], b: list[int], positions=(), originals=(), label=0, doc="d0", pair=0):
    return {
        "input_ids": [CLS, *a, SEP, *b, SEP],
        "segment_a_length": len(a),
        "masked_lm_positions": list(positions),
        "masked_lm_ids": list(originals),
        "next_sentence_label": label,
        "doc_id": doc,
        "b_doc_id": doc if label == 0 else doc + "-other",
        "dupe_index": 0,
        "pair_index": pair,
    }


def write_vocab(directory: Path) -> str:
    directory.mkdir(parents=True)
    data = "".join(f"{t}\n" for t in TOKENS).encode()
    (directory / "vocab.txt").write_bytes(data)
    info = ShardInfo(
        path="vocab.txt", rows=len(TOKENS), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    manifest = Manifest(
        stage="vocab", schema_name="vocab", schema_version=1, shards=[info], config={}, inputs=[]
    )
    text = manifest.to_json()
    (directory / "manifest.json").write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def write_data(directory: Path, shards: list[list[dict]], vocab_hash: str, **config) -> Path:
    """A pretraining output directory as the job lays it out: shards and a manifest."""
    directory.mkdir(parents=True)
    infos = []
    for i, rows in enumerate(shards):
        table = pa.Table.from_pylist(rows, schema=PRETRAINING_UINT16.arrow_schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue().to_pybytes()
        name = f"pretraining-{i:05d}-of-{len(shards):05d}.arrow"
        (directory / name).write_bytes(data)
        infos.append(
            ShardInfo(
                path=name, rows=len(rows), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
    manifest = Manifest(
        stage="pretraining_data",
        schema_name="pretraining",
        schema_version=1,
        shards=infos,
        config={
            "max_seq_length": 16,
            "max_predictions_per_seq": 3,
            "masked_lm_prob": 0.15,
            "whole_word_mask": False,
            "dynamic_masking": False,
            "seed": 1,
            "vocab_size": len(TOKENS),
            "special_token_ids": {
                "[PAD]": PAD,
                "[UNK]": UNK,
                "[CLS]": CLS,
                "[SEP]": SEP,
                "[MASK]": MASK,
            },
            "token_id_type": "uint16",
            **config,
        },
        inputs=[
            InputRef(path="docs", manifest_hash="0" * 64),
            InputRef(path="vocab", manifest_hash=vocab_hash),
        ],
    )
    (directory / "manifest.json").write_text(manifest.to_json())
    return directory


@pytest.fixture
def vocab(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "vocab"
    return path, write_vocab(path)


def numbered(n: int, start: int = 0) -> list[dict]:
    """n examples numbered by pair_index from `start`."""
    rng = np.random.default_rng(start)
    return [
        example(
            [WORDS[(start + i) % len(WORDS)], *rng.choice(WORDS, 3).tolist()],
            [7, 8],
            pair=start + i,
        )
        for i in range(n)
    ]


def test_collate_pads_and_builds_token_types_attention_and_labels():
    rows = [
        example([6, 7], [8], positions=[1, 4], originals=[6, 8], label=0),
        example([9, 10, 11, 12], [16, 17, 7], positions=[2], originals=[10], label=1),
    ]
    rows[0]["input_ids"][1] = MASK
    table = pa.Table.from_pylist(rows, schema=PRETRAINING_UINT16.arrow_schema)
    batch = collate(table, num_predictions=3, seq_length=12, pad_id=PAD)
    assert batch.input_ids.tolist() == [
        [CLS, MASK, 7, SEP, 8, SEP, PAD, PAD, PAD, PAD, PAD, PAD],
        [CLS, 9, 10, 11, 12, SEP, 16, 17, 7, SEP, PAD, PAD],
    ]
    assert batch.token_type_ids.tolist() == [
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
    ]
    assert batch.attention_mask.tolist() == [[True] * 6 + [False] * 6, [True] * 10 + [False] * 2]
    assert batch.masked_lm_positions.tolist() == [[1, 4, 0], [2, 0, 0]]
    assert batch.masked_lm_labels.tolist() == [
        [6, 8, IGNORE_INDEX],
        [10, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert batch.next_sentence_label.tolist() == [0, 1]
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.bool
    labels = batch.token_labels()
    assert (
        labels[0].tolist() == [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX, 8] + [IGNORE_INDEX] * 7
    )
    shortest = collate(table, num_predictions=3, pad_id=PAD)
    assert shortest.input_ids.shape == (2, 10)


def test_ranks_get_equal_contiguous_shares_across_shards(tmp_path, vocab):
    shards = [numbered(7, 0), numbered(7, 7), numbered(6, 14)]
    data = PretrainingShards(str(write_data(tmp_path / "d", shards, vocab[1])))
    assert data.num_examples == 20
    for world in range(1, 6):
        seen = []
        sizes = []
        for rank in range(world):
            pairs = [
                p for t in data.iter_tables(rank, world) for p in t.column("pair_index").to_pylist()
            ]
            sizes.append(len(pairs))
            seen += pairs
        assert seen == list(range(20)) and max(sizes) - min(sizes) <= 1
    batches = list(iter_batches(data, batch_size=8, rank=0, world_size=1))
    assert [b.input_ids.shape[0] for b in batches] == [8, 8, 4]  # batches run across shards
    assert [b.input_ids.shape[1] for b in batches] == [16, 16, 16]  # padded to max_seq_length
    dropped = list(iter_batches(data, batch_size=8, drop_last=True))
    assert len(dropped) == 2


def test_a_changed_shard_another_schema_and_another_vocabulary_are_refused(tmp_path, vocab):
    directory = write_data(tmp_path / "d", [numbered(4)], vocab[1])
    shard = directory / "pretraining-00000-of-00001.arrow"
    data = bytearray(shard.read_bytes())
    data[-40] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(PretrainingDataError, match="checksum"):
        list(PretrainingShards(str(directory)).iter_tables())
    old = write_data(tmp_path / "old", [numbered(4)], vocab[1])
    body = json.loads((old / "manifest.json").read_text())
    body["schema"]["version"] = 0
    (old / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(ManifestError, match="version 0"):
        PretrainingShards(str(old))
    with pytest.raises(ManifestError, match="no manifest"):
        PretrainingShards(str(tmp_path / "missing"))
    good = write_data(tmp_path / "good", [numbered(4)], vocab[1])
    other = tmp_path / "other-vocab"
    write_vocab(other)
    manifest = Manifest.from_json((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(dataclasses.replace(manifest, config={"v": 2}).to_json())
    with pytest.raises(PretrainingDataError, match="another vocabulary"):
        PretrainingShards(str(good), vocab_dir=str(other))
    assert PretrainingShards(str(good), vocab_dir=str(vocab[0])).vocab_tokens == TOKENS


def dynamic_data(tmp_path, vocab, n=3000, **config) -> PretrainingShards:
    rng = np.random.default_rng(0)
    rows = [
        example(
            rng.choice(WORDS, rng.integers(1, 40)).tolist(),
            rng.choice(WORDS, rng.integers(1, 40)).tolist(),
            doc=f"d{i % 50}",
            pair=i,
        )
        for i in range(n)
    ]
    directory = write_data(
        tmp_path / "dyn", [rows[: n // 2], rows[n // 2 :]], vocab[1],
        dynamic_masking=True, max_seq_length=83, max_predictions_per_seq=12, **config,
    )  # fmt: skip
    return PretrainingShards(str(directory), vocab_dir=str(vocab[0]))


def test_dynamic_masking_is_fixed_by_epoch_and_example_and_has_the_paper_rates(tmp_path, vocab):
    data = dynamic_data(tmp_path, vocab)
    with pytest.raises(PretrainingDataError, match="dynamic masking"):
        next(iter_batches(data, batch_size=4))
    masking = DynamicMasking.for_data(data)
    whole = next(data.iter_tables())
    epoch0 = masking.mask_table(whole, epoch=0)
    again = masking.mask_table(whole.slice(100, 5), epoch=0)  # other batch, same examples
    assert (
        again.column("input_ids").to_pylist()
        == epoch0.slice(100, 5).column("input_ids").to_pylist()
    )
    epoch1 = masking.mask_table(whole, epoch=1)
    assert (
        epoch1.column("masked_lm_positions").to_pylist()
        != epoch0.column("masked_lm_positions").to_pylist()
    )
    batch = collate(epoch0, num_predictions=12, pad_id=PAD)
    real = batch.masked_lm_labels != IGNORE_INDEX
    maskable = (batch.input_ids.numpy() != PAD).sum() - 3 * len(batch.input_ids)
    assert abs(real.sum().item() / maskable - 0.15) < 0.01
    rows = torch.arange(len(real)).unsqueeze(1).expand_as(real)
    now = batch.input_ids[rows[real], batch.masked_lm_positions[real]]
    original = batch.masked_lm_labels[real]
    assert abs((now == MASK).float().mean().item() - 0.8) < 0.02
    kept = (now == original).float().mean().item()
    assert abs(kept - (0.1 + 0.1 / len(WORDS))) < 0.02
    assert not np.isin(now.numpy(), [PAD, UNK, CLS, SEP, 1]).any()  # never special or [unused0]


def test_dynamic_masking_matches_the_data_stage_masking(tmp_path, vocab):

    data = dynamic_data(tmp_path, vocab, n=200)
    table = next(data.iter_tables())
    stage_vocab = MaskingVocab.from_tokens(TOKENS)
    for whole_word, span in ((False, False), (True, False), (False, True)):
        masking = DynamicMasking.for_data(data, whole_word_mask=whole_word, span_masking=span)
        config = MaskingConfig(
            max_predictions_per_seq=12, whole_word_mask=whole_word, span_masking=span
        )
        for row in table.slice(0, 50).to_pylist():
            ids = np.array(row["input_ids"], dtype=np.uint16)
            ours = masking.mask(ids, np.random.default_rng(row["pair_index"]))
            theirs = mask_sequences(
                ids,
                np.array([0, len(ids)]),
                np.random.default_rng(row["pair_index"]),
                stage_vocab,
                config,
            )
            assert ours[0].tolist() == theirs.input_ids.tolist()
            assert ours[1].tolist() == theirs.masked_lm_positions.tolist()
            assert ours[2].tolist() == theirs.masked_lm_ids.tolist()


def test_masking_tables_exclude_special_and_unused_tokens():
    tables = MaskingVocab.from_tokens(TOKENS)
    assert tables.mask_id == MASK
    assert set(tables.random_token_ids.tolist()) == set(WORDS)
    assert tables.is_continuation[TOKENS.index("##ing")]


def test_a_batch_trains_the_model(tmp_path, vocab, tiny_config):
    data = PretrainingShards(str(write_data(tmp_path / "d", [numbered(6)], vocab[1])))
    batch = next(iter_batches(data, batch_size=6))
    rows = batch.masked_lm_positions.clone()
    rows[:, 0] = 1  # one prediction per row: the first A token
    labels = torch.full_like(rows, IGNORE_INDEX)
    labels[:, 0] = batch.input_ids[:, 1]
    batch = dataclasses.replace(batch, masked_lm_positions=rows, masked_lm_labels=labels)
    model = BertForPreTraining(dataclasses.replace(tiny_config, vocab_size=len(TOKENS)))
    output = model(**batch.as_dict())
    assert torch.isfinite(output.loss) and output.mlm_count.item() == 6
    output.loss.backward()
