"""MSD song hotness's train stage: sparse linear models (Lasso, ElasticNet, a constant
baseline) on the training rows of a design matrix, one fit per (variant, feature set,
model, alpha).

A feature set leaves columns of the design out of a fit: ``artist_hotttnesss`` and
``artist_familiarity`` come from the same snapshot as the target ``song_hotttnesss``,
so the report's feature set (``report``) is compared with one without them. Leaving
columns out at the fit, rather than building another design, shares the design, its
scalers and its audit (each column is scaled on its own, so the others are unchanged);
the left-out columns get weight 0 in the saved coefficients.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.msd_hotness.design import load_design

COEF = "coef.npy"
MODELS = ("constant", "lasso", "elasticnet")
# Feature set -> design columns it leaves out. "report" first: the report's features.
FEATURE_SETS = {"report": (), "no_artist_popularity": ("artist_hotttnesss", "artist_familiarity")}


@dataclass(frozen=True)
class FitSpec:
    """One model to fit: on which design variant and feature set, which model, which regularisation."""

    variant: str
    model: str  # one of MODELS
    alpha: float = 0.0  # sklearn's alpha: the report's λ
    feature_set: str = "report"  # one of FEATURE_SETS

    @property
    def name(self) -> str:
        if self.model == "constant":
            return "constant"
        features = "" if self.feature_set == "report" else f"-{self.feature_set}"
        return f"{self.model}-{self.variant}{features}-{self.alpha:g}"


def model_grid(
    variants: Sequence[str], models: Sequence[str], alphas: Sequence[float], feature_sets: Sequence[str] = ("report",)
) -> list[FitSpec]:
    """The constant baseline (once: it ignores the features) and every (variant, feature set, model, alpha)."""
    unknown = sorted(set(models) - set(MODELS[1:])) + sorted(set(feature_sets) - set(FEATURE_SETS))
    if unknown or not variants or not feature_sets or any(a <= 0 for a in alphas):
        raise ConfigError(f"models {list(models)} must be among {MODELS[1:]}, feature sets {list(feature_sets)} among "
                          f"{list(FEATURE_SETS)}, variants and feature sets non-empty, alphas > 0: {list(alphas)}")
    return [FitSpec(variants[0], "constant")] + [
        FitSpec(v, m, float(a), f) for v in variants for f in feature_sets for m in models for a in alphas
    ]


def fit_linear(X: sp.csr_matrix, y: np.ndarray, spec: FitSpec, l1_ratio: float, max_iter: int, tol: float) -> dict:
    """Coefficients, intercept, iterations and wall time of one fit on (X, y)."""
    if spec.model == "constant":
        return {"coef": np.zeros(X.shape[1]), "intercept": float(np.mean(y)), "n_iter": 0, "seconds": 0.0}
    if spec.model == "lasso":
        estimator = Lasso(alpha=spec.alpha, max_iter=max_iter, tol=tol)
    else:
        estimator = ElasticNet(alpha=spec.alpha, l1_ratio=l1_ratio, max_iter=max_iter, tol=tol)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded as converged=False instead
        estimator.fit(X.tocsc(), y)
    seconds = time.perf_counter() - started
    coef, intercept = estimator.coef_.astype(np.float64), float(estimator.intercept_)
    return {"coef": coef, "intercept": intercept, "n_iter": int(estimator.n_iter_), "seconds": seconds}


def write_fit(
    writer: ArtifactWriter, store: ArtifactStore, design_ref: ArtifactRef, spec: FitSpec, l1_ratio: float, max_iter: int, tol: float
) -> dict:
    """The train stage: one model on the training rows of one design, without the
    columns its feature set leaves out (their coefficients are saved as 0)."""
    design = load_design(store, design_ref)
    train = (design.rows["split"] == "train").to_numpy()
    y = design.rows["y"].to_numpy(np.float32)[train]
    kept = ~np.isin(design.columns, FEATURE_SETS[spec.feature_set])
    fitted = fit_linear(design.X[train][:, np.flatnonzero(kept)], y, spec, l1_ratio, max_iter, tol)
    coef = np.zeros(len(design.columns))
    coef[kept] = fitted["coef"]
    buffer = io.BytesIO()
    np.save(buffer, coef)
    writer.write_bytes(COEF, buffer.getvalue())
    return {
        "name": spec.name,
        "model": spec.model,
        "variant": spec.variant,
        "feature_set": spec.feature_set,
        "left_out_columns": [c for c, k in zip(design.columns, kept) if not k],
        "alpha": spec.alpha,
        "intercept": fitted["intercept"],
        "train_seconds": fitted["seconds"],
        "nonzero_coefficients": int(np.count_nonzero(fitted["coef"])),
        "n_iter": fitted["n_iter"],
        "converged": spec.model == "constant" or fitted["n_iter"] < max_iter,
        "train_rows": int(train.sum()),
    }

