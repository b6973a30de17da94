"""Prefect task defaults shared by every stage, and the task class every stage uses."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Completed, State
from prefect.tasks import Task, exponential_backoff
from prefect.utilities.annotations import BaseAnnotation, opaque

from tasks.heartbeat import start_flow_run_heartbeat
from tasks.runtime import is_transient, stage_statuses

# The artifact store is the cache (keys cover data, parameters and code); Prefect's
# own input-hash cache would key on path strings and miss code edits.
STAGE_DEFAULTS = dict(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)

# Tasks that only plan, audit or collect what is already in memory or in the store: they
# write no artifact, so there is no cache to consult, and a failure is a finding, not
# something a retry would change.
UNCACHED = dict(cache_policy=NO_CACHE)

_PLAIN = ContextVar("mirflow_plain_task_calls", default=False)


class StageTask(Task):
    """A Prefect task that, inside ``plain_calls()``, is its plain function: called and
    submitted in the caller's thread, with no task run and no Prefect API. A task run
    whose stages were all served from the store ends in a Completed state named
    "Cached" (see ``task``); called, it still returns its value."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _PLAIN.get():
            return self.fn(*args, **kwargs)
        start_flow_run_heartbeat()
        value = super().__call__(*_shallow_each(args), **_shallow_each(kwargs))
        # Prefect hands back what the function returned: here, possibly the Cached state.
        return value.result() if isinstance(value, State) and not kwargs.get("return_state") else value

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        if _PLAIN.get():
            return _Done(self.fn(*args, **kwargs))
        start_flow_run_heartbeat()
        return super().submit(*_shallow_each(args), **_shallow_each(kwargs))

    def body(self, *args: Any, **kwargs: Any) -> Any:
        """The task's own function, run inside the calling task run: its stages count as
        that run's (``tasks.shards.run_shard_tasks``)."""
        return self.fn.__wrapped__(*args, **kwargs)


def _shallow_each(arguments: Any) -> Any:
    """A call's positional (tuple) or keyword (dict) arguments, each made ``_shallow``."""
    if isinstance(arguments, dict):
        return {key: _shallow(value) for key, value in arguments.items()}
    return tuple(_shallow(value) for value in arguments)


_SCALARS = (str, bytes, int, float, bool, type(None))
_LEAVES = (*_SCALARS, PrefectFuture, State, BaseAnnotation)


def _shallow(value: Any, depth: int = 2) -> Any:
    """``value`` with everything below ``depth`` levels of lists, tuples and dicts wrapped in
    Prefect's ``opaque``: Prefect still resolves and links each wrapped value (so the UI
    shows which task's result a task took), but no longer walks into it. Prefect walks a
    task's arguments twice per task run, to the last element: through a run context, a
    shard's file list or a feature set, an unchanged re-run's time grew with the inputs.
    A collection of plain values (a split list of clip ids) holds nothing to resolve or
    link, so it is wrapped whole, at any depth."""
    if isinstance(value, _LEAVES):
        return value
    if type(value) is dict and depth and not _all_scalars(value.values()):
        return {key: _shallow(item, depth - 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and depth and not _all_scalars(value):
        items = [_shallow(item, depth - 1) for item in value]
        return type(value)._make(items) if hasattr(value, "_make") else type(value)(items)
    return opaque(value)


def _all_scalars(items: Iterable[Any]) -> bool:
    return all(isinstance(item, _SCALARS) for item in items)


class _Done:
    """What ``StageTask.submit`` returns in plain calls: a future already resolved."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def task(**options: Any):
    """``prefect.task`` making a ``StageTask``."""
    return lambda fn: StageTask(fn=_named_cached(fn), **options)


def _named_cached(fn: Callable) -> Callable:
    """``fn``, returning its value in a Completed state named "Cached" when every stage it
    ran was served from the store: the Prefect UI then tells hits from computations, at
    no extra API call (a returned state is the one Prefect sets)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _PLAIN.get():
            return fn(*args, **kwargs)
        with stage_statuses() as statuses:
            value = fn(*args, **kwargs)
        return Completed(name="Cached", data=value) if statuses and set(statuses) == {"cached"} else value

    return run


@contextmanager
def plain_calls() -> Iterator[None]:
    """Run a flow's body (``flow.fn``) without Prefect: `--explain` computes every
    stage's key with the very code a run uses, and needs no server to do it."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)
