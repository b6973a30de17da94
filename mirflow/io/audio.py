"""Decode audio files to mono float32 at a fixed rate, and cut waveforms into segments."""

from __future__ import annotations

import struct
from pathlib import Path

import audioread
import librosa
import numpy as np
import soundfile as sf

from mirflow.core.errors import AudioDecodeError, ConfigError, DataError

# Decoded audio is scaled to full scale 1.0: integer PCM cannot pass it, and float files
# that do are rare and small (headroom of a few dB). 1e3 is +60 dB over full scale,
# which no recording reaches; such samples mean a corrupt or mis-scaled file (integer
# PCM written as float, garbage in the data chunk). Left in, they make no features
# worth having, and from ~1e16 the spectra overflow float32 to inf, which librosa
# rejects with "Input must be finite", naming no file.
MAX_ABS_SAMPLE = 1e3
from mirflow.core.numba_cache import ensure_compiled


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


def _truncation(path: Path) -> str | None:
    """Why a WAV, AIFF or AU file holds fewer sample bytes than its header promises
    (None when it does not, or is another format). libsndfile quietly decodes the part
    that is there, so a cut-off copy would otherwise become a short training clip."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None  # too short for any header: libsndfile reports that itself
        if head[:4] == b".snd":  # AU: data offset and size, big-endian
            data_start, declared = struct.unpack(">II", head[4:])
        elif head[:4] in (b"RIFF", b"FORM") and head[8:] in (b"WAVE", b"AIFF", b"AIFC"):
            order, data_chunk = ("<", b"data") if head[:4] == b"RIFF" else (">", b"SSND")
            while len(chunk := f.read(8)) == 8:  # walk the chunks to the sample data
                declared = struct.unpack(order + "I", chunk[4:])[0]
                if chunk[:4] == data_chunk:
                    break
                f.seek(declared + declared % 2, 1)  # chunks are padded to even sizes
            else:
                return None  # no data chunk: libsndfile reports that itself
            data_start = f.tell()
        else:
            return None
        size = f.seek(0, 2)
    if declared == 0xFFFFFFFF or data_start + declared <= size:  # all ones: "size unknown" (streamed)
        return None
    return f"truncated: the header promises {declared} bytes of samples, the file holds {max(size - data_start, 0)}"


def load_audio(path: str | Path, sr: int = 22050, min_seconds: float = 0.0) -> np.ndarray:
    """Mono float32 waveform at ``sr`` Hz (channels averaged, resampled with soxr_hq).

    Raises AudioDecodeError naming the file when it is missing, undecodable, empty,
    truncated, or holds non-finite or absurdly large samples (see MAX_ABS_SAMPLE;
    librosa's features reject any NaN/inf, so one is enough), and DataError when it is
    shorter than ``min_seconds``.
    """
    ensure_compiled()  # before this process's first librosa call: see mirflow.core.numba_cache
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "file is empty (0 bytes)")
    if truncated := _truncation(path):
        raise AudioDecodeError(path, truncated)
    frames, native_sr = _decode(path)
    if frames.size == 0:
        raise AudioDecodeError(path, "no audio samples (zero-length stream)")
    y = frames.mean(axis=1, dtype=np.float32)
    if not np.isfinite(y).all():
        raise AudioDecodeError(path, "audio holds NaN or infinite samples")
    if (peak := float(np.abs(frames).max())) > MAX_ABS_SAMPLE:
        reason = f"samples reach {peak:.3g}, beyond {MAX_ABS_SAMPLE:g} times full scale: corrupt or mis-scaled audio"
        raise AudioDecodeError(path, reason)
    if len(y) < min_seconds * native_sr:
        raise DataError(path, f"too short: {len(y) / native_sr:.3f} s, under min_duration {min_seconds:g} s")
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
