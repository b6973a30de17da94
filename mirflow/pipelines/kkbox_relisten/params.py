"""KKBOX re-listen flows' parameters (report 002): training, and batch scoring with a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mirflow.core.errors import ConfigError
from mirflow.core.params import RunParams, SplitParams

Stage = Literal["consolidate", "split", "transform", "train", "evaluate"]
TABLES = ("train", "songs", "song_extra_info", "members")  # what training reads (test.csv has no target)


class KkboxRelistenParams(RunParams, SplitParams):
    """KKBOX re-listen prediction (report 002): embedding network and a LightGBM baseline."""

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    demo_rows: int = Field(20_000, ge=200, le=10_000_000, description="Train rows of the generated demo data set.")
    min_join_coverage: float = Field(
        0.05, ge=0.0, le=1.0, description="Fail when fewer than this share of train rows find their row in songs, song_extra_info or members."
    )
    split: Literal["chronological", "random"] = Field(
        "chronological", description="chronological: validation and test are the latest rows of train.csv; random: seeded (the report's)."
    )
    fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Train/validation/test fractions of rows (the report's 80/20, the 20 halved); they must sum to 1."
    )
    min_category_count: int = Field(
        2, ge=1, description="A category seen fewer times in training rows is encoded as 'unknown' (so that index is trained too)."
    )
    models: list[Literal["network", "lightgbm"]] = Field(["network", "lightgbm"], min_length=1, description="Models to train.")
    lrs: list[float] = Field([1e-1, 1e-2, 1e-3, 1e-4], min_length=1, description="Learning-rate grid of the network, one Dask task each (report 002).")
    embedding_dim: int = Field(16, ge=1, le=512, description="Size of each categorical field's embedding.")
    hidden: tuple[int, int] = Field((128, 64), description="Widths of the network's first two linear layers (the third outputs 1).")
    batch_size: int = Field(2048, ge=1, le=1_000_000, description="Network batch size (report: 800,000 on 7.4 M rows).")
    max_epochs: int = Field(100, ge=1, le=10_000)
    patience: int = Field(10, ge=1, description="Early stopping: epochs without a validation-loss improvement of at least min_delta.")
    min_delta: float = Field(0.01, ge=0.0, description="Smallest validation-loss decrease that counts as an improvement.")
    loss: Literal["sigmoid", "logits"] = Field(
        "sigmoid", description="sigmoid: the report's nn.Sigmoid + nn.BCELoss (saturates: why its lr 1e-1 gets stuck); "
        "logits: BCEWithLogitsLoss (numerically stable).")
    plateau_patience: int = Field(3, ge=0, description="ReduceLROnPlateau patience (epochs).")
    plateau_factor: float = Field(0.1, gt=0.0, lt=1.0, description="ReduceLROnPlateau factor.")
    lgbm_rounds: int = Field(300, ge=1, le=100_000, description="LightGBM boosting rounds (early stopping on validation after 20 without gain).")
    lgbm_leaves: int = Field(63, ge=2, le=131_072, description="LightGBM leaves per tree.")

    @field_validator("fractions")
    @classmethod
    def _every_fraction_positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        # Validation rows stop the training, test rows are what the report is about.
        if any(f <= 0 for f in value) or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"split fractions {value} must all be > 0 and sum to 1")
        return value

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, value: list[float]) -> list[float]:
        if any(not 0 < lr <= 10 for lr in value):
            raise ValueError(f"learning rates {value} must be in (0, 10]")
        return value

    def check_inputs(self) -> None:
        super().check_inputs()
        unsupported = [f"--{f.replace('_', '-')}" for f in ("split_file", "folds") if getattr(self, f) is not None]
        if unsupported:
            raise ConfigError(f"kkbox_relisten does not support {' and '.join(unsupported)} (use --split chronological or random)")
        if self.data_dir is not None:
            missing = [f"{t}.csv" for t in TABLES if not (Path(self.data_dir).expanduser() / f"{t}.csv").is_file()]
            if missing:
                raise ConfigError(f"data_dir {self.data_dir}: missing {missing} (the KKBOX layout: train.csv, songs.csv, song_extra_info.csv, members.csv)")


class KkboxScoreParams(BaseModel):
    """Score a KKBOX test.csv with a finished kkbox_relisten run: writes id,target."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(..., description="A run folder (…/runs/<run_id>) or a run id in --store.")
    input_csv: str = Field(..., description="Rows to score, KKBOX test.csv layout: id,msno,song_id,source_system_tab,source_screen_name,source_type.")
    out: str = Field("predictions.csv", description="CSV to write: id,target (the competition's submission format).")
    tables: str | None = Field(None, description="Folder with songs.csv, song_extra_info.csv, members.csv. Empty: the input's folder.")
    model: Literal["network", "lightgbm"] | None = Field(None, description="Model to score with. Empty: the run's best.")
    store: str = Field("./mirflow_store", description="Artifact store holding the run (when --run is a run id).")
    chunk_rows: int = Field(100_000, ge=1, le=10_000_000, description="Input rows read and scored at a time (memory stays flat).")

    def check_inputs(self) -> None:
        if not Path(self.input_csv).is_file():
            raise ConfigError(f"input_csv {self.input_csv}: no such file")
