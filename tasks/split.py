"""Split rows into train/validation/test without letting a group straddle two splits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mirflow.core.fingerprint import file_fingerprint, stable_hash
from mirflow.core.params import SplitParams, subset
from mirflow.core.store import ArtifactRef
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.splits import write_fold_split, write_split
from tasks.common import STAGE_DEFAULTS, task
from tasks.runtime import RunContext, run_stage


@task(**STAGE_DEFAULTS)
def split_rows(
    ctx: RunContext, features: FeatureSet, stratify: bool = True, name: str | None = None, listed: Mapping[str, str] | None = None
) -> ArtifactRef:
    """Every pipeline's group-exclusive split; ``stratify=False`` for a continuous target.
    ``name`` and ``listed`` (id -> split name) give a pipeline's own predefined split."""
    params = {**subset(ctx.params, SplitParams), "seed": ctx.params.seed, "stratify": stratify}
    params["split"] = name or params["split"]
    split_file = params["split_file"]
    inputs = {"shards": [r.key for r in features.shards], "split_file": split_file and split_file_digest(split_file),
              "listed": listed and stable_hash(dict(listed))}
    args = (features, params["fractions"], params["seed"], split_file, params["folds"], stratify, listed)
    return run_stage(ctx, "split", write_split, params, inputs, args)


def split_file_digest(path: str) -> str:
    """A predefined split's content, so editing the split file re-runs the split."""
    target = Path(path)
    files = sorted(target.rglob("*")) if target.is_dir() else [target]
    return str([file_fingerprint(f, target.parent, "content") for f in files if f.is_file()])


@task(**STAGE_DEFAULTS, task_run_name="split-fold-{fold}")
def fold_split(ctx: RunContext, split: ArtifactRef, fold: int) -> ArtifactRef:
    """Round ``fold`` of cross-validation (``--folds``): that fold of the training rows is its test set."""
    return run_stage(ctx, "split", write_fold_split, {"fold": fold}, {"split": split.key}, (ctx.store, split, fold),
                     label=fold_label("split", fold))


def fold_label(stage: str, fold: int | None, *names: str) -> str:
    """A stage's label in the run record: ``train[mlp]``, or ``train[mlp, fold 2]`` in cross-validation."""
    parts = [*names, *([f"fold {fold}"] if fold is not None else [])]
    return f"{stage}[{', '.join(parts)}]" if parts else stage
