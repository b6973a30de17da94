"""Benchmark: MSD ETL throughput and memory (issue 4, report 000).

Runs the flow's ETL stage function (``msd_etl.write_song_shard`` through ``materialize``,
exactly as ``run_stage`` runs it on a Dask worker) on 1,000 and 10,000 generated MSD
song files, warm in the page cache, and reports:

- files/s per core of the stage function in one process, without and with the 24
  timbre statistics (target >= 500 files/s per core for the report's fields);
- files/s per worker on a local Dask cluster of 1 and 2 worker processes;
- the peak RSS of the worker processes at 1,000 and 10,000 files (flat: the ETL holds
  one shard at a time);
- the baseline, measured in the same run: the report's starter-code way of reading a
  song (one h5py read per field, as MSD's ``hdf5_getters`` does) into a CSV. The report
  itself quotes ~33 files/s per core (1,000 files in 30 s).

``python -m bench.msd_etl [--quick]`` runs it alone; generated files are cached under
``bench/results/data/msd-songs`` and made once (two processes).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench.common import DATA, STORES, timed
from mirflow.core.memory import peak_rss_bytes

NEEDS_PREFECT = False  # stage functions on Dask or in process: no flow run
TARGET_FILES_PER_CORE = 500
TARGET_FLAT = 1.20
SHARD_SIZE = 1000  # MsdHotnessParams' default
REPORT_FILES_PER_CORE = 1000 / 30  # report 000, section 1.3.3: one chunk of 1,000 files in 30 s
PARTS = 4  # the cached set is generated in parts, two processes at a time


def data_sets(quick: bool) -> list:
    """No GTZAN clip sets (bench.run_all asks every benchmark); MSD files are made here."""
    return []


def _sizes(quick: bool) -> tuple[int, int]:
    return (200, 1000) if quick else (1000, 10_000)


def _make_part(folder: str, n: int, seed: int) -> None:
    from mirflow.datasets import msd

    msd.synthesize(folder, n, seed=seed)


def song_files(n_files: int) -> tuple[Path, list[str]]:
    """The cached generated set (grown when too small) and the first ``n_files`` relative paths."""
    folder = DATA / "msd-songs"
    marker = folder / "bench-data.json"  # written last: its presence means a complete set
    if not (marker.is_file() and json.loads(marker.read_text())["n"] >= n_files):
        shutil.rmtree(folder, ignore_errors=True)
        per_part = -(-n_files // PARTS)
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(_make_part, str(folder / f"part{i}"), per_part, 1000 + i) for i in range(PARTS)]
            for job in jobs:
                job.result()
        marker.write_text(json.dumps({"n": per_part * PARTS}))
    from mirflow.datasets import msd

    rel_paths = [os.path.relpath(p, folder) for p in msd.list_files(folder)]
    return folder, rel_paths[:n_files]


def _warm(folder: Path, rel_paths: list[str]) -> None:
    for rel in rel_paths:
        (folder / rel).read_bytes()


def _shards(rel_paths: list[str]) -> list[list[str]]:
    import pandas as pd

    from mirflow.stages.shards import plan_shards

    return [[c["rel_path"] for c in shard.files] for shard in plan_shards(pd.DataFrame({"rel_path": rel_paths}), SHARD_SIZE)]


def _in_process(folder: Path, rel_paths: list[str], timbre: bool) -> dict:
    """The stage function in this process, shard after shard: files/s of one core."""
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.msd_hotness import extract as msd_etl

    store = ArtifactStore(str(STORES / "msd-etl-inprocess"))
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = 0
    for shard in _shards(rel_paths):
        result = materialize(store, ArtifactRef("extract", uuid.uuid4().hex), {}, msd_etl.write_song_shard, (str(folder), shard, timbre))
        rows += result["summary"]["rows"]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    shutil.rmtree(STORES / "msd-etl-inprocess", ignore_errors=True)
    n = len(rel_paths)
    return {"files": n, "rows": rows, "seconds": round(seconds, 3), "files_per_s": round(n / seconds, 1),
            "files_per_cpu_s": round(n / cpu, 1)}


def _warm_up(folder: str, rel_paths: list[str]) -> float:
    """Run the whole stage once on a few files, into a throw-away store (a fresh
    process's first call pays for imports and the Parquet writer); returns this
    process's CPU seconds so far."""
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.msd_hotness import extract as msd_etl

    if rel_paths:
        scratch = STORES / f"msd-etl-warm-{uuid.uuid4().hex}"
        materialize(ArtifactStore(str(scratch)), ArtifactRef("extract", "warm"), {}, msd_etl.write_song_shard, (folder, rel_paths, True))
        shutil.rmtree(scratch, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _on_dask(folder: Path, rel_paths: list[str], n_workers: int) -> dict:
    """All shards on a local Dask cluster at once (the cluster start is not timed)."""
    from mirflow.core.cluster import DaskPool
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.msd_hotness import extract as msd_etl

    store_dir = STORES / f"msd-etl-dask{n_workers}"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = ArtifactStore(str(store_dir))
    pool = DaskPool(None, n_workers)
    try:
        client = pool.client()
        client.wait_for_workers(n_workers)
        shards = _shards(rel_paths)
        cpu_before = client.run(_warm_up, str(folder), rel_paths[:50])
        with timed(wait=False) as record:
            futures = [
                client.submit(materialize, store, ArtifactRef("extract", uuid.uuid4().hex), {}, msd_etl.write_song_shard,
                              (str(folder), shard, False), pure=False)
                for shard in shards
            ]
            results = client.gather(futures)
        cpu_after = client.run(_warm_up, str(folder), [])
    finally:
        pool.close()
        shutil.rmtree(store_dir, ignore_errors=True)
    per_s = len(rel_paths) / record["seconds"]
    return {
        "files": len(rel_paths),
        "workers": n_workers,
        "shards": len(shards),
        "largest_shard": max(len(s) for s in shards),
        "seconds": record["seconds"],
        "files_per_s": round(per_s, 1),
        "files_per_s_per_worker": round(per_s / n_workers, 1),
        "files_per_worker_cpu_s": round(len(rel_paths) / sum(cpu_after[w] - cpu_before[w] for w in cpu_before), 1),
        "peak_worker_rss_mib": round(max(r["peak_rss_bytes"] for r in results) / 2**20, 1),
        "others_cores": record["others_cores"],
    }


# The report's fields read the starter-code way: one h5py read per field.
_BASELINE_FIELDS = {
    "metadata": ("artist_id", "artist_familiarity", "artist_hotttnesss", "artist_latitude", "artist_longitude",
                 "artist_location", "song_hotttnesss", "title", "genre"),
    "analysis": ("danceability", "energy", "duration", "start_of_fade_out", "end_of_fade_in", "key", "key_confidence",
                 "loudness", "mode", "mode_confidence", "tempo", "time_signature", "time_signature_confidence"),
    "musicbrainz": ("year",),
}


def _baseline(folder: Path, rel_paths: list[str]) -> dict:
    import h5py
    import pandas as pd

    started, cpu_started = time.perf_counter(), time.process_time()
    rows = []
    for rel in rel_paths:
        with h5py.File(folder / rel, "r") as h5:
            row = {f: h5[group]["songs"][f][0] for group, fields in _BASELINE_FIELDS.items() for f in fields}
            for name in ("artist_terms", "artist_terms_freq", "artist_terms_weight"):
                row[name] = list(h5["metadata"][name][:])
        rows.append(row)
    pd.DataFrame(rows).to_csv(io.StringIO())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    n = len(rel_paths)
    return {"files": n, "seconds": round(seconds, 3), "files_per_s": round(n / seconds, 1), "files_per_cpu_s": round(n / cpu, 1)}


def run(quick: bool) -> dict:
    small, large = _sizes(quick)
    folder, rel_paths = song_files(large)
    _warm(folder, rel_paths)
    _warm_up(str(folder), rel_paths[:50])
    single = {(n, timbre): _in_process(folder, rel_paths[:n], timbre) for n in (small, large) for timbre in (False, True)}
    baseline = _baseline(folder, rel_paths[:small])
    dask_runs = [_on_dask(folder, rel_paths[:n], workers) for n in (small, large) for workers in (1, 2)]
    per_core = single[(large, False)]["files_per_cpu_s"]
    flat = max(r["peak_worker_rss_mib"] for r in dask_runs if r["files"] == large) / max(
        r["peak_worker_rss_mib"] for r in dask_runs if r["files"] == small
    )
    rows_single = [
        [n, "yes" if timbre else "no", r["seconds"], r["files_per_s"], r["files_per_cpu_s"]] for (n, timbre), r in single.items()
    ]
    rows_dask = [
        [r["files"], r["workers"], r["shards"], r["largest_shard"], r["seconds"], r["files_per_s"],
         r["files_per_s_per_worker"], r["files_per_worker_cpu_s"], r["peak_worker_rss_mib"], r["others_cores"]]
        for r in dask_runs
    ]
    return {
        "name": "msd_etl",
        "title": "MSD ETL: song files to Parquet shards",
        "setup": (
            f"Generated MSD song files (mirflow.datasets.msd.synthesize, ~240 KB each, the real files' layout), warm in "
            f"the page cache; shards of ~{SHARD_SIZE} files (plan_shards); the stage function the flow runs "
            f"(msd_etl.write_song_shard via materialize, Parquet written to a local store). {os.cpu_count()} cores, shared."
        ),
        "tables": [
            {"columns": ["files", "timbre stats", "seconds", "files/s (wall)", "files per CPU-second"], "rows": rows_single},
            {"columns": ["files", "Dask workers", "shards", "largest shard", "seconds", "files/s", "files/s per worker",
                         "files per worker CPU-second", "peak worker RSS (MiB)", "others' cores"], "rows": rows_dask},
            {"columns": ["reader", "files", "files per CPU-second (one core)"], "rows": [
                ["baseline: one h5py read per field (starter code), to CSV", baseline["files"], baseline["files_per_cpu_s"]],
                ["report 000's pipeline (quoted, not measured: 1,000 files in 30 s)", 1000, round(REPORT_FILES_PER_CORE, 1)],
                ["mirflow ETL, report's fields", large, per_core],
                ["mirflow ETL, + 24 timbre statistics", large, single[(large, True)]["files_per_cpu_s"]],
            ]},
        ],
        "targets": [
            {"what": f">= {TARGET_FILES_PER_CORE} files/s per core (report's fields, warm files; per CPU-second)", "value": per_core,
             "met": per_core >= TARGET_FILES_PER_CORE},
            {"what": f"peak worker RSS at {large} files <= {TARGET_FLAT:.2f}x that at {small}", "value": round(flat, 2),
             "met": flat <= TARGET_FLAT},
        ],
        "notes": [
            f"Speed-up over the starter-code baseline measured here: {per_core / baseline['files_per_cpu_s']:.1f}x; over the "
            f"report's quoted ~{REPORT_FILES_PER_CORE:.0f} files/s per core: {per_core / REPORT_FILES_PER_CORE:.0f}x.",
            "Per-core figures are files per CPU-second of the one process doing the work (the machine is shared, "
            "so wall-clock rates also measure other people's load; both are shown). Dask rows are wall clock and "
            "include task dispatch and Parquet writes; 2 workers on 2 shared cores cannot double the rate.",
        ],
        "raw": {"single": {f"{n}-{'timbre' if t else 'plain'}": r for (n, t), r in single.items()}, "dask": dask_runs,
                "baseline": baseline, "bench_peak_rss_mib": round(peak_rss_bytes() / 2**20, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.msd_etl", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 files instead of 1,000 and 10,000.")
    args = parser.parse_args(argv)
    from bench.common import write_result

    with timed() as record:
        result = run(args.quick)
    result.update(record, quick=args.quick)
    print(write_result(result).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
