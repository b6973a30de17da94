"""Peak memory of a stage (VmHWM, started afresh per stage where the kernel allows), and
an allocator that keeps freed memory for reuse."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


_PEAK = """
import numpy as np
from mirflow.core import memory

assert memory.reset_peak_rss()
before = memory.peak_rss_bytes()
block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
del block
covered = memory.peak_rss_bytes() >= before + 60 * 2**20
assert memory.reset_peak_rss()
print(covered, memory.peak_rss_bytes() < before + 32 * 2**20)
"""


def _run(source: str, *args: str) -> str:
    import subprocess

    return subprocess.run([sys.executable, "-c", source, *args], capture_output=True, text=True, check=True).stdout


def test_peak_covers_a_freed_allocation_until_it_is_reset():
    """In a fresh process. In a long-lived one (a test worker 1.5 GB resident) the peak once
    did not rise at all in CI; the likely cause is this machine's proactive reclaim
    (kdamond) taking back that process's cold pages while the block was touched, and a
    fresh process has none."""
    assert _run(_PEAK).split() == ["True", "True"]


_CHURN = """
import sys, threading
sys.path.insert(0, sys.argv[2])
from allocator_probe import page_faults_of_array_churn
from mirflow.core.memory import keep_freed_memory

if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
# in a worker thread, as Dask runs tasks: its own malloc arena
thread = threading.Thread(target=lambda: faults.append(page_faults_of_array_churn()))
thread.start()
thread.join()
print(faults[0])
"""
TESTS = str(Path(__file__).resolve().parents[1])  # where allocator_probe lives


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_freed_memory_is_reused_without_page_faults():
    """Arrays allocated and freed again and again: with glibc's adaptive thresholds the
    heap is handed back and faulted in anew every round (measured: ~48,000 faults in
    all); kept, every round reuses the first one's memory (~1,600)."""
    kept, adaptive = int(_run(_CHURN, "keep", TESTS)), int(_run(_CHURN, "adaptive", TESTS))
    assert kept < 12_000
    assert adaptive > 2.5 * kept
