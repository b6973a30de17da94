"""Benchmark 1: ``extract_clip`` (one shared STFT) vs ``extract_clip_naive`` (one
librosa call per feature), same clips, same process, alternating order per clip."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import clip_paths, gtzan_clips, timed

NEEDS_PREFECT = False  # stage functions on Dask or in process: no flow run
TARGET_SPEEDUP = 3.0


def _n_clips(quick: bool) -> int:
    return 10 if quick else 30


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|) over elements; 0 where both are 0."""
    scale = np.maximum(np.abs(a), np.abs(b))
    difference = np.abs(a - b)
    return float(np.max(np.where(scale > 0, difference / np.where(scale > 0, scale, 1.0), 0.0)))


def run(quick: bool) -> dict:
    from mirflow.io.audio import load_audio
    from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip, extract_clip_naive

    settings = FeatureSettings()
    waveforms = [load_audio(path, sr=settings.sr) for path in clip_paths(gtzan_clips(_n_clips(quick)))]
    extract_clip(waveforms[0], settings)  # imports librosa and loads numba's compiled functions
    extract_clip_naive(waveforms[0], settings)

    seconds = {"shared STFT (extract_clip)": 0.0, "naive (extract_clip_naive)": 0.0}
    cpu_seconds = dict.fromkeys(seconds, 0.0)  # robust to other processes: one thread, so CPU = work
    feature_difference = logmel_difference_db = 0.0
    # One BLAS thread, as in Dask workers (the nanny sets OMP/OPENBLAS_NUM_THREADS=1): with
    # two, a matmul on a busy 2-core machine can take 10x longer.
    with threadpool_limits(limits=1), timed() as record:
        for i, y in enumerate(waveforms):
            runs = [("shared STFT (extract_clip)", extract_clip), ("naive (extract_clip_naive)", extract_clip_naive)]
            outputs = {}
            for name, function in runs if i % 2 == 0 else runs[::-1]:
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[name] = function(y, settings)
                seconds[name] += time.perf_counter() - start
                cpu_seconds[name] += time.process_time() - cpu_start
            (fast_values, fast_logmel), (naive_values, naive_logmel) = outputs.values()
            names = list(naive_values)
            feature_difference = max(
                feature_difference,
                _relative_difference(np.array([fast_values[k] for k in names]), np.array([naive_values[k] for k in names])),
            )
            logmel_difference_db = max(logmel_difference_db, float(np.max(np.abs(fast_logmel - naive_logmel))))
    naive, fast = "naive (extract_clip_naive)", "shared STFT (extract_clip)"
    per_clip = {name: 1000 * total / len(waveforms) for name, total in seconds.items()}
    cpu_per_clip = {name: 1000 * total / len(waveforms) for name, total in cpu_seconds.items()}
    speedup, cpu_speedup = seconds[naive] / seconds[fast], cpu_seconds[naive] / cpu_seconds[fast]
    duration = len(waveforms[0]) / settings.sr
    return {
        "name": "features",
        "title": "1. Feature extraction: shared STFT vs naive per-feature librosa calls",
        "setup": (
            f"{len(waveforms)} generated GTZAN-format clips of {duration:g} s (22.05 kHz mono), decoded once; "
            "both extractors run on each clip in one process with one BLAS thread, as in Dask workers "
            "(alternating which goes first); "
            f"a warm-up call on one clip is excluded (librosa import and numba loading). "
            f"{len(names)} summary features + a 128-band log-mel per clip."
        ),
        "figures": {
            "clips": len(waveforms),
            "clip_seconds": duration,
            "ms_per_clip": per_clip,
            "cpu_ms_per_clip": cpu_per_clip,
            "speedup": speedup,
            "cpu_speedup": cpu_speedup,
            "max_relative_difference_features": feature_difference,
            "max_abs_difference_logmel_db": logmel_difference_db,
            **record,
        },
        "tables": [
            {
                "columns": ["extractor", "wall ms / clip", "CPU ms / clip", "clips / s (1 core, CPU)",
                            "speed-up (wall)", "speed-up (CPU)"],
                "rows": [
                    [name, round(per_clip[name], 1), round(cpu_per_clip[name], 1), round(1000 / cpu_per_clip[name], 2),
                     round(per_clip[naive] / per_clip[name], 2), round(cpu_per_clip[naive] / cpu_per_clip[name], 2)]
                    for name in per_clip
                ],
            }
        ],
        "targets": [
            {"what": f"speed-up ≥ {TARGET_SPEEDUP:g}× (wall)", "value": f"{speedup:.2f}× (CPU time: {cpu_speedup:.2f}×)",
             "met": speedup >= TARGET_SPEEDUP},
            {
                "what": "same values (max relative difference of the summary features)",
                "value": f"{feature_difference:.2e}; log-mel max |Δ| {logmel_difference_db:.2e} dB",
                "met": feature_difference <= 1e-4,
            },
        ],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return [(_n_clips(quick), 30.0)]
