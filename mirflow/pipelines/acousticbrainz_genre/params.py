"""AcousticBrainz genre's flow parameters (report 003)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mirflow.core.params import RunParams

Stage = Literal["extract", "targets", "split", "scale", "train", "stack", "evaluate"]


class AcousticBrainzParams(RunParams):
    """AcousticBrainz genre across four taxonomies: subtask-1 networks and leakage-free stacking (report 003)."""

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    shard_size: int = Field(2000, ge=1, le=1_000_000, description="Low-level JSON files per ETL shard (one Dask task each).")
    demo_recordings: int = Field(1200, ge=20, le=1_000_000, description="Recordings in the generated demo data set.")
    validation_fraction: float = Field(
        0.2, gt=0.0, lt=0.5, description="Share of the official training recordings held out for validation (whole release groups)."
    )
    test_fraction: float = Field(
        0.2, ge=0.0, lt=0.5, description="Share held out as test, only when the data has no official validation set (else that set is the test split)."
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds: subtask-1 networks fitted without each fold give the stacking inputs.")
    stacking: list[Literal["crossfit", "crossfit_scores", "insample"]] = Field(
        ["crossfit", "crossfit_scores", "insample"], min_length=1,
        description="Subtask-2 stacking modes, reported side by side: out-of-fold activations (crossfit), out-of-fold "
        "per-source scores (crossfit_scores), the report's leaky in-sample activations (insample).",
    )
    hidden: int = Field(256, ge=1, le=8192, description="Hidden units of every network (report 003: 256).")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout after the hidden layer (report 003: 0.5).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Learning rate (Adam).")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay.")
    batch_size: int = Field(64, ge=1, le=65536, description="Training batch size.")
    max_epochs: int = Field(30, ge=1, le=10_000, description="Most epochs per network (early stopping on validation loss).")
    patience: int = Field(5, ge=1, description="Early stopping: epochs without validation-loss improvement.")

    @field_validator("stacking", mode="before")
    @classmethod
    def _one_mode_is_a_list(cls, value):
        return [value] if isinstance(value, str) else value  # `stacking="insample"`, as before the list

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
