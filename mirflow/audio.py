"""Decode audio files to mono float32 at a fixed rate, and cut waveforms into segments."""

from __future__ import annotations

from pathlib import Path

import audioread
import librosa
import numpy as np
import soundfile as sf

from mirflow.errors import AudioDecodeError, ConfigError
from mirflow.numba_cache import ensure_compiled


def _describe(error: Exception) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(samples × channels float32, native rate): soundfile, else audioread via librosa."""
    # Both excepts are broad on purpose: besides libsndfile's errors, a corrupt header
    # can claim a huge stream (MemoryError), and audioread's backends raise many types;
    # each means "this decoder cannot read it".
    try:
        return sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # noqa: BLE001
        soundfile_reason = _describe(error)
    try:
        # An open audioread file makes librosa.load skip its own soundfile attempt.
        y, native_sr = librosa.load(audioread.audio_open(str(path)), sr=None, mono=False)
    except Exception as error:  # noqa: BLE001
        reason = f"soundfile: {soundfile_reason}; audioread: {_describe(error)}"
        raise AudioDecodeError(path, reason) from error
    return np.atleast_2d(y).T, int(native_sr)


def load_audio(path: str | Path, sr: int = 22050) -> np.ndarray:
    """Mono float32 waveform at ``sr`` Hz (channels averaged, resampled with soxr_hq).

    Raises AudioDecodeError naming the file when it is missing, undecodable, empty or
    holds non-finite samples (librosa's features reject any NaN/inf, so one is enough).
    """
    ensure_compiled()  # before this process's first librosa call: see mirflow.numba_cache
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "file is empty (0 bytes)")
    frames, native_sr = _decode(path)
    if frames.size == 0:
        raise AudioDecodeError(path, "no audio samples (zero-length stream)")
    y = frames.mean(axis=1, dtype=np.float32)
    if not np.isfinite(y).all():
        raise AudioDecodeError(path, "audio holds NaN or infinite samples")
    if native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    return y


def segment_waveform(y: np.ndarray, sr: int, segment_seconds: float | None) -> list[np.ndarray]:
    """Consecutive non-overlapping segments of exactly ``segment_seconds``.

    None keeps the whole waveform. A trailing remainder shorter than a segment is
    dropped. A waveform shorter than one segment is zero-padded to one segment instead,
    so a short clip still yields a row (with its label) rather than vanishing silently.
    """
    if y.ndim != 1 or y.size == 0:
        raise ConfigError(f"y must be a non-empty 1-D waveform, got shape {y.shape}")
    if segment_seconds is None:
        return [y]
    length = round(segment_seconds * sr)
    if length < 1:
        raise ConfigError(f"segment_seconds={segment_seconds} is shorter than one sample at sr={sr}")
    if y.size < length:
        return [np.pad(y, (0, length - y.size))]
    return [y[start : start + length] for start in range(0, y.size - length + 1, length)]
