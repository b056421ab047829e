"""The allocator setting the pretraining job applies on glibc: freed arrays are reused."""

from __future__ import annotations

import resource

import numpy as np

from pipelines.pretraining.allocator import keep_freed_memory


def _minor_faults_of_reallocating(size: int, times: int) -> int:
    # This thread's faults only: threads left by earlier tests (loaders, servers) fault too,
    # and counted here they failed a full run once (155 faults against the limit of 100).
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(times):
        a = np.ones(size, dtype=np.uint8)  # touches every page
        del a
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def test_arrays_of_tens_of_megabytes_freed_and_allocated_again_do_not_fault_again():
    assert keep_freed_memory()  # this machine's C library is glibc
    size = 48 << 20  # above glibc's own limit for moving its threshold (32 MB)
    _minor_faults_of_reallocating(size, 1)  # the heap grows once
    # Without the setting each allocation is a new mapping, faulted in again (10,720 faults
    # here, huge pages included); with it the freed heap memory is reused.
    assert _minor_faults_of_reallocating(size, 20) < 100
