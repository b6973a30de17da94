"""Million Song Dataset song hotness (report 000, project A): sparse linear regression.

discover → plan shards → extract (per shard, Dask) → collect/quarantine → clean (per shard,
Dask) → split by artist → design matrices per variant (Dask) → leakage audit → fit
(per variant, feature set, model and alpha, Dask) → evaluate → report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow.pipelines.msd_hotness.params import MsdHotnessParams
from mirflow.pipelines.msd_hotness.linear import model_grid
from mirflow.runs import Selection
from tasks.msd_hotness import (
    audit_leakage,
    build_design,
    clean_song_shard,
    collect_clean_songs,
    collect_regression_outputs,
    discover_msd_songs,
    evaluate_regressors,
    extract_song_shard,
    fit_regressor,
)
from tasks.run import finish_run, start_run
from tasks.shards import collect_shards, plan_input_shards, run_shard_tasks
from tasks.split import fold_split, split_rows


@pipeline_flow("msd_hotness")
def msd_hotness(params: MsdHotnessParams = MsdHotnessParams(), explain: bool = False) -> dict:
    """Song-hotness regression on MSD song files; `explain` only reports what would re-run."""
    params.check_inputs()  # missing or mislaid data fails here, before a cluster starts
    ctx = start_run("msd_hotness", params, explain)
    try:
        data_dir, songs = discover_msd_songs(ctx)
        shards = plan_input_shards(ctx, songs, ("extract", "clean"))
        raw = collect_shards(ctx, run_shard_tasks(ctx, extract_song_shard, [(data_dir, s) for s in shards]), len(songs))
        clean = collect_clean_songs(ctx, run_shard_tasks(ctx, clean_song_shard, [(ref, i) for i, ref in enumerate(raw.shards)]))
        split = split_rows(ctx, clean, stratify=False)
        building = {variant: build_design.submit(ctx, clean, split, variant) for variant in params.variants}
        designs = {variant: future.result() for variant, future in building.items()}
        for design in designs.values():
            audit_leakage(ctx, design, split)
        grid = model_grid(params.variants, params.models, params.alphas, params.feature_sets)
        fitting = [fit_regressor.submit(ctx, designs[spec.variant], spec) for spec in grid]
        evaluation = evaluate_regressors(ctx, designs, [(spec, f.result()) for spec, f in zip(grid, fitting)])
        folds = []  # --folds K: every model again on K rounds, each scored on the training fold it left out
        for k in range(params.folds or 0):
            fold = fold_split(ctx, split, k)
            fold_designs = {v: build_design.submit(ctx, clean, fold, v, k) for v in params.variants}
            fold_designs = {v: future.result() for v, future in fold_designs.items()}
            for design in fold_designs.values():
                audit_leakage(ctx, design, fold)
            fold_fits = [fit_regressor.submit(ctx, fold_designs[spec.variant], spec, k) for spec in grid]
            folds.append(evaluate_regressors(ctx, fold_designs, [(spec, f.result()) for spec, f in zip(grid, fold_fits)], k))
        outputs = collect_regression_outputs(ctx, evaluation, raw, clean, len(songs), folds)
        return finish_run(ctx, outputs, Selection(split="validation", metric="rmse", higher_is_better=False))
    finally:
        ctx.close()
