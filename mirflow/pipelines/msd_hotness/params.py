"""MSD song hotness's flow parameters (report 000, project A)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from mirflow.core.params import RunParams, SplitParams, renamed_stages

Stage = Literal["extract", "clean", "split", "design", "train", "evaluate"]


class MsdHotnessParams(RunParams, SplitParams):
    """Song-hotness regression on Million Song Dataset files: Lasso/ElasticNet on one-hot or hashed features (report 000)."""

    # The stages' old names, accepted for one release with a deprecation message.
    RENAMED_STAGES: ClassVar[dict[str, str]] = {"etl": "extract", "features": "design"}

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    shard_size: int = Field(1000, ge=1, le=1_000_000, description="Song files per ETL shard (one Dask task and one Parquet file each).")
    timbre: bool = Field(False, description="Also extract each song's timbre mean/variance (24 columns) and use them as numeric features.")
    demo_songs: int = Field(600, ge=30, le=1_000_000, description="Songs in the generated demo data set.")
    variants: list[Literal["onehot", "hashed"]] = Field(
        ["onehot", "hashed"], min_length=1, description="Feature variants: one-hot + bag-of-words, and/or (artist, title, terms) hashed into buckets."
    )
    feature_sets: list[Literal["report", "no_artist_popularity"]] = Field(
        ["report", "no_artist_popularity"], min_length=1,
        description="Feature sets fitted side by side: the report's, and one without artist_hotttnesss and "
        "artist_familiarity (taken from the same snapshot as the target).",
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

    @field_validator("force", mode="before")
    @classmethod
    def _renamed_stages(cls, value):
        return renamed_stages(value, cls.RENAMED_STAGES)

    def check_inputs(self) -> None:
        super().check_inputs()
        self.check_split_file()
        if self.data_dir is not None:
            from mirflow.datasets import msd

            msd.require_files(self.data_dir)
