"""MSD song-hotness tasks: list song files, extract and clean one shard per task on Dask,
split by artist, build the design matrices, audit them, fit each model on Dask, evaluate."""

from __future__ import annotations

import pandas as pd

from mirflow import runs
from mirflow.core.errors import DataError
from mirflow.core.fingerprint import file_fingerprint
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import msd
from mirflow.pipelines.msd_hotness import extract as msd_extract
from mirflow.pipelines.msd_hotness import design as msd_design
from mirflow.pipelines.msd_hotness.evaluate import feature_set_table, write_evaluation
from mirflow.pipelines.msd_hotness.linear import FitSpec, write_fit
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.shards import Shard
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, data_dir_or_demo, run_logger, run_stage
from tasks.split import fold_label


@task(**STAGE_DEFAULTS)
def discover_msd_songs(ctx: RunContext) -> tuple[str, pd.DataFrame]:
    """The data folder and its song files (rel_path, fingerprint); generates the demo set
    when no data folder is given."""
    params = ctx.params
    data_dir = data_dir_or_demo(ctx, "msd", params.demo_songs, lambda folder: msd.synthesize(folder, params.demo_songs, seed=params.seed))
    paths = msd.require_files(data_dir)
    songs = pd.DataFrame([file_fingerprint(p, data_dir, params.fingerprint) for p in paths], columns=["rel_path", "fingerprint"])
    run_logger().info("found %d song files in %s", len(songs), data_dir)
    return data_dir, songs


@task(**STAGE_DEFAULTS, task_run_name="extract-shard-{shard.index}")
def extract_song_shard(ctx: RunContext, data_dir: str, shard: Shard) -> ArtifactRef:
    # Keyed by the members' paths and fingerprints, not by the shard's position or data_dir.
    inputs = sorted((song["rel_path"], song["fingerprint"]) for song in shard.files)
    timbre = ctx.params.timbre
    args = (data_dir, [rel for rel, _ in inputs], timbre)
    return run_stage(ctx, "extract", msd_extract.write_song_shard, {"timbre": timbre}, inputs, args, on_dask=True,
                     label=f"extract[{shard.index}]", size=len(shard.files))


@task(**STAGE_DEFAULTS, task_run_name="clean-shard-{index}")
def clean_song_shard(ctx: RunContext, extracted: ArtifactRef, index: int) -> ArtifactRef:
    args = (ctx.store, extracted)
    return run_stage(ctx, "clean", msd_extract.write_clean_shard, {}, {"extract": extracted.key}, args, on_dask=True,
                     label=f"clean[{index}]")


def clean_counts(store: ArtifactStore, shards: list[ArtifactRef]) -> dict[str, int]:
    """Songs read, kept, and dropped for missing or zero hotness, over all clean shards."""
    summaries = [store.read_json(ref, "summary.json") for ref in shards]
    return {key: sum(s[key] for s in summaries) for key in ("rows_in", "rows", "no_hotness", "zero_hotness")}


@task(**UNCACHED)
def collect_clean_songs(ctx: RunContext, shards: list[ArtifactRef]) -> FeatureSet:
    songs = FeatureSet(ctx.store, tuple(shards))
    if ctx.explain:
        return songs
    counts = clean_counts(ctx.store, shards)
    run_logger().info(
        "clean: kept %d of %d songs (%d without hotness, %d with hotness 0)",
        counts["rows"], counts["rows_in"], counts["no_hotness"], counts["zero_hotness"],
    )
    if counts["rows"] == 0:
        raise DataError(ctx.params.data_dir or "demo data", "no song has a song_hotttnesss value: nothing to learn")
    return songs


@task(**STAGE_DEFAULTS, task_run_name="design-{variant}")
def build_design(ctx: RunContext, songs: FeatureSet, split: ArtifactRef, variant: str, fold: int | None = None) -> ArtifactRef:
    p = ctx.params
    # Only what shapes this variant is in its key: min_df the bags, hash_buckets the hashing.
    params = {"variant": variant, **({"hash_buckets": p.hash_buckets} if variant == "hashed" else {"min_df": p.min_df})}
    inputs = {"shards": [r.key for r in songs.shards], "split": split.key}
    args = (songs, split, variant, p.hash_buckets, p.min_df)
    return run_stage(ctx, "design", msd_design.write_design, params, inputs, args, on_dask=True, label=fold_label("design", fold, variant))


@task(**UNCACHED)
def audit_leakage(ctx: RunContext, design: ArtifactRef, split: ArtifactRef) -> dict:
    """Never cached: re-reads the saved artifacts on every run and fails the flow on a leak."""
    if ctx.explain:
        return {}
    return msd_design.audit_leakage(ctx.store, design, split)


@task(**STAGE_DEFAULTS, task_run_name="train-{spec.name}")
def fit_regressor(ctx: RunContext, design: ArtifactRef, spec: FitSpec, fold: int | None = None) -> ArtifactRef:
    p = ctx.params
    params = {"spec": spec}
    if spec.model != "constant":
        params.update(max_iter=p.max_iter, tol=p.tol, **({"l1_ratio": p.l1_ratio} if spec.model == "elasticnet" else {}))
    args = (ctx.store, design, spec, p.l1_ratio, p.max_iter, p.tol)
    return run_stage(ctx, "train", write_fit, params, {"design": design.key}, args, on_dask=True, label=fold_label("train", fold, spec.name))


@task(**STAGE_DEFAULTS)
def evaluate_regressors(
    ctx: RunContext, designs: dict[str, ArtifactRef], fits: list[tuple[FitSpec, ArtifactRef]], fold: int | None = None
) -> ArtifactRef:
    inputs = {"designs": {v: ref.key for v, ref in designs.items()}, "fits": [(spec.name, ref.key) for spec, ref in fits]}
    return run_stage(ctx, "evaluate", write_evaluation, {}, inputs, (ctx.store, designs, fits), label=fold_label("evaluate", fold))


@task(**UNCACHED)
def collect_regression_outputs(
    ctx: RunContext, evaluation: ArtifactRef, raw: FeatureSet, songs: FeatureSet, n_files: int, folds: list[ArtifactRef] = ()
) -> runs.RunOutputs:
    """Metrics, the results table, the two figures and the memory table for the run folder."""
    if ctx.explain:
        return runs.RunOutputs({})
    store = ctx.store
    summary = store.read_json(evaluation, "summary.json")
    counts = clean_counts(store, list(songs.shards))
    outputs = runs.RunOutputs(store.read_json(evaluation, "metrics.json"), failures=raw.failures())
    for name in ("results.csv", "top_features.json", "top_features.png", "rmse_vs_time.png"):
        outputs.files[name] = store.read_bytes(evaluation, name)
    outputs.figures = {
        f"Top-10 features by |weight| (best model per variant by {summary['selected_on']} RMSE)": "top_features.png",
        "RMSE against training time": "rmse_vs_time.png",
    }
    memory = summary["feature_memory"]
    comparison = feature_set_table(outputs.metrics_by_model)
    outputs.notes = [
        f"Songs: {n_files} files, {counts['rows_in']} read, {counts['rows']} kept after cleaning "
        f"({counts['no_hotness']} without hotness, {counts['zero_hotness']} with hotness 0).",
        "Feature-matrix memory (scaled CSR, float32): " + "; ".join(
            f"{variant} {m['matrix_bytes'] / 2**20:.2f} MiB ({m['columns']} columns, {m['nnz']} non-zeros)" for variant, m in memory.items()
        ) + ".",
        *([f"### RMSE with and without the artist's popularity (artist_hotttnesss, artist_familiarity: the target's "
           f"snapshot)\n\n{comparison}"] if comparison else []),
    ]
    outputs.extra = {"inputs": {"song_files": n_files, **counts}, "feature_memory": memory}
    if folds:
        outputs.add_cross_validation([store.read_json(ref, "metrics.json") for ref in folds], ("rmse",))
    return outputs
