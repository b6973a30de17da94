"""Train one model per task, on a Dask worker, reading batches from the store."""

from __future__ import annotations


from mirflow.stages import classification as steps
from mirflow.stages.featuresets import FeatureSet
from mirflow.core.params import TrainParams, subset
from mirflow.core.store import ArtifactRef
from tasks.common import STAGE_DEFAULTS, task
from tasks.runtime import RunContext, run_stage


@task(**STAGE_DEFAULTS, task_run_name="train-{spec.model}")
def train_model(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, spec: steps.InputSpec
) -> ArtifactRef:
    config = {**subset(ctx.params, TrainParams), "seed": ctx.params.seed}
    config.pop("models")
    inputs = {"shards": [r.key for r in features.shards], "split": split.key, "scaler": scaler.key, "spec": spec}
    args = (features, split, scaler, spec, config["hidden"], config)
    return run_stage(ctx, "train", steps.write_trained_model, config, inputs, args, on_dask=True, label=f"train[{spec.model}]")
