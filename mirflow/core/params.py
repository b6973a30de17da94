"""Flow parameters: one pydantic model per pipeline, its fields mapped one-to-one to
CLI options (``--shard-size`` is ``shard_size``), so the Prefect UI shows the same
fields as a validated form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mirflow.core.errors import ConfigError

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

    def check_inputs(self) -> None:
        """What the form cannot check: that the data the parameters name is there and laid
        out as the pipeline expects. Cheap (a directory walk, no file read); the CLI calls
        it before starting Prefect or Dask, and every flow calls it first. Raises
        ``ConfigError`` naming the field."""
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError(f"data_dir {self.data_dir}: no such folder")


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
    min_duration: float = Field(
        1.0, ge=0.0, le=3600.0,
        description="Quarantine audio files shorter than this many seconds; longer ones below a segment are zero-padded.",
    )
    demo_clips_per_genre: int = Field(12, ge=3, le=1000, description="Clips per genre in the generated demo data set.")

    @field_validator("segment")
    @classmethod
    def _segment_is_duration(cls, value: str | None) -> str | None:
        if value is not None and segment_seconds(value) is None:
            raise ValueError(f"segment {value!r} must be a duration such as '3s' or '2.5s'")
        return value

    @model_validator(mode="after")
    def _evaluation_has_rows(self) -> GtzanParams:
        # Evaluation scores the test split, else the validation split: one must get rows.
        if self.split_file is None and self.fractions[1] == 0 and self.fractions[2] == 0:
            raise ValueError(f"fractions {self.fractions} leave no validation and no test rows to evaluate on; "
                             "give one of them a share (e.g. 0.8 0.1 0.1) or use split_file")
        return self

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.data_dir is not None:
            from mirflow.datasets import gtzan

            gtzan.discover(self.data_dir)


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


class AcousticBrainzParams(RunParams):
    """AcousticBrainz genre across four taxonomies: subtask-1 networks and leakage-free stacking (report 003)."""

    force: list[Literal["extract", "targets", "split", "scale", "train", "stack", "evaluate"]] = Field(
        default_factory=list, description="Stages to re-run even when their artifacts are cached."
    )
    shard_size: int = Field(2000, ge=1, le=1_000_000, description="Low-level JSON files per ETL shard (one Dask task each).")
    demo_recordings: int = Field(1200, ge=20, le=1_000_000, description="Recordings in the generated demo data set.")
    validation_fraction: float = Field(
        0.2, gt=0.0, lt=0.5, description="Share of the official training recordings held out for validation (whole release groups)."
    )
    test_fraction: float = Field(
        0.2, ge=0.0, lt=0.5, description="Share held out as test, only when the data has no official validation set (else that set is the test split)."
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds: subtask-1 networks fitted without each fold give the stacking inputs.")
    stacking: Literal["crossfit", "insample"] = Field(
        "crossfit", description="Stacking inputs: out-of-fold activations (crossfit) or the report's leaky in-sample activations (insample)."
    )
    hidden: int = Field(256, ge=1, le=8192, description="Hidden units of every network (report 003: 256).")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout after the hidden layer (report 003: 0.5).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Learning rate (Adam).")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay.")
    batch_size: int = Field(64, ge=1, le=65536, description="Training batch size.")
    max_epochs: int = Field(30, ge=1, le=10_000, description="Most epochs per network (early stopping on validation loss).")
    patience: int = Field(5, ge=1, description="Early stopping: epochs without validation-loss improvement.")

    @field_validator("test_fraction")
    @classmethod
    def _leaves_training_rows(cls, value: float, info) -> float:
        if value + info.data.get("validation_fraction", 0.0) >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave at least 10% for training")
        return value

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.data_dir is not None:
            from mirflow.datasets import acousticbrainz as ab

            ab.require_files(self.data_dir)
            ab.require_groundtruth(self.data_dir)


class MsdHotnessParams(RunParams, SplitParams):
    """Song-hotness regression on Million Song Dataset files: Lasso/ElasticNet on one-hot or hashed features (report 000)."""

    force: list[Literal["etl", "clean", "split", "features", "train", "evaluate"]] = Field(
        default_factory=list, description="Stages to re-run even when their artifacts are cached."
    )
    shard_size: int = Field(1000, ge=1, le=1_000_000, description="Song files per ETL shard (one Dask task and one Parquet file each).")
    timbre: bool = Field(False, description="Also extract each song's timbre mean/variance (24 columns) and use them as numeric features.")
    demo_songs: int = Field(600, ge=30, le=1_000_000, description="Songs in the generated demo data set.")
    variants: list[Literal["onehot", "hashed"]] = Field(
        ["onehot", "hashed"], min_length=1, description="Feature variants: one-hot + bag-of-words, and/or (artist, title, terms) hashed into buckets."
    )
    models: list[Literal["lasso", "elasticnet"]] = Field(
        ["lasso", "elasticnet"], min_length=1, description="Sparse linear models, each fitted for every alpha (plus a constant baseline)."
    )
    alphas: list[float] = Field(
        [1e-4, 1e-3, 1e-2], min_length=1, description="Regularisation strengths (sklearn alpha, the report's lambda); each > 0."
    )
    l1_ratio: float = Field(0.5, gt=0.0, le=1.0, description="ElasticNet's share of L1 in the penalty (report: 0.5).")
    hash_buckets: int = Field(100, ge=2, le=1 << 20, description="Buckets of the hashed variant (report: 100).")
    min_df: int = Field(2, ge=1, le=1_000_000, description="Title words and artist terms become columns when in at least this many training songs.")
    max_iter: int = Field(5000, ge=10, le=1_000_000, description="Most coordinate-descent passes per fit.")
    tol: float = Field(1e-4, gt=0.0, le=1.0, description="Coordinate-descent tolerance.")

    @field_validator("alphas")
    @classmethod
    def _alphas_positive(cls, value: list[float]) -> list[float]:
        if any(not a > 0 for a in value):
            raise ValueError(f"alphas {value} must all be > 0")
        return value

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.data_dir is not None:
            from mirflow.datasets import msd

            msd.require_files(self.data_dir)
