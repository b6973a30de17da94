"""Every pipeline's input files, planned into content-defined shards (one extract task
per shard to compute, on a Dask worker) and collected back, unusable files quarantined."""

from __future__ import annotations

import pandas as pd

from mirflow.core.errors import MirflowError
from mirflow.core.store import ArtifactRef
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.shards import Shard, plan_shards
from tasks.common import UNCACHED, StageTask, task
from tasks.runtime import RunContext, run_logger, stored_only


@task(**UNCACHED)
def plan_input_shards(ctx: RunContext, files: pd.DataFrame, stages: tuple[str, ...] = ("extract",)) -> list[Shard]:
    """Every pipeline's shards of input files, largest first; ``stages`` are the
    per-shard stages whose progress bars count them.

    Content-defined shards differ in size, and Dask starts the first tasks in the order
    they arrive: submitted largest first, no large shard is left to run alone at the end
    (the shard stages also give Dask their size as priority for the tasks it queues)."""
    shards = plan_shards(files, ctx.params.shard_size)
    for stage in stages:
        ctx.progress.expect(stage, len(shards))
    run_logger().info("%d input files in %d shards", len(files), len(shards))
    return sorted(shards, key=lambda shard: (-len(shard.files), shard.index))


def run_shard_tasks(ctx: RunContext, shard_task: StageTask, calls: list[tuple]) -> list[ArtifactRef]:
    """``shard_task(ctx, *call)`` for every call, in order. The calls whose stage the store
    already holds are settled together in one task run (``stored_shards``); only the rest
    get a task run each, submitted at once (on Dask, retried). A task run costs API calls
    to the Prefect server: per shard, an unchanged re-run's task runs grew with the data."""
    stored = stored_shards(ctx, shard_task, calls)
    pending = {i: shard_task.submit(ctx, *call) for i, call in enumerate(calls) if i not in stored}
    return [stored[i] if i in stored else pending[i].result() for i in range(len(calls))]


@task(**UNCACHED, task_run_name="stored-{shard_task.name}")
def stored_shards(ctx: RunContext, shard_task: StageTask, calls: list[tuple]) -> dict[int, ArtifactRef]:
    """By position, what ``shard_task(ctx, *call)`` returns for the calls the store holds
    (one key check each, nothing computed; with ``explain``, every call)."""
    found = {}
    with stored_only():
        for i, call in enumerate(calls):
            try:
                found[i] = shard_task.body(ctx, *call)
            except Exception:  # NotStored, or e.g. the store unreachable: the call's own task run meets it again, retried
                continue
    return found


@task(**UNCACHED)
def collect_shards(ctx: RunContext, shards: list[ArtifactRef], n_inputs: int) -> FeatureSet:
    """Gather shard outputs; quarantine unusable files and fail past the threshold."""
    features = FeatureSet(ctx.store, tuple(shards))
    if ctx.explain:
        return features
    failures = features.failures()
    logger = run_logger()
    for failure in failures:
        logger.warning("quarantined %s: %s", failure["path"], failure["reason"])
    limit = ctx.params.max_failure_fraction
    if n_inputs and len(failures) / n_inputs > limit:
        raise MirflowError(
            f"{len(failures)} of {n_inputs} input files are unusable ({len(failures) / n_inputs:.1%} > "
            f"max_failure_fraction {limit:.1%}); first: {failures[0]['path']}: {failures[0]['reason']}"
        )
    return features
