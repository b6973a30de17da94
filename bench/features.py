"""Benchmark 1: ``extract_clip`` (one shared STFT) vs ``extract_clip_naive`` (one
librosa call per feature), same clips, same process, alternating order per clip."""

from __future__ import annotations

import time

import numpy as np

from bench.common import clip_paths, gtzan_clips, timed

TARGET_SPEEDUP = 3.0


def _n_clips(quick: bool) -> int:
    return 10 if quick else 30


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|) over elements; 0 where both are 0."""
    scale = np.maximum(np.abs(a), np.abs(b))
    difference = np.abs(a - b)
    return float(np.max(np.where(scale > 0, difference / np.where(scale > 0, scale, 1.0), 0.0)))


def run(quick: bool) -> dict:
    from mirflow.audio import load_audio
    from mirflow.features import FeatureSettings, extract_clip, extract_clip_naive

    settings = FeatureSettings()
    waveforms = [load_audio(path, sr=settings.sr) for path in clip_paths(gtzan_clips(_n_clips(quick)))]
    extract_clip(waveforms[0], settings)  # imports librosa and loads numba's compiled functions
    extract_clip_naive(waveforms[0], settings)

    seconds = {"shared STFT (extract_clip)": 0.0, "naive (extract_clip_naive)": 0.0}
    feature_difference = logmel_difference_db = 0.0
    with timed() as record:
        for i, y in enumerate(waveforms):
            runs = [("shared STFT (extract_clip)", extract_clip), ("naive (extract_clip_naive)", extract_clip_naive)]
            outputs = {}
            for name, function in runs if i % 2 == 0 else runs[::-1]:
                start = time.perf_counter()
                outputs[name] = function(y, settings)
                seconds[name] += time.perf_counter() - start
            (fast_values, fast_logmel), (naive_values, naive_logmel) = outputs.values()
            names = list(naive_values)
            feature_difference = max(
                feature_difference,
                _relative_difference(np.array([fast_values[k] for k in names]), np.array([naive_values[k] for k in names])),
            )
            logmel_difference_db = max(logmel_difference_db, float(np.max(np.abs(fast_logmel - naive_logmel))))
    per_clip = {name: 1000 * total / len(waveforms) for name, total in seconds.items()}
    speedup = seconds["naive (extract_clip_naive)"] / seconds["shared STFT (extract_clip)"]
    duration = len(waveforms[0]) / settings.sr
    return {
        "name": "features",
        "title": "1. Feature extraction: shared STFT vs naive per-feature librosa calls",
        "setup": (
            f"{len(waveforms)} generated GTZAN-format clips of {duration:g} s (22.05 kHz mono), decoded once; "
            "both extractors run on each clip in one process (alternating which goes first); "
            f"a warm-up call on one clip is excluded (librosa import and numba loading). "
            f"{len(names)} summary features + a 128-band log-mel per clip."
        ),
        "figures": {
            "clips": len(waveforms),
            "clip_seconds": duration,
            "ms_per_clip": per_clip,
            "speedup": speedup,
            "max_relative_difference_features": feature_difference,
            "max_abs_difference_logmel_db": logmel_difference_db,
            **record,
        },
        "tables": [
            {
                "columns": ["extractor", "ms / clip", "clips / s (1 core)", "speed-up"],
                "rows": [
                    [name, round(ms, 1), round(1000 / ms, 2), round(per_clip["naive (extract_clip_naive)"] / ms, 2)]
                    for name, ms in per_clip.items()
                ],
            }
        ],
        "targets": [
            {"what": f"speed-up ≥ {TARGET_SPEEDUP:g}×", "value": f"{speedup:.2f}×", "met": speedup >= TARGET_SPEEDUP},
            {
                "what": "same values (max relative difference of the summary features)",
                "value": f"{feature_difference:.2e}; log-mel max |Δ| {logmel_difference_db:.2e} dB",
                "met": feature_difference <= 1e-4,
            },
        ],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return [(_n_clips(quick), 30.0)]
