"""What flows share: the Prefect flow class and its options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from tasks.heartbeat import flow_run_heartbeat

# Tasks run on threads in the flow process (~5 ms each) and wait there while their heavy
# compute runs on Dask workers as plain functions (see mirflow.core.cluster). A waiting thread
# is cheap, and the pool bounds how many shards are in flight at once, so it is sized for
# a cluster of this many worker threads; Prefect's own setting
# PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS overrides it for a bigger one.
DEFAULT_TASK_THREADS = 64
JSON_SCALARS = (str, int, float, bool, type(None))


def task_threads() -> int:
    return get_current_settings().tasks.runner.thread_pool_max_workers or DEFAULT_TASK_THREADS


class PipelineFlow(Flow):
    """A Prefect flow whose parameters (a pydantic model and flags, in every mirflow flow)
    are recorded with pydantic's JSON dump, which is what Prefect's default gives for them:
    its encoder comes from FastAPI, whose import was 0.4 s of an unchanged re-run's start.
    Called in this process, its heartbeats come from mirflow (``tasks.heartbeat``): Prefect's
    made every run wait for the next whole second from its start."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        seconds = get_current_settings().flows.heartbeat_frequency
        if seconds is None:  # the user turned heartbeats off
            return super().__call__(*args, **kwargs)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), flow_run_heartbeat(seconds):
            return super().__call__(*args, **kwargs)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(isinstance(value, (BaseModel, *JSON_SCALARS)) for value in parameters.values()):
            return {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
                    for name, value in parameters.items()}
        return super().serialize_parameters(parameters)


def pipeline_flow(name: str) -> Callable[[Callable], PipelineFlow]:
    """``@flow(name=name)`` with mirflow's options: tasks on a thread pool, parameters
    validated, prints logged."""

    def decorate(fn: Callable) -> PipelineFlow:
        return PipelineFlow(fn, name=name, task_runner=ThreadPoolTaskRunner(max_workers=task_threads()),
                            validate_parameters=True, log_prints=True)

    return decorate
