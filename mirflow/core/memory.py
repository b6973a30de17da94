"""Peak resident memory of this process, and of one stage in it.

Linux keeps the high-water mark of resident memory in ``/proc/self/status`` (VmHWM)
and starts it afresh when 5 is written to ``/proc/self/clear_refs``. Not ``ru_maxrss``:
Linux carries that over fork + exec, so a Dask worker spawned by a 1 GB flow process
reports >= 1 GB whatever its stage does.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


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
