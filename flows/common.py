"""What flows share: Prefect flow options."""

from __future__ import annotations

from prefect.settings import get_current_settings
from prefect.task_runners import ThreadPoolTaskRunner

# Tasks run on threads in the flow process (~5 ms each) and wait there while their heavy
# compute runs on Dask workers as plain functions (see mirflow.core.cluster). A waiting thread
# is cheap, and the pool bounds how many shards are in flight at once, so it is sized for
# a cluster of this many worker threads; Prefect's own setting
# PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS overrides it for a bigger one.
DEFAULT_TASK_THREADS = 64


def task_threads() -> int:
    return get_current_settings().tasks.runner.thread_pool_max_workers or DEFAULT_TASK_THREADS


def flow_options() -> dict:
    return {"task_runner": ThreadPoolTaskRunner(max_workers=task_threads()), "validate_parameters": True,
            "log_prints": True}
