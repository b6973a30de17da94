"""Every pipeline's input files, planned into content-defined shards (one extract task
per shard, computed on a Dask worker) and collected back, unusable files quarantined."""

from __future__ import annotations

import pandas as pd

from mirflow.core.errors import MirflowError
from mirflow.core.store import ArtifactRef
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.shards import Shard, plan_shards
from tasks.common import UNCACHED, task
from tasks.runtime import RunContext, run_logger


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
