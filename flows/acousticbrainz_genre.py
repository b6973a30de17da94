"""AcousticBrainz genre across four taxonomies (report 003), leakage-free stacking.

discover JSON + ground truth → plan shards → extract to Parquet (per shard, Dask) →
collect/quarantine → targets → one release-group split for all sources (+ folds) →
fill + z-scaler on train → leakage audit → subtask-1 networks per source and fold
(Dask) → stacked networks per stacking mode (out-of-fold activations, out-of-fold
scores, in-sample activations; Dask) → evaluate → report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow import runs
from mirflow.pipelines.acousticbrainz_genre.networks import FULL
from mirflow.pipelines.acousticbrainz_genre.params import AcousticBrainzParams
from tasks.acousticbrainz_genre import (
    audit_leakage,
    build_targets,
    collect_genre_outputs,
    discover_feature_files,
    discover_groundtruth,
    evaluate_source,
    extract_feature_shard,
    fit_preprocessing,
    locate_data,
    split_recordings,
    train_stacker,
    train_subtask1,
)
from tasks.run import finish_run, start_run
from tasks.shards import collect_shards, plan_input_shards, run_shard_tasks


@pipeline_flow("acousticbrainz_genre")
def acousticbrainz_genre(params: AcousticBrainzParams = AcousticBrainzParams(), explain: bool = False) -> dict:
    """Subtask 1 and stacked subtask 2 on AcousticBrainz low-level features; `explain` only reports what would re-run."""
    params.check_inputs()  # missing or mislaid data fails here, before a cluster starts
    ctx = start_run("acousticbrainz_genre", params, explain)
    try:
        data_dir = locate_data(ctx)
        files = discover_feature_files(ctx, data_dir)
        groundtruth = discover_groundtruth(ctx, data_dir)
        shards = plan_input_shards(ctx, files)
        features = collect_shards(ctx, run_shard_tasks(ctx, extract_feature_shard, [(s,) for s in shards]), len(files))
        targets = build_targets(ctx, groundtruth)
        split = split_recordings(ctx, features, targets)
        prep = fit_preprocessing(ctx, features, split)
        audit_leakage(ctx, features, split, prep)
        sources = sorted(groundtruth)
        folds = [FULL, *map(str, range(params.folds))]
        trained = {(s, f): train_subtask1.submit(ctx, features, split, targets, prep, s, f) for s in sources for f in folds}
        members = {s: {f: trained[s, f].result() for f in folds} for s in sources}
        modes = params.stacking
        stacking = {(s, m): train_stacker.submit(ctx, split, targets, members, s, m) for s in sources for m in modes}
        stacked_refs = {s: {m: stacking[s, m].result() for m in modes} for s in sources}
        evaluated = {s: evaluate_source.submit(ctx, split, targets, members[s], stacked_refs[s], s) for s in sources}
        outputs = collect_genre_outputs(ctx, features, {s: e.result() for s, e in evaluated.items()}, members, stacked_refs)
        return finish_run(ctx, outputs, runs.Selection("validation", "roc_auc_macro", True))
    finally:
        ctx.close()
