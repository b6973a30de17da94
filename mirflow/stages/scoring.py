"""How a clip is scored: the one definition that evaluation and `mirflow predict` share.

- A clip becomes rows (``clip_rows``): the whole clip; or consecutive segments of
  ``segment_seconds`` when the run segments clips; a recording longer than
  1.5 × ``CLIP_SECONDS`` without segments is cut into ``CLIP_SECONDS`` windows (the
  length of the clips models are trained on), rather than summarised as one row.
- A row becomes model inputs (``model_inputs``): the MLP its scaled feature columns;
  the CNN windows of ``cnn_frames`` log-mel frames, band-normalised. Training draws one
  random window per row and epoch (``window_start``); scoring takes every window
  (``window_starts``: evenly spread, covering every frame).
- A row's probabilities are the mean of its windows' softmax (``row_probabilities``);
  a clip's are the mean of its rows' (``clip_probabilities``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mirflow.io.audio import segment_waveform
from mirflow.stages import scaling

CLIP_SECONDS = 30.0  # GTZAN's clip length
WINDOW_BATCH = 64  # CNN windows per forward pass when scoring (64 × 128 × 128 inputs: ~70 MB of first-layer activations)


def clip_rows(y: np.ndarray, sr: int, segment_seconds: float | None) -> list[np.ndarray]:
    """The waveforms a clip is scored as, one per row (see the module docstring)."""
    if segment_seconds is None and len(y) > 1.5 * CLIP_SECONDS * sr:
        segment_seconds = CLIP_SECONDS
    return segment_waveform(y, sr, segment_seconds)


@dataclass(frozen=True)
class Preprocessing:
    """Everything fitted on the training rows that turns a stored row into model input."""

    scaler: scaling.FittedScaler
    band_mean: np.ndarray  # per mel band, over training rows' frames
    band_std: np.ndarray

    def to_dict(self) -> dict:
        return {
            "scaler": self.scaler.to_dict(),
            "band_mean": self.band_mean.tolist(),
            "band_std": self.band_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            scaling.FittedScaler.from_dict(data["scaler"]),
            np.asarray(data["band_mean"], dtype=np.float32),
            np.asarray(data["band_std"], dtype=np.float32),
        )


@dataclass(frozen=True)
class InputSpec:
    """How a stored row becomes a model input for one model kind, and how the rows were
    made (``extraction``: the extract stage's settings, JSON-able), so that a model file
    carrying it says how to score new audio."""

    model: str  # "mlp" | "cnn"
    feature_columns: tuple[str, ...]
    tensor_column: str
    n_mels: int
    cnn_frames: int
    extraction: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return ["label", self.tensor_column] if self.model == "cnn" else ["label", *self.feature_columns]

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        return cls(**{**data, "feature_columns": tuple(data["feature_columns"])})


def window_starts(n_frames: int, window: int) -> np.ndarray:
    """First frames of the windows a spectrogram is scored over: ceil(n_frames / window)
    windows spread evenly from the first frame to the last, so every frame is seen
    (one window, padded, when the spectrogram is shorter than a window)."""
    if n_frames <= window:
        return np.zeros(1, np.int64)
    return np.round(np.linspace(0, n_frames - window, -(-n_frames // window))).astype(np.int64)


def window_start(row_id: str, n_frames: int, window: int, seed: int, epoch: int) -> int:
    """A training window's first frame, uniform over the row and drawn from
    (seed, epoch, row): the same whatever order or batches the rows come in."""
    if n_frames <= window:
        return 0
    rng = np.random.default_rng((seed, epoch, zlib.crc32(row_id.encode())))
    return int(rng.integers(0, n_frames - window + 1))


def _window(mel: np.ndarray, start: int, frames: int, prep: Preprocessing) -> np.ndarray:
    """``frames`` columns from ``start``, band-normalised, zero-padded both sides when
    ``mel`` is shorter (zero = the band mean: padding comes after normalising)."""
    window = (mel[:, start : start + frames] - prep.band_mean[:, None]) / prep.band_std[:, None]
    have = window.shape[1]
    if have == frames:
        return window
    left = (frames - have) // 2
    return np.pad(window, ((0, 0), (left, frames - have - left)))


def _spectrograms(frame: pd.DataFrame, spec: InputSpec) -> list[np.ndarray]:
    """The rows' stored spectrograms as (n_mels, frames) views, not normalised: only
    the windows taken from them are."""
    return [np.asarray(values, np.float32).reshape(spec.n_mels, -1) for values in frame[spec.tensor_column]]


def model_inputs(frame: pd.DataFrame, spec: InputSpec, prep: Preprocessing, starts: Sequence[int] | None = None) -> np.ndarray:
    """One model input per row: scaled features (MLP), or one CNN window per row
    starting at ``starts`` (training) or centred (None: the validation loss)."""
    if spec.model != "cnn":
        return np.asarray(scaling.apply_scaler(prep.scaler, frame[list(spec.feature_columns)].to_numpy(np.float64)), np.float32)
    mels = _spectrograms(frame, spec)
    if starts is None:
        starts = [max(mel.shape[1] - spec.cnn_frames, 0) // 2 for mel in mels]
    return np.stack([_window(mel, start, spec.cnn_frames, prep) for mel, start in zip(mels, starts)])[:, None, :, :]


def row_probabilities(model, frame: pd.DataFrame, spec: InputSpec, prep: Preprocessing) -> np.ndarray:
    """Class probabilities of every row (rows × classes): the model on the row's input,
    or, for the CNN, the mean over all its windows (made and scored ``WINDOW_BATCH`` at
    a time, so memory does not grow with clip length)."""
    from mirflow.stages import training

    if spec.model != "cnn":
        x = model_inputs(frame, spec, prep)
        return training.predict(model, training.ArrayBatchSource(x, batch_size=WINDOW_BATCH), "multiclass")
    mels = _spectrograms(frame, spec)
    windows = [(row, start) for row, mel in enumerate(mels) for start in window_starts(mel.shape[1], spec.cnn_frames)]
    probabilities = []
    for first in range(0, len(windows), WINDOW_BATCH):
        chunk = windows[first : first + WINDOW_BATCH]
        x = np.stack([_window(mels[row], start, spec.cnn_frames, prep) for row, start in chunk])[:, None, :, :]
        probabilities.append(training.predict(model, training.ArrayBatchSource(x, batch_size=len(x)), "multiclass"))
    return mean_by(np.array([row for row, _ in windows]), np.concatenate(probabilities), len(frame))


def mean_by(owners: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` rows per owner 0..n-1 (float64)."""
    sums = np.zeros((n, values.shape[1]))
    np.add.at(sums, owners, values.astype(np.float64))
    return sums / np.bincount(owners, minlength=n)[:, None]


def clip_probabilities(clip_ids: Sequence[str], probabilities: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(clips in order of first appearance, mean of their rows' probabilities)."""
    codes, clips = pd.factorize(pd.Series(list(clip_ids)))
    return list(clips), mean_by(codes, probabilities, len(clips))
