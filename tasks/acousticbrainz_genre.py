"""Tasks of the AcousticBrainz genre flow (report 003): data, ETL, targets, split, scale,
subtask-1 networks, stacking, evaluation and the run folder's contents."""

from __future__ import annotations

import pandas as pd

from mirflow import runs
from mirflow.core.fingerprint import stable_hash
from mirflow.core.store import ArtifactRef
from mirflow.datasets import acousticbrainz as ab
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.pipelines.acousticbrainz_genre import preprocessing, stacking
from mirflow.pipelines.acousticbrainz_genre.evaluate import METRICS, run_metrics, write_source_evaluation
from mirflow.pipelines.acousticbrainz_genre.networks import FULL, MODEL
from mirflow.pipelines.acousticbrainz_genre.report import report_tables
from mirflow.pipelines.acousticbrainz_genre.split import write_recording_split
from mirflow.pipelines.acousticbrainz_genre.subtask1 import write_subtask1_model
from mirflow.pipelines.acousticbrainz_genre.targets import write_targets
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.shards import Shard
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, data_dir_or_demo, run_logger, run_stage


def _training_config(ctx: RunContext) -> dict:
    names = ("hidden", "dropout", "lr", "weight_decay", "batch_size", "max_epochs", "patience", "seed")
    return {name: getattr(ctx.params, name) for name in names}


@task(**STAGE_DEFAULTS)
def locate_data(ctx: RunContext) -> str:
    """The data folder, or the generated demo set when none is given."""
    params = ctx.params
    return data_dir_or_demo(ctx, "acousticbrainz", params.demo_recordings,
                            lambda folder: ab.synthesize(folder, params.demo_recordings, seed=params.seed))


@task(**STAGE_DEFAULTS)
def discover_feature_files(ctx: RunContext, data_dir: str) -> pd.DataFrame:
    files = ab_etl.feature_files(data_dir, ctx.params.fingerprint)
    counts = files["official_split"].value_counts().to_dict()
    run_logger().info("found %d low-level JSON files (%s)", len(files), counts)
    return files


@task(**STAGE_DEFAULTS)
def discover_groundtruth(ctx: RunContext, data_dir: str) -> dict[str, dict[str, dict]]:
    found = ab_etl.groundtruth_inputs(data_dir, ctx.params.fingerprint)
    run_logger().info("ground truth for %s", ", ".join(f"{s} ({'/'.join(v)})" for s, v in found.items()))
    return found


@task(**STAGE_DEFAULTS, task_run_name="extract-shard-{shard.index}")
def extract_feature_shard(ctx: RunContext, shard: Shard) -> ArtifactRef:
    # Keyed by the members' names and fingerprints, and by the layout (a constant, not code).
    inputs = sorted((f["rel_path"], f["fingerprint"], f["official_split"]) for f in shard.files)
    params = {"layout_sha256": stable_hash(ab.LAYOUT), "read_batch": ab_etl.READ_BATCH}
    return run_stage(ctx, "extract", ab_etl.write_ab_shard, params, inputs, (list(shard.files),),
                     on_dask=True, label=f"extract[{shard.index}]", size=len(shard.files))


@task(**STAGE_DEFAULTS)
def build_targets(ctx: RunContext, groundtruth: dict[str, dict[str, dict]]) -> ArtifactRef:
    inputs = {s: {split: [f["rel_path"], f["fingerprint"]] for split, f in v.items()} for s, v in groundtruth.items()}
    paths = {s: {split: f["path"] for split, f in v.items()} for s, v in groundtruth.items()}
    return run_stage(ctx, "targets", write_targets, {}, inputs, (paths,))


@task(**STAGE_DEFAULTS)
def split_recordings(ctx: RunContext, features: FeatureSet, targets: ArtifactRef) -> ArtifactRef:
    p = ctx.params
    params = {"validation_fraction": p.validation_fraction, "test_fraction": p.test_fraction, "folds": p.folds, "seed": p.seed}
    inputs = {"shards": [r.key for r in features.shards], "targets": targets.key}
    args = (features, targets, p.validation_fraction, p.test_fraction, p.folds, p.seed)
    return run_stage(ctx, "split", write_recording_split, params, inputs, args)


@task(**STAGE_DEFAULTS)
def fit_preprocessing(ctx: RunContext, features: FeatureSet, split: ArtifactRef) -> ArtifactRef:
    params = {"fill": "training mean", "scaler": "standard", "layout_sha256": stable_hash(ab.LAYOUT)}
    inputs = {"shards": [r.key for r in features.shards], "split": split.key}
    return run_stage(ctx, "scale", preprocessing.write_preprocessing, params, inputs, (features, split))


@task(**UNCACHED)
def audit_leakage(ctx: RunContext, features: FeatureSet, split: ArtifactRef, prep: ArtifactRef) -> dict:
    """Never cached: re-reads the saved split, fill values and scaler on every run."""
    if ctx.explain:
        return {}
    return preprocessing.audit_leakage(features, split, prep)


@task(**STAGE_DEFAULTS, task_run_name="train-{source}-{fold}")
def train_subtask1(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, targets: ArtifactRef, prep: ArtifactRef, source: str, fold: str
) -> ArtifactRef:
    config = _training_config(ctx)
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "targets": targets.key, "scale": prep.key}
    args = (features, split, targets, prep, source, fold, config)
    return run_stage(ctx, "train", write_subtask1_model, {**config, "source": source, "fold": fold}, inputs, args,
                     on_dask=True, label=f"train[{source}/{fold}]")


@task(**STAGE_DEFAULTS, task_run_name="stack-{source}-{mode}")
def train_stacker(
    ctx: RunContext, split: ArtifactRef, targets: ArtifactRef, members: dict[str, dict[str, ArtifactRef]], source: str, mode: str
) -> ArtifactRef:
    config = _training_config(ctx)
    keys = {s: {f: ref.key for f, ref in by_fold.items()} for s, by_fold in members.items()}
    inputs = {"split": split.key, "targets": targets.key, "members": keys}
    args = (ctx.store, split, targets, source, members, mode, config)
    return run_stage(ctx, "stack", stacking.write_stacked_model, {**config, "source": source, "mode": mode}, inputs, args,
                     on_dask=True, label=f"stack[{source}/{mode}]")


@task(**STAGE_DEFAULTS, task_run_name="evaluate-{source}")
def evaluate_source(
    ctx: RunContext, split: ArtifactRef, targets: ArtifactRef, subtask1: dict[str, ArtifactRef], stacked: dict[str, ArtifactRef],
    source: str,
) -> ArtifactRef:
    keys = {f: ref.key for f, ref in subtask1.items()}
    inputs = {"split": split.key, "targets": targets.key, "subtask1": keys, "stack": {m: ref.key for m, ref in stacked.items()}}
    args = (ctx.store, split, targets, source, subtask1, stacked, ctx.params.seed)
    return run_stage(ctx, "evaluate", write_source_evaluation, {"source": source, "seed": ctx.params.seed}, inputs, args,
                     label=f"evaluate[{source}]")


@task(**UNCACHED)
def collect_genre_outputs(
    ctx: RunContext,
    features: FeatureSet,
    evaluations: dict[str, ArtifactRef],
    members: dict[str, dict[str, ArtifactRef]],
    stacked: dict[str, dict[str, ArtifactRef]],
) -> runs.RunOutputs:
    """Metrics of every system and source, the report's tables, the feature layout (with
    constant and missing columns) and the full subtask-1 and stacked networks."""
    if ctx.explain:
        return runs.RunOutputs({})
    store = ctx.store
    evaluated = {source: store.read_json(ref, METRICS) for source, ref in evaluations.items()}
    layout = ab_etl.layout_report(features)
    outputs = runs.RunOutputs({}, failures=features.failures())
    for source, evaluation in evaluated.items():
        outputs.metrics_by_model.update(run_metrics(evaluation))
        outputs.files[f"models/subtask1-{source}.pt"] = store.read_bytes(members[source][FULL], MODEL)
        for mode, ref in stacked[source].items():
            outputs.files[f"models/subtask2-{mode}-{source}.pt"] = store.read_bytes(ref, MODEL)
    outputs.files["layout.json"] = layout
    outputs.notes = [ab_etl.layout_note(layout, "layout.json"), *report_tables(evaluated)]
    outputs.extra = {"layout": {k: layout[k] for k in ("rows", "width", "constant_columns", "columns_with_missing")},
                     "stacking": ctx.params.stacking}
    return outputs
