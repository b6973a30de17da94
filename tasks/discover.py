"""List the input clips (generating the demo data set when no data folder is given)."""

from __future__ import annotations

import pandas as pd

from mirflow.datasets import gtzan
from mirflow.datasets.base import data_root
from mirflow.core.fingerprint import file_fingerprint
from tasks.common import STAGE_DEFAULTS, task
from tasks.runtime import RunContext, run_logger


@task(**STAGE_DEFAULTS)
def discover_gtzan_clips(ctx: RunContext) -> pd.DataFrame:
    """Clips with label, group (the song) and a content fingerprint."""
    params = ctx.params
    data_dir = params.data_dir
    if data_dir is None:
        data_dir = str(data_root() / f"gtzan-demo-seed{params.seed}-n{params.demo_clips_per_genre}")
        run_logger().info("no data_dir given: using the generated demo data set in %s", data_dir)
        if not gtzan.is_synthetic(data_dir):  # its marker is written last: a half-written set is redone
            gtzan.synthesize(data_dir, n_per_genre=params.demo_clips_per_genre, seed=params.seed, sr=params.sample_rate)
    clips = gtzan.discover(data_dir)
    prints = [file_fingerprint(p, data_dir, params.fingerprint) for p in clips["path"]]
    clips["rel_path"] = [rel for rel, _ in prints]
    clips["fingerprint"] = [fp for _, fp in prints]
    clips = clips.rename(columns={"genre": "label"})
    run_logger().info("found %d clips in %d genres", len(clips), clips["label"].nunique())
    return clips
