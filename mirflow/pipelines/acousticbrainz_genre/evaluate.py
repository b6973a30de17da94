"""AcousticBrainz genre's evaluate stage: macro ROC AUC and MediaEval per-track P/R/F of
subtask 1, subtask 2 and a random baseline per source, and their metrics for the run folder."""

from __future__ import annotations

import numpy as np

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.acousticbrainz_genre.networks import FULL, read_outputs
from mirflow.pipelines.acousticbrainz_genre.targets import read_labels
from mirflow.stages import metrics, splits
from mirflow.stages.splits import read_split

METRICS = "metrics.json"


def write_source_evaluation(
    writer: ArtifactWriter,
    store: ArtifactStore,
    split_ref: ArtifactRef,
    targets_ref: ArtifactRef,
    source: str,
    subtask1: dict[str, ArtifactRef],
    stacked: dict[str, ArtifactRef],
    seed: int,
) -> dict:
    """The evaluate stage: macro ROC AUC and MediaEval per-track P/R/F of subtask 1,
    subtask 2 (``stacked[mode]``, each stacking mode) and a random baseline on every
    split, the threshold of each chosen on its training out-of-fold scores. Training
    figures are out-of-fold too (for ``insample`` stacking, out of fold of the stacked
    networks only: their inputs saw the rows)."""
    systems = ["subtask1", *(f"subtask2-{mode}" for mode in stacked), "random"]
    split = read_split(store, split_ref)
    labels = read_labels(store, targets_ref, source)
    rows = split[split["recordingmbid"].isin(labels.index)].reset_index(drop=True)
    truth = labels.rows(rows["recordingmbid"])
    scores = {system: np.zeros(truth.shape, np.float32) for system in systems}
    train = (rows["split"] == "train").to_numpy()
    for k in sorted(int(f) for f in subtask1 if f != FULL):
        in_fold = train & (rows["fold"] == k).to_numpy()
        scores["subtask1"][in_fold] = read_outputs(store, subtask1[str(k)], "scores", rows["row_id"][in_fold])
    scores["subtask1"][~train] = read_outputs(store, subtask1[FULL], "scores", rows["row_id"][~train])
    for mode, ref in stacked.items():
        scores[f"subtask2-{mode}"] = read_outputs(store, ref, "scores", rows["row_id"])
    scores["random"] = np.random.default_rng([seed, *source.encode()]).random(truth.shape)

    results: dict = {}
    for system in systems:
        threshold = metrics.choose_threshold(truth[train], scores[system][train])
        results[system] = {
            name: metrics.multilabel_report(truth[part], scores[system][part], labels.names, threshold)
            for name in splits.SPLITS
            if (part := (rows["split"] == name).to_numpy()).any()
        }
    models = {}
    for system, ref in (("subtask1", subtask1[FULL]), *((f"subtask2-{mode}", ref) for mode, ref in stacked.items())):
        summary = store.read_json(ref, "summary.json")
        models[system] = {key: summary[key] for key in ("parameters", "parameters_formula", "train_seconds", "best_epoch")}
    writer.write_json(METRICS, {"source": source, "labels": len(labels.names), "systems": results, "models": models})
    evaluated = "test" if "test" in results["subtask1"] else "validation"
    return {system: results[system][evaluated]["roc_auc_macro"] for system in systems}


def run_metrics(evaluation: dict) -> dict[str, dict]:
    """One entry per system, ``<system>-<source>``: scalar metrics per split plus the
    network's parameters (the shape ``runs.RunOutputs`` takes)."""
    out = {}
    for system, by_split in evaluation["systems"].items():
        entry: dict = {split: _flat(report) for split, report in by_split.items()}
        entry.update(evaluation["models"].get(system, {}))
        out[f"{system}-{evaluation['source']}"] = entry
    return out


def _flat(report: dict) -> dict:
    track = report["per_track"]
    return {
        "roc_auc_macro": report["roc_auc_macro"],
        "precision": track["precision"],
        "recall": track["recall"],
        "f_score": track["f_score"],
        "label_f_score": report["per_label"]["f_score"],
        "threshold": report["threshold"],
        "tracks": report["n_tracks"],
    }

