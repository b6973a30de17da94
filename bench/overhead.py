"""Benchmark 3: the whole gtzan flow (cold, MLP only) vs the same pipeline as a plain
joblib script (``bench.joblib_pipeline``) on the same clips, both in this process with
2 worker processes."""

from __future__ import annotations

import shutil

from bench import joblib_pipeline
from bench.common import FLOW_SETTINGS, STORES, cold_flow_run, gtzan_clips, stage_seconds, timed, warm_page_cache

TARGET_RATIO = 1.10


def _n_clips(quick: bool) -> int:
    return 200 if quick else 1000


def run(quick: bool) -> dict:
    n_clips = _n_clips(quick)
    data_dir = gtzan_clips(n_clips)
    warm_page_cache(data_dir)
    flow = cold_flow_run(n_clips)
    out_dir = STORES / f"joblib-n{n_clips}"
    shutil.rmtree(out_dir, ignore_errors=True)
    with timed() as script:
        baseline = joblib_pipeline.run(
            data_dir, out_dir, n_jobs=FLOW_SETTINGS["n_workers"], seed=FLOW_SETTINGS["seed"],
            max_epochs=FLOW_SETTINGS["max_epochs"], patience=FLOW_SETTINGS["patience"],
        )
    ratio = flow["seconds"] / script["seconds"]
    flow_stages = stage_seconds(flow)
    rows = [
        ["gtzan flow (Prefect + Dask, cold store)", flow["seconds"], flow["cpu_seconds"], flow["others_cores"],
         flow["test_accuracy"], ", ".join(f"{k} {v:.1f}" for k, v in flow_stages.items())],
        ["plain joblib script", script["seconds"], script["cpu_seconds"], script["others_cores"],
         baseline["test_accuracy"], ", ".join(f"{k} {v:.1f}" for k, v in baseline["seconds_by_phase"].items())],
    ]
    return {
        "name": "overhead",
        "title": "3. Flow overhead: the gtzan flow vs a plain joblib script",
        "setup": (
            f"{n_clips} generated 30 s clips{' (--quick: 200 instead of 1000)' if quick else ''}; "
            f"flow parameters {FLOW_SETTINGS} (shard_size 64) into a fresh store; the script runs the same mirflow "
            "functions (plan_shards, extract_shard per shard with joblib n_jobs=2, split, scaler, MLP with the same "
            "TrainConfig) and writes one Parquet file and the model. Both start their worker processes inside the "
            "timing. Flow stage seconds are summed over stages (extract shards run 2 at a time, so their sum exceeds "
            "the wall time)."
        ),
        "figures": {"flow": flow, "script": {**script, **baseline}, "ratio": ratio},
        "tables": [{"columns": ["pipeline", "wall s", "CPU s", "others' cores", "test accuracy", "seconds by stage"],
                    "rows": rows}],
        "targets": [
            {"what": f"flow ≤ {TARGET_RATIO:.2f}× the script", "value": f"{ratio:.3f}×", "met": ratio <= TARGET_RATIO},
        ],
        "notes": [f"flow {flow['seconds']:.1f} s vs script {script['seconds']:.1f} s: "
                  f"{flow['seconds'] - script['seconds']:+.1f} s for the flow"],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return [(_n_clips(quick), 30.0)]
