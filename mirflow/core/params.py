"""Parameter groups every pipeline's model is built from, and the one vocabulary of
their names (``--split``, ``--split-file``, ``--folds``, ``--models``, ``--max-epochs``,
``--seed``, ``--force STAGE``). Each pipeline's own model lives in its package
(``mirflow/pipelines/<name>/params.py``); its fields map one-to-one to CLI options
(``--shard-size`` is ``shard_size``), so the Prefect UI shows the same fields as a
validated form."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mirflow.core.errors import ConfigError


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
    # Each pipeline narrows this to its own stage names.
    force: list[str] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
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
    """A group-exclusive train/validation/test split, shared by the pipelines that split
    their rows the same way."""

    model_config = ConfigDict(extra="forbid")
    # Old names, accepted for one release with a deprecation message.
    RENAMED_FIELDS: ClassVar[dict[str, str]] = {"k_folds": "folds"}

    # A pipeline with more strategies (e.g. GTZAN's artist-filtered one) widens the Literal.
    split: Literal["random"] = Field(
        "random", description="Split strategy: random = seeded, group-aware (and stratified where there are labels)."
    )
    fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="Train/validation/test fractions of rows (groups kept whole); they must sum to 1."
    )
    split_file: str | None = Field(
        None, description="A predefined split (CSV id,split or a folder with train/valid/test lists) instead of a random one."
    )
    folds: int | None = Field(
        None, ge=2, le=20,
        description="K-fold cross-validation on the training split, groups whole: K more models per kind, "
        "mean ± std per metric in the report.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data):
        return renamed(data, cls.RENAMED_FIELDS)

    @model_validator(mode="after")
    def _validation_has_rows(self):
        # Early stopping (GTZAN) and model selection (MSD) run on validation rows, never on training rows instead.
        if self.split_file is None and self.split in (None, "random") and self.fractions[1] == 0:
            raise ValueError(f"fractions {self.fractions} leave no validation rows, which early stopping and model "
                             "selection need; give validation a share (e.g. 0.7 0.15 0.15) or use split_file")
        return self

    def check_split_file(self) -> None:
        """A split file lists training and validation rows (read here, before any work starts)."""
        if self.split_file is not None:
            from mirflow.stages.splits import split_file_names, require_rows

            require_rows(split_file_names(self.split_file).value_counts().to_dict(), ("train", "validation"),
                         f"split_file {self.split_file}")

    @field_validator("fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or value[0] <= 0 or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"split fractions {value} must be non-negative, train > 0, and sum to 1")
        return value


class TrainParams(BaseModel):
    """Training of the classification stages (``mirflow.stages.classification``)."""

    model_config = ConfigDict(extra="forbid")

    models: list[Literal["mlp", "cnn"]] = Field(["mlp", "cnn"], description="Models to train.")
    hidden: list[int] = Field([90, 70, 50], description="MLP hidden layer sizes (report 001: 90/70/50).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay.")
    batch_size: int = Field(32, ge=1, le=4096)
    max_epochs: int = Field(30, ge=1, le=10_000)
    patience: int = Field(6, ge=1, description="Early stopping: epochs without validation-loss improvement.")
    scaler: Literal["standard", "minmax"] = Field("standard", description="Feature scaling, fitted on train only.")
    cnn_frames: int = Field(128, ge=16, description="Log-mel frames (~3 s) per CNN window: a random one per row in training, all of them averaged in evaluation and predict.")


def subset(params: BaseModel, group: type[BaseModel]) -> dict:
    """The fields of one parameter group (e.g. ``TrainParams``): what a stage's key covers."""
    return params.model_dump(mode="json", include=set(group.model_fields))


def deprecated(message: str) -> None:
    """One release of grace for an old parameter name."""
    warnings.warn(f"{message}; the old name will stop working in the next release", FutureWarning, stacklevel=2)


def renamed(data, fields: dict[str, str]):
    """Raw parameters with old field names replaced by their new ones (a deprecation message each)."""
    if not isinstance(data, dict) or not fields.keys() & data.keys():
        return data
    data = dict(data)
    for old, new in fields.items():
        if old in data:
            deprecated(f"`{old}` (--{old.replace('_', '-')}) is renamed `{new}` (--{new.replace('_', '-')})")
            data.setdefault(new, data.pop(old))
    return data


def renamed_stages(stages, names: dict[str, str]):
    """``force`` with old stage names replaced by their new ones (a deprecation message each)."""
    if not isinstance(stages, list):
        return stages
    for old in set(stages) & names.keys():
        deprecated(f"stage `{old}` is renamed `{names[old]}`")
    return [names.get(stage, stage) for stage in stages]
