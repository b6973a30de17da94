"""Scalers fitted on training rows only, their audit, and train-mean imputation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

from mirflow.core.errors import ConfigError
from mirflow.stages.scaling import (
    FittedScaler,
    apply_scaler,
    audit_scaler,
    fill_missing_with_train_mean,
    fit_scaler_on_train,
)

N_ROWS = 90


@pytest.fixture
def data():
    """Features whose test rows are shifted, so all-row statistics differ from train-row ones."""
    rng = np.random.default_rng(0)
    ids = [f"clip{i:03d}" for i in range(N_ROWS)]
    split = pd.Series(np.repeat(["train", "validation", "test"], [60, 15, 15]), index=ids)
    values = rng.normal(0.0, 1.0, (N_ROWS, 4))
    values[75:] += 5.0  # test rows
    values[:, 3] = 2.5  # constant column
    frame = pd.DataFrame(values, index=ids, columns=["mfcc01_mean", "mfcc01_std", "centroid", "constant"])
    return frame, split


def train_values(frame, split):
    return frame.to_numpy()[(split == "train").to_numpy()]


def test_scaler_uses_training_rows_only(data):
    frame, split = data
    scaler = fit_scaler_on_train(frame, split)
    assert scaler.n_rows == 60
    assert np.allclose(scaler.center, train_values(frame, split).mean(axis=0))
    assert not np.allclose(scaler.center[:3], frame.to_numpy().mean(axis=0)[:3])
    assert np.allclose(scaler.scale[:3], StandardScaler().fit(train_values(frame, split)).scale_[:3])
    assert scaler.scale[3] == 1.0  # zero variance: divide by 1
    assert scaler.columns == ("mfcc01_mean", "mfcc01_std", "centroid", "constant")


def test_minmax_matches_sklearn_on_training_rows(data):
    frame, split = data
    scaled = apply_scaler(fit_scaler_on_train(frame, split, kind="minmax"), frame)
    expected = MinMaxScaler().fit(train_values(frame, split)).transform(frame.to_numpy())
    assert np.allclose(scaled.to_numpy()[:, :3], expected[:, :3], atol=1e-6)
    assert isinstance(scaled, pd.DataFrame) and scaled.dtypes.eq(np.float32).all()


def test_split_is_matched_to_dataframe_rows_by_id(data):
    frame, split = data
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert np.allclose(fit_scaler_on_train(shuffled, split).center, fit_scaler_on_train(frame, split).center)


def test_nan_aware_statistics_and_nan_kept_by_apply(data):
    frame, split = data
    frame.iloc[0, 0] = np.nan
    scaler = fit_scaler_on_train(frame.to_numpy(), split)
    assert np.isclose(scaler.center[0], np.nanmean(train_values(frame, split)[:, 0]))
    scaled = apply_scaler(scaler, frame.to_numpy())
    assert np.isnan(scaled[0, 0]) and scaled.dtype == np.float32


def test_audit_is_clean_for_a_correct_scaler_even_after_a_json_round_trip(data):
    frame, split = data
    scaler = fit_scaler_on_train(frame, split)
    saved = FittedScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert audit_scaler(saved, frame, split) == []


def test_audit_catches_a_scaler_fitted_on_all_rows(data):
    frame, split = data
    leaky = fit_scaler_on_train(frame, pd.Series("train", index=split.index))
    problems = audit_scaler(leaky, frame, split)
    assert problems[0] == "scaler fitted on 90 rows but the training split has 60 (all rows: fitted on all rows?)"
    assert any(p.startswith("mean of column mfcc01_mean differs") for p in problems)


def test_audit_catches_the_right_count_of_wrong_rows(data):
    frame, split = data
    swapped = split.copy()
    swapped.iloc[:15] = "test"
    swapped.iloc[75:] = "train"  # still 60 training rows, 15 of them test rows
    problems = audit_scaler(fit_scaler_on_train(frame, swapped), frame, split)
    assert "row-id fingerprint differs" in problems[0]
    assert any("mean of column centroid differs" in p for p in problems)


def test_sparse_input_stays_sparse_and_is_never_centred():
    rng = np.random.default_rng(1)
    matrix = sp.random(80, 6, density=0.2, format="csr", random_state=2, data_rvs=lambda n: rng.uniform(0, 9, n))
    split = pd.Series(np.repeat(["train", "test"], [60, 20]), index=[f"track{i}" for i in range(80)])
    train = matrix[:60]

    standard = fit_scaler_on_train(matrix, split)
    assert np.allclose(standard.scale, StandardScaler(with_mean=False).fit(train).scale_)
    assert not standard.center.any()
    maxabs = fit_scaler_on_train(matrix, split, kind="maxabs")
    assert np.allclose(maxabs.scale, MaxAbsScaler().fit(train).scale_)

    scaled = apply_scaler(maxabs, matrix)
    assert sp.issparse(scaled) and scaled.nnz == matrix.nnz and scaled.dtype == np.float32
    assert np.allclose(scaled.toarray(), MaxAbsScaler().fit(train).transform(matrix).toarray(), atol=1e-6)
    assert audit_scaler(maxabs, matrix, split) == []
    assert audit_scaler(fit_scaler_on_train(matrix, split.map(lambda s: "train"), kind="maxabs"), matrix, split)
    with pytest.raises(ConfigError, match="minmax scaling centres.*use maxabs"):
        fit_scaler_on_train(matrix, split, kind="minmax")


SKLEARN = {  # kind -> the sklearn scaler and its (center, scale) of x' = (x - center) / scale
    "standard": (StandardScaler, lambda fitted: (fitted.mean_, fitted.scale_)),
    "minmax": (MinMaxScaler, lambda fitted: (fitted.data_min_, 1 / fitted.scale_)),
    "maxabs": (MaxAbsScaler, lambda fitted: (0.0, fitted.scale_)),
}


@pytest.mark.parametrize("kind", SKLEARN)
def test_statistics_and_output_are_sklearns_on_the_training_rows(data, kind):
    frame, split = data
    frame.iloc[[2, 70], [0, 2]] = np.nan  # NaN in training and test rows: ignored by the fit, kept by apply
    values, train = frame.to_numpy(), (split == "train").to_numpy()
    scaler = fit_scaler_on_train(frame, split, kind=kind)
    estimator, affine = SKLEARN[kind]
    reference = estimator().fit(values[train])
    center, scale = affine(reference)
    np.testing.assert_allclose(scaler.center, center, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaler.scale, scale, rtol=1e-12)
    np.testing.assert_allclose(apply_scaler(scaler, frame).to_numpy(), reference.transform(values), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", SKLEARN)
def test_hard_columns_get_sklearns_statistics(kind):
    """The dense statistics are computed with numpy (no sklearn import on a re-run's audit):
    constant, near-constant, tiny-range, large-offset, sparse-NaN and all-NaN columns
    must still get exactly what sklearn's scaler fits (all-NaN: center 0, scale 1)."""
    rng = np.random.default_rng(1)
    n = 200
    columns = {
        "constant": np.full(n, 3.0), "near_constant": np.full(n, 0.1), "tiny_range": 1.0 + rng.normal(0, 1e-14, n),
        "offset": 1e8 + rng.normal(0, 1, n), "negative": -rng.gamma(2.0, 3.0, n), "zero_one": rng.integers(0, 2, n) * 1.0,
        "some_nan": np.where(rng.random(n) < 0.2, np.nan, rng.normal(5, 2, n)), "all_nan": np.full(n, np.nan),
    }
    frame = pd.DataFrame(columns, index=[f"r{i}" for i in range(n)])
    scaler = fit_scaler_on_train(frame, pd.Series("train", index=frame.index), kind=kind)
    estimator, affine = SKLEARN[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN column
        center, scale = affine(estimator().fit(frame.to_numpy()))
    shape = (frame.shape[1],)
    np.testing.assert_allclose(scaler.center, np.nan_to_num(np.broadcast_to(center, shape), nan=0.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaler.scale, np.nan_to_num(np.broadcast_to(scale, shape), nan=1.0), rtol=1e-12)


def test_infinite_training_values_are_refused_as_sklearn_does(data):
    frame, split = data
    frame.iloc[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fit_scaler_on_train(frame, split)


def test_near_constant_training_column_is_not_blown_up(data):
    """0.1 is not exact in binary: its std over 60 equal values is ~4e-17, not 0. Dividing
    by that made any other value ~1e16; sklearn's scalers treat the column as constant."""
    frame, split = data
    frame["constant"] = np.where(split == "train", 0.1, 0.6)
    scaler = fit_scaler_on_train(frame, split)
    assert scaler.scale[3] == 1.0
    assert apply_scaler(scaler, frame)["constant"].max() == pytest.approx(0.5)


def test_a_centring_scaler_refuses_sparse_input(data):
    frame, split = data
    scaler = fit_scaler_on_train(frame, split)
    with pytest.raises(ConfigError, match="centring"):
        apply_scaler(scaler, sp.csr_matrix(frame.to_numpy()))


def test_nan_filled_with_training_means_only(data):
    frame, split = data
    frame.iloc[1, 0] = np.nan  # a training row
    frame.iloc[80, 2] = np.nan  # a test row
    filled, means = fill_missing_with_train_mean(frame, split)
    train_means = np.nanmean(train_values(frame, split), axis=0)
    assert np.allclose(means, train_means)
    assert filled.iloc[1, 0] == pytest.approx(train_means[0])
    assert filled.iloc[80, 2] == pytest.approx(train_means[2])
    assert filled.iloc[80, 2] != pytest.approx(np.nanmean(frame.to_numpy()[:, 2]))
    assert not filled.isna().any().any() and frame.isna().sum().sum() == 2  # input untouched


def test_bad_arguments_are_config_errors(data):
    frame, split = data
    with pytest.raises(ConfigError, match="scaler kind"):
        fit_scaler_on_train(frame, split, kind="robust")
    with pytest.raises(ConfigError, match="split has 89 rows but X has 90"):
        fit_scaler_on_train(frame.to_numpy(), split.iloc[1:])
    with pytest.raises(ConfigError, match="no training rows"):
        fit_scaler_on_train(frame, split.map(lambda s: "test"))
    with pytest.raises(ConfigError, match="scaler has 4 columns but X has 3"):
        apply_scaler(fit_scaler_on_train(frame, split), frame.iloc[:, :3])
