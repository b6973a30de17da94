"""Flow parameters: one pydantic model per pipeline, its fields mapped one-to-one to
CLI options (``--shard-size`` is ``shard_size``), so the Prefect UI shows the same
fields as a validated form."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stage = Literal["extract", "split", "scale", "train", "evaluate"]


class RunParams(BaseModel):
    """What every pipeline shares: where data and artifacts live, how to compute."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(
        None, description="Folder with the data set in its original layout. Empty: generate a small demo data set."
    )
    store: str = Field("./mirflow_store", description="Artifact store: a local folder or any fsspec URL (s3://…).")
    dask_address: str | None = Field(
        None, description="Address of an existing Dask scheduler (tcp://host:8786). Empty: start a local cluster."
    )
    n_workers: int = Field(2, ge=1, le=512, description="Worker processes of the local Dask cluster.")
    seed: int = Field(0, ge=0, description="Seed for data generation, splits and training.")
    fingerprint: Literal["stat", "content"] = Field(
        "stat", description="How input files are fingerprinted for caching: size+mtime (fast) or a hash of their bytes."
    )
    force: list[Stage] = Field(
        default_factory=list, description="Stages to re-run even when their artifacts are cached."
    )
    max_failure_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="The run fails when more than this fraction of input files is unreadable."
    )
    tag: str | None = Field(None, description="A label for this run, shown in `mirflow runs list`.")


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="Train/validation/test fractions of rows (groups kept whole); they must sum to 1."
    )
    split_file: str | None = Field(
        None, description="A predefined split (CSV id,split or a folder with train/valid/test lists) instead of a random one."
    )
    k_folds: int | None = Field(None, ge=2, le=20, description="Also record stratified group k-fold assignments.")

    @field_validator("fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or value[0] <= 0 or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"split fractions {value} must be non-negative, train > 0, and sum to 1")
        return value


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[Literal["mlp", "cnn"]] = Field(["mlp", "cnn"], description="Models to train.")
    hidden: list[int] = Field([90, 70, 50], description="MLP hidden layer sizes (report 001: 90/70/50).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay.")
    batch_size: int = Field(32, ge=1, le=4096)
    max_epochs: int = Field(30, ge=1, le=10_000)
    patience: int = Field(6, ge=1, description="Early stopping: epochs without validation-loss improvement.")
    scaler: Literal["standard", "minmax"] = Field("standard", description="Feature scaling, fitted on train only.")
    cnn_frames: int = Field(128, ge=16, description="Log-mel frames (~3 s) the CNN sees per example (centre crop/pad).")


class GtzanParams(RunParams, SplitParams, TrainParams):
    """Genre classification on GTZAN-layout audio (report 001)."""

    segment: str | None = Field(
        None, description="Cut each clip into segments of this length (e.g. '3s'); segments keep their clip's group."
    )
    shard_size: int = Field(64, ge=1, le=100_000, description="Audio files per extraction shard (one Prefect task each).")
    sample_rate: int = Field(22050, ge=8000, le=96000)
    demo_clips_per_genre: int = Field(12, ge=3, le=1000, description="Clips per genre in the generated demo data set.")

    @field_validator("segment")
    @classmethod
    def _segment_is_duration(cls, value: str | None) -> str | None:
        if value is not None and segment_seconds(value) is None:
            raise ValueError(f"segment {value!r} must be a duration such as '3s' or '2.5s'")
        return value


def subset(params: BaseModel, group: type[BaseModel]) -> dict:
    """The fields of one parameter group (e.g. ``TrainParams``): what a stage's key covers."""
    return params.model_dump(mode="json", include=set(group.model_fields))


def segment_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", value)
    if not match or float(match.group(1)) <= 0:
        return None
    return float(match.group(1))
