"""Feature scaling fitted on training rows only, and the audit that proves it.

X may be a numpy array, a DataFrame (rows matched to the split by index) or a scipy
sparse matrix (rows matched by position, like numpy). The statistics are scikit-learn's:
``standard`` is ``StandardScaler`` (on sparse X ``with_mean=False``: divided by the
standard deviation only, so it stays sparse), ``minmax`` is ``MinMaxScaler`` (dense
only: it centres) and ``maxabs`` is ``MaxAbsScaler`` (divided by the column's max |x|;
min-max to [0, 1] for nonnegative columns that contain a zero, without losing sparsity).
All are NaN-aware; constant and near-constant columns get scale 1, all-NaN ones (0, 1).

Kept here, not in sklearn: the saved form. A ``FittedScaler`` is the fitted affine map
``x' = (x - center) / scale`` as JSON (no pickled estimator, so any sklearn version reads
a run folder's scaler) plus how many rows it was fitted on and a SHA-256 of their sorted
ids, so ``audit_scaler`` can refit on the training rows and check a saved scaler
against the data and the split. Applying that map is the transform of all three
scalers; done here it keeps float32 output and CSR input sparse.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mirflow.core.errors import ConfigError
from mirflow.core.sparse import is_sparse
from mirflow.stages.splits import validate_split

KINDS = ("standard", "minmax", "maxabs")
_RTOL = 1e-5
_STAT_NAMES = {  # kind -> names of (center, scale) in audit messages
    "standard": ("mean", "std"),
    "minmax": ("min", "range"),
    "maxabs": ("center", "max |x|"),
}


@dataclass(frozen=True)
class FittedScaler:
    """``x' = (x - center) / scale`` per column, fitted on ``n_rows`` training rows."""

    kind: str
    center: np.ndarray
    scale: np.ndarray
    columns: tuple[str, ...]
    n_rows: int
    rows_sha256: str  # of the sorted ids of the rows it was fitted on

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
            "columns": list(self.columns),
            "n_rows": int(self.n_rows),
            "rows_sha256": self.rows_sha256,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FittedScaler:
        return cls(
            kind=data["kind"],
            center=np.asarray(data["center"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            columns=tuple(data["columns"]),
            n_rows=int(data["n_rows"]),
            rows_sha256=data["rows_sha256"],
        )


def fit_scaler_on_train(
    X,
    split: pd.Series,
    *,
    kind: str = "standard",
    row_ids: Sequence | None = None,
    columns: Sequence[str] | None = None,
) -> FittedScaler:
    """Fit on the rows whose split is ``"train"`` only; NaN-aware, constant columns get scale 1.

    ``row_ids`` (one per row of X) default to the DataFrame index or the split's index;
    ``columns`` default to the DataFrame columns or ``x0, x1, ...``.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}: scaler kind must be one of {KINDS}")
    train, ids = _train_rows(X, split, row_ids)
    center, scale = _column_stats(_rows(X, train), kind)
    return FittedScaler(kind, center, scale, _column_names(X, columns), int(train.sum()), fingerprint_rows(ids[train]))


def apply_scaler(scaler: FittedScaler, X):
    """Scaled float32 copy of X, of the same kind (array, DataFrame or sparse CSR)."""
    _check_columns(scaler, X)
    if is_sparse(X):
        if np.any(scaler.center != 0):
            raise ConfigError("scaler was fitted with centring (dense data); it cannot keep this sparse X sparse")
        import scipy.sparse as sp

        return (sp.csr_matrix(X, dtype=np.float32) @ sp.diags((1.0 / scaler.scale).astype(np.float32))).tocsr()
    values = np.asarray(X, dtype=np.float32)
    scaled = (values - scaler.center.astype(np.float32)) / scaler.scale.astype(np.float32)
    return pd.DataFrame(scaled, index=X.index, columns=X.columns) if isinstance(X, pd.DataFrame) else scaled


def fill_missing_with_train_mean(X, split: pd.Series) -> tuple[np.ndarray | pd.DataFrame, np.ndarray]:
    """Replace NaN by the training rows' column means (0 where a column has no training
    value): sklearn's ``SimpleImputer`` fitted on the training rows."""
    from sklearn.impute import SimpleImputer  # here: the CLI's light commands import this module

    if is_sparse(X):
        raise ConfigError("fill_missing_with_train_mean takes dense X (numpy or DataFrame), got a sparse matrix")
    train, _ = _train_rows(X, split, None)
    values = np.asarray(X, dtype=np.float64)
    imputer = SimpleImputer(keep_empty_features=True).fit(values[train])
    means, values = imputer.statistics_, imputer.transform(values)
    filled = pd.DataFrame(values, index=X.index, columns=X.columns) if isinstance(X, pd.DataFrame) else values
    return filled, means


def audit_scaler(scaler: FittedScaler, X, split: pd.Series, row_ids: Sequence | None = None) -> list[str]:
    """Problems found by refitting on the training rows and comparing (empty list = clean)."""
    try:
        _check_columns(scaler, X)
    except ConfigError as error:
        return [str(error)]
    train, ids = _train_rows(X, split, row_ids)
    n_train = int(train.sum())
    problems = []
    if scaler.n_rows != n_train:
        hint = " (all rows: fitted on all rows?)" if scaler.n_rows == len(train) else ""
        problems.append(f"scaler fitted on {scaler.n_rows} rows but the training split has {n_train}{hint}")
    elif scaler.rows_sha256 != fingerprint_rows(ids[train]):
        problems.append("scaler was fitted on other rows than the training split's (row-id fingerprint differs)")
    center, scale = _column_stats(_rows(X, train), scaler.kind)
    center_name, scale_name = _STAT_NAMES[scaler.kind]
    for name, saved, actual in ((center_name, scaler.center, center), (scale_name, scaler.scale, scale)):
        differs = np.flatnonzero(~np.isclose(saved, actual, rtol=_RTOL, atol=1e-12))
        for col in differs[:5]:
            problems.append(
                f"{name} of column {scaler.columns[col]} differs: scaler {saved[col]:.6g} vs train rows "
                f"{actual[col]:.6g} — fitted on non-training rows?"
            )
        if len(differs) > 5:
            problems.append(f"{name} differs in {len(differs) - 5} more columns")
    return problems


def fingerprint_rows(ids) -> str:
    """SHA-256 of the sorted row ids (as strings), one per line."""
    text = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _train_rows(X, split: pd.Series, row_ids: Sequence | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train mask and row ids, both in X's row order."""
    split = validate_split(split)
    if isinstance(X, pd.DataFrame):
        if not split.index.equals(X.index):
            missing = X.index.difference(split.index)
            if len(missing):
                raise ConfigError(f"split lacks {len(missing)} rows of X, e.g. {list(missing[:3])}")
            split = split.reindex(X.index)
    elif split.shape[0] != X.shape[0]:
        raise ConfigError(f"split has {len(split)} rows but X has {X.shape[0]}; they must match row for row")
    ids = np.asarray(split.index if row_ids is None else row_ids, dtype=object)
    if len(ids) != X.shape[0]:
        raise ConfigError(f"row_ids has {len(ids)} entries but X has {X.shape[0]} rows")
    train = (split == "train").to_numpy()
    if not train.any():
        raise ConfigError("the split has no training rows to fit on")
    return train, ids


def _rows(X, mask: np.ndarray):
    if is_sparse(X):
        import scipy.sparse as sp

        return sp.csr_matrix(X, dtype=np.float64)[np.flatnonzero(mask)]
    return np.asarray(X)[mask].astype(np.float64)


def _column_stats(X, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per column, in float64: the statistics of the sklearn scaler of
    this kind. Dense X (every run's leakage audit) with sklearn's own formulas in numpy
    (tests check them against sklearn): importing sklearn cost an unchanged re-run ~1 s."""
    if is_sparse(X):
        return _sparse_column_stats(X, kind)
    if np.isinf(X).any():  # sklearn's check: the statistics would be inf or NaN
        raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
    tiny = 10 * np.finfo(np.float64).eps  # sklearn's _handle_zeros_in_scale: such a scale becomes 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, handled below
        if kind == "standard":  # StandardScaler: the corrected two-pass variance, constant columns by its error bound
            count = np.sum(~np.isnan(X), axis=0)
            center = np.nansum(X, axis=0) / count
            deviation = X - center
            variance = (np.nansum(deviation**2, axis=0) - np.nansum(deviation, axis=0) ** 2 / count) / count
            eps = np.finfo(np.float64).eps
            constant = variance <= count * eps * variance + (count * center * eps) ** 2
            scale = np.where(constant, 1.0, np.sqrt(variance))
        elif kind == "minmax":  # MinMaxScaler
            center = np.nanmin(X, axis=0)
            spread = np.nanmax(X, axis=0) - center
            scale = np.where(spread < tiny, 1.0, spread)
        else:  # MaxAbsScaler
            top = np.nanmax(np.abs(X), axis=0)
            center, scale = np.zeros(X.shape[1]), np.where(top < tiny, 1.0, top)
    return np.nan_to_num(center, nan=0.0), np.nan_to_num(scale, nan=1.0)


def _sparse_column_stats(X, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Sparse X: sklearn's scalers themselves (imported here, where they are used)."""
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    if kind == "minmax":
        raise ConfigError("minmax scaling centres, so it cannot keep sparse X sparse; use maxabs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, handled below
        scale = (StandardScaler(with_mean=False) if kind == "standard" else MaxAbsScaler()).fit(X).scale_
    return np.zeros(X.shape[1]), np.nan_to_num(scale, nan=1.0)


def _column_names(X, columns: Sequence[str] | None) -> tuple[str, ...]:
    if columns is None:
        columns = X.columns if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(X.shape[1])]
    if len(columns) != X.shape[1]:
        raise ConfigError(f"columns has {len(columns)} names but X has {X.shape[1]} columns")
    return tuple(str(c) for c in columns)


def _check_columns(scaler: FittedScaler, X) -> None:
    if X.shape[1] != len(scaler.columns):
        raise ConfigError(f"scaler has {len(scaler.columns)} columns but X has {X.shape[1]}")
    if isinstance(X, pd.DataFrame) and tuple(str(c) for c in X.columns) != scaler.columns:
        raise ConfigError("X's columns differ from the scaler's (names or order)")
