"""AcousticBrainz genre's scale stage and its leakage audit: missing descriptors filled
with the training mean, then z-scaled, both fitted on the training split only, column
block by column block (2,676 columns: all rows of every column at once may not fit)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.acousticbrainz_genre.extract import FEATURES
from mirflow.pipelines.acousticbrainz_genre.split import split_series
from mirflow.stages import leakage, scaling
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.splits import read_split

PREPROCESSING = "preprocessing.json"
# Fitting reads a block of columns for all rows at a time: as many columns as fit in
# SCALE_BUDGET bytes of float64 (every column at once for small data), at least 16.
SCALE_BUDGET = 512 * 2**20  # about 4x this at peak (copies while filling and fitting)


@dataclass(frozen=True)
class Preprocessing:
    """Missing descriptors -> the training mean (``fill``), then z-scaling (``scaler``),
    both fitted on the training split's rows only."""

    fill: np.ndarray
    scaler: scaling.FittedScaler

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Model input (float32) for a batch of feature-table rows."""
        values = frame[FEATURES].to_numpy(np.float64)
        values = np.where(np.isnan(values), self.fill, values)
        return scaling.apply_scaler(self.scaler, values)

    def to_dict(self) -> dict:
        return {"fill": [float(v) for v in self.fill], "scaler": self.scaler.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(np.asarray(data["fill"], dtype=np.float64), scaling.FittedScaler.from_dict(data["scaler"]))


def column_blocks(rows: int) -> Iterator[list[str]]:
    """The feature columns in blocks of ``SCALE_BUDGET`` bytes of float64 over ``rows`` rows."""
    width = max(16, SCALE_BUDGET // (8 * max(rows, 1)))
    for start in range(0, len(FEATURES), width):
        yield FEATURES[start : start + width]


def read_block(features: FeatureSet, row_ids: pd.Index, columns: list[str]) -> pd.DataFrame:
    """Some feature columns of the given rows, in ``row_ids`` order."""
    return features.read(["row_id", *columns]).set_index("row_id").reindex(row_ids)


def fit_block(block: pd.DataFrame, split: pd.Series) -> tuple[np.ndarray, scaling.FittedScaler]:
    """Training means for the fill, and the scaler fitted on the filled training rows."""
    filled, means = scaling.fill_missing_with_train_mean(block, split)
    return means, scaling.fit_scaler_on_train(filled, split, columns=list(block.columns))


def fit_preprocessing(features: FeatureSet, split: pd.Series) -> Preprocessing:
    """Fill values and z-scaler, fitted column block by column block on the rows whose
    ``split`` (row id -> split, every row to be used) is train."""
    fills, fitted = [], []
    for columns in column_blocks(len(split)):
        means, scaler = fit_block(read_block(features, split.index, columns), split)
        fills.append(means)
        fitted.append(scaler)
    scaler = scaling.FittedScaler(
        "standard", np.concatenate([s.center for s in fitted]), np.concatenate([s.scale for s in fitted]),
        tuple(FEATURES), fitted[0].n_rows, fitted[0].rows_sha256,
    )
    return Preprocessing(np.concatenate(fills), scaler)


def audit_preprocessing(features: FeatureSet, split: pd.Series, groups: pd.Series, prep: Preprocessing) -> list[str]:
    """Problems (empty = clean): a group in two splits, fill values or scaler statistics
    that are not those of the training rows (refitted here from the feature table)."""
    problems = leakage.group_problems(split, groups)
    start = 0
    for columns in column_blocks(len(split)):
        block = read_block(features, split.index, columns)
        stop = start + len(columns)
        filled, means = scaling.fill_missing_with_train_mean(block, split)
        wrong = [c for c, saved, actual in zip(columns, prep.fill[start:stop], means) if not np.isclose(saved, actual, rtol=1e-5)]
        if wrong:
            problems.append(f"fill values of {len(wrong)} columns (e.g. {wrong[0]}) are not the training rows' means")
        scaler = prep.scaler
        part = scaling.FittedScaler(scaler.kind, scaler.center[start:stop], scaler.scale[start:stop],
                                    scaler.columns[start:stop], scaler.n_rows, scaler.rows_sha256)
        problems += scaling.audit_scaler(part, filled, split)
        start = stop
    return list(dict.fromkeys(problems))  # row-count problems repeat for every block


def write_preprocessing(writer: ArtifactWriter, features: FeatureSet, split_ref: ArtifactRef) -> dict:
    """The scale stage: training-mean fill and z-scaler, fitted on the training split only."""
    split = split_series(read_split(features.store, split_ref))
    prep = fit_preprocessing(features, split)
    writer.write_json(PREPROCESSING, prep.to_dict())
    return {"fitted_rows": prep.scaler.n_rows, "rows": len(split)}


def read_preprocessing(store: ArtifactStore, ref: ArtifactRef) -> Preprocessing:
    return Preprocessing.from_dict(store.read_json(ref, PREPROCESSING))


def audit_leakage(features: FeatureSet, split_ref: ArtifactRef, prep_ref: ArtifactRef) -> dict:
    """Recompute from the saved artifacts that no release group straddles two splits or
    two folds and that fill and scaler are the training rows'; LeakageError if not."""
    split = read_split(features.store, split_ref)
    series = split_series(split)
    groups = pd.Series(split["group"].to_numpy(), index=series.index)
    problems = audit_preprocessing(features, series, groups, read_preprocessing(features.store, prep_ref))
    train = split[split["split"] == "train"]
    straddling = train.groupby("group")["fold"].nunique()
    if (straddling > 1).any():
        several = straddling.index[straddling > 1]
        problems.append(f"{len(several)} release groups appear in more than one fold, e.g. {several[0]!r}")
    return leakage.verdict(problems, split["group"].nunique(), (split["split"] == "train").sum())

