"""GTZAN clip features (report 001's set) and the log-mel spectrogram, from one STFT.

``extract_clip_naive`` is the usual version: one librosa call per feature on the
waveform, each computing its own STFT. ``extract_clip`` computes the STFT once and
derives everything from it: librosa's functions with ``S=`` where that is cheap, and
equivalent vectorised forms of the four that dominate the cost once the STFTs are
shared (tuning estimation, centroid/bandwidth, rolloff, zero-crossing rate). Both give
librosa's ``y=`` values (tests/pipelines/test_gtzan_features.py checks them at rtol 1e-4; in practice
they agree to ~1e-9 or exactly).

A clip shorter than ``n_fft`` is computed, not rejected: librosa pads it (and warns
``n_fft ... too large``), so the values still equal librosa's; they are just few-frame
statistics. ``mirflow.io.audio.segment_waveform`` already pads short clips to a full segment.

Kept hand-written on purpose: the features themselves are librosa's (its definitions,
checked against it); only sharing one STFT and the four vectorised forms are ours, as
librosa's per-feature calls on ``y`` recompute the STFT each time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import librosa
import numpy as np

from mirflow.core.errors import ConfigError
from mirflow.core.numba_cache import ensure_compiled

_TEMPO = "tempo"  # the one clip-level feature, last column


@dataclass(frozen=True)
class FeatureSettings:
    """STFT and feature parameters; part of the feature artefact's identity."""

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 20
    n_mels: int = 128
    n_chroma: int = 12
    n_contrast_bands: int = 6
    roll_percent: float = 0.85

    def __post_init__(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "n_mfcc", "n_mels", "n_chroma", "n_contrast_bands"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"FeatureSettings.{name} must be a positive integer, got {value!r}")
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"FeatureSettings.n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")
        if not 0.0 < self.roll_percent < 1.0:
            raise ConfigError(f"FeatureSettings.roll_percent must lie in (0, 1), got {self.roll_percent}")
        # librosa's spectral_contrast bands start at 200 Hz and double n_contrast_bands times.
        if 200.0 * 2 ** (self.n_contrast_bands - 1) >= self.sr / 2:
            raise ConfigError(
                f"FeatureSettings.n_contrast_bands={self.n_contrast_bands} puts a contrast band "
                f"above Nyquist for sr={self.sr}"
            )

    def as_dict(self) -> dict[str, int | float]:
        """Plain dict for hashing and manifests."""
        return asdict(self)


def _row_counts(settings: FeatureSettings) -> dict[str, int]:
    """Framewise features in column order with their row counts; each row is summarised
    as ``<row>_mean``/``<row>_var``. Both extractors and ``feature_names`` follow it."""
    return {
        "mfcc": settings.n_mfcc,
        "chroma": settings.n_chroma,
        "spectral_centroid": 1,
        "spectral_bandwidth": 1,
        "spectral_rolloff": 1,
        "spectral_contrast": settings.n_contrast_bands + 1,
        "zero_crossing_rate": 1,
        "rms": 1,
    }


def _row_names(feature: str, n_rows: int) -> list[str]:
    """``mfcc01 … mfcc20`` for multi-row features, the bare name for single rows."""
    return [feature] if n_rows == 1 else [f"{feature}{i:02d}" for i in range(1, n_rows + 1)]


def feature_names(settings: FeatureSettings) -> list[str]:
    """Stable ordered column names of the summary features."""
    names = [
        f"{row}_{stat}"
        for feature, n_rows in _row_counts(settings).items()
        for row in _row_names(feature, n_rows)
        for stat in ("mean", "var")
    ]
    return names + [_TEMPO]


def _summarise(framewise: dict[str, np.ndarray], tempo: float) -> dict[str, float]:
    """Per-row mean and variance over frames, in ``feature_names`` order, then tempo."""
    summary: dict[str, float] = {}
    for feature, matrix in framewise.items():
        for row_name, row in zip(_row_names(feature, matrix.shape[0]), matrix):
            summary[f"{row_name}_mean"] = float(np.mean(row))
            summary[f"{row_name}_var"] = float(np.var(row))
    summary[_TEMPO] = tempo
    return summary


def _check_waveform(y: np.ndarray) -> None:
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.floating):
        raise ConfigError(f"y must be a non-empty 1-D float waveform, got {y.dtype} {y.shape}")
    if not np.isfinite(y).all():
        raise ConfigError("y holds NaN or infinite samples")


def _centroid_bandwidth(magnitude: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa's spectral_centroid and spectral_bandwidth (p=2) from spectral moments.

    One (2 × bins) @ (bins × frames) product replaces librosa's bins × frames deviation
    array: bandwidth² = E[f²] − E[f]² under the frame's normalised magnitudes. Frames
    summing below float32 ``tiny`` (silence) are left unnormalised, as
    ``librosa.util.normalize`` leaves them, so they give 0 rather than 0/0.
    """
    total = magnitude.sum(axis=0, dtype=np.float64)
    total[total < librosa.util.tiny(magnitude)] = 1.0
    mean_freq, mean_freq_sq = (np.stack([freq, freq**2]) @ magnitude) / total
    # clipped at 0: the subtraction can round a tone's near-zero spread below it
    bandwidth = np.sqrt(np.maximum(mean_freq_sq - mean_freq**2, 0.0))
    return mean_freq[np.newaxis], bandwidth[np.newaxis]


def _rolloff(magnitude: np.ndarray, freq: np.ndarray, roll_percent: float) -> np.ndarray:
    """librosa's spectral_rolloff: frequency of the first bin whose cumulative magnitude
    reaches roll_percent of the frame's total (argmax instead of a NaN-masked min)."""
    cumulative = np.cumsum(magnitude, axis=0)
    reached = cumulative >= roll_percent * cumulative[-1]
    return freq[np.argmax(reached, axis=0)][np.newaxis]


def _estimate_tuning(power: np.ndarray, sr: int, n_fft: int, bins_per_octave: int) -> float:
    """What chroma_stft(tuning=None) computes: librosa.estimate_tuning(S=power), whose
    piptrack keeps peaks in 150-4000 Hz above 0.1 × the frame's maximum.

    librosa runs piptrack over every bin; only the in-band rows (plus a neighbour each
    side) matter, a third of them at 22.05 kHz. The arithmetic mirrors piptrack's
    (parabolic shift computed in float64, stored in the spectrogram's dtype) so the same peaks
    fall in the same histogram bins and the tuning is identical, not just close.
    """
    freq = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    in_band = np.flatnonzero((freq >= 150.0) & (freq < min(4000.0, sr / 2)))
    if in_band.size == 0:
        return 0.0
    # Bin 0 (0 Hz) and the Nyquist bin are never in band, so every in-band bin has both
    # neighbours inside this slice and librosa's edge handling never applies.
    lo = in_band[0] - 1
    S = power[lo : in_band[-1] + 2]
    strong = S * (S > 0.1 * power.max(axis=0))
    rows, frames = np.nonzero(librosa.util.localmax(strong, axis=0)[in_band - lo])
    rows += 1  # index into S: in_band - lo starts at 1
    lower, centre, upper = S[rows - 1, frames], S[rows, frames], S[rows + 1, frames]
    curvature = (upper + lower).astype(np.float64) - 2.0 * centre
    slope = (upper - lower).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(slope) >= np.abs(curvature), 0.0, -slope / curvature).astype(S.dtype)
    pitches = ((rows + lo + shift) * float(sr) / n_fft).astype(S.dtype)
    mags = centre + 0.5 * ((upper - lower) / 2.0) * shift  # np.gradient's interior formula
    threshold = np.median(mags) if mags.size else 0.0
    return librosa.pitch_tuning(pitches[mags >= threshold], bins_per_octave=bins_per_octave)


def _zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """librosa's zero_crossing_rate(y=) from one pass over the signal, not per frame.

    Same conventions: edge-padded centred frames, |x| <= 1e-10 counts as positive, a
    frame counts crossings between its own consecutive samples, rate = count / length.
    """
    padded = np.pad(y, frame_length // 2, mode="edge")
    negative = padded < -1e-10
    crossings = np.concatenate([[0], np.cumsum(negative[1:] != negative[:-1])])
    starts = np.arange(0, len(padded) - frame_length + 1, hop_length)
    counts = crossings[starts + frame_length - 1] - crossings[starts]
    return (counts / frame_length)[np.newaxis]


def extract_clip(y: np.ndarray, settings: FeatureSettings) -> tuple[dict[str, float], np.ndarray]:
    """Summary features and log-mel spectrogram (n_mels × frames, float32) of one clip.

    One STFT (librosa's defaults: centred frames, ``pad_mode='constant'``) feeds every
    spectral feature, so each gets the spectrogram its ``y=`` form computes itself.
    """
    _check_waveform(y)
    ensure_compiled()  # before this process's first librosa call: see mirflow.core.numba_cache
    s = settings
    magnitude = np.abs(librosa.stft(y, n_fft=s.n_fft, hop_length=s.hop_length))
    power = magnitude**2  # what the power=2 features (mel, chroma) compute as |D|**2
    mel = librosa.feature.melspectrogram(S=power, sr=s.sr, n_fft=s.n_fft, n_mels=s.n_mels)
    # ref=1.0: absolute dB, not relative to the clip's peak, so clips stay comparable and
    # predict time reproduces it from the waveform alone. top_db=80 (librosa's default,
    # floors each clip at its peak - 80 dB) is what mfcc and onset_strength apply, so
    # this one log-mel feeds all three.
    log_mel = librosa.power_to_db(mel, ref=1.0)
    freq = librosa.fft_frequencies(sr=s.sr, n_fft=s.n_fft)
    centroid, bandwidth = _centroid_bandwidth(magnitude, freq)
    tuning = _estimate_tuning(power, s.sr, s.n_fft, s.n_chroma)
    framewise = {
        "mfcc": librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_mfcc),
        "chroma": librosa.feature.chroma_stft(
            S=power, sr=s.sr, n_fft=s.n_fft, n_chroma=s.n_chroma, tuning=tuning
        ),
        "spectral_centroid": centroid,
        "spectral_bandwidth": bandwidth,
        "spectral_rolloff": _rolloff(magnitude, freq, s.roll_percent),
        "spectral_contrast": librosa.feature.spectral_contrast(
            S=magnitude, sr=s.sr, n_bands=s.n_contrast_bands
        ),
        "zero_crossing_rate": _zero_crossing_rate(y, s.n_fft, s.hop_length),
        # RMS(y=) frames the unwindowed, zero-padded waveform: the Hann-windowed STFT
        # cannot reproduce it, and it needs no FFT anyway.
        "rms": librosa.feature.rms(y=y, frame_length=s.n_fft, hop_length=s.hop_length),
    }
    # beat_track(y=) builds this same envelope (median over mel bands of the log-mel
    # flux). Its tempo is feature.tempo of it, or 0 when the envelope is flat; the beat
    # positions it also tracks are not needed, so that pass is skipped.
    onset_env = librosa.onset.onset_strength(
        S=log_mel, sr=s.sr, n_fft=s.n_fft, hop_length=s.hop_length, aggregate=np.median
    )
    tempo = 0.0
    if onset_env.any():
        tempo = float(librosa.feature.tempo(onset_envelope=onset_env, sr=s.sr, hop_length=s.hop_length)[0])
    return _summarise(framewise, tempo), log_mel.astype(np.float32, copy=False)


def extract_clip_naive(y: np.ndarray, settings: FeatureSettings) -> tuple[dict[str, float], np.ndarray]:
    """Reference: one librosa call per feature on the waveform (an STFT each)."""
    _check_waveform(y)
    ensure_compiled()  # before this process's first librosa call: see mirflow.core.numba_cache
    s = settings
    stft_args = dict(sr=s.sr, n_fft=s.n_fft, hop_length=s.hop_length)
    framing = dict(frame_length=s.n_fft, hop_length=s.hop_length)
    framewise = {
        "mfcc": librosa.feature.mfcc(y=y, n_mfcc=s.n_mfcc, n_mels=s.n_mels, **stft_args),
        "chroma": librosa.feature.chroma_stft(y=y, n_chroma=s.n_chroma, **stft_args),
        "spectral_centroid": librosa.feature.spectral_centroid(y=y, **stft_args),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(y=y, **stft_args),
        "spectral_rolloff": librosa.feature.spectral_rolloff(y=y, roll_percent=s.roll_percent, **stft_args),
        "spectral_contrast": librosa.feature.spectral_contrast(y=y, n_bands=s.n_contrast_bands, **stft_args),
        "zero_crossing_rate": librosa.feature.zero_crossing_rate(y, **framing),
        "rms": librosa.feature.rms(y=y, **framing),
    }
    # beat_track(y=) would build this envelope with n_fft=2048 and 128 mel bands
    # whatever the settings; passing it keeps the reference faithful to the settings.
    onset_env = librosa.onset.onset_strength(y=y, n_mels=s.n_mels, aggregate=np.median, **stft_args)
    tempo, _ = librosa.beat.beat_track(onset_envelope=onset_env, sr=s.sr, hop_length=s.hop_length)
    mel = librosa.feature.melspectrogram(y=y, n_mels=s.n_mels, **stft_args)
    log_mel = librosa.power_to_db(mel, ref=1.0)
    return _summarise(framewise, float(np.atleast_1d(tempo)[0])), log_mel.astype(np.float32, copy=False)
