"""Sparse linear regression stages: group split, design-matrix artifacts with min-max
scaling fitted on training rows, Lasso/ElasticNet fits and their evaluation.

A design artifact holds the unscaled matrix (``matrix.npz``: a dense-valued numeric block
first, then sparse columns), its rows (``rows.parquet``: row_id, group, split, y), the
column names and two train-only scalers: min-max for the numeric block, and max-|x|
for the sparse block (min-max to [0, 1] for nonnegative sparse columns, without losing
sparsity). Models see the scaled matrix; the leakage audit refits the scalers on the
unscaled one.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages import leakage, metrics, scaling, splits
from mirflow.stages.splits import read_split

MATRIX, ROWS, COLUMNS, SCALERS = "matrix.npz", "rows.parquet", "columns.json", "scalers.json"
COEF = "coef.npy"
MODELS = ("constant", "lasso", "elasticnet")


# -- design matrices -------------------------------------------------------------------
@dataclass(frozen=True)
class DesignMatrix:
    X: sp.csr_matrix  # scaled, float32
    rows: pd.DataFrame  # row_id, group, split, y
    columns: list[str]


def save_design(
    writer: ArtifactWriter,
    numeric: np.ndarray,
    sparse: sp.csr_matrix,
    rows: pd.DataFrame,
    numeric_names: Sequence[str],
    sparse_names: Sequence[str],
) -> dict:
    """Write a design artifact: fit both scalers on the training rows and store the
    unscaled matrix. Returns its size, including the memory of the scaled matrix."""
    split = pd.Series(rows["split"].to_numpy(), index=rows["row_id"].to_numpy())
    scalers = {
        "numeric": scaling.fit_scaler_on_train(numeric, split, kind="minmax", columns=numeric_names),
        "sparse": scaling.fit_scaler_on_train(sparse, split, kind="maxabs", columns=sparse_names),
    }
    raw = sp.hstack([sp.csr_matrix(numeric), sparse], format="csr")
    buffer = io.BytesIO()
    sp.save_npz(buffer, raw, compressed=True)
    writer.write_bytes(MATRIX, buffer.getvalue())
    writer.write_parquet(ROWS, pa.Table.from_pandas(rows, preserve_index=False))
    writer.write_json(COLUMNS, [*numeric_names, *sparse_names])
    writer.write_json(SCALERS, {name: scaler.to_dict() for name, scaler in scalers.items()})
    X = _scaled(raw, scalers["numeric"], scalers["sparse"])
    return {
        "rows": X.shape[0],
        "columns": X.shape[1],
        "numeric_columns": len(numeric_names),
        "nnz": int(X.nnz),
        "matrix_bytes": int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes),
        "train_rows": scalers["numeric"].n_rows,
    }


def _scaled(raw: sp.csr_matrix, numeric: scaling.FittedScaler, sparse: scaling.FittedScaler) -> sp.csr_matrix:
    k = len(numeric.columns)
    dense = scaling.apply_scaler(numeric, raw[:, :k].toarray())
    return sp.hstack([sp.csr_matrix(dense), scaling.apply_scaler(sparse, raw[:, k:])], format="csr")


def _raw_design(store: ArtifactStore, ref: ArtifactRef) -> tuple[sp.csr_matrix, pd.DataFrame, dict]:
    raw = sp.load_npz(io.BytesIO(store.read_bytes(ref, MATRIX))).tocsr()
    scalers = {name: scaling.FittedScaler.from_dict(d) for name, d in store.read_json(ref, SCALERS).items()}
    return raw, store.read_parquet(ref, ROWS).to_pandas(), scalers


def load_design(store: ArtifactStore, ref: ArtifactRef) -> DesignMatrix:
    raw, rows, scalers = _raw_design(store, ref)
    return DesignMatrix(_scaled(raw, scalers["numeric"], scalers["sparse"]), rows, store.read_json(ref, COLUMNS))


def audit_leakage(store: ArtifactStore, design_ref: ArtifactRef, split_ref: ArtifactRef) -> dict:
    """From the saved artifacts: no group in two splits, the design's rows are the
    split's, and both scalers hold the statistics of the training rows only. Raises
    LeakageError listing every problem."""
    split = read_split(store, split_ref).set_index("row_id")
    raw, rows, scalers = _raw_design(store, design_ref)
    if set(rows["row_id"]) != set(split.index) or len(rows) != len(split):
        raise LeakageError(f"design {design_ref.key[:12]} covers other rows than split {split_ref.key[:12]}")
    assigned = split["split"].reindex(rows["row_id"])
    problems = leakage.group_problems(assigned, split["group"].reindex(rows["row_id"]))
    k = len(scalers["numeric"].columns)
    problems += scaling.audit_scaler(scalers["numeric"], raw[:, :k].toarray(), assigned)
    problems += scaling.audit_scaler(scalers["sparse"], raw[:, k:], assigned)
    return leakage.verdict(problems, split["group"].nunique(), scalers["numeric"].n_rows, f" of design {design_ref.key[:12]}")


# -- models ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FitSpec:
    """One model to fit: on which design variant, which model, which regularisation."""

    variant: str
    model: str  # one of MODELS
    alpha: float = 0.0  # sklearn's alpha: the report's λ

    @property
    def name(self) -> str:
        return "constant" if self.model == "constant" else f"{self.model}-{self.variant}-{self.alpha:g}"


def model_grid(variants: Sequence[str], models: Sequence[str], alphas: Sequence[float]) -> list[FitSpec]:
    """The constant baseline (once: it ignores the features) and every (variant, model, alpha)."""
    unknown = sorted(set(models) - set(MODELS[1:]))
    if unknown or not variants or any(a <= 0 for a in alphas):
        raise ConfigError(f"models {list(models)} must be among {MODELS[1:]}, variants non-empty, alphas > 0: {list(alphas)}")
    return [FitSpec(variants[0], "constant")] + [FitSpec(v, m, float(a)) for v in variants for m in models for a in alphas]


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
    """The train stage: one model on the training rows of one design."""
    design = load_design(store, design_ref)
    train = (design.rows["split"] == "train").to_numpy()
    y = design.rows["y"].to_numpy(np.float32)[train]
    fitted = fit_linear(design.X[train], y, spec, l1_ratio, max_iter, tol)
    buffer = io.BytesIO()
    np.save(buffer, fitted["coef"])
    writer.write_bytes(COEF, buffer.getvalue())
    return {
        "name": spec.name,
        "model": spec.model,
        "variant": spec.variant,
        "alpha": spec.alpha,
        "intercept": fitted["intercept"],
        "train_seconds": fitted["seconds"],
        "nonzero_coefficients": int(np.count_nonzero(fitted["coef"])),
        "n_iter": fitted["n_iter"],
        "converged": spec.model == "constant" or fitted["n_iter"] < max_iter,
        "train_rows": int(train.sum()),
    }


# -- evaluation ------------------------------------------------------------------------
def write_evaluation(
    writer: ArtifactWriter,
    store: ArtifactStore,
    designs: dict[str, ArtifactRef],
    fits: Sequence[tuple[FitSpec, ArtifactRef]],
    top: int = 10,
) -> dict:
    """RMSE per model and split, training time, non-zero coefficients and feature-matrix
    memory (results.csv, metrics.json), the top features of each variant's best model
    (top_features.json/.png) and RMSE against training time (rmse_vs_time.png)."""
    loaded = {variant: load_design(store, ref) for variant, ref in designs.items()}
    sizes = {variant: store.read_json(ref, "summary.json") for variant, ref in designs.items()}
    by_model, weights = {}, {}
    for spec, ref in fits:
        design, fit = loaded[spec.variant], store.read_json(ref, "summary.json")
        coef = np.load(io.BytesIO(store.read_bytes(ref, COEF)))
        predicted = design.X @ coef + fit["intercept"]
        result = {}
        for name in splits.SPLITS:
            mask = (design.rows["split"] == name).to_numpy()
            if mask.any():
                result[name] = metrics.regression_report(design.rows["y"].to_numpy()[mask], predicted[mask])
        variant_size = sizes[spec.variant] if spec.model != "constant" else {"columns": 0, "matrix_bytes": 0}
        result.update(
            alpha=spec.alpha,
            train_seconds=fit["train_seconds"],
            nonzero_coefficients=fit["nonzero_coefficients"],
            features=variant_size["columns"],
            matrix_mib=variant_size["matrix_bytes"] / 2**20,
            converged=fit["converged"],
            variant=spec.variant if spec.model != "constant" else None,
        )
        by_model[spec.name] = result
        weights[spec.name] = coef
    selection = "validation" if all("validation" in r for r in by_model.values()) else "train"
    top_features = {}
    for variant, design in loaded.items():
        candidates = [s for s, _ in fits if s.variant == variant and s.model != "constant"]
        if candidates:
            best = min(candidates, key=lambda s: by_model[s.name][selection]["rmse"])
            coef = weights[best.name]
            order = [i for i in np.argsort(-np.abs(coef), kind="stable")[:top] if coef[i] != 0]
            top_features[variant] = {
                "model": best.name,
                "features": [{"feature": design.columns[i], "weight": float(coef[i])} for i in order],
            }
    table = results_table(by_model)
    writer.write_bytes("results.csv", table.to_csv(index=False, float_format="%.6g").encode())
    writer.write_json("metrics.json", by_model)
    writer.write_json("top_features.json", top_features)
    writer.write_bytes("top_features.png", top_features_png(top_features))
    writer.write_bytes("rmse_vs_time.png", rmse_vs_time_png(table))
    memory = {variant: {k: size[k] for k in ("rows", "columns", "nnz", "matrix_bytes")} for variant, size in sizes.items()}
    return {"models": len(by_model), "selected_on": selection, "feature_memory": memory,
            "best_by_variant": {v: t["model"] for v, t in top_features.items()}}


def results_table(by_model: dict[str, dict]) -> pd.DataFrame:
    """One row per model: the report's table (RMSE per split, time, sparsity, memory)."""
    rows = []
    for name, result in by_model.items():
        row = {"model": name, "variant": result["variant"], "alpha": result["alpha"]}
        row.update({f"rmse_{s}": result[s]["rmse"] for s in splits.SPLITS if s in result})
        row.update({k: result[k] for k in ("train_seconds", "nonzero_coefficients", "features", "matrix_mib", "converged")})
        rows.append(row)
    return pd.DataFrame(rows)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def top_features_png(top_features: dict[str, dict]) -> bytes:
    """The report's figure 3: the largest |weights| of each variant's best model."""
    panels = max(1, len(top_features))
    figure = Figure(figsize=(7 * panels, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (variant, entry) in enumerate(top_features.items() or [("none", {"model": "no model", "features": []})]):
        axes = figure.add_subplot(1, panels, index + 1)
        names = [f["feature"][:48] for f in entry["features"]][::-1]
        values = [f["weight"] for f in entry["features"]][::-1]
        axes.barh(range(len(values)), values, color=["tab:red" if v < 0 else "tab:blue" for v in values])
        axes.set_yticks(range(len(names)), names, fontsize=8)
        axes.axvline(0, color="black", linewidth=0.5)
        axes.set_title(f"{variant}: {entry['model']}", fontsize=10)
        axes.set_xlabel("weight (features min-max scaled)")
    return _png(figure)


def rmse_vs_time_png(table: pd.DataFrame) -> bytes:
    """The report's figure 4: test RMSE (validation when there is no test split) against
    training time, one point per (variant, model, alpha); the constant baseline as a line."""
    column = "rmse_test" if "rmse_test" in table else "rmse_validation" if "rmse_validation" in table else "rmse_train"
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    fitted = table[table["variant"].notna()]
    colours = dict(zip(sorted(fitted["variant"].unique()), ("tab:blue", "tab:orange", "tab:green")))
    for (variant, model), group in fitted.groupby([fitted["variant"], fitted["model"].str.split("-").str[0]]):
        seconds = np.maximum(group["train_seconds"].to_numpy(), 1e-4)
        style = {"marker": "o", "linestyle": "-"} if model == "lasso" else {"marker": "s", "linestyle": "--"}
        axes.plot(seconds, group[column], color=colours[variant], label=f"{model}, {variant}", **style)
        for x, y, alpha in zip(seconds, group[column], group["alpha"]):
            axes.annotate(f"λ={alpha:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    baseline = table.loc[table["variant"].isna(), column]
    if len(baseline):
        axes.axhline(float(baseline.iloc[0]), color="grey", linestyle="--", label="constant baseline")
    axes.set_xscale("log")
    axes.set_xlabel("training time (s)")
    axes.set_ylabel(f"{column.split('_')[1]} RMSE")
    axes.legend(fontsize=8)
    return _png(figure)
