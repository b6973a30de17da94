"""Fit scaling on the training split only, then audit the artifacts for leakage."""

from __future__ import annotations


from mirflow.stages import classification as steps
from mirflow.stages.featuresets import FeatureSet
from mirflow.core.store import ArtifactRef
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, run_stage


@task(**STAGE_DEFAULTS)
def fit_scaler_on_train(
    ctx: RunContext, features: FeatureSet, split: ArtifactRef, spec: steps.InputSpec
) -> ArtifactRef:
    params = {"kind": ctx.params.scaler, "columns": list(spec.feature_columns), "tensor": spec.tensor_column}
    inputs = {"shards": [r.key for r in features.shards], "split": split.key}
    args = (features, split, spec.feature_columns, ctx.params.scaler, spec.tensor_column, spec.n_mels)
    return run_stage(ctx, "scale", steps.write_scaler, params, inputs, args)


@task(**UNCACHED)
def audit_leakage(ctx: RunContext, features: FeatureSet, split: ArtifactRef, scaler: ArtifactRef, spec: steps.InputSpec) -> dict:
    """Never cached: the audit re-reads the saved artifacts on every run."""
    if ctx.explain:
        return {}
    return steps.audit_leakage(features, split, scaler, spec.feature_columns)
