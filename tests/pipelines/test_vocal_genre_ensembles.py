"""vocal_genre's ensembles: the sum of member probabilities and a learned weighting, fitted
on out-of-fold predictions and cross-fitted (mirflow.pipelines.vocal_genre.ensembles, evaluate)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mirflow.pipelines.vocal_genre.ensembles import fit_weights, sum_ensemble, weighted_ensemble
from mirflow.pipelines.vocal_genre.evaluate import ensembles


def _onehot(labels: np.ndarray, n: int, sharp: float = 0.9) -> np.ndarray:
    return np.where(np.eye(n)[labels] > 0, sharp, (1 - sharp) / (n - 1))


def test_sum_of_probabilities_is_their_renormalised_mean():
    rng = np.random.default_rng(0)
    members = rng.dirichlet(np.ones(4), size=(3, 10))
    summed = sum_ensemble(members)
    np.testing.assert_allclose(summed, members.mean(axis=0))
    np.testing.assert_allclose(summed.sum(axis=1), 1)


def test_learned_weights_favour_the_member_that_knows_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 200)
    informed, guessing = _onehot(labels, 4, 0.7), rng.dirichlet(np.ones(4), size=200)
    weights = fit_weights(np.stack([guessing, informed]), labels)
    assert weights[1] > 0.9 and np.isclose(weights.sum(), 1)
    mixture = weighted_ensemble(np.stack([guessing, informed]), weights)
    assert (mixture.argmax(1) == labels).mean() > (sum_ensemble(np.stack([guessing, informed])).argmax(1) == labels).mean() - 0.05


def _slices(labels: np.ndarray, folds: np.ndarray, right_in_fold: int) -> pd.DataFrame:
    """One slice per song; a member right on the songs of one fold and wrong (a fixed other class) elsewhere."""
    guess = np.where(folds == right_in_fold, labels, (labels + 1) % 3)
    frame = pd.DataFrame({"row_id": [f"s{i}#0" for i in range(len(labels))], "song": [f"s{i}" for i in range(len(labels))],
                          "label": np.array(list("abc"))[labels], "fold": folds, "round": folds})
    frame[["p_a", "p_b", "p_c"]] = _onehot(guess, 3)
    return frame


def test_the_learned_weighting_is_cross_fitted_on_the_other_folds_songs():
    labels, folds = np.arange(40) % 3, np.repeat([0, 1], 20)
    # Member 0 is right on fold 0, member 1 on fold 1: weights learned on the other fold pick the
    # member that is wrong here, so the cross-fitted score collapses where in-sample weights look fine.
    result = ensembles([_slices(labels, folds, 0), _slices(labels, folds, 1)])
    assert result["learned"]["song_accuracy"] < 0.2
    assert result["learned"]["weights_by_fold"][0][1] > 0.9 and result["learned"]["weights_by_fold"][1][0] > 0.9
    assert result["learned_in_sample"]["song_accuracy"] >= 0.5
    assert result["sum"]["song_accuracy"] == result["sum"]["accuracy"]  # one slice per song
