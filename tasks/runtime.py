"""What every task shares: the run context and the cached-stage mechanism.

A stage output is materialised at most once per key: the task computes the key from
its inputs' keys, its parameters and its code, returns at once on a store hit, and
otherwise runs the stage function (in the flow process, or on a Dask worker for the
heavy ones) inside ``store.writing`` so a killed run leaves nothing that looks valid.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from pydantic import BaseModel

from mirflow.core import progress
from mirflow.core.cluster import DaskPool
from mirflow.core.fingerprint import code_hash, library_versions, stage_key, stage_parts
from mirflow.core.materialize import StageFunction, materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets.base import demo_folder, ensure_demo


@dataclass
class RunContext:
    """One flow run: its store, its Dask pool and the record of what each stage did."""

    run_id: str
    flow: str
    store: ArtifactStore
    pool: DaskPool
    params: BaseModel
    explain: bool = False
    generated_data: bool = False  # the run reads a generated (synthetic) data set: its report says so first
    stages: list[dict] = field(default_factory=list)
    progress: StageProgress = field(default_factory=lambda: StageProgress())
    code_hash: CodeHashes = field(default_factory=lambda: CodeHashes(), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, entry: dict) -> None:
        with self._lock:
            self.stages.append(entry)
        self.progress.advance(entry["stage"])

    def close(self) -> None:
        """End of the run, failed or not: stop the Dask pool (its workers exit in the
        background) and the progress display, and release the run's lease in the store."""
        try:
            self.pool.close(wait=False)
            self.progress.close()
        finally:
            self.store.release_lease(self.run_id)

    def forced(self, stage: str) -> bool:
        return stage in getattr(self.params, "force", ())


class CodeHashes:
    """``code_hash(func)``, once per run (the code does not change mid-run): shard tasks
    starting together wait for the first one's hash instead of each hashing the same code.
    A plain object, not a dict field: Prefect walks a task's parameters (the RunContext)
    while other tasks add hashes, and a dict that grows under that walk fails the task."""

    def __init__(self):
        self._hashes: dict[Callable, str] = {}
        self._lock = threading.Lock()

    def __call__(self, func: Callable) -> str:
        with self._lock:
            if func not in self._hashes:
                self._hashes[func] = code_hash(func)
            return self._hashes[func]


class StageProgress:
    """Per-stage progress: a bar per long stage on a terminal, and a log line per step."""

    def __init__(self):
        progress.add_listener(self.update)
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self._bars = None
        self._bar_ids: dict[str, Any] = {}
        self._lock = threading.Lock()

    def expect(self, stage: str, total: int) -> None:
        with self._lock:
            self.totals[stage] = total
            if sys.stderr.isatty() and total > 1:
                from rich.progress import Progress

                if self._bars is None:
                    self._bars = Progress(transient=False)
                    self._bars.start()
                self._bar_ids[stage] = self._bars.add_task(stage, total=total)

    def update(self, task: str, done: int, total: int) -> None:
        """Progress inside one stage task (e.g. epochs of a training), from any process."""
        with self._lock:
            if not sys.stderr.isatty():
                return
            from rich.markup import escape
            from rich.progress import Progress

            if self._bars is None:
                self._bars = Progress(transient=False)
                self._bars.start()
            if task not in self._bar_ids:
                self._bar_ids[task] = self._bars.add_task(escape(task), total=total)  # "[cnn]" is not markup
            self._bars.update(self._bar_ids[task], completed=done, total=total)

    def advance(self, stage: str) -> None:
        with self._lock:
            self.done[stage] = self.done.get(stage, 0) + 1
            if stage in self._bar_ids:
                self._bars.advance(self._bar_ids[stage])
            if stage in self.totals:
                run_logger().info("%s: %d/%d done", stage, self.done[stage], self.totals[stage])

    def close(self) -> None:
        progress.remove_listener(self.update)
        if self._bars is not None:
            self._bars.stop()


# What the stages of the task running in this context did ("cached", "computed"): a task
# whose stages were all served from the store says so in Prefect (``tasks.common``).
_TASK_STAGES: ContextVar[list[str] | None] = ContextVar("mirflow_task_stages", default=None)


class NotStored(Exception):
    """Raised by ``run_stage`` inside ``stored_only()`` for a stage it would compute."""


_STORED_ONLY: ContextVar[bool] = ContextVar("mirflow_stored_only", default=False)


@contextmanager
def stored_only() -> Iterator[None]:
    """Inside the block ``run_stage`` settles only what the store holds (or, with
    ``explain``, what it would say) and raises ``NotStored`` for a stage it would compute,
    before computing anything: ``tasks.shards.run_shard_tasks`` resolves every stored
    shard of a stage in one task run this way."""
    token = _STORED_ONLY.set(True)
    try:
        yield
    finally:
        _STORED_ONLY.reset(token)


@contextmanager
def stage_statuses() -> Iterator[list[str]]:
    """Collect the statuses of the stages ``run_stage`` settles inside the block."""
    token = _TASK_STAGES.set(statuses := [])
    try:
        yield statuses
    finally:
        _TASK_STAGES.reset(token)


def _settled(ctx: RunContext, entry: dict) -> None:
    ctx.record(entry)
    statuses = _TASK_STAGES.get()
    if statuses is not None:
        statuses.append(entry["status"])


def run_stage(
    ctx: RunContext,
    stage: str,
    func: StageFunction,
    params: Any,
    inputs: Any,
    args: tuple = (),
    *,
    on_dask: bool = False,
    label: str | None = None,
    size: int = 0,
) -> ArtifactRef:
    """Return the artifact of ``func`` for these params and inputs, computing it only
    when the store lacks it (or the stage is forced).

    ``size`` (a shard's file count) orders work on Dask, largest first: shards differ in
    size, and in arrival order the largest could start last while the other workers idle."""
    parts = stage_parts(ctx.code_hash(func), params, inputs)
    ref = ArtifactRef(stage, stage_key(stage, parts))
    entry = {"stage": stage, "label": label or stage, "key": ref.key, **parts}
    cached = ctx.store.reuse(ref)
    if cached and not ctx.forced(stage):
        _settled(ctx, {**entry, "status": "cached", "seconds": 0.0})
        return ref
    if ctx.explain:
        _settled(ctx, {**entry, "status": "forced" if cached else "missing"})
        return ref
    if _STORED_ONLY.get():
        raise NotStored(ref)
    logger = run_logger()
    logger.info("%s: computing %s (%s)", label or stage, ref.key[:12], "forced" if cached else "not cached")
    meta = {"run_id": ctx.run_id, "flow": ctx.flow, **parts, "library_versions": library_versions()}
    if on_dask:
        result = ctx.pool.run(materialize, ctx.store, ref, meta, func, args, key_prefix=stage, priority=size)
    else:
        result = materialize(ctx.store, ref, meta, func, args)
    _settled(ctx, {**entry, "status": "computed", **{k: result[k] for k in ("seconds", "peak_rss_bytes", "peak_rss_scope")}})
    return ref


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger; the ``mirflow`` logger where tasks run as plain
    functions (``tasks.common.plain_calls``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mirflow")


def data_dir_or_demo(ctx: RunContext, dataset: str, n: int, make: Callable[[Path], object], variant: str = "") -> str:
    """The run's data folder or, when none is given, the generated demo set of ``n``
    units (made once by ``make(folder)``, and said so in the log): every flow's fallback.
    ``variant``: see `demo_folder`."""
    if ctx.params.data_dir is not None:
        return ctx.params.data_dir
    folder = demo_folder(dataset, n, ctx.params.seed, variant)
    ctx.generated_data = True
    run_logger().info("no data_dir given: using the generated demo data set in %s", folder)
    return str(ensure_demo(folder, make))


def is_transient(task, task_run, state) -> bool:
    """Retry only what may go away: I/O and connection trouble, a lost worker.
    Bad data (DataError) and bad parameters fail at once."""
    from mirflow.core.errors import MirflowError

    try:
        state.result()
    except MirflowError:
        return False
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception as error:  # a Dask worker lost mid-task surfaces as KilledWorker
        return type(error).__name__ in {"KilledWorker", "CommClosedError", "FutureCancelledError"}
    return False


__all__ = ["NotStored", "RunContext", "data_dir_or_demo", "is_transient", "run_logger", "run_stage", "stage_statuses", "stored_only"]
