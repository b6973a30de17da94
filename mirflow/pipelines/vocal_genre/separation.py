"""Offline source separation into stems, and the stems' log-mel slices (report 004).

Two separators, both on the magnitude STFT with soft masks, no model weights:
- ``repet_sim`` (Rafii & Pardo 2012, librosa's vocal-separation recipe): the
  accompaniment repeats, so each frame's nearest-neighbour median (cosine similarity,
  frames at least ``min_repeat_seconds`` apart) estimates it; what does not repeat is
  the ``vocals`` foreground.
- ``hpss`` (Fitzgerald 2010, ``librosa.decompose.hpss``): ``harmonic`` and ``percussive``.
A neural one where a user has a checkpoint: ``demucs`` (``demucs_backend``) gives
``vocals`` and ``accompaniment`` instead of REPET-SIM, and ``drums``, ``bass``, ``other``.

By default a stem's log-mel comes from its masked STFT (no inverse STFT and
re-analysis). ``resynthesize=True`` inverts the masked STFT to a waveform and analyses
that again, as report 004 did with Spleeter's audio; the two differ by design (the STFT
of an inverted masked STFT is not the masked STFT: masking is not consistent). Demucs's
stems are waveforms: always analysed again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import librosa
import numpy as np

from mirflow.core.errors import ConfigError, DataError
from mirflow.core.numba_cache import ensure_compiled
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.io.audio import load_audio
from mirflow.pipelines.vocal_genre import demucs_backend

SEPARATORS: dict[str, tuple[str, str]] = {
    "repet_sim": ("vocals", "accompaniment"),
    "hpss": ("harmonic", "percussive"),
    "demucs": demucs_backend.STEMS,
}
STEMS = ("vocals", "accompaniment", "harmonic", "percussive", "drums", "bass", "other", "mix")


@dataclass(frozen=True)
class SliceSettings:
    """Analysis and slicing parameters; part of the slice artefact's identity.

    128 frames at hop 512 and 22,050 Hz are 2.97 s: report 004's 3-s 128x128 slices.
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    slice_frames: int = 128
    min_repeat_seconds: float = 2.0
    margin_accompaniment: float = 2.0
    margin_vocals: float = 10.0
    mask_power: float = 2.0


def separator_of(stem: str, demucs: bool = False) -> str | None:
    """The separator producing ``stem`` (None for the unseparated ``mix``); ``demucs``: a
    Demucs checkpoint is given, and separates every stem it has."""
    if stem not in STEMS:
        raise ConfigError(f"stem {stem!r} is unknown; choose one of {', '.join(STEMS)}")
    if demucs and stem in SEPARATORS["demucs"]:
        return "demucs"
    separator = next((name for name, stems in SEPARATORS.items() if stem in stems), None)
    if separator == "demucs":
        raise ConfigError(f"stem {stem!r} comes from Demucs alone: give --demucs-weights PATH (a local checkpoint)")
    return separator


def repet_sim(stft: np.ndarray, settings: SliceSettings) -> dict[str, np.ndarray]:
    """``{"vocals", "accompaniment"}`` masked complex STFTs of ``stft`` (freq, frames)."""
    magnitude = np.abs(stft)
    n_frames = magnitude.shape[1]
    # nn_filter excludes neighbours closer than `width` frames; it needs some farther ones
    # (librosa requires width < (frames - 1) // 2).
    width = min(int(librosa.time_to_frames(settings.min_repeat_seconds, sr=settings.sr,
                                           hop_length=settings.hop_length)), (n_frames - 1) // 2 - 1)
    if width < 1:
        raise ConfigError(f"a {n_frames}-frame clip is too short for repet_sim separation")
    repeating = librosa.decompose.nn_filter(magnitude, aggregate=np.median, metric="cosine", width=width)
    repeating = np.minimum(magnitude, repeating)
    residual = magnitude - repeating
    power = settings.mask_power
    accompaniment = librosa.util.softmask(repeating, settings.margin_accompaniment * residual, power=power)
    vocals = librosa.util.softmask(residual, settings.margin_vocals * repeating, power=power)
    return {"vocals": vocals * stft, "accompaniment": accompaniment * stft}


def hpss(stft: np.ndarray, settings: SliceSettings) -> dict[str, np.ndarray]:
    """``{"harmonic", "percussive"}`` masked complex STFTs (margin 1: they sum to ``stft``)."""
    harmonic, percussive = librosa.decompose.hpss(stft)
    return {"harmonic": harmonic, "percussive": percussive}


_SEPARATE = {"repet_sim": repet_sim, "hpss": hpss}


def stem_log_mel(y: np.ndarray, stem: str, settings: SliceSettings, *, resynthesize: bool = False) -> np.ndarray:
    """Log-mel spectrogram (n_mels, frames), in dB re the clip's peak, of ``stem`` of mono ``y``."""
    return stem_log_mels(y, (stem,), settings, resynthesize=resynthesize)[stem]


def stem_log_mels(y: np.ndarray, stems: tuple[str, ...], settings: SliceSettings, *,
                  resynthesize: bool = False) -> dict[str, np.ndarray]:
    """``stem_log_mel`` of several stems, with one STFT and each separator run once."""
    ensure_compiled()
    stft = librosa.stft(y, n_fft=settings.n_fft, hop_length=settings.hop_length)
    separated = {"mix": stft}
    for separator in {separator_of(stem) for stem in stems} - {None}:
        separated.update(_SEPARATE[separator](stft, settings))
    return {stem: _log_mel(separated[stem], len(y), settings, resynthesize) for stem in stems}


def waveform_log_mel(y: np.ndarray, settings: SliceSettings) -> np.ndarray:
    """``stem_log_mel`` of a stem separated as a waveform."""
    return _log_mel(librosa.stft(y, n_fft=settings.n_fft, hop_length=settings.hop_length), len(y), settings, False)


def _log_mel(stft: np.ndarray, length: int, settings: SliceSettings, resynthesize: bool) -> np.ndarray:
    if resynthesize:
        waveform = librosa.istft(stft, hop_length=settings.hop_length, n_fft=settings.n_fft, length=length)
        stft = librosa.stft(waveform, n_fft=settings.n_fft, hop_length=settings.hop_length)
    mel = librosa.feature.melspectrogram(S=np.abs(stft) ** 2, sr=settings.sr, n_mels=settings.n_mels)
    return librosa.power_to_db(mel, ref=np.max).astype(np.float32)


def slice_log_mel(log_mel: np.ndarray, settings: SliceSettings) -> np.ndarray:
    """Non-overlapping (n_slices, n_mels, slice_frames) slices; a trailing partial slice is dropped,
    a clip shorter than one slice gives one slice padded with its minimum (silence)."""
    width = settings.slice_frames
    n_slices = log_mel.shape[1] // width
    if n_slices == 0:
        padded = np.full((log_mel.shape[0], width), log_mel.min(), dtype=log_mel.dtype)
        padded[:, : log_mel.shape[1]] = log_mel
        return padded[None]
    return np.stack(np.split(log_mel[:, : n_slices * width], n_slices, axis=1))


# -- the separation stage: one artifact per song and separator ----------------------
SLICES = "{stem}.npy"  # (n_slices, n_mels, slice_frames) float16 log-mels in dB


def stems_of(separator: str | None) -> tuple[str, ...]:
    """The stems one separation writes (``None``: the unseparated mix)."""
    return SEPARATORS[separator] if separator else ("mix",)


def write_separated_song(writer: ArtifactWriter, path: str, separator: str | None, settings: SliceSettings,
                         resynthesize: bool, demucs_weights: str | None = None) -> dict:
    """Every stem of ``separator`` for the song at ``path``, as 3-s log-mel slices (``demucs``:
    with the checkpoint ``demucs_weights``). An unreadable song writes no slices: its
    summary says why (the flow quarantines it)."""
    try:
        if separator == "demucs":
            waves = demucs_backend.separate_file(path, demucs_weights, settings.sr)
            log_mels = {stem: waveform_log_mel(wave, settings) for stem, wave in waves.items()}
            seconds = len(waves["vocals"]) / settings.sr
        else:
            y = load_audio(path, settings.sr)
            log_mels = stem_log_mels(y, stems_of(separator), settings, resynthesize=resynthesize)
            seconds = len(y) / settings.sr
    except DataError as error:
        return {"slices": 0, "path": path, "failure": str(error)}
    for stem, log_mel in log_mels.items():
        slices = slice_log_mel(log_mel, settings)
        buffer = io.BytesIO()
        np.save(buffer, slices.astype(np.float16), allow_pickle=False)
        writer.write_bytes(SLICES.format(stem=stem), buffer.getvalue())
    return {"slices": int(len(slices)), "seconds": round(seconds, 3)}


def read_slices(store: ArtifactStore, ref: ArtifactRef, stem: str) -> np.ndarray:
    """A song's slices of ``stem`` as float32 (n_slices, n_mels, slice_frames)."""
    return np.load(io.BytesIO(store.read_bytes(ref, SLICES.format(stem=stem))), allow_pickle=False).astype(np.float32)
