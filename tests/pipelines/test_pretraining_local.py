"""The local exchange's own pieces: the corpus order and the buckets of ranks."""

from __future__ import annotations

import numpy as np

from pipelines.pretraining.local_exchange import _has_rows, bucket_ranks, corpus_order


def test_documents_are_ordered_by_hash_then_by_id_where_hashes_collide():
    hashes = np.array([9, 3, 7, 3, 3, 1, 7], dtype=np.uint64)
    ids = ["i", "c-z", "g-b", "c-a", "c-m", "a", "g-a"]
    order = corpus_order(hashes, lambda i: ids[i])
    assert [ids[i] for i in order] == sorted(ids, key=lambda d: (int(hashes[ids.index(d)]), d))
    assert [ids[i] for i in order] == ["a", "c-a", "c-m", "c-z", "g-a", "g-b", "i"]


def test_buckets_cover_every_rank_once_in_order_with_sizes_equal_within_one():
    for n, k in ((10, 3), (7, 7), (1000, 13)):
        buckets = [bucket_ranks(n, k, b) for b in range(k)]
        assert [r for b in buckets for r in b] == list(range(n))
        sizes = [len(b) for b in buckets]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_a_bucket_has_rows_of_a_shard_exactly_when_one_of_its_ranks_goes_there():
    for first in range(0, 30):
        for end in range(first, first + 12):
            for num_shards in (1, 2, 5, 7):
                for shard in range(num_shards):
                    expected = any(r % num_shards == shard for r in range(first, end))
                    assert _has_rows(first, end, shard, num_shards) == expected


def test_buckets_follow_the_stored_size_of_long_documents():
    from pipelines.pretraining.shuffle_exchange import num_buckets_for

    mb = 2**20
    # 10,000 wiki-sized documents (3 KB each): the document count decides.
    assert num_buckets_for(10_000, 512, 16, 30 * mb, 2 * mb) == 20
    # 10,000 books (400 KB each): about 2 MB per bucket, five books, not 512.
    assert num_buckets_for(10_000, 512, 16, 4_000 * mb, 2 * mb) == 2_000
    assert num_buckets_for(10, 512, 16, 4_000 * mb, 0) == 16  # no size limit
