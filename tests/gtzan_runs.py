"""A finished gtzan run written straight into a store (no flow run): two shards of 18 rows,
each row's log-mel a constant level that names its genre, and a 60/20/20 split."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.runs import RunOutputs, write_run
from mirflow.stages.featuresets import TABLE, FeatureSet
from mirflow.stages.splits import write_split

GENRES = ("blues", "jazz", "rock")
N_MELS = 128


def _shard(rows: int, with_logmel: bool, seed: int) -> pa.Table:
    """A gtzan-format shard: identity columns and, per row, a log-mel of 100-200 frames whose level is its genre."""
    rng = np.random.default_rng(seed)
    labels = [GENRES[i % len(GENRES)] for i in range(rows)]
    ids = [f"{label}.{seed:02d}{i:03d}" for i, label in enumerate(labels)]
    columns = {"row_id": ids, "clip_id": ids, "label": labels, "group": ids}
    if with_logmel:
        frames = rng.integers(100, 200, rows)
        columns["logmel"] = [np.full(N_MELS * f, -10.0 * GENRES.index(g), dtype=np.float32) for f, g in zip(frames, labels)]
        columns["logmel_frames"] = pa.array(frames, pa.int32())
    return pa.table(columns)


def write_gtzan_run(store: ArtifactStore, run_id: str, flow: str = "gtzan", with_logmel: bool = True) -> None:
    """A run folder ``run_id`` of ``flow`` whose manifest lists the shards and the split as its stages."""
    shards = []
    for i in range(2):
        ref = ArtifactRef("extract", f"{run_id}-shard{i}")
        with store.writing(ref) as writer:
            writer.write_parquet(TABLE, _shard(18, with_logmel, seed=i))
        shards.append(ref)
    split = ArtifactRef("split", f"{run_id}-split")
    with store.writing(split) as writer:
        write_split(writer, FeatureSet(store, tuple(shards)), (0.6, 0.2, 0.2), 0, None, None)
    stages = [{"stage": "extract", "label": f"extract[{i}]", "key": ref.key, "inputs": ref.key, "status": "computed"}
              for i, ref in enumerate(shards)]
    stages.append({"stage": "split", "label": "split", "key": split.key, "inputs": "", "status": "computed"})
    write_run(store, run_id, flow, GtzanParams(), stages, RunOutputs({}))
