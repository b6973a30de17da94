"""Peak resident memory of this process, and of one stage in it; and how its allocator
returns freed memory.

Linux keeps the high-water mark of resident memory in ``/proc/self/status`` (VmHWM)
and starts it afresh when 5 is written to ``/proc/self/clear_refs``. Not ``ru_maxrss``:
Linux carries that over fork + exec, so a Dask worker spawned by a 1 GB flow process
reports >= 1 GB whatever its stage does.
"""

from __future__ import annotations

import ctypes
import platform
import resource
from pathlib import Path

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
# glibc's mallopt parameters (malloc.h), and the largest values its own adaptive
# thresholds reach on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX, twice that for trim).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 * 2**20, 64 * 2**20


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started or since ``reset_peak_rss``."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is


def reset_peak_rss() -> bool:
    """Start the peak over from the current resident set; False where the kernel cannot."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks below 32 MiB for reuse (up to 64 MiB of them
    at the top of the heap) instead of handing them back to the kernel; False where the C
    library is not glibc.

    Extracting a 30 s clip allocates and frees STFT-sized arrays (5-11 MB) dozens of
    times. With glibc's adaptive thresholds the heap still shrank and grew again for
    them: ~2,800 page faults a clip, each page zeroed anew by the kernel, which is memory
    bandwidth the two worker processes of a 2-core machine compete for. Fixed at the
    adaptive maxima, the faults are gone (120 clips: ~340,000 faults, then ~0) and, in
    plain processes on the same shards, 1 process took 5-10 % less time, 2 side by side
    ~15 % less. The heap keeps at most ``TRIM_THRESHOLD`` free at its top this way.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this interpreter is linked with
    # mallopt returns 1 on success; both calls also turn the adaptive thresholds off
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def dask_setup(worker) -> None:
    """Dask's preload hook: mirflow's local clusters start every worker with this module
    as its preload (``mirflow.core.cluster.LOCAL_CLUSTER_CONFIG``)."""
    keep_freed_memory()
