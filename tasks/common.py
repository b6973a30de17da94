"""Prefect task defaults shared by every stage, and the task class every stage uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import Task, exponential_backoff

from tasks.runtime import is_transient

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
    submitted in the caller's thread, with no task run and no Prefect API."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs) if _PLAIN.get() else super().__call__(*args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return _Done(self.fn(*args, **kwargs)) if _PLAIN.get() else super().submit(*args, **kwargs)


class _Done:
    """What ``StageTask.submit`` returns in plain calls: a future already resolved."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def task(**options: Any):
    """``prefect.task`` making a ``StageTask``."""
    return lambda fn: StageTask(fn=fn, **options)


@contextmanager
def plain_calls() -> Iterator[None]:
    """Run a flow's body (``flow.fn``) without Prefect: `--explain` computes every
    stage's key with the very code a run uses, and needs no server to do it."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)
