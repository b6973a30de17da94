"""load_audio on real container formats written here, its errors, and segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mirflow.core.errors import AudioDecodeError, ConfigError, DataError
from mirflow.io import audio
from mirflow.io.audio import load_audio, segment_waveform

SR = 22050


def sine(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)])


def test_stereo_wav_44k_becomes_mono_22k(tmp_path):
    path = tmp_path / "stereo.wav"
    # Different channel gains: the mono fold must average them (0.5 and 0.3 -> 0.4).
    left, right = sine(440, 2.0, 44100, 0.5), sine(440, 2.0, 44100, 0.3)
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    assert sf.info(path).channels == 2

    y = load_audio(path)

    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == 2 * SR
    assert dominant_frequency(y, SR) == pytest.approx(440, abs=1)
    middle = y[SR // 2 : -SR // 2]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=1e-3)


def test_flac_48k_resampled_to_requested_rate(tmp_path):
    path = tmp_path / "tone.flac"
    sf.write(path, sine(1000, 1.5, 48000), 48000)

    y = load_audio(path, sr=16000)

    assert len(y) == 24000
    assert dominant_frequency(y, 16000) == pytest.approx(1000, abs=1)


def test_big_endian_au_at_native_rate_is_sample_exact(tmp_path):
    path = tmp_path / "clip.au"
    pcm = (sine(330, 0.5, SR) * 32767).astype(np.int16)
    sf.write(path, pcm, SR, format="AU", subtype="PCM_16", endian="BIG")
    assert path.read_bytes()[:4] == b".snd"  # Sun/NeXT header, big-endian samples

    y = load_audio(path)

    np.testing.assert_array_equal(y, pcm / np.float32(32768))


def test_audioread_fallback_when_soundfile_fails(tmp_path, monkeypatch):
    path = tmp_path / "tone.wav"
    sf.write(path, sine(440, 1.0, SR), SR, subtype="PCM_16")
    expected = load_audio(path)

    def unreadable(*args, **kwargs):
        raise sf.LibsndfileError(1, "simulated: ")

    monkeypatch.setattr(audio.sf, "read", unreadable)
    with pytest.warns(FutureWarning):  # librosa's audioread path is deprecated, still works
        y = load_audio(path)
    np.testing.assert_allclose(y, expected, atol=1e-7)


def write_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(4000))


def write_empty_file(path):
    path.write_bytes(b"")


def write_zero_length_wav(path):
    sf.write(path, np.zeros((0, 1), np.float32), SR)


def write_truncated_header(path):
    sf.write(path, sine(440, 0.2, SR), SR)
    path.write_bytes(path.read_bytes()[:20])


def write_nan_wav(path):
    sf.write(path, np.full(1000, np.nan, np.float32), SR, subtype="FLOAT")


def write_huge_float_wav(path):
    # Finite, so it passed the NaN check, but ~1e30 overflows librosa's spectra to inf.
    sf.write(path, sine(440, 1.0, SR) * np.float32(1e30), SR, subtype="FLOAT")


@pytest.mark.parametrize(
    "write, reason",
    [
        (write_random_bytes, "soundfile"),
        (write_empty_file, "empty"),
        (write_zero_length_wav, "no audio samples"),
        (write_truncated_header, "soundfile"),
        (write_nan_wav, "NaN"),
        (write_huge_float_wav, "beyond 1000 times full scale"),
    ],
)
def test_undecodable_files_raise_audio_decode_error(tmp_path, write, reason):
    path = tmp_path / "bad.wav"
    write(path)

    with pytest.raises(AudioDecodeError) as caught:
        load_audio(path)

    assert isinstance(caught.value, DataError)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert reason in caught.value.reason


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("AIFF", "PCM_16"), ("AU", "PCM_16")])
def test_file_holding_less_than_its_header_promises_is_truncated(tmp_path, fmt, subtype):
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, sine(440, 6.0, SR), SR, format=fmt, subtype=subtype)
    assert len(load_audio(path)) == 6 * SR  # whole (float WAV: extra chunks before the data)
    path.write_bytes(path.read_bytes()[:20_000])  # e.g. 20 kB of 265 kB for PCM_16
    assert sf.info(path).frames < SR  # libsndfile quietly reads the part that is there

    with pytest.raises(AudioDecodeError, match="truncated: the header promises") as caught:
        load_audio(path)
    assert caught.value.path == str(path)


def test_au_of_unknown_length_is_not_truncated(tmp_path):
    path = tmp_path / "streamed.au"
    sf.write(path, sine(440, 1.0, SR), SR, format="AU", subtype="PCM_16")
    header = bytearray(path.read_bytes())
    header[8:12] = b"\xff" * 4  # data size "unknown", as streaming encoders write it
    path.write_bytes(header)
    assert len(load_audio(path)) == SR


@pytest.mark.parametrize("n_samples", [1, 10, SR - 1])
def test_clip_shorter_than_min_seconds_is_rejected(tmp_path, n_samples):
    path = tmp_path / "short.wav"
    sf.write(path, sine(440, 1.0, SR)[:n_samples], SR)

    with pytest.raises(DataError, match="too short.*under min_duration 1 s") as caught:
        load_audio(path, min_seconds=1.0)
    assert caught.value.path == str(path)


def test_min_seconds_counts_at_the_native_rate(tmp_path):
    path = tmp_path / "one_second.wav"
    sf.write(path, sine(440, 1.0, 44100), 44100)
    assert len(load_audio(path, sr=SR, min_seconds=1.0)) == SR


def test_missing_file_raises_audio_decode_error(tmp_path):
    path = tmp_path / "absent.wav"
    with pytest.raises(AudioDecodeError, match="no such file") as caught:
        load_audio(path)
    assert caught.value.path == str(path)


def test_segments_are_consecutive_and_the_remainder_is_dropped():
    y = np.arange(105, dtype=np.float32)  # 10.5 s at sr=10

    segments = segment_waveform(y, sr=10, segment_seconds=3.0)

    assert [len(s) for s in segments] == [30, 30, 30]
    np.testing.assert_array_equal(np.concatenate(segments), y[:90])


def test_exact_multiple_keeps_every_sample():
    y = np.arange(60, dtype=np.float32)
    assert len(segment_waveform(y, sr=10, segment_seconds=2.0)) == 3


def test_no_segment_length_keeps_the_whole_clip():
    y = np.arange(7, dtype=np.float32)
    (whole,) = segment_waveform(y, sr=10, segment_seconds=None)
    np.testing.assert_array_equal(whole, y)


def test_short_clip_is_zero_padded_to_one_segment():
    y = np.ones(12, dtype=np.float32)

    (segment,) = segment_waveform(y, sr=10, segment_seconds=3.0)

    assert len(segment) == 30
    np.testing.assert_array_equal(segment[:12], y)
    assert not segment[12:].any()


@pytest.mark.parametrize("seconds", [0.0, -1.0, 0.01])
def test_segment_shorter_than_a_sample_is_rejected(seconds):
    with pytest.raises(ConfigError, match="segment_seconds"):
        segment_waveform(np.ones(10, np.float32), sr=10, segment_seconds=seconds)


def test_empty_waveform_is_rejected():
    with pytest.raises(ConfigError):
        segment_waveform(np.zeros(0, np.float32), sr=10, segment_seconds=1.0)

