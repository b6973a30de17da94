"""Benchmark 5: peak memory of the processes doing the work, at a small and a 10× larger
data set: extraction (per Dask worker, from the flow's stage records: the worker's
``ru_maxrss`` after each shard) and CNN training on the log-mels, which streams batches
from the store (one epoch, in a fresh subprocess: ``ru_maxrss`` before and after).

``python -m bench.memory STORE RUN_ID CNN_FRAMES`` is that subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.common import clip_records, cold_flow_run, timed

TARGET_FLAT = 1.20
SHARD_SIZE = 64  # GtzanParams' default, which the flow runs use
CNN_FRAMES = 256  # GtzanParams' default


def _plan(quick: bool) -> tuple[float, tuple[int, ...]]:
    """(clip seconds, clip counts): the full run adds 1000 clips, shared with benchmarks 3-4."""
    return (10.0, (50, 500)) if quick else (30.0, (200, 1000, 2000))


def _train_cnn(store_url: str, run_id: str, cnn_frames: int) -> dict:
    """One epoch of the flow's CNN training step on a finished run's artifacts."""
    import resource
    import uuid

    from mirflow import steps
    from mirflow.extraction import TENSOR_COLUMN
    from mirflow.features import FeatureSettings, feature_names
    from mirflow.featureset import FeatureSet
    from mirflow.params import TrainParams
    from mirflow.runs import Run
    from mirflow.store import ArtifactRef, ArtifactStore

    store = ArtifactStore(store_url)
    manifest = Run.open(store, run_id).manifest
    keys = {stage["stage"]: stage["key"] for stage in manifest["stages"] if stage["stage"] in ("split", "scale")}
    features = FeatureSet(store, tuple(ArtifactRef("extract", key) for key in manifest["feature_shards"]))
    settings = FeatureSettings(**manifest["inputs"]["features"])
    spec = steps.InputSpec("cnn", tuple(feature_names(settings)), TENSOR_COLUMN, settings.n_mels, cnn_frames)
    config = {name: manifest["params"][name] for name in TrainParams.model_fields if name != "models"}
    config.update(seed=manifest["params"]["seed"], max_epochs=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with store.writing(ArtifactRef("bench-train", uuid.uuid4().hex)) as writer:
        summary = steps.write_trained_model(
            writer, features, ArtifactRef("split", keys["split"]), ArtifactRef("scale", keys["scale"]),
            spec, config["hidden"], config,
        )
    return {
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_training_bytes": before,
        "train_seconds": summary["train_seconds"],
    }


def _training_peak(cold: dict) -> dict:
    command = [sys.executable, "-m", "bench.memory", cold["store"], cold["run_id"], str(CNN_FRAMES)]
    with timed() as record:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"training subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return {**record, **json.loads(done.stdout.strip().splitlines()[-1])}


def _shard_sizes(data_dir: str) -> list[int]:
    from mirflow.extraction import plan_shards

    return [len(shard.clips) for shard in plan_shards(pd.DataFrame(clip_records(Path(data_dir))), SHARD_SIZE)]


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


def run(quick: bool) -> dict:
    duration_s, sizes = _plan(quick)
    points = []
    for n_clips in sizes:
        cold = cold_flow_run(n_clips, duration_s)
        extract = [stage["peak_rss_bytes"] for stage in cold["stages"] if stage["label"].startswith("extract")]
        shards = _shard_sizes(cold["data_dir"])
        points.append({"clips": n_clips, "extract_peak_rss_bytes": max(extract), "shards": len(shards),
                       "largest_shard": max(shards), "training": _training_peak(cold)})
    rows = [
        [p["clips"], p["shards"], p["largest_shard"], _mib(p["extract_peak_rss_bytes"]),
         _mib(p["training"]["rss_before_training_bytes"]), _mib(p["training"]["peak_rss_bytes"]),
         _mib(p["training"]["peak_rss_bytes"] - p["training"]["rss_before_training_bytes"]),
         round(p["training"]["train_seconds"], 1), p["training"]["others_cores"]]
        for p in points
    ]
    small, large = points[0], points[-1]
    extract_ratio = large["extract_peak_rss_bytes"] / small["extract_peak_rss_bytes"]
    train_ratio = large["training"]["peak_rss_bytes"] / small["training"]["peak_rss_bytes"]
    return {
        "name": "memory",
        "title": "5. Peak memory: extraction per worker and CNN training, small vs 10× data",
        "setup": (
            f"Generated {duration_s:g} s clips{' (--quick: 10 s clips, 50 vs 500)' if quick else ''}; each size is "
            f"a cold flow run (shard_size {SHARD_SIZE}, 2 workers). Extraction: the largest worker peak RSS "
            "recorded after any shard. Training: `mirflow.steps.write_trained_model` for the CNN "
            f"(cnn_frames {CNN_FRAMES}, batch 32, one epoch + validation) in a fresh subprocess reading batches "
            "from the store; RSS before training = after imports and setup."
        ),
        "figures": {"points": points, "extract_ratio": extract_ratio, "train_ratio": train_ratio},
        "tables": [{"columns": ["clips", "shards", "largest shard (clips)", "extraction peak RSS / worker MiB",
                                "training: RSS before MiB", "training: peak RSS MiB", "training: growth MiB",
                                "train s", "others' cores"],
                    "rows": rows}],
        "targets": [
            {"what": f"extraction peak per worker flat ({large['clips']} vs {small['clips']} clips ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{extract_ratio:.2f}×", "met": extract_ratio <= TARGET_FLAT},
            {"what": f"training peak flat ({large['clips']} vs {small['clips']} clips ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{train_ratio:.2f}×", "met": train_ratio <= TARGET_FLAT},
        ],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    duration_s, sizes = _plan(quick)
    return [(max(sizes), duration_s)]


if __name__ == "__main__":
    store_url, run_id, frames = sys.argv[1:4]
    print(json.dumps(_train_cnn(store_url, run_id, int(frames))))
