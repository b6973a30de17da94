"""Golden tests: extract_clip against librosa's own per-feature calls on the waveform.

The references are computed here, from librosa, never from values the project wrote.
Tolerance: rtol 1e-4 with an absolute floor of 1e-6 for values at or near zero (silent
frames, a feature whose mean is ~0), where a relative tolerance means nothing.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf

from mirflow.core.errors import ConfigError
from mirflow.pipelines.gtzan import features
from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip, extract_clip_naive, feature_names

SR = 22050
RTOL, ATOL = 1e-4, 1e-6
# A tempo librosa can represent exactly: 60 * sr / (hop_length * 20 frames of lag).
CLICK_BPM = 60 * SR / (512 * 20)


def synthetic_clip(seconds: float = 5.0) -> np.ndarray:
    """Detuned harmonic tone + click train at CLICK_BPM + seeded noise."""
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(0.3 / k * np.sin(2 * np.pi * 223.0 * k * t) for k in range(1, 6))
    clicks = librosa.clicks(times=np.arange(0, seconds, 60 / CLICK_BPM), sr=SR, length=len(t))
    noise = 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return (tone + clicks + noise).astype(np.float32)


def librosa_reference(y: np.ndarray) -> dict[str, float]:
    """The feature set from librosa's y= calls with the default FeatureSettings."""
    stft = dict(sr=SR, n_fft=2048, hop_length=512)
    framewise = {
        "mfcc": librosa.feature.mfcc(y=y, n_mfcc=20, **stft),
        "chroma": librosa.feature.chroma_stft(y=y, **stft),
        "spectral_centroid": librosa.feature.spectral_centroid(y=y, **stft),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(y=y, **stft),
        "spectral_rolloff": librosa.feature.spectral_rolloff(y=y, roll_percent=0.85, **stft),
        "spectral_contrast": librosa.feature.spectral_contrast(y=y, n_bands=6, **stft),
        "zero_crossing_rate": librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
        "rms": librosa.feature.rms(y=y, frame_length=2048, hop_length=512),
    }
    reference = {}
    for name, matrix in framewise.items():
        for i, row in enumerate(matrix, start=1):
            row_name = f"{name}{i:02d}" if len(matrix) > 1 else name
            reference[f"{row_name}_mean"] = float(np.mean(row))
            reference[f"{row_name}_var"] = float(np.var(row))
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR, hop_length=512)
    reference["tempo"] = float(np.atleast_1d(tempo)[0])
    return reference


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512))


def assert_features_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(expected)
    off = {
        name: (actual[name], expected[name])
        for name in expected
        if not np.isclose(actual[name], expected[name], rtol=RTOL, atol=ATOL)
    }
    assert not off, f"{len(off)} features differ from librosa (actual, expected): {off}"


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    return synthetic_clip()


@pytest.fixture(scope="module")
def blues(realdata) -> np.ndarray:
    y, sr = sf.read(realdata / "gtzan/genres/blues/blues.00000.wav", dtype="float32")
    assert sr == SR
    return y[: 5 * SR]


@pytest.mark.parametrize("extract", [extract_clip, extract_clip_naive])
def test_synthetic_clip_matches_librosa(synthetic, extract):
    summary, log_mel = extract(synthetic, FeatureSettings())

    assert_features_close(summary, librosa_reference(synthetic))
    assert log_mel.dtype == np.float32
    assert log_mel.shape == (128, 1 + len(synthetic) // 512)
    np.testing.assert_allclose(log_mel, librosa_log_mel(synthetic), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("extract", [extract_clip, extract_clip_naive])
def test_real_gtzan_clip_matches_librosa(blues, extract):
    summary, log_mel = extract(blues, FeatureSettings())

    assert_features_close(summary, librosa_reference(blues))
    np.testing.assert_allclose(log_mel, librosa_log_mel(blues), rtol=RTOL, atol=ATOL)


def tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def test_vectorised_stand_ins_match_librosa_frame_by_frame(blues):
    """The steps extract_clip computes itself, before mean/var could average a slip away."""
    magnitude = np.abs(librosa.stft(blues))
    freq = librosa.fft_frequencies(sr=SR, n_fft=2048)

    centroid, bandwidth = features._centroid_bandwidth(magnitude, freq)
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=magnitude, sr=SR), rtol=RTOL)
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(S=magnitude, sr=SR), rtol=RTOL)
    np.testing.assert_array_equal(
        features._rolloff(magnitude, freq, 0.85), librosa.feature.spectral_rolloff(S=magnitude, sr=SR)
    )


def test_zero_crossing_rate_matches_librosa_with_zeros_and_tiny_values():
    # exact zeros and |x| <= 1e-10 count as positive in librosa
    y = np.random.default_rng(2).choice(np.array([-0.5, -1e-12, 0.0, 1e-12, 0.5], np.float32), 20000)
    for frame_length, hop_length in ((2048, 512), (1000, 300)):
        np.testing.assert_array_equal(
            features._zero_crossing_rate(y, frame_length, hop_length),
            librosa.feature.zero_crossing_rate(y, frame_length=frame_length, hop_length=hop_length),
        )


@pytest.mark.parametrize("bins_per_octave", [12, 24, 36])
def test_tuning_estimate_is_librosas(blues, bins_per_octave):
    # a detuned tone near each end of piptrack's 150-4000 Hz band, and real music
    for y in (blues, tone(155 * 2 ** (0.3 / 12)), tone(3900 * 2 ** (-0.2 / 12))):
        power = np.abs(librosa.stft(y)) ** 2
        expected = librosa.estimate_tuning(S=power, sr=SR, bins_per_octave=bins_per_octave)
        assert features._estimate_tuning(power, SR, 2048, bins_per_octave) == expected


def test_click_train_tempo_is_its_true_bpm(synthetic):
    summary, _ = extract_clip(synthetic, FeatureSettings())
    assert summary["tempo"] == pytest.approx(CLICK_BPM, rel=0.01)


def test_feature_names_are_the_summary_keys_in_order(synthetic):
    settings = FeatureSettings()
    names = feature_names(settings)

    assert list(extract_clip(synthetic, settings)[0]) == names
    assert len(names) == 2 * (20 + 12 + 1 + 1 + 1 + 7 + 1 + 1) + 1
    assert names[:3] == ["mfcc01_mean", "mfcc01_var", "mfcc02_mean"]
    assert names[40:42] == ["chroma01_mean", "chroma01_var"]
    assert names[-5:] == ["zero_crossing_rate_mean", "zero_crossing_rate_var", "rms_mean", "rms_var", "tempo"]
    assert "spectral_contrast07_var" in names and "spectral_contrast08_mean" not in names


def test_non_default_settings_reach_every_feature(synthetic):
    settings = FeatureSettings(
        n_fft=1024, hop_length=256, n_mfcc=13, n_mels=64, n_chroma=24, n_contrast_bands=5, roll_percent=0.9
    )
    fast, fast_mel = extract_clip(synthetic, settings)
    naive, naive_mel = extract_clip_naive(synthetic, settings)

    assert list(fast) == feature_names(settings)
    assert_features_close(fast, naive)
    assert fast_mel.shape == (64, 1 + len(synthetic) // 256)
    np.testing.assert_allclose(fast_mel, naive_mel, rtol=RTOL, atol=ATOL)
    default, _ = extract_clip(synthetic, FeatureSettings())
    assert fast["spectral_rolloff_mean"] != default["spectral_rolloff_mean"]  # settings took effect


@pytest.mark.parametrize(
    "y",
    [np.zeros(2 * SR, np.float32), synthetic_clip(1.0)[:1000], np.full(1, 0.5, np.float32)],
    ids=["silence", "shorter-than-n_fft", "one-sample"],
)
def test_silent_and_very_short_clips_match_the_reference(y):
    fast, fast_mel = extract_clip(y, FeatureSettings())
    naive, naive_mel = extract_clip_naive(y, FeatureSettings())

    assert_features_close(fast, naive)
    assert all(np.isfinite(list(fast.values())))
    np.testing.assert_allclose(fast_mel, naive_mel, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "y",
    [
        np.zeros(0, np.float32),
        np.zeros((2, 100), np.float32),
        np.ones(100, np.int16),
        np.full(100, np.nan, np.float32),
    ],
    ids=["empty", "stereo", "integer", "nan"],
)
def test_unusable_waveforms_are_rejected(y):
    with pytest.raises(ConfigError, match="y "):
        extract_clip(y, FeatureSettings())


def test_settings_round_trip_and_validation():
    settings = FeatureSettings(n_mfcc=13)
    assert FeatureSettings(**settings.as_dict()) == settings
    assert settings.as_dict()["n_mfcc"] == 13
    with pytest.raises(ConfigError, match="hop_length"):
        FeatureSettings(hop_length=0)
    with pytest.raises(ConfigError, match="roll_percent"):
        FeatureSettings(roll_percent=1.0)
    with pytest.raises(ConfigError, match="n_contrast_bands"):
        FeatureSettings(n_contrast_bands=7)
