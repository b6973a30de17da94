"""Tasks of the classification stages (``mirflow.stages.classification``): fit the
scaler on the training split only, audit the artifacts for leakage, train one model
per task on a Dask worker, evaluate it on every split and collect the run's outputs."""

from __future__ import annotations

import dataclasses

from mirflow import runs
from mirflow.core.params import TrainParams, subset
from mirflow.core.store import MODEL, ArtifactRef
from mirflow.stages import classification
from mirflow.stages.featuresets import FeatureSet
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, run_stage
from tasks.split import fold_label


@task(**STAGE_DEFAULTS)
def fit_scaler_on_train(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, spec: classification.InputSpec, fold: int | None = None
) -> ArtifactRef:
    params = {"kind": ctx.params.scaler, "columns": list(spec.feature_columns), "tensor": spec.tensor_column}
    inputs = {"shards": [r.key for r in features.shards], "split": split.key}
    args = (features, split, spec.feature_columns, ctx.params.scaler, spec.tensor_column, spec.n_mels)
    return run_stage(ctx, "scale", classification.write_scaler, params, inputs, args, label=fold_label("scale", fold))


@task(**UNCACHED)
def audit_leakage(ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, spec: classification.InputSpec) -> dict:
    """Never cached: the audit re-reads the saved artifacts on every run."""
    if ctx.explain:
        return {}
    return classification.audit_leakage(features, split, scaler, spec.feature_columns)


@task(**STAGE_DEFAULTS, task_run_name="train-{spec.model}")
def train_model(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, spec: classification.InputSpec,
    fold: int | None = None,
) -> ArtifactRef:
    config = {**subset(ctx.params, TrainParams), "seed": ctx.params.seed}
    config.pop("models")
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "scaler": scaler.key, "spec": spec}
    args = (features, split, scaler, spec, config["hidden"], config)
    return run_stage(ctx, "train", classification.write_trained_model, config, inputs, args, on_dask=True, label=fold_label("train", fold, spec.model))


@task(**STAGE_DEFAULTS, task_run_name="evaluate-{spec.model}")
def evaluate_model(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, model: ArtifactRef, spec: classification.InputSpec,
    fold: int | None = None,
) -> dict:
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "scaler": scaler.key, "model": model.key}
    args = (features, split, scaler, model, spec, 256)
    ref = run_stage(ctx, "evaluate", classification.write_evaluation, {"spec": spec}, inputs, args, label=fold_label("evaluate", fold, spec.model))
    return {"model": spec.model, "evaluation": ref, "trained": model, "fold": fold}


@task(**UNCACHED)
def collect_classification_outputs(
    ctx: RunContext,
    evaluations: list[dict],
    features: FeatureSet,
    scaler: ArtifactRef,
    specs: dict[str, classification.InputSpec],
    inputs: dict,
    notes: list[str] = (),
    fold_evaluations: list[dict] = (),
) -> runs.RunOutputs:
    """Metrics, models, predictions and figures of every evaluated model, plus what
    `mirflow predict` needs (preprocessing and input specs), for the run folder."""
    if ctx.explain:
        return runs.RunOutputs({})
    store = ctx.store
    outputs = runs.RunOutputs({}, failures=features.failures(), extra={"inputs": inputs}, notes=list(notes))
    for evaluation in evaluations:
        model, evaluated = evaluation["model"], evaluation["evaluation"]
        outputs.metrics_by_model[model] = scores = store.read_json(evaluated, "metrics.json")
        outputs.files[f"{model}_confusion.png"] = store.read_bytes(evaluated, "confusion.png")
        outputs.files[f"models/{model}.pt"] = store.read_bytes(evaluation["trained"], MODEL)
        outputs.files[f"predictions/{model}.parquet"] = store.read_bytes(evaluated, "predictions.parquet")
        if any("segment_n" in scores.get(split, {}) for split in ("train", "validation", "test")):
            segments = store.read_bytes(evaluated, classification.SEGMENT_PREDICTIONS)
            outputs.files[f"predictions/{model}_segments.parquet"] = segments
            outputs.notes = ["Metrics are per clip (the mean of its segments' probabilities); "
                             "segment_* score each segment alone."]
        outputs.figures[f"Confusion matrix ({model})"] = f"{model}_confusion.png"
    if fold_evaluations:
        by_fold: dict[int, dict] = {}
        for evaluation in fold_evaluations:
            by_fold.setdefault(evaluation["fold"], {})[evaluation["model"]] = store.read_json(evaluation["evaluation"], "metrics.json")
        outputs.add_cross_validation(list(by_fold.values()), ("accuracy", "macro_f1"))
    outputs.files["preprocessing.json"] = store.read_bytes(scaler, classification.SCALER)
    outputs.files["inputs.json"] = {"specs": {m: dataclasses.asdict(s) for m, s in specs.items()}, **inputs}
    return outputs

