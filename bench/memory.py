"""Benchmark 5: peak memory of the processes doing the work, at a small and a 10× larger
data set.

- Extraction: the flow's extract stage function (``write_feature_shard`` into the store)
  on the flow's shards (``plan_shards``, shard_size 64), through ``DaskPool`` with 2
  workers; each worker's peak RSS is its ``VmHWM`` after the last shard.
- Training: the flow's train stage function (``write_trained_model``) for the CNN on the
  log-mels, which streams batches from the store; one epoch in a fresh subprocess with
  the allocator setting of the flow's Dask workers (``keep_freed_memory``).

Peaks are ``VmHWM`` (``mirflow.core.memory.peak_rss_bytes``), not ``ru_maxrss``, which a
spawned process inherits from its parent.

``python -m bench.memory '<json>'`` is the training subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from bench.common import clip_records, fresh_store, gtzan_clips, timed, warm_page_cache
from mirflow.core.memory import peak_rss_bytes

NEEDS_PREFECT = False  # stage functions on Dask or in process: no flow run
TARGET_FLAT = 1.20
SHARD_SIZE = 64  # GtzanParams' default
CNN_FRAMES = 128  # GtzanParams' default
SAMPLE_RATE = 22050


def _plan(quick: bool) -> tuple[float, tuple[int, int]]:
    """(clip seconds, clip counts). 15 s clips halve the cost of extracting 2000 clips;
    the log-mel rows are then half as wide as 30 s ones."""
    return (10.0, (50, 500)) if quick else (15.0, (200, 2000))


def _write_shard(store, ref, clips: list[dict], settings: dict) -> int:
    """Run on a worker: the flow's extract stage function into one artifact."""
    from mirflow.pipelines.gtzan.extract import write_feature_shard

    with store.writing(ref) as writer:
        return write_feature_shard(writer, clips, settings, None)["rows"]


def _warm_up(settings: dict) -> None:
    import numpy as np

    from mirflow.pipelines.gtzan.extract import write_feature_shard  # noqa: F401  (the stage's imports)
    from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip

    extract_clip(np.random.default_rng(0).normal(0, 0.1, 22050).astype(np.float32), FeatureSettings(**settings))


def _extract(data_dir: Path, store_path: Path) -> dict:
    """Extract every shard into a new store on 2 workers; per-worker peak RSS."""
    from mirflow.core.cluster import DaskPool
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.gtzan.extract import audio_input_specs
    from mirflow.stages.shards import plan_shards

    settings, _ = audio_input_specs(SAMPLE_RATE, CNN_FRAMES, None)
    shards = plan_shards(pd.DataFrame(clip_records(data_dir)), SHARD_SIZE)
    store = ArtifactStore(str(store_path))
    refs = [ArtifactRef("extract", uuid.uuid4().hex) for _ in shards]
    pool = DaskPool(None, 2)
    try:
        client = pool.client()
        client.run(_warm_up, settings)
        before = client.run(peak_rss_bytes)
        with ThreadPoolExecutor(len(shards)) as threads, timed() as record:
            rows = sum(threads.map(lambda job: pool.run(_write_shard, store, job[0], list(job[1].files), settings),
                                   zip(refs, shards)))
        after = client.run(peak_rss_bytes)
    finally:
        pool.close()
    return {**record, "rows": rows, "shard_sizes": [len(s.files) for s in shards], "refs": [r.key for r in refs],
            "worker_peak_before_bytes": sorted(before.values()), "worker_peak_bytes": sorted(after.values())}


def _split_and_scale(store_path: Path, shard_keys: list[str]) -> dict:
    """The flow's split and scale stage functions, in this process (not measured)."""
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.gtzan.extract import audio_input_specs
    from mirflow.stages import classification as steps
    from mirflow.stages.featuresets import FeatureSet
    from mirflow.stages.splits import write_split

    store = ArtifactStore(str(store_path))
    features = FeatureSet(store, tuple(ArtifactRef("extract", key) for key in shard_keys))
    _, specs = audio_input_specs(SAMPLE_RATE, CNN_FRAMES, None)
    spec = specs["cnn"]
    split, scale = ArtifactRef("split", uuid.uuid4().hex), ArtifactRef("scale", uuid.uuid4().hex)
    with store.writing(split) as writer:
        write_split(writer, features, (0.7, 0.15, 0.15), 0, None, None)
    with store.writing(scale) as writer:
        steps.write_scaler(writer, features, split, spec.feature_columns, "standard", spec.tensor_column, spec.n_mels)
    return {"store": str(store_path), "shards": shard_keys, "split": split.key, "scale": scale.key}


def _train_cnn(job: dict) -> dict:
    """The training subprocess: one epoch of the flow's CNN training stage function, with
    the allocator setting the flow's Dask workers train under (their preload)."""
    from mirflow.core.memory import keep_freed_memory
    from mirflow.core.params import TrainParams
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.gtzan.extract import audio_input_specs
    from mirflow.pipelines.gtzan.params import GtzanParams
    from mirflow.stages import classification as steps
    from mirflow.stages.featuresets import FeatureSet

    store = ArtifactStore(job["store"])
    features = FeatureSet(store, tuple(ArtifactRef("extract", key) for key in job["shards"]))
    _, specs = audio_input_specs(SAMPLE_RATE, CNN_FRAMES, None)
    params = GtzanParams(cnn_frames=CNN_FRAMES, max_epochs=1)
    config = {name: getattr(params, name) for name in TrainParams.model_fields if name != "models"}
    config["seed"] = params.seed
    keep_freed_memory()
    before = peak_rss_bytes()
    with store.writing(ArtifactRef("train", uuid.uuid4().hex)) as writer:
        summary = steps.write_trained_model(writer, features, ArtifactRef("split", job["split"]),
                                            ArtifactRef("scale", job["scale"]), specs["cnn"], config["hidden"], config)
    return {"peak_rss_bytes": peak_rss_bytes(), "peak_before_training_bytes": before,
            "train_seconds": summary["train_seconds"]}


def _training_run(job: dict) -> dict:
    with timed() as record:
        done = subprocess.run([sys.executable, "-m", "bench.memory", json.dumps(job)],
                              capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"training subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return {**record, **json.loads(done.stdout.strip().splitlines()[-1])}


def _training_peak(job: dict, runs: int) -> dict:
    """The median run by peak: a training's peak varies by ~±5 % from run to run with
    how glibc happens to reuse freed activation memory."""
    results = sorted((_training_run(job) for _ in range(runs)), key=lambda r: r["peak_rss_bytes"])
    return {**results[len(results) // 2], "peaks_of_runs_bytes": [r["peak_rss_bytes"] for r in results]}


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


def run(quick: bool) -> dict:
    duration_s, sizes = _plan(quick)
    runs = 1 if quick else 3
    points = []
    for n_clips in sizes:
        data_dir = gtzan_clips(n_clips, duration_s)
        warm_page_cache(data_dir)
        store = fresh_store(f"memory-{duration_s:g}s-n{n_clips}")
        extraction = _extract(data_dir, store)
        keys = extraction.pop("refs")
        points.append({"clips": n_clips, "extraction": extraction, "training": _training_peak(_split_and_scale(store, keys), runs)})
    # Training on the first half of the large set's shards: is the peak flat once the
    # training rows fill FeatureBatchSource's shuffle window (16 batches of 32)?
    half = len(keys) // 2
    middle = {"clips": sum(extraction["shard_sizes"][:half]),
              "training": _training_peak(_split_and_scale(store, keys[:half]), runs)}
    rows = [
        [p["clips"], len(p["extraction"]["shard_sizes"]), max(p["extraction"]["shard_sizes"]),
         " / ".join(str(_mib(v)) for v in p["extraction"]["worker_peak_before_bytes"]),
         " / ".join(str(_mib(v)) for v in p["extraction"]["worker_peak_bytes"]),
         _mib(p["training"]["peak_before_training_bytes"]), _mib(p["training"]["peak_rss_bytes"]),
         round(p["training"]["train_seconds"], 1),
         max(p["extraction"]["others_cores"], p["training"]["others_cores"])]
        for p in points
    ]
    rows.insert(1, [f"{middle['clips']} (first {half} shards of the {sizes[1]})", half, "", "", "",
                    _mib(middle["training"]["peak_before_training_bytes"]), _mib(middle["training"]["peak_rss_bytes"]),
                    round(middle["training"]["train_seconds"], 1), middle["training"]["others_cores"]])
    small, large = points
    extract_ratio = max(large["extraction"]["worker_peak_bytes"]) / max(small["extraction"]["worker_peak_bytes"])
    train_ratio = large["training"]["peak_rss_bytes"] / small["training"]["peak_rss_bytes"]
    window_ratio = large["training"]["peak_rss_bytes"] / middle["training"]["peak_rss_bytes"]
    return {
        "name": "memory",
        "title": "5. Peak memory: extraction per worker and CNN training, small vs 10× data",
        "setup": (
            f"Generated {duration_s:g} s clips at both sizes ({'--quick' if quick else '15 s rather than 30 s keeps the 2000-clip extraction short'}). "
            "Extraction: the flow's extract stage function on the flow's content-defined shards "
            f"(shard_size {SHARD_SIZE}) through `DaskPool` (2 workers); peak RSS (VmHWM) of each worker after "
            "warm-up and after the last shard. Training: the flow's train stage function for the CNN "
            f"(cnn_frames {CNN_FRAMES}, batch 32, one epoch + validation pass) in a fresh subprocess that streams "
            "batches from the store, with the allocator setting of the flow's Dask workers (`keep_freed_memory`), "
            f"{runs} time(s), the median by peak kept; peak RSS before training "
            "(imports, setup) and at the end."
        ),
        "figures": {"points": points, "middle": middle, "extract_ratio": extract_ratio, "train_ratio": train_ratio,
                    "train_ratio_large_vs_middle": window_ratio},
        "tables": [{"columns": ["clips", "shards", "largest shard (clips)", "worker peak after warm-up MiB",
                                "worker peak after extraction MiB", "training: peak before MiB",
                                "training: peak MiB", "train s", "others' cores"],
                    "rows": rows}],
        "targets": [
            {"what": f"extraction peak per worker flat ({large['clips']} vs {small['clips']} clips ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{extract_ratio:.2f}×", "met": extract_ratio <= TARGET_FLAT},
            {"what": f"training peak flat ({large['clips']} vs {small['clips']} clips ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{train_ratio:.2f}×", "met": train_ratio <= TARGET_FLAT},
        ],
        "notes": [f"training peak {large['clips']} vs {middle['clips']} clips: {window_ratio:.2f}×"],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    duration_s, sizes = _plan(quick)
    return [(max(sizes), duration_s)]


if __name__ == "__main__":
    print(json.dumps(_train_cnn(json.loads(sys.argv[1]))))
