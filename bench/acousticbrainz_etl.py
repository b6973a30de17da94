"""AcousticBrainz benchmark: memory and throughput of the acousticbrainz_genre flow's ETL
(JSON -> Parquet shards on Dask workers) and of one subtask-1 training epoch reading the
feature table in batches, at 2,000 and 20,000 generated files; baseline in the same run:
the whole feature table read into one in-memory table (what the report's pipeline did).

``python -m bench.acousticbrainz_etl`` runs it alone (``--quick``: 500 and 5,000 files);
``python -m bench.acousticbrainz_etl naive DIR`` and ``... train STORE SPLIT TARGETS PREP``
are the subprocesses that measure one peak each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from bench.common import DATA, STORES, fresh_store, timed, write_result
from mirflow.core.memory import peak_rss_bytes

NEEDS_PREFECT = False  # stage functions on Dask or in process: no flow run
TARGET_FLAT = 1.20  # peak at 10x the files / peak at 1x
SHARD_SIZE = 2000  # AcousticBrainzParams' default
WORKERS = 2
SOURCE = "discogs"
TRAIN_CONFIG = dict(hidden=256, dropout=0.5, lr=1e-3, weight_decay=0.0, batch_size=64, max_epochs=1, patience=1, seed=0)


def _sizes(quick: bool) -> tuple[int, int]:
    return (500, 5000) if quick else (2000, 20000)


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


# -- generated data, cached under bench/results/data ---------------------------------------
def _master(n: int) -> Path:
    """One generated set of at least ``n`` recordings (JSON + ground truth), made once."""
    from mirflow.datasets import acousticbrainz as ab

    folder = DATA / "acousticbrainz"
    marker = folder / "bench-data.json"  # written last: its presence means a complete set
    if marker.is_file() and json.loads(marker.read_text())["n"] >= n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    ab.synthesize(folder, n, seed=0)
    marker.write_text(json.dumps({"n": n}))
    return folder


def dataset(n: int, largest: int) -> Path:
    """The first ``n`` documents of the cached set as hard links, with the ground-truth rows
    of those recordings only (the flow's data layout)."""
    from mirflow.datasets import acousticbrainz as ab

    master = _master(largest)
    folder = DATA / f"acousticbrainz-n{n}"
    marker = folder / "bench-subset.json"
    if marker.is_file() and marker.read_text() == (master / "bench-data.json").read_text():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    documents = ab.list_files(master)[:n]
    for path in documents:
        target = folder / path.relative_to(master)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    kept = {p.stem for p in documents}
    for path in ab.groundtruth_files(master).values():
        lines = path.read_text().splitlines()
        (folder / path.name).write_text("\n".join([lines[0], *(l for l in lines[1:] if l.split("\t", 1)[0] in kept)]) + "\n")
    marker.write_text((master / "bench-data.json").read_text())
    return folder


# -- the measurements --------------------------------------------------------------------
def _etl(data_dir: Path, store_dir: Path) -> dict:
    """The flow's extract stage: every shard on a fresh 2-worker Dask cluster; the peak is
    the largest worker's VmHWM once all shards are done."""
    from mirflow.core.cluster import DaskPool
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
    from mirflow.stages.shards import plan_shards

    store = ArtifactStore(str(store_dir))
    shards = plan_shards(ab_etl.feature_files(data_dir), SHARD_SIZE)
    refs = [ArtifactRef("extract", uuid.uuid4().hex) for _ in shards]
    pool = DaskPool(None, WORKERS)
    try:
        client = pool.client()
        client.run(lambda: None)  # workers up before the clock starts
        with timed() as record:
            futures = [client.submit(materialize, store, ref, {}, ab_etl.write_ab_shard, (list(shard.files),), pure=False)
                       for shard, ref in zip(shards, refs)]
            results = client.gather(futures)
        worker_peaks = client.run(peak_rss_bytes)
    finally:
        pool.close()
    return {**record, "refs": [r.key for r in refs], "shards": len(shards),
            "largest_shard": max(len(s.files) for s in shards),
            "worker_peak_rss_bytes": max(worker_peaks.values()),
            "rows": sum(r["summary"]["rows"] for r in results)}


def _prepare_training(data_dir: Path, store_dir: Path, extract_keys: list[str]) -> dict:
    """Targets, split and preprocessing for the training measurement (not measured)."""
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
    from mirflow.pipelines.acousticbrainz_genre.preprocessing import write_preprocessing
    from mirflow.pipelines.acousticbrainz_genre.split import write_recording_split
    from mirflow.pipelines.acousticbrainz_genre.targets import write_targets
    from mirflow.stages.featuresets import FeatureSet

    store = ArtifactStore(str(store_dir))
    features = FeatureSet(store, tuple(ArtifactRef("extract", k) for k in extract_keys))
    found = ab_etl.groundtruth_inputs(data_dir)
    refs = {}
    for name, func, args in (
        ("targets", write_targets, lambda: ({s: {sp: f["path"] for sp, f in v.items()} for s, v in found.items()},)),
        ("split", write_recording_split, lambda: (features, refs["targets"], 0.2, 0.2, 5, 0)),
        ("scale", write_preprocessing, lambda: (features, refs["split"])),
    ):
        refs[name] = ArtifactRef(name, uuid.uuid4().hex)
        with store.writing(refs[name]) as writer:
            writer.write_json("summary.json", func(writer, *args()))
    return {name: ref.key for name, ref in refs.items()}


def _subprocess(*args: str) -> dict:
    with timed() as record:
        command = [sys.executable, "-m", "bench.acousticbrainz_etl", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return {**record, **json.loads(done.stdout.strip().splitlines()[-1])}


def naive_table(data_dir: str) -> dict:
    """Baseline: every document into one in-memory table (``read_table``), as the
    report's conversion did before writing its CSV."""
    from mirflow.datasets import acousticbrainz as ab

    before = peak_rss_bytes()
    table, _ = ab.read_table(ab.list_files(data_dir))
    return {"rows": len(table), "peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": before}


def train_epoch(store_dir: str, extract_keys: str, split: str, targets: str, prep: str) -> dict:
    """One epoch of the flow's subtask-1 training (full network) for ``SOURCE``, streaming
    batches from the Parquet feature table, plus its embedding pass."""
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.acousticbrainz_genre.networks import FULL
    from mirflow.pipelines.acousticbrainz_genre.subtask1 import write_subtask1_model
    from mirflow.stages.featuresets import FeatureSet

    store = ArtifactStore(store_dir)
    features = FeatureSet(store, tuple(ArtifactRef("extract", k) for k in extract_keys.split(",")))
    before = peak_rss_bytes()
    with store.writing(ArtifactRef("bench-train", uuid.uuid4().hex)) as writer:
        summary = write_subtask1_model(writer, features, ArtifactRef("split", split), ArtifactRef("targets", targets),
                                                ArtifactRef("scale", prep), SOURCE, FULL, TRAIN_CONFIG)
    return {"peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": before, "train_rows": summary["train_rows"],
            "train_seconds": summary["train_seconds"]}


def run(quick: bool) -> dict:
    from mirflow.pipelines.acousticbrainz_genre.extract import READ_BATCH

    small, large = _sizes(quick)
    points = []
    for n in (small, large):
        data_dir = dataset(n, large)
        store = fresh_store(f"acousticbrainz-n{n}")
        etl = _etl(data_dir, store)
        naive = _subprocess("naive", str(data_dir))
        keys = _prepare_training(data_dir, store, etl["refs"])
        training = _subprocess("train", str(store), ",".join(etl["refs"]), keys["split"], keys["targets"], keys["scale"])
        points.append({"files": n, "etl": etl, "naive": naive, "training": training})
    rows = [
        [p["files"], p["etl"]["shards"], p["etl"]["largest_shard"], _mib(p["etl"]["worker_peak_rss_bytes"]),
         round(p["files"] / p["etl"]["seconds"]), _mib(p["naive"]["peak_rss_bytes"]), round(p["files"] / p["naive"]["seconds"]),
         p["training"]["train_rows"], _mib(p["training"]["peak_rss_bytes"]), round(p["training"]["train_seconds"], 1),
         max(p["etl"]["others_cores"], p["naive"]["others_cores"], p["training"]["others_cores"])]
        for p in points
    ]
    first, last = points
    etl_ratio = last["etl"]["worker_peak_rss_bytes"] / first["etl"]["worker_peak_rss_bytes"]
    naive_ratio = last["naive"]["peak_rss_bytes"] / first["naive"]["peak_rss_bytes"]
    train_ratio = last["training"]["peak_rss_bytes"] / first["training"]["peak_rss_bytes"]
    return {
        "name": "acousticbrainz_etl",
        "title": f"AcousticBrainz ETL and training memory, {small:,} vs {large:,} generated files",
        "setup": (
            f"Generated AcousticBrainz low-level JSON (`acousticbrainz.synthesize`, ~68 KB each, cached in "
            f"bench/results/data). ETL: the flow's extract stage (`ab_etl.write_ab_shard`, {SHARD_SIZE} files per "
            f"shard, {WORKERS} Dask workers, batches of {READ_BATCH:,} files). Baseline: the same files read into one "
            "in-memory table (`acousticbrainz.read_table`) in a fresh process. Training: one epoch of the "
            f"subtask-1 network for {SOURCE} (2,676 → 256 → G, batch 64) reading the Parquet feature table in "
            "batches, plus its embedding pass, in a fresh process (targets, split and scaler prepared beforehand)."
        ),
        "figures": {"points": points, "etl_ratio": etl_ratio, "naive_ratio": naive_ratio, "train_ratio": train_ratio},
        "tables": [{"columns": ["files", "shards", "largest shard", "ETL peak RSS / worker MiB", "ETL files/s",
                                "baseline (one table) peak MiB", "baseline files/s", "training rows",
                                "training peak RSS MiB", "epoch s", "others' cores"],
                    "rows": rows}],
        "targets": [
            {"what": f"ETL peak per worker flat ({large:,} vs {small:,} files ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{etl_ratio:.2f}× (baseline: {naive_ratio:.2f}×)", "met": etl_ratio <= TARGET_FLAT},
            {"what": f"training peak flat ({large:,} vs {small:,} files ≤ {TARGET_FLAT:.2f}×)",
             "value": f"{train_ratio:.2f}×", "met": train_ratio <= TARGET_FLAT},
        ],
        "notes": ["Peaks are VmHWM of the processes doing the work (a Dask worker's covers all its shards); "
                  "`ru_maxrss` would carry a forking parent's peak into a subprocess."],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    """No GTZAN clips needed (``run_all.prepare_data``): this benchmark makes its own data."""
    return []


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "naive":
        print(json.dumps(naive_table(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "train":
        print(json.dumps(train_epoch(*sys.argv[2:7])))
    else:
        from bench import common

        common.quiet_wait_s = 10.0 if "--quick" in sys.argv else common.quiet_wait_s
        STORES.mkdir(parents=True, exist_ok=True)
        with timed(wait=False) as total:
            result = run("--quick" in sys.argv)
        result.update(total, quick="--quick" in sys.argv)
        print(write_result(result).read_text())
