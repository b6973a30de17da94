"""Evaluate a trained model on every split."""

from __future__ import annotations

import dataclasses


from mirflow import runs


from mirflow.stages import classification as steps
from mirflow.stages.featuresets import FeatureSet
from mirflow.core.store import ArtifactRef
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, run_stage


@task(**STAGE_DEFAULTS, task_run_name="evaluate-{spec.model}")
def evaluate_model(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, model: ArtifactRef, spec: steps.InputSpec
) -> dict:
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "scaler": scaler.key, "model": model.key}
    args = (features, split, scaler, model, spec, 256)
    ref = run_stage(ctx, "evaluate", steps.write_evaluation, {"spec": spec}, inputs, args, label=f"evaluate[{spec.model}]")
    return {"model": spec.model, "evaluation": ref, "trained": model}


@task(**UNCACHED)
def collect_classification_outputs(
    ctx: RunContext,
    evaluations: list[dict],
    features: FeatureSet,
    scaler: ArtifactRef,
    specs: dict[str, steps.InputSpec],
    inputs: dict,
) -> runs.RunOutputs:
    """Metrics, models, predictions and figures of every evaluated model, plus what
    `mirflow predict` needs (preprocessing and input specs), for the run folder."""
    if ctx.explain:
        return runs.RunOutputs({})
    store = ctx.store
    outputs = runs.RunOutputs({}, failures=features.failures(), extra={"inputs": inputs})
    for evaluation in evaluations:
        model, evaluated = evaluation["model"], evaluation["evaluation"]
        outputs.metrics_by_model[model] = store.read_json(evaluated, "metrics.json")
        outputs.files[f"{model}_confusion.png"] = store.read_bytes(evaluated, "confusion.png")
        outputs.files[f"models/{model}.pt"] = store.read_bytes(evaluation["trained"], steps.MODEL)
        outputs.files[f"predictions/{model}.parquet"] = store.read_bytes(evaluated, "predictions.parquet")
        outputs.figures[f"Confusion matrix ({model})"] = f"{model}_confusion.png"
    outputs.files["preprocessing.json"] = store.read_bytes(scaler, steps.SCALER)
    outputs.files["inputs.json"] = {"specs": {m: dataclasses.asdict(s) for m, s in specs.items()}, **inputs}
    return outputs
