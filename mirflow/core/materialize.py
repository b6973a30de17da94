"""Run one stage function into a new artifact, with its time and peak memory.

This is what Dask workers execute for every heavy stage, so it imports nothing of
Prefect: a worker never loads the orchestrator (0.7 CPU-seconds per process, measured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mirflow.core import memory
from mirflow.core.store import ArtifactRef, ArtifactStore

StageFunction = Callable[..., Any]  # fn(writer: ArtifactWriter, *args) -> summary


def materialize(store: ArtifactStore, ref: ArtifactRef, meta: dict, func: StageFunction, args: tuple) -> dict:
    """Run ``func(writer, *args)`` into a new artifact. Runs on a worker or locally.

    Its peak memory is the stage's own where it has the process to itself (a one-thread
    Dask worker); in the flow process, whose threads run several stages, it is the
    process's peak so far (``peak_rss_scope`` says which)."""
    scope = "stage" if _alone_in_process() and memory.reset_peak_rss() else "process"
    started = time.perf_counter()
    with store.writing(ref, meta) as writer:
        summary = func(writer, *args) or {}
        writer.write_json("summary.json", summary)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "peak_rss_scope": scope,
        "summary": summary,
    }


def _alone_in_process() -> bool:
    try:
        from distributed import get_worker

        return get_worker().state.nthreads == 1
    except (ImportError, ValueError):  # ValueError: not on a Dask worker
        return False
