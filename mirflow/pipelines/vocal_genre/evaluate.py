"""Out-of-fold evaluation: every song is scored once, by the round whose model never saw
it; a song's probabilities are the mean of its slices' (the headline), slices are scored
alone beside it. Ensembles, the ablation and the transfer tables, and the run's outputs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from mirflow import runs
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.vocal_genre.ensembles import fit_weights, sum_ensemble, weighted_ensemble
from mirflow.pipelines.vocal_genre.params import ABLATION_STEMS, VocalGenreParams
from mirflow.pipelines.vocal_genre.separation import separator_of
from mirflow.pipelines.vocal_genre.train import PREDICTIONS
from mirflow.pipelines.vocal_genre.variants import Variant
from mirflow.runs.report import markdown_table
from mirflow.stages.metrics import classification_report, confusion_matrix_png
from mirflow.stages.training import MODEL


def probability_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("p_")]


def song_level(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per song and round: its label and fold, and the mean of its slices' probabilities
    (a test song is in one round; a validation song may be in several, scored by each round's model)."""
    columns = probability_columns(slices)
    aggregated = {"label": "first", "fold": "first", **{c: "mean" for c in columns}}
    return slices.groupby(["round", "song"], sort=True).agg(aggregated).reset_index()


def _predicted(frame: pd.DataFrame) -> np.ndarray:
    columns = probability_columns(frame)
    return np.array([c[2:] for c in columns])[frame[columns].to_numpy().argmax(axis=1)]


def scores(slices: pd.DataFrame) -> dict:
    """Song-level accuracy and macro F1 (the headline, with per-class figures and the
    confusion matrix) and the same per slice."""
    classes = [c[2:] for c in probability_columns(slices)]
    songs = song_level(slices)
    by_song = classification_report(songs["label"], _predicted(songs), classes)
    by_slice = classification_report(slices["label"], _predicted(slices), classes)
    return {"song_accuracy": by_song["accuracy"], "song_macro_f1": by_song["macro_f1"], "accuracy": by_slice["accuracy"],
            "macro_f1": by_slice["macro_f1"], "songs": len(songs), "slices": len(slices),
            "per_class": by_song["per_class"], "confusion_matrix": by_song["confusion_matrix"]}


def _with(frame: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    out = frame.copy()
    out[probability_columns(frame)] = probabilities
    return out


def ensembles(members: list[pd.DataFrame]) -> dict[str, dict]:
    """The members' sum, and a weighting learned on out-of-fold song probabilities: cross-fitted
    (round k's songs weighted by what the other rounds' songs taught) and in-sample (fitted
    and scored on the same songs: the optimistic figure the cross-fitted one is held against)."""
    base = members[0].sort_values("row_id").reset_index(drop=True)
    columns = probability_columns(base)
    aligned = [m.set_index("row_id").loc[base["row_id"]] for m in members]
    by_slice = np.stack([m[columns].to_numpy() for m in aligned])
    songs = [song_level(m.reset_index()) for m in aligned]
    by_song = np.stack([s[columns].to_numpy() for s in songs])
    labels = songs[0]["label"].map({c[2:]: i for i, c in enumerate(columns)}).to_numpy()
    learned, weights = np.zeros_like(by_slice[0]), {}
    for fold in sorted(base["fold"].unique()):
        fitted = fit_weights(by_song[:, songs[0]["fold"].to_numpy() != fold], labels[songs[0]["fold"].to_numpy() != fold])
        rows = base["fold"].to_numpy() == fold
        learned[rows] = weighted_ensemble(by_slice[:, rows], fitted)
        weights[int(fold)] = [round(float(w), 4) for w in fitted]
    in_sample = fit_weights(by_song, labels)
    return {
        "sum": scores(_with(base, sum_ensemble(by_slice))),
        "learned": {**scores(_with(base, learned)), "weights_by_fold": weights},
        "learned_in_sample": {**scores(_with(base, weighted_ensemble(by_slice, in_sample))),
                              "weights": [round(float(w), 4) for w in in_sample]},
    }


def _headline(result: dict) -> dict:
    return {k: round(result[k], 4) for k in ("song_accuracy", "accuracy")}


def collect(store: ArtifactStore, params: VocalGenreParams, trained: dict[Variant, list[ArtifactRef]],
            failures: list[dict], inputs: dict) -> runs.RunOutputs:
    """Metrics per variant (test = out of fold), the ensembles of the main variants, the
    ablation and transfer tables, predictions and each main model of round 0."""
    scored = {v: pd.concat([store.read_parquet(r, PREDICTIONS).to_pandas() for r in refs], ignore_index=True)
              for v, refs in trained.items()}
    predictions = {v: frame[frame["split"] == "test"].reset_index(drop=True) for v, frame in scored.items()}
    summaries = {v: [store.read_json(r, "summary.json") for r in refs] for v, refs in trained.items()}
    outputs = runs.RunOutputs({}, failures=failures, extra={"inputs": inputs}, notes=[_method_note(params)])
    results = {v: scores(p) for v, p in predictions.items()}
    for variant, result in results.items():
        name = variant.name(params)
        validation = scores(scored[variant][scored[variant]["split"] == "validation"])
        outputs.metrics_by_model[name] = {"validation": validation, "test": result,
                                          "trainable_parameters": summaries[variant][0]["trainable_parameters"]}
        outputs.files[f"predictions/{name}.parquet"] = _parquet(song_level(predictions[variant]).drop(columns="round"))
    main = [Variant(m, params.stem, True) for m in params.models]
    for variant in main:
        outputs.files[f"models/{variant.name(params)}.pt"] = store.read_bytes(trained[variant][0], MODEL)
    if len(main) > 1:
        combined = ensembles([predictions[v] for v in main])
        outputs.metrics_by_model.update({"ensemble-sum": {"test": combined["sum"]}, "ensemble-learned": {"test": combined["learned"]}})
        outputs.files["ensembles.json"] = combined
        outputs.notes.append(_ensemble_note(combined))
    best = max(outputs.metrics_by_model, key=lambda n: outputs.metrics_by_model[n]["test"]["song_accuracy"])
    classes = [c[2:] for c in probability_columns(next(iter(predictions.values())))]
    outputs.files["confusion_songs.png"] = confusion_matrix_png(outputs.metrics_by_model[best]["test"]["confusion_matrix"], classes)
    outputs.figures[f"Confusion matrix of songs ({best}, out of fold)"] = "confusion_songs.png"
    if params.ablation:
        rows = ablation_rows(params, results, predictions)
        outputs.files["ablation.json"] = rows
        outputs.notes.append("### Ablation: stem x augmentation x single model vs ensemble (song accuracy, out of fold)\n\n"
                             + markdown_table(rows))
    if params.pretrained:
        rows = transfer_rows(params, results, summaries)
        outputs.files["transfer.json"] = rows
        outputs.notes.append(f"### Transfer from `{params.pretrained}`: song accuracy vs unfrozen blocks (unfreeze N: the "
                             "last N blocks and the head train, the rest stays as loaded; 0: the head only)\n\n"
                             + markdown_table(rows) + _transfer_notes(summaries))
    return outputs


def ablation_rows(params: VocalGenreParams, results: dict[Variant, dict], predictions: dict[Variant, pd.DataFrame]) -> list[dict]:
    rows = []
    for stem in ABLATION_STEMS:
        for augment in (True, False):
            variants = [Variant(m, stem, augment) for m in params.models]
            row = {"stem": stem, "augmentation": "on" if augment else "off"}
            row.update({m: round(results[v]["song_accuracy"], 4) for m, v in zip(params.models, variants)})
            if len(variants) > 1:
                row["ensemble (sum)"] = round(ensembles([predictions[v] for v in variants])["sum"]["song_accuracy"], 4)
            rows.append(row)
    return rows


def transfer_rows(params: VocalGenreParams, results: dict[Variant, dict], summaries: dict[Variant, list[dict]]) -> list[dict]:
    ladder = [("from scratch", Variant(m, params.stem, True)) for m in params.models]
    ladder += [(f"pretrained, unfreeze {n}", Variant(m, params.stem, True, n)) for n in params.unfreeze
               for m in params.models]
    return [{"model": v.model, "training": label, "song_accuracy": round(results[v]["song_accuracy"], 4),
             "slice_accuracy": round(results[v]["accuracy"], 4), "trainable_parameters": summaries[v][0]["trainable_parameters"]}
            for label, v in ladder]


def _transfer_notes(summaries: dict[Variant, list[dict]]) -> str:
    notes = sorted({f"{v.model}: {note}" for v, s in summaries.items() if v.unfreeze is not None
                    for note in s[0]["transfer_notes"]})
    return "".join(f"\n- {note}" for note in notes)


def _ensemble_note(combined: dict) -> str:
    rows = [{"ensemble": label, **_headline(combined[key])} for key, label in
            (("sum", "sum of probabilities"), ("learned", "learned weights, cross-fitted on out-of-fold songs"),
             ("learned_in_sample", "learned weights, fitted and scored on the same songs (optimistic)"))]
    return ("### Ensembles of the models (out of fold)\n\nThe learned weighting overfits when its cross-fitted score "
            "falls below the sum's while its in-sample score does not.\n\n" + markdown_table(rows))


def _method_note(params: VocalGenreParams) -> str:
    separator = separator_of(params.stem, params.demucs_weights is not None) or "none (the unseparated mix)"
    if separator == "demucs":
        separator, how = f"demucs, checkpoint {params.demucs_weights}", "analysed from Demucs's separated waveforms"
    elif params.resynthesize:
        how = "re-analysed from the resynthesized waveform (--resynthesize)"
    else:
        how = "computed from the separator's masked STFT (no resynthesis)"
    return (f"Stem `{params.stem}` (separator: {separator}); log-mels {how}. {params.folds}-fold song-level "
            "stratified cross-validation: `test` metrics are out of fold (each song scored once, by the model that never "
            "saw it); `song_*` (the headline) average a song's slice probabilities, the others score slices alone. "
            f"Training: {params.scheduler} schedule, SpecAugment {'on' if params.spec_augment else 'off'}, mixup alpha "
            f"{params.mixup_alpha} in the first {params.mixup_fraction:.0%} of epochs, best-validation checkpoint.")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
