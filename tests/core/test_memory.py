"""Peak memory of a stage: VmHWM, started afresh per stage where the kernel allows."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mirflow.core import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


def test_peak_covers_a_freed_allocation_until_it_is_reset():
    memory.reset_peak_rss()
    before = memory.peak_rss_bytes()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del block
    assert memory.peak_rss_bytes() >= before + 60 * 2**20
    assert memory.reset_peak_rss()
    assert memory.peak_rss_bytes() < before + 32 * 2**20
