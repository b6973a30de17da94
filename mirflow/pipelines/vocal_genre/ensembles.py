"""Ensembles of member models' class probabilities (report 004): their sum, its winner, and
a learned weighting fitted on out-of-fold predictions, which the report found overfits."""

from __future__ import annotations

import numpy as np

from mirflow.core.errors import ConfigError


def _check(members: np.ndarray) -> np.ndarray:
    members = np.asarray(members, dtype=float)
    if members.ndim != 3 or not len(members):
        raise ConfigError(f"ensemble members must be (models, rows, classes) probabilities, got shape {members.shape}")
    return members


def sum_ensemble(members: np.ndarray) -> np.ndarray:
    """(rows, classes) probabilities: the members' sum, renormalised."""
    total = _check(members).sum(axis=0)
    return total / total.sum(axis=1, keepdims=True)


def weighted_ensemble(members: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.tensordot(np.asarray(weights, dtype=float), _check(members), axes=1)


def fit_weights(members: np.ndarray, labels: np.ndarray, steps: int = 300, lr: float = 0.5) -> np.ndarray:
    """Member weights (non-negative, summing to 1: a softmax of free parameters) minimising the
    log loss of the weighted mixture on ``labels`` (class indices), by gradient descent."""
    members = _check(members)
    truth = members[:, np.arange(members.shape[1]), np.asarray(labels)]  # (models, rows): each member's p(true class)
    theta = np.zeros(len(members))
    for _ in range(steps):
        weights = np.exp(theta - theta.max())
        weights /= weights.sum()
        mixture = np.maximum(weights @ truth, 1e-12)
        gradient = -(truth / mixture).mean(axis=1)  # d loss / d weight
        theta -= lr * weights * (gradient - weights @ gradient)
    weights = np.exp(theta - theta.max())
    return weights / weights.sum()
