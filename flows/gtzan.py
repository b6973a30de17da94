"""GTZAN genre classification (report 001): features + MLP, log-mel + CNN.

discover → plan shards → extract (per shard, Dask) → collect/quarantine → split →
fit scaler on train → leakage audit → train (per model, Dask) → evaluate → report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow.pipelines.gtzan.extract import audio_input_specs
from mirflow.pipelines.gtzan.params import GtzanParams, segment_seconds
from tasks.classify import audit_leakage, collect_classification_outputs, evaluate_model, fit_scaler_on_train, train_model
from tasks.gtzan import choose_gtzan_split, describe_split, discover_gtzan_clips, extract_audio_shard
from tasks.run import finish_run, start_run
from tasks.shards import collect_shards, plan_input_shards, run_shard_tasks
from tasks.split import fold_split, split_rows


@pipeline_flow("gtzan")
def gtzan(params: GtzanParams = GtzanParams(), explain: bool = False) -> dict:
    """Genre classification on GTZAN-layout audio; `explain` only reports what would re-run."""
    params.check_inputs()  # missing or mislaid data fails here, before a cluster starts
    ctx = start_run("gtzan", params, explain)
    try:
        clips = discover_gtzan_clips(ctx)
        settings, specs = audio_input_specs(params.sample_rate, params.cnn_frames, segment_seconds(params.segment))
        shards = plan_input_shards(ctx, clips)
        extract_calls = [(s, settings, segment_seconds(params.segment), params.min_duration) for s in shards]
        features = collect_shards(ctx, run_shard_tasks(ctx, extract_audio_shard, extract_calls), len(clips))
        choice = choose_gtzan_split(ctx, clips)
        split = split_rows(ctx, features, name=choice.name, listed=choice.listed)
        scaler = fit_scaler_on_train(ctx, features, split, specs["mlp"])
        audit_leakage(ctx, features, split, scaler, specs["mlp"])
        models = {m: train_model.submit(ctx, features, split, scaler, specs[m]) for m in params.models}
        evaluations = [evaluate_model.submit(ctx, features, split, scaler, models[m].result(), specs[m]) for m in params.models]
        inputs = {
            "features": settings, "segment_seconds": segment_seconds(params.segment), "min_duration": params.min_duration,
            "clips": len(clips),
        }
        trained = []  # --folds K: per model kind K more models, each scored on the training fold it left out
        for k in range(params.folds or 0):
            fold = fold_split(ctx, split, k)
            fold_scaler = fit_scaler_on_train(ctx, features, fold, specs["mlp"], k)
            audit_leakage(ctx, features, fold, fold_scaler, specs["mlp"])
            trained += [(fold, fold_scaler, m, k, train_model.submit(ctx, features, fold, fold_scaler, specs[m], k)) for m in params.models]
        folds = [evaluate_model.submit(ctx, features, f, sc, t.result(), specs[m], k) for f, sc, m, k, t in trained]
        inputs["split"] = choice.name
        notes = describe_split(ctx, split, choice)
        outputs = collect_classification_outputs(ctx, [e.result() for e in evaluations], features, scaler, specs, inputs, notes, [f.result() for f in folds])
        return finish_run(ctx, outputs)
    finally:
        ctx.close()
