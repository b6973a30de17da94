"""MSD song hotness's evaluate stage: RMSE per model and split, the report's results
table, the feature sets side by side, its top-features figure and RMSE against training time."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.msd_hotness.design import load_design
from mirflow.pipelines.msd_hotness.linear import COEF, FEATURE_SETS, FitSpec
from mirflow.stages import metrics, splits


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
        fitted = spec.model != "constant"
        variant_size = sizes[spec.variant] if fitted else {"columns": 0, "matrix_bytes": 0}
        result.update(
            alpha=spec.alpha,
            train_seconds=fit["train_seconds"],
            nonzero_coefficients=fit["nonzero_coefficients"],
            features=variant_size["columns"] - len(fit.get("left_out_columns", [])),
            matrix_mib=variant_size["matrix_bytes"] / 2**20,
            converged=fit["converged"],
            variant=spec.variant if fitted else None,
            feature_set=spec.feature_set if fitted else None,
        )
        by_model[spec.name] = result
        weights[spec.name] = coef
    top_features = {}
    for (variant, design), feature_set in ((v, f) for v in loaded.items() for f in FEATURE_SETS):
        candidates = [s for s, _ in fits if (s.variant, s.feature_set) == (variant, feature_set) and s.model != "constant"]
        if candidates:
            best = min(candidates, key=lambda s: by_model[s.name]["validation"]["rmse"])  # never on training rows
            coef = weights[best.name]
            order = [i for i in np.argsort(-np.abs(coef), kind="stable")[:top] if coef[i] != 0]
            top_features[variant if feature_set == "report" else f"{variant}, {feature_set}"] = {
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
    return {"models": len(by_model), "selected_on": "validation", "feature_memory": memory,
            "best_by_variant": {v: t["model"] for v, t in top_features.items()}}


def results_table(by_model: dict[str, dict]) -> pd.DataFrame:
    """One row per model: the report's table (RMSE per split, time, sparsity, memory)."""
    rows = []
    for name, result in by_model.items():
        row = {"model": name, "variant": result["variant"], "feature_set": result["feature_set"], "alpha": result["alpha"]}
        row.update({f"rmse_{s}": result[s]["rmse"] for s in splits.SPLITS if s in result})
        row.update({k: result[k] for k in ("train_seconds", "nonzero_coefficients", "features", "matrix_mib", "converged")})
        rows.append(row)
    return pd.DataFrame(rows)


def feature_set_table(by_model: dict[str, dict]) -> str:
    """Markdown: each (variant, model, alpha) in one row, its test RMSE (validation when
    there is no test split) with each feature set side by side; empty for one feature set."""
    table = results_table(by_model)
    column = "rmse_test" if "rmse_test" in table else "rmse_validation"
    fitted = table[table["variant"].notna()].assign(kind=lambda t: t["model"].str.split("-").str[0])
    sets = [f for f in FEATURE_SETS if f in set(fitted["feature_set"])]
    if len(sets) < 2:
        return ""
    wide = fitted.pivot_table(index=["variant", "kind", "alpha"], columns="feature_set", values=column, sort=False)
    lines = ["| variant | model | alpha | " + " | ".join(f"{column.split('_')[1]} RMSE, {f}" for f in sets) + " |",
             "|---|---|---|" + "---|" * len(sets)]
    for (variant, kind, alpha), row in wide.iterrows():
        lines.append(f"| {variant} | {kind} | {alpha:g} | " + " | ".join(f"{row[f]:.4f}" for f in sets) + " |")
    return "\n".join(lines)


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
    training time, one point per (variant, feature set, model, alpha); the constant baseline as a line."""
    column = "rmse_test" if "rmse_test" in table else "rmse_validation"
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    fitted = table[table["variant"].notna()]
    lines = fitted.groupby([fitted["variant"], fitted["feature_set"], fitted["model"].str.split("-").str[0]])
    colours = dict(zip(sorted({key[:2] for key in lines.groups}), ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    for (variant, feature_set, model), group in lines:
        seconds = np.maximum(group["train_seconds"].to_numpy(), 1e-4)
        style = {"marker": "o", "linestyle": "-"} if model == "lasso" else {"marker": "s", "linestyle": "--"}
        label = f"{model}, {variant}" + ("" if feature_set == "report" else f", {feature_set}")
        axes.plot(seconds, group[column], color=colours[variant, feature_set], label=label, **style)
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
