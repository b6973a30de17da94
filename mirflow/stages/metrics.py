"""Evaluation metrics as JSON-safe dicts (plain floats/ints/lists; undefined values are None).

Single-label classification (GTZAN, CIFAR-100), regression (MSD hotness), multi-label
genre (AcousticBrainz, MediaEval 2018 definitions) and binary re-listen (KKBOX).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mirflow.core.errors import ConfigError

# scikit-learn and matplotlib take seconds to import: they are imported where used.


def classification_report(y_true, y_pred, labels: Sequence) -> dict:
    """Accuracy, macro and per-class precision/recall/F1 (sklearn, zero_division=0), confusion matrix.

    Macro averages run over all of ``labels``; ``confusion_matrix[i][j]`` counts rows of
    true ``labels[i]`` predicted as ``labels[j]``.
    """
    from sklearn import metrics as skm

    y_true, y_pred, labels = np.asarray(y_true), np.asarray(y_pred), list(labels)
    _check_same_length(y_true, y_pred)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = sorted(set(pd.unique(values).tolist()) - set(labels), key=str)
        if unknown:
            raise ConfigError(f"{name} has labels not in labels: {unknown[:5]}")
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "labels": [_plain(label) for label in labels],
        "per_class": {
            str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def confusion_matrix_png(cm, labels: Sequence, path_or_buffer: str | Path | BinaryIO | None = None) -> bytes:
    """PNG of a confusion matrix (colour = share of the true class, text = count); returns its bytes.

    Uses a bare Agg figure, never pyplot, so no window opens and no global state is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(cm, dtype=float)
    if counts.ndim != 2 or counts.shape != (len(labels), len(labels)):
        raise ConfigError(f"cm has shape {counts.shape}, expected ({len(labels)}, {len(labels)}) for the labels")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.55 * len(labels) + 2.0)
    figure = Figure(figsize=(side, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, [str(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(ticks, [str(label) for label in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(labels) <= 30:  # beyond that the numbers are unreadable anyway
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, f"{count:g}", ha="center", va="center", color=colour, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    png = buffer.getvalue()
    if isinstance(path_or_buffer, (str, Path)):
        Path(path_or_buffer).write_bytes(png)
    elif path_or_buffer is not None:
        path_or_buffer.write(png)
    return png


def regression_report(y_true, y_pred) -> dict:
    """RMSE, MAE and R² (R² is None with fewer than two rows)."""
    from sklearn import metrics as skm

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    _check_same_length(y_true, y_pred)
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ConfigError("regression_report: y_true and y_pred must be finite (no NaN/inf)")
    return {
        "n": int(len(y_true)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) >= 2 else None,
    }


def multilabel_report(Y_true, scores, label_names: Sequence[str], threshold: float) -> dict:
    """Macro ROC AUC plus MediaEval 2018 AcousticBrainz per-track and per-label P/R/F.

    ``Y_true`` is a tracks x labels 0/1 indicator (numpy, sparse or DataFrame; binarise
    label lists with sklearn's MultiLabelBinarizer(classes=label_names)); a label is
    predicted where ``scores >= threshold``.
    """
    from sklearn import metrics as skm

    truth, scores = _indicator_and_scores(Y_true, scores, label_names)
    predicted = scores >= threshold
    aucs = {}
    for j, name in enumerate(label_names):
        both_classes = 0 < truth[:, j].sum() < len(truth)
        aucs[str(name)] = float(skm.roc_auc_score(truth[:, j], scores[:, j])) if both_classes else None
    scored = [v for v in aucs.values() if v is not None]
    track_p, track_r, track_f = _prf_by_column(truth.T, predicted.T)  # a track is a column of the transpose
    label_p, label_r, label_f = _prf_by_column(truth, predicted)
    return {
        "n_tracks": int(len(truth)),
        "n_labels": len(label_names),
        "threshold": float(threshold),
        "roc_auc_macro": float(np.mean(scored)) if scored else None,
        "roc_auc_labels_skipped": len(aucs) - len(scored),  # labels with one class only in Y_true
        "roc_auc_per_label": aucs,
        "per_track": _prf_summary(track_p, track_r, track_f),
        "per_label": _prf_summary(label_p, label_r, label_f),
    }


def choose_threshold(Y_true, scores) -> float:
    """The threshold maximising mean per-track F-score on the given (training/out-of-fold) data.

    Exact: per-track F only changes where the threshold passes a score, so one sweep over
    the sorted scores evaluates every distinct threshold. Returns the midpoint between the
    best score and the next lower one (the same predictions, with a margin); ties go to
    the highest threshold.
    """
    truth, scores = _indicator_and_scores(Y_true, scores, None)
    labelled = truth.any(axis=1)
    if not labelled.any():
        raise ConfigError("choose_threshold: Y_true has no positive label to fit a threshold on")
    truth, scores = truth[labelled], scores[labelled]
    # Per track, predicting its k highest-scored labels gives F_k = 2 TP_k / (k + |true|).
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked_scores = np.take_along_axis(scores, order, axis=1).ravel()
    true_positives = np.cumsum(np.take_along_axis(truth, order, axis=1), axis=1)
    n_predicted = np.arange(1, truth.shape[1] + 1)
    f_scores = 2 * true_positives / (n_predicted + truth.sum(axis=1, keepdims=True))
    f_gains = np.diff(f_scores, axis=1, prepend=0.0).ravel()
    # Lower the threshold score by score over all tracks; total F is the running sum of gains.
    events = np.argsort(-ranked_scores, kind="stable")
    event_scores = ranked_scores[events]
    total_f = np.cumsum(f_gains[events])
    group_ends = np.flatnonzero(np.r_[event_scores[1:] != event_scores[:-1], True])  # all equal scores included
    best = group_ends[int(np.argmax(total_f[group_ends]))]
    next_lower = event_scores[best + 1] if best + 1 < len(event_scores) else event_scores[best]
    return float((event_scores[best] + next_lower) / 2)


def binary_report(y_true, scores) -> dict:
    """ROC AUC (None if one class only), log loss and accuracy at 0.5 for P(positive) scores."""
    from sklearn import metrics as skm

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    _check_same_length(y_true, scores)
    if not np.isin(y_true, (0, 1)).all():
        raise ConfigError("binary_report: y_true must hold only 0/1 (or False/True)")
    if not (np.all(scores >= 0) and np.all(scores <= 1)):
        raise ConfigError("binary_report: scores must be probabilities in [0, 1] (apply a sigmoid first)")
    y_true = y_true.astype(int)
    one_class = len(np.unique(y_true)) < 2
    return {
        "n": int(len(y_true)),
        "positive_rate": float(y_true.mean()),
        "roc_auc": None if one_class else float(skm.roc_auc_score(y_true, scores)),
        "log_loss": float(skm.log_loss(y_true, scores, labels=[0, 1])),
        "accuracy": float(skm.accuracy_score(y_true, scores >= 0.5)),
    }


# Per-track and per-label P/R/F follow the task's official scorer, eval.R in
# github.com/MTG/acousticbrainz-genre-dataset (evaluation/eval.R): per track,
# P = |pred ∩ true| / |pred| (0 when nothing is predicted, as eval.R sets for its genre
# and subgenre subsets), R = |pred ∩ true| / |true|, F = 2PR/(P+R) (0 when P+R = 0),
# and the reported scores are the MEANS over tracks of P, R and of the per-track F
# (not F of the mean P and R). Tracks without true labels are left out (the task
# guarantees at least one). Per label: P = TP/predicted (0 when none), R = TP/true,
# over labels with at least one true track, then averaged over labels. Both are
# sklearn's per-column precision_recall_fscore_support(zero_division=0): per label on
# the indicator, per track on its transpose.
def _prf_by_column(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P, R and F of each column of a 0/1 indicator that has a true row."""
    from sklearn import metrics as skm

    keep = truth.any(axis=0)
    truth, predicted = truth[:, keep], predicted[:, keep]
    if truth.shape[1] == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    if truth.shape[1] == 1:  # sklearn reads one column as a binary target: score its True class
        truth, predicted, options = truth[:, 0], predicted[:, 0], {"labels": [True]}
    else:
        options = {"average": None}
    precision, recall, f_score, _ = skm.precision_recall_fscore_support(truth, predicted, zero_division=0, **options)
    return precision, recall, f_score


def _prf_summary(precision: np.ndarray, recall: np.ndarray, f_score: np.ndarray) -> dict:
    return {"precision": _mean(precision), "recall": _mean(recall), "f_score": _mean(f_score), "n": len(f_score)}


def _indicator_and_scores(Y_true, scores, label_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    truth = Y_true.toarray() if sp.issparse(Y_true) else np.asarray(Y_true)
    scores = np.asarray(scores, dtype=float)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise ConfigError(f"Y_true {truth.shape} and scores {scores.shape} must be 2-D arrays of one shape")
    if label_names is not None and len(label_names) != truth.shape[1]:
        raise ConfigError(f"label_names has {len(label_names)} names but Y_true has {truth.shape[1]} columns")
    if not np.isin(truth, (0, 1)).all():
        raise ConfigError("Y_true must be a 0/1 indicator (binarise label lists with MultiLabelBinarizer)")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("scores must be finite (no NaN/inf)")
    return truth.astype(bool), scores


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ConfigError(f"y_true has {len(a)} rows but the predictions have {len(b)}")


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _plain(value):
    """A numpy scalar as the Python value json can write."""
    return value.item() if isinstance(value, np.generic) else value
