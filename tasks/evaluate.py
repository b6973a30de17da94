"""Evaluate a trained model on every split."""

from __future__ import annotations

from prefect import task

from mirflow import steps
from mirflow.featureset import FeatureSet
from mirflow.store import ArtifactRef
from tasks.common import STAGE_DEFAULTS
from tasks.runtime import RunContext, run_stage


@task(**STAGE_DEFAULTS, task_run_name="evaluate-{spec.model}")
def evaluate_model(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, model: ArtifactRef, spec: steps.InputSpec
) -> dict:
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "scaler": scaler.key, "model": model.key}
    args = (features, split, scaler, model, spec, 256)
    ref = run_stage(ctx, "evaluate", steps.write_evaluation, {"spec": spec}, inputs, args, label=f"evaluate[{spec.model}]")
    return {"model": spec.model, "evaluation": ref, "trained": model}
