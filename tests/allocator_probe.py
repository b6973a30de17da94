"""How this process's allocator returns freed memory, counted in page faults: the probe
tests/core/test_memory.py runs in fresh processes and tests/infra runs on a local Dask worker."""

from __future__ import annotations

import resource

import numpy as np


def page_faults_of_array_churn() -> int:
    """Allocate and free three 12 MB arrays (STFT-sized) 30 times; the minor page faults
    it cost (glibc's adaptive thresholds: ~48,000; freed memory kept: ~1,600)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        arrays = [np.ones(3_000_000, np.float32) for _ in range(3)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
