"""The streaming shard loader: no overlap, seeded shuffling, exact resume, gs:// with a cache."""

import itertools
import os
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from model.pretraining_batch import PretrainingDataError, PretrainingShards
from model.shard_loader import (
    PretrainingStream,
    StreamPlan,
    StreamSpec,
    find_vocab_hash,
    set_storage_options,
    split_shards,
    train_loader,
    validation_batches,
)
from model.synthetic_data import MASK, write_synthetic_pretraining_data, write_synthetic_vocab

NUM_EXAMPLES, NUM_SHARDS, SEQ = 203, 5, 32


@pytest.fixture
def data_dir(tmp_path) -> Path:
    directory = tmp_path / "pretraining" / f"seq{SEQ}"
    write_synthetic_pretraining_data(
        directory,
        num_examples=NUM_EXAMPLES,
        num_shards=NUM_SHARDS,
        max_seq_length=SEQ,
        vocab_size=100,
        seed=1,
    )
    return directory


def make_spec(
    directory, *, streams=(0,), num_streams=1, batch=4, buffer=16, seed=0, cache="", vocab=None
):
    data = PretrainingShards(str(directory))
    return StreamSpec(
        directory=str(directory),
        vocab_dir=vocab,
        shards=list(data.manifest.shards),
        num_streams=num_streams,
        streams=list(streams),
        micro_batch_size=batch,
        shuffle_buffer=buffer,
        seed=seed,
        cache_dir=cache or str(Path(directory).parent / "cache"),
    )


def take(loader_or_stream, n):
    return list(itertools.islice(iter(loader_or_stream), n))


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(
        (x.step, x.micro_step) == (y.step, y.micro_step)
        and all(
            torch.equal(t, u)
            for t, u in zip(x.batch.as_dict().values(), y.batch.as_dict().values(), strict=True)
        )
        and torch.equal(x.token_index, y.token_index)
        for x, y in zip(a, b, strict=True)
    )


def epoch_rows(plan: StreamPlan, epoch: int) -> list[tuple[int, int]]:
    start = plan.epoch_start(epoch)
    epochs, shards, rows = plan.locate(start, plan.layout(epoch).length)
    assert set(epochs.tolist()) == {epoch}
    return list(zip(shards.tolist(), rows.tolist(), strict=True))


@pytest.mark.parametrize("num_streams", [1, 3, 8])  # 8 streams > 5 shards: split by rows
def test_streams_split_every_epoch_without_overlap(num_streams):
    shard_rows = [41, 40, 41, 40, 41]
    all_rows = {(s, r) for s, n in enumerate(shard_rows) for r in range(n)}
    for epoch in (0, 1):
        seen: list[tuple[int, int]] = []
        shards_of_stream = []
        for stream in range(num_streams):
            plan = StreamPlan(
                shard_rows, num_streams=num_streams, stream=stream, shuffle_buffer=16, seed=7
            )
            rows = epoch_rows(plan, epoch)
            seen += rows
            shards_of_stream.append({s for s, _ in rows})
        assert sorted(seen) == sorted(all_rows)  # every example once, none twice
        if num_streams <= len(shard_rows):  # whole shards are dealt out: no shard is shared
            for a, b in itertools.combinations(shards_of_stream, 2):
                assert not a & b


def test_shuffle_is_seeded_and_differs_per_epoch():
    shard_rows = [50, 50, 50]
    plan = StreamPlan(shard_rows, num_streams=1, stream=0, shuffle_buffer=32, seed=3)
    again = StreamPlan(shard_rows, num_streams=1, stream=0, shuffle_buffer=32, seed=3)
    other = StreamPlan(shard_rows, num_streams=1, stream=0, shuffle_buffer=32, seed=4)
    first, second = epoch_rows(plan, 0), epoch_rows(plan, 1)
    assert first == epoch_rows(again, 0)
    assert first != second and sorted(first) == sorted(second)
    assert first != epoch_rows(other, 0)
    # The buffer mixes rows only within blocks of shuffle_buffer consecutive rows of the epoch.
    order = plan.shard_order(0)
    unshuffled = [(int(s), r) for s in order for r in range(shard_rows[s])]
    for start in range(0, 150, 32):
        assert sorted(first[start : start + 32]) == sorted(unshuffled[start : start + 32])
        assert first[start : start + 32] != unshuffled[start : start + 32]


def test_batches_span_epochs_as_one_stream(data_dir):
    stream = PretrainingStream(make_spec(data_dir, batch=8, buffer=10))
    batches = take(stream, 60)  # 480 examples: more than two epochs of 203
    assert [b.step for b in batches] == list(range(60))
    assert all(b.batch.input_ids.shape == (8, SEQ) for b in batches)
    real = [int(b.batch.attention_mask.sum()) for b in batches]
    assert [b.token_index.numel() for b in batches] == real


def test_resumed_loader_sees_the_same_batches_whatever_the_workers(data_dir):
    spec = make_spec(data_dir, streams=(0, 1), num_streams=2, batch=4)
    uninterrupted = take(
        train_loader(spec, start_step=0, num_workers=0, prefetch_factor=2, pin_memory=False), 24
    )
    assert [(b.step, b.micro_step) for b in uninterrupted[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    resumed = take(
        train_loader(spec, start_step=5, num_workers=2, prefetch_factor=2, pin_memory=False), 14
    )
    assert same_batches(resumed, uninterrupted[10:])
    # A different seed or micro-batch size gives other batches.
    reseeded = take(
        PretrainingStream(make_spec(data_dir, streams=(0, 1), num_streams=2, batch=4, seed=1)), 4
    )
    assert not same_batches(reseeded, uninterrupted[:4])


def test_two_ranks_train_on_the_batches_of_one_rank_accumulating(data_dir):
    one_rank = take(PretrainingStream(make_spec(data_dir, streams=(0, 1), num_streams=2)), 10)
    rank0 = take(PretrainingStream(make_spec(data_dir, streams=(0,), num_streams=2)), 5)
    rank1 = take(PretrainingStream(make_spec(data_dir, streams=(1,), num_streams=2)), 5)
    for step in range(5):
        for micro_step, rank_batch in enumerate((rank0[step], rank1[step])):
            expected = one_rank[2 * step + micro_step]
            assert torch.equal(rank_batch.batch.input_ids, expected.batch.input_ids)


def test_validation_batches_are_fixed_and_split_across_ranks(data_dir):
    data = PretrainingShards(str(data_dir))
    _, held_out = split_shards(list(data.manifest.shards), 2)
    kwargs = {"examples": 50, "micro_batch_size": 8, "cache_dir": str(data_dir / "cache")}

    def rows(rank, world_size):
        batches = validation_batches(data, held_out, rank=rank, world_size=world_size, **kwargs)
        return [tuple(r) for b in batches for r in b.batch.input_ids.tolist()]

    alone = rows(0, 1)
    assert len(alone) == 50 and alone == rows(0, 1)
    split = [rows(0, 2), rows(1, 2)]
    assert len(split[0]) == len(split[1]) == 25
    assert sorted(split[0] + split[1]) == sorted(alone)


def test_split_shards_holds_out_the_last():
    shards = [f"s{i}" for i in range(150)]
    train, held_out = split_shards(shards, -1)  # 1% of 150, rounded: 2
    assert held_out == ["s148", "s149"] and train == shards[:148]
    assert split_shards(shards[:2], -1) == (["s0"], ["s1"])
    assert split_shards(shards[:1], -1) == (["s0"], [])
    with pytest.raises(PretrainingDataError, match="validation_shards"):
        split_shards(shards[:2], 2)


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_shard_is_named(data_dir):
    corrupt(data_dir / "pretraining-00002-of-00005.arrow")
    spec = make_spec(data_dir, batch=50)
    loader = train_loader(spec, start_step=0, num_workers=1, prefetch_factor=2, pin_memory=False)
    with pytest.raises(PretrainingDataError, match=r"pretraining-00002-of-00005\.arrow: checksum"):
        take(loader, 5)  # 250 examples: every shard is read


def test_gs_shards_are_cached_locally(data_dir, tmp_path, gcs_emulator):
    bucket = gcs_emulator()
    url = f"gs://{bucket}/pretraining/seq{SEQ}"
    fs = fsspec.filesystem("gs")
    for path in sorted(data_dir.iterdir()):
        fs.put_file(str(path), f"{url}/{path.name}")
    cache = tmp_path / "cache"
    local = take(PretrainingStream(make_spec(data_dir, batch=50)), 5)
    remote = take(PretrainingStream(make_spec(url, batch=50, cache=str(cache))), 5)
    assert same_batches(remote, local)
    data = PretrainingShards(url)
    cached = sorted(p.name for p in cache.glob("*.arrow"))
    assert cached == sorted(f"{s.sha256}.arrow" for s in data.manifest.shards)
    # Once cached, the bucket's shards are not read again.
    for shard in data.manifest.shards:
        fs.rm(f"{url}/{shard.path}")
    again = take(PretrainingStream(make_spec(url, batch=50, cache=str(cache))), 5)
    assert same_batches(again, local)
    # A damaged cached copy is named, removed and would be fetched afresh.
    victim = cache / f"{data.manifest.shards[0].sha256}.arrow"
    corrupt(victim)
    with pytest.raises(PretrainingDataError, match=f"cached copy of {url}/pretraining-00000"):
        take(PretrainingStream(make_spec(url, batch=50, cache=str(cache))), 5)
    assert not victim.exists()
    with pytest.raises(
        PretrainingDataError,
        match="pretraining-00000-of-00005.arrow: shard listed in the manifest is missing",
    ):
        take(PretrainingStream(make_spec(url, batch=50, cache=str(cache))), 5)


def test_stream_plan_positions_are_reachable_directly():
    plan = StreamPlan([30, 31, 29], num_streams=2, stream=1, shuffle_buffer=7, seed=5)
    epochs, shards, rows = plan.locate(0, 200)
    for start in (0, 13, 45, 150):
        e, s, r = plan.locate(start, 20)
        assert np.array_equal(e, epochs[start : start + 20])
        assert np.array_equal(s, shards[start : start + 20])
        assert np.array_equal(r, rows[start : start + 20])


def test_storage_options_reach_every_read(data_dir, tmp_path, gcs_emulator, monkeypatch):
    bucket = gcs_emulator()
    url = f"gs://{bucket}/pretraining/seq{SEQ}"
    for path in sorted(data_dir.iterdir()):
        fsspec.filesystem("gs").put_file(str(path), f"{url}/{path.name}")
    # Without the emulator's address in the environment, only the options can lead to it.
    host = os.environ["STORAGE_EMULATOR_HOST"]
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setattr(fsspec.config, "conf", {})
    fsspec.filesystem("gs").clear_instance_cache()
    set_storage_options(url, {"endpoint_url": host, "token": "anon"})
    spec = make_spec(url, batch=50, cache=str(tmp_path / "cache"))
    loader = train_loader(spec, start_step=0, num_workers=1, prefetch_factor=2, pin_memory=False)
    assert same_batches(take(loader, 5), take(PretrainingStream(make_spec(data_dir, batch=50)), 5))


def test_dynamic_masking_masks_each_epoch_afresh_and_resumes(tmp_path):
    vocab = write_synthetic_vocab(tmp_path / "vocab", vocab_size=100)
    directory = tmp_path / "pretraining" / "seq32"
    write_synthetic_pretraining_data(
        directory,
        num_examples=40,
        num_shards=2,
        max_seq_length=32,
        vocab_size=100,
        inputs=[vocab],
        dynamic_masking=True,
    )
    data = PretrainingShards(str(directory), vocab_dir=vocab.path)
    assert data.dynamic_masking and find_vocab_hash(data) == vocab.manifest_hash
    spec = make_spec(directory, batch=6, buffer=64, vocab=vocab.path)  # 40 rows: one block
    batches = take(PretrainingStream(spec), 20)  # 120 examples, 3 epochs; step 6 spans two
    masks: dict[tuple, list[tuple]] = {}
    for b in batches:
        ids, labels = b.batch.input_ids.clone(), b.batch.masked_lm_labels
        positions, real = b.batch.masked_lm_positions, labels != -100
        assert real.any(dim=1).all() and (ids == MASK).any()
        rows = torch.arange(ids.size(0)).unsqueeze(1).expand_as(positions)
        ids[rows[real], positions[real]] = labels[real]  # the example before masking
        for row in range(ids.size(0)):
            key = tuple(ids[row].tolist())
            masks.setdefault(key, []).append(tuple(positions[row][real[row]].tolist()))
    assert len(masks) == 40 and all(len(m) == 3 for m in masks.values())
    assert sum(len(set(m)) > 1 for m in masks.values()) >= 35  # new masks every epoch
    resumed = take(PretrainingStream(spec, start_step=6), 14)
    assert same_batches(resumed, batches[6:])
