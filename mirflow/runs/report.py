"""The Markdown report of a run and the plan printed by ``--explain``."""

from __future__ import annotations

from collections.abc import Sequence

SPLITS = ("train", "validation", "test")
GENERATED_DATA_WARNING = (
    "> **Generated data, not the real data set.** Every figure in this report comes from a synthetic "
    "stand-in made by mirflow; it shows that the pipeline runs and learns, and says nothing about the real data "
    "or about any published result."
)


def metrics_rows(metrics_by_model: dict[str, dict]) -> list[dict]:
    """One row per model and split with every scalar metric of that split and the
    model's own scalar figures (parameters, times, memory): the table artifact."""
    rows = []
    for model, result in metrics_by_model.items():
        model_level = {k: _round(v) for k, v in result.items() if _scalar(v) and k != "model"}
        for split in SPLITS:
            if split in result:
                split_level = {k: _round(v) for k, v in result[split].items() if _scalar(v)}
                rows.append({"model": model, "split": split, **split_level, **model_level})
    return rows


def cross_validation(fold_metrics: Sequence[dict]) -> dict[str, dict]:
    """Mean, standard deviation (over folds, ddof 1) and per-fold values of every scalar
    metric the folds share; ``fold_metrics`` holds one metrics dict per fold."""
    import numpy as np

    names = [k for k, v in fold_metrics[0].items() if _scalar(v) and all(_scalar(m.get(k)) for m in fold_metrics)]
    return {
        name: {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "folds": values}
        for name in names
        for values in [[float(m[name]) for m in fold_metrics]]
    }


def cross_validation_note(by_model: dict[str, dict], folds: int, metrics: Sequence[str]) -> str:
    """The report's cross-validation table: mean ± std over the folds, per model and metric."""
    rows = [{"model": model, **{m: f"{cv[m]['mean']:.4f} ± {cv[m]['std']:.4f}" for m in metrics if m in cv}}
            for model, cv in by_model.items()]
    return (f"### Cross-validation: {folds} folds of the training split, groups whole\n\n"
            f"Each fold's model is trained on the other folds and scored on it (mean ± std over the {folds} models); "
            "the test split is not used.\n\n" + _table(rows))


def _scalar(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _round(value):
    return round(value, 4) if isinstance(value, float) else value


def _table(rows: Sequence[dict]) -> str:
    if not rows:
        return "_none_\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


markdown_table = _table  # a pipeline's own tables in its report notes


def render_report(
    title: str,
    run_id: str,
    metrics_by_model: dict[str, dict],
    best_model: str | None,
    selection,
    failures: Sequence[dict],
    stages: Sequence[dict],
    figures: dict[str, str],
    notes: Sequence[str] = (),
) -> str:
    parts = [f"# {title}\n", f"Run `{run_id}`.\n"]
    parts += [f"{note}\n" for note in notes]
    parts += ["## Metrics\n", _table(metrics_rows(metrics_by_model))]
    if best_model:
        parts.append(f"Best model by {selection.split} {selection.metric}: **{best_model}**.\n")
        split = "test" if "test" in metrics_by_model[best_model] else "validation"
        per_class = metrics_by_model[best_model][split].get("per_class")
        if per_class:
            parts += [f"## Per-class report ({best_model}, {split})\n"]
            parts.append(_table([{"class": c, **{k: _round(float(v)) for k, v in m.items()}} for c, m in per_class.items()]))
    for caption, path in figures.items():
        parts.append(f"## {caption}\n\n![{caption}]({path})\n")
    parts += [f"## Quarantined inputs ({len(failures)})\n", _table([{"file": f["path"], "reason": f["reason"]} for f in failures])]
    stage_rows = [
        {"stage": s["label"], "status": s["status"], "seconds": round(s.get("seconds", 0.0), 2), "key": s["key"][:12]}
        for s in stages
    ]
    parts += ["## Stages\n", _table(stage_rows)]
    return "\n".join(parts)


# The parts of a stage's key (``fingerprint.stage_parts``), as `--explain` names them.
WHY = {"code": "code", "libraries": "library versions", "params": "parameters", "inputs": "input data or upstream"}


def explain_plan(stages: Sequence[dict], previous: dict | None) -> str:
    """Which stages would re-run and why, compared with the flow's latest run."""
    before = {s["label"]: s for s in (previous or {}).get("stages", [])}
    lines = []
    for stage in stages:
        if stage["status"] == "cached":
            lines.append(f"{stage['label']}: cached ({stage['key'][:12]})")
            continue
        if stage["status"] == "forced":
            lines.append(f"{stage['label']}: would re-run (forced)")
            continue
        old = before.get(stage["label"])
        if old is None:
            why = "never computed before"
        else:
            changed = [name for name in WHY if old.get(name) != stage.get(name)]
            why = "changed: " + ", ".join(WHY[c] for c in changed) if changed else "artifact missing from the store"
        lines.append(f"{stage['label']}: would re-run ({why})")
    return "\n".join(lines)
