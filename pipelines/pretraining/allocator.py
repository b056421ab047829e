"""Process tuning for the steps that handle bulk data: freed memory kept, and Python's garbage
collector spared the objects made before the data arrives.

Keep freed memory in the process instead of handing it back to the kernel at once.

The job allocates and frees arrays of megabytes per bucket. glibc serves each of them with a
fresh mmap and unmaps it on free, so every page is faulted in again by the next bucket: at 16
times the sample that was 720,000 page faults and 2.5 s of system time out of 19 s. With a
mapping threshold above those sizes they are reused from the heap (64,000 faults, 1.4 s), for
about 25 MB more resident memory (bench/results/pretraining_data.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

import apache_beam as beam

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # allocations above this still get their own mapping
TRIM_THRESHOLD = 256 << 20  # free memory at the heap's top kept before returning it


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (once); False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def freeze_setup_objects() -> None:
    """Leave every object made so far (Beam's, the vocabulary, the tokenizer's caches) out of
    Python's cyclic garbage collections, which walk all tracked objects: during a run at 16
    times the sample, collections took 0.27 s, 0.155 s after this (gc callbacks). What
    is frozen is what exists at a step's setup, so it does not grow with the data; a cycle
    that becomes garbage among those objects is freed after `thaw_setup_objects`."""
    gc.freeze()


def thaw_setup_objects() -> None:
    """Give the frozen objects back to the garbage collector (a step's teardown)."""
    gc.unfreeze()


class BulkDataStep(beam.DoFn):
    """A step that handles bulk data: at setup, malloc tuned (`keep_freed_memory`), then the
    subclass's `prepare` builds its long-lived objects, which are then frozen out of the
    garbage collector's walks until teardown."""

    def prepare(self) -> None:
        """What the step builds once per worker before data arrives (vocabulary, caches)."""

    def setup(self) -> None:
        keep_freed_memory()
        self.prepare()
        freeze_setup_objects()

    def teardown(self) -> None:
        thaw_setup_objects()
