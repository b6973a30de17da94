"""AcousticBrainz genre's report: this run's figures laid out like report 003's tables,
beside the published ones."""

from __future__ import annotations

from mirflow.datasets import acousticbrainz as ab

# Published figures (macro ROC AUC; per-track F of the Oramas et al. baseline on the task's results page).
PAPER_AUC = {
    "subtask1": {"allmusic": 0.6476, "discogs": 0.7592, "lastfm": 0.8276, "tagtraum": 0.8017},
    "subtask2": {"allmusic": 0.8122, "discogs": 0.8863, "lastfm": 0.9064, "tagtraum": 0.8874},
}
REPORT_AUC = {"subtask1": {"lastfm": 0.85281, "tagtraum": 0.82729}}  # report 003, Table 1 (partial)
ORAMAS_F = {"allmusic": 0.588, "discogs": 0.685, "lastfm": 0.560, "tagtraum": 0.624}


STACKING = {"crossfit": "out-of-fold activations", "crossfit_scores": "out-of-fold scores",
            "insample": "in-sample activations, leaky"}  # what each stacking mode feeds subtask 2


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def report_tables(evaluations: dict[str, dict]) -> list[str]:
    """Markdown laid out like report 003's tables 1 and 2: ours (every stacking mode side
    by side) beside the published figures."""
    order = ["subtask1", *(f"subtask2-{mode}" for mode in STACKING), "random"]
    systems = sorted(next(iter(evaluations.values()))["systems"], key=order.index)
    split = "test" if "test" in next(iter(evaluations.values()))["systems"]["subtask1"] else "validation"
    titles = {"allmusic": "AllMusic", "discogs": "Discogs", "lastfm": "Lastfm", "tagtraum": "Tagtraum"}
    header = ["| | " + " | ".join(titles[s] for s in ab.SOURCES) + " |", "|---|" + "---|" * len(ab.SOURCES)]

    def auc_row(name: str, values: dict) -> str:
        return f"| {name} | " + " | ".join(_cell(values.get(s)) for s in ab.SOURCES) + " |"

    names = {"subtask1": "Subtask 1", "random": "Random baseline",
             **{f"subtask2-{mode}": f"Subtask 2 (stacked on {what})" for mode, what in STACKING.items()}}
    ours = [auc_row(names[system], {s: e["systems"][system][split]["roc_auc_macro"] for s, e in evaluations.items()})
            for system in systems]
    published = [auc_row("Subtask 1 (Oramas et al. 2018)", PAPER_AUC["subtask1"]),
                 auc_row("Subtask 2 (Oramas et al. 2018)", PAPER_AUC["subtask2"]),
                 auc_row("Subtask 1 (report 003, Table 1)", REPORT_AUC["subtask1"])]
    track = ["| source | system | precision | recall | F | threshold | published F |", "|---|---|---|---|---|---|---|"]
    for source in (s for s in ab.SOURCES if s in evaluations):
        for system in systems:
            report = evaluations[source]["systems"][system][split]
            p, r, f = (_cell(report["per_track"][k]) for k in ("precision", "recall", "f_score"))
            track.append(f"| {source} | {names[system]} | {p} | {r} | {f} | {report['threshold']:.3f} | {_cell(ORAMAS_F.get(source))} |")
    return [
        f"### Table 1: ROC AUC (macro) on the {split} split, this run\n\n" + "\n".join(header + ours),
        "### Table 2: ROC AUC published\n\n" + "\n".join(header + published),
        f"### Per-track precision, recall and F (MediaEval 2018) on the {split} split\n\n"
        "Thresholds chosen on training out-of-fold scores; published F: the Oramas et al. baseline on the task's "
        "results page.\n\n" + "\n".join(track),
    ]
