"""Metrics against sklearn and hand-worked examples."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import metrics as skm

from mirflow.core.errors import ConfigError
from mirflow.stages.metrics import (
    binary_report,
    choose_threshold,
    classification_report,
    confusion_matrix_png,
    multilabel_report,
    regression_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_classification_report_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = ["blues", "jazz", "metal", "pop"]
    y_true = rng.choice(labels, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.choice(labels, 200))
    report = classification_report(y_true, y_pred, labels)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert report["macro_recall"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert report["per_class"]["jazz"]["precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, labels=["jazz"], average=None)[0]
    )
    assert report["per_class"]["pop"]["support"] == int((y_true == "pop").sum())
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert json.loads(json.dumps(report)) == report


def test_classification_report_by_hand_with_int_labels():
    report = classification_report(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), np.array([0, 1, 2]))
    assert report["accuracy"] == 0.5
    assert report["per_class"]["1"] == {"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1}
    assert report["per_class"]["2"]["f1"] == 0.0  # never predicted: zero_division=0
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert report["labels"] == [0, 1, 2] and isinstance(report["labels"][0], int)


def test_labels_outside_the_label_list_are_rejected():
    with pytest.raises(ConfigError, match=r"y_pred has labels not in labels: \['reggae'\]"):
        classification_report(["pop", "rock"], ["pop", "reggae"], ["pop", "rock"])


def test_confusion_matrix_png_bytes_path_and_buffer(tmp_path):
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 6]]
    png = confusion_matrix_png(cm, ["classical", "country", "hiphop"], tmp_path / "cm.png")
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert (tmp_path / "cm.png").read_bytes() == png
    buffer = io.BytesIO()
    assert confusion_matrix_png(cm, ["classical", "country", "hiphop"], buffer) == buffer.getvalue()
    with pytest.raises(ConfigError, match="expected \\(2, 2\\)"):
        confusion_matrix_png(cm, ["a", "b"])


def test_regression_report_by_hand():
    report = regression_report([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    assert report == {"n": 4, "rmse": pytest.approx(0.5), "mae": pytest.approx(0.25), "r2": pytest.approx(0.8)}
    with pytest.raises(ConfigError, match="finite"):
        regression_report([1.0, math.nan], [1.0, 2.0])


LABELS = ["rock", "pop", "jazz", "blues"]
# tracks: true {rock, pop}, {jazz}, {pop}; blues is never true (AUC undefined)
TRUTH = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]])
SCORES = np.array(
    [
        [0.9, 0.4, 0.1, 0.2],  # predicts {rock}
        [0.2, 0.6, 0.8, 0.1],  # predicts {pop, jazz}
        [0.1, 0.3, 0.2, 0.3],  # predicts nothing
    ]
)


def test_multilabel_report_hand_worked_mediaeval_scores():
    report = multilabel_report(TRUTH, SCORES, LABELS, threshold=0.5)
    # per track (P, R, F): (1, 1/2, 2/3), (1/2, 1, 2/3), (0, 0, 0); F is the mean of per-track F
    assert report["per_track"] == {"precision": 0.5, "recall": 0.5, "f_score": pytest.approx(4 / 9), "n": 3}
    # per label over rock, pop, jazz: (1, 1, 1), (0, 0, 0), (1, 1, 1); blues has no true track
    assert report["per_label"] == {
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f_score": pytest.approx(2 / 3),
        "n": 3,
    }
    assert report["roc_auc_labels_skipped"] == 1 and report["roc_auc_per_label"]["blues"] is None
    expected_aucs = [skm.roc_auc_score(TRUTH[:, j], SCORES[:, j]) for j in range(3)]
    assert report["roc_auc_macro"] == pytest.approx(np.mean(expected_aucs))
    assert json.loads(json.dumps(report)) == report


def test_multilabel_report_takes_a_sparse_indicator():
    dense = multilabel_report(TRUTH, SCORES, LABELS, threshold=0.5)
    assert multilabel_report(sp.csr_matrix(TRUTH), SCORES, LABELS, threshold=0.5) == dense
    with pytest.raises(ConfigError, match="label_names has 3 names"):
        multilabel_report(TRUTH, SCORES, LABELS[:3], threshold=0.5)


def test_multilabel_scores_are_sklearns_precision_recall_fscore_support():
    rng = np.random.default_rng(7)
    truth = (rng.random((60, 6)) < 0.3).astype(int)
    truth[:, 5] = 0  # a label without true tracks: left out of the per-label means
    truth[:4] = 0  # tracks without true labels: left out of the per-track means
    scores = rng.random(truth.shape)
    report = multilabel_report(truth, scores, [f"l{j}" for j in range(6)], threshold=0.6)
    predicted = scores >= 0.6
    p, r, f, support = skm.precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    labelled = support > 0
    expected = {"precision": p[labelled].mean(), "recall": r[labelled].mean(), "f_score": f[labelled].mean(), "n": 5}
    assert report["per_label"] == pytest.approx(expected, rel=1e-12)
    tracks = truth.any(axis=1)
    p, r, f, _ = skm.precision_recall_fscore_support(truth[tracks], predicted[tracks], average="samples", zero_division=0)
    expected = {"precision": p, "recall": r, "f_score": f, "n": int(tracks.sum())}
    assert report["per_track"] == pytest.approx(expected, rel=1e-12) and expected["n"] < 56


def test_multilabel_report_with_one_label_or_one_track():
    """sklearn reads a one-column indicator as a binary target; the scores stay per label/track."""
    one_label = multilabel_report(np.array([[1], [1], [0]]), np.array([[0.9], [0.1], [0.8]]), ["rock"], 0.5)
    assert one_label["per_label"] == {"precision": 0.5, "recall": 0.5, "f_score": 0.5, "n": 1}
    assert one_label["per_track"] == {"precision": 0.5, "recall": 0.5, "f_score": 0.5, "n": 2}
    one_track = multilabel_report(TRUTH[:1], SCORES[:1], LABELS, 0.5)
    assert one_track["per_track"] == {"precision": 1.0, "recall": 0.5, "f_score": pytest.approx(2 / 3), "n": 1}


def mean_track_f(truth, scores, threshold):
    return multilabel_report(truth, scores, [f"l{j}" for j in range(truth.shape[1])], threshold)["per_track"]["f_score"]


def test_choose_threshold_by_hand():
    # per-track F by lowest score predicted: >= 0.4: (1, 2/3, 0); >= 0.3: (1, 2/3, 2/3) with
    # {pop, blues} for track 3; >= 0.2: (4/5, 1/2, 1/2). Best 0.3, next lower score 0.2.
    threshold = choose_threshold(TRUTH, SCORES)
    assert threshold == pytest.approx(0.25)
    assert mean_track_f(TRUTH, SCORES, threshold) == pytest.approx(7 / 9)


def test_choose_threshold_beats_every_candidate_by_brute_force():
    rng = np.random.default_rng(3)
    truth = (rng.random((40, 5)) < 0.35).astype(int)
    scores = np.round(0.4 * truth + rng.random((40, 5)), 2)  # rounded: many tied scores
    best = mean_track_f(truth, scores, choose_threshold(truth, scores))
    brute_force = max(mean_track_f(truth, scores, t) for t in np.unique(scores))
    assert best == pytest.approx(brute_force)


def test_choose_threshold_separates_separable_scores():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 6)) < 0.3).astype(int)
    scores = np.where(truth, rng.uniform(0.55, 1.0, truth.shape), rng.uniform(0.0, 0.45, truth.shape))
    threshold = choose_threshold(truth, scores)
    assert 0.45 < threshold < 0.55
    assert mean_track_f(truth, scores, threshold) == 1.0


def test_binary_report_matches_sklearn():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 300)
    scores = np.clip(0.3 * y_true + rng.uniform(0, 0.7, 300), 0, 1)
    report = binary_report(y_true, scores)
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, scores))
    assert report["log_loss"] == pytest.approx(skm.log_loss(y_true, scores))
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, scores >= 0.5))
    assert binary_report([1, 1], [0.9, 0.4])["roc_auc"] is None
    with pytest.raises(ConfigError, match="probabilities"):
        binary_report([0, 1], [-2.0, 3.0])
