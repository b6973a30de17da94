"""The flow on an existing Dask cluster (real scheduler and worker processes) and on
real GTZAN clips from ../shared/realdata."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from allocator_probe import page_faults_of_array_churn

from flows.common import DEFAULT_TASK_THREADS, task_threads
from flows.gtzan import gtzan
from mirflow.core.cluster import DaskPool
from mirflow.datasets import gtzan as gtzan_data
from mirflow.pipelines.gtzan.params import GtzanParams

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and `dask worker` as separate processes on loopback."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    processes = [
        subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                          "--scheduler-file", scheduler_file], cwd=folder, stderr=subprocess.DEVNULL)
    ]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(
            subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1", "--nworkers", "2",
                              "--no-dashboard", "--host", "127.0.0.1"], cwd=folder, stderr=subprocess.DEVNULL)
        )
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.mark.heavy
def test_flow_runs_on_an_existing_dask_cluster(prefect_server, dask_cluster, tmp_path):
    gtzan_data.synthesize(tmp_path / "data", n_per_genre=3, duration_s=3.0, seed=3)
    params = GtzanParams(data_dir=str(tmp_path / "data"), store=str(tmp_path / "store"), dask_address=dask_cluster,
                         shard_size=8, max_epochs=2, patience=1, cnn_frames=32, fractions=(0.6, 0.2, 0.2))
    result = gtzan(params=params)
    from distributed import Client

    with Client(dask_cluster) as client:
        done = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
        loaded = client.run(lambda: "prefect" in sys.modules)
    assert {"extract", "train"} <= set(done)  # the stages really ran on that cluster
    # Workers run plain stage functions: they never import Prefect, let alone start a
    # temporary Prefect server of their own.
    assert list(loaded.values()) == [False, False]
    metrics = json.loads((Path(result["run_dir"]) / "metrics.json").read_text())
    assert set(metrics["models"]) == {"mlp", "cnn"}


def test_flow_on_real_gtzan_clips(realdata, prefect_server, dask_scheduler, tmp_path):  # skipped before starting either
    params = GtzanParams(data_dir=str(realdata / "gtzan"), store=str(tmp_path / "store"), dask_address=dask_scheduler,
                         max_epochs=3, patience=2, cnn_frames=128, fractions=(0.58, 0.21, 0.21))
    result = gtzan(params=params)
    run_dir = Path(result["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["failures"] == []
    features = json.loads((run_dir / "inputs.json").read_text())
    assert features["clips"] == 70
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(metrics["models"]["mlp"][s]["n"] for s in ("train", "validation", "test")) == 70


def test_task_thread_pool_is_sized_for_a_cluster_and_follows_prefects_setting():
    """Each shard's task waits on a thread while Dask computes: the pool must not cap a
    large cluster at a handful of shards, and Prefect's own setting must raise it."""
    assert gtzan.task_runner._max_workers == task_threads() == DEFAULT_TASK_THREADS >= 64
    from prefect.settings import PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS, temporary_settings

    with temporary_settings(updates={PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS: 256}):
        assert task_threads() == 256


@pytest.mark.heavy
def test_waiting_work_starts_largest_first():
    """Shards differ in size; a large one started last would leave the other workers
    idle at the end, so of the work waiting on the scheduler the highest priority (the
    size) starts first. (Dask sends the first tasks of a group to the workers as they
    arrive; ``plan_input_shards`` lists shards largest first for those.)"""
    pool = DaskPool(None, 1)
    sizes = (3, 40, 7, 19, 11, 2, 30, 5)
    try:
        pool.client().wait_for_workers(1)
        with ThreadPoolExecutor(len(sizes) + 1) as threads:
            busy = threads.submit(pool.run, time.sleep, 3.0)  # the only worker, while the rest queue
            started = {}
            for size in sizes:
                time.sleep(0.1)  # arrive in this order
                started[size] = threads.submit(pool.run, time.time, priority=size)
            busy.result()
            order = sorted(sizes, key=lambda size: started[size].result())
    finally:
        pool.close()
    assert order == [3, 40, 30, 19, 11, 7, 5, 2]  # 3 went to the worker before the group queued


def _malloc_trim_threshold():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.heavy
def test_local_workers_start_without_dasks_malloc_trim_threshold(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which slows librosa extraction on
    workers (bench/workers.py measures it); mirflow's local cluster removes it, even when
    an earlier default Dask cluster in this process left it in the environment."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    pool = DaskPool(None, 2)
    try:
        settings = pool.client().run(_malloc_trim_threshold)
    finally:
        pool.close()
    assert list(settings.values()) == [None, None]


def _tick_interval() -> str:
    import dask

    return dask.config.get("distributed.admin.tick.interval")


@pytest.mark.heavy
@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_local_workers_keep_freed_memory_and_quiet_event_loops():
    """mirflow's local workers reuse freed arrays instead of faulting pages in anew, and
    their servers check their event loops once a second, not 50 times (what it costs:
    mirflow/core/cluster.py); the scheduler runs no work stealing."""
    pool = DaskPool(None, 1)
    try:
        client = pool.client()
        faults = pool.run(page_faults_of_array_churn)
        intervals = set(client.run(_tick_interval).values())
        stealing = client.run_on_scheduler(lambda dask_scheduler: "stealing" in dask_scheduler.extensions)
    finally:
        pool.close()
    assert faults < 12_000
    assert intervals == {"1s"}
    assert not stealing


def _slow_teardown() -> None:
    """Make this worker process take 6 s to exit, as one that imported torch does on a busy machine."""
    import atexit
    import time

    atexit.register(time.sleep, 6)


@pytest.mark.heavy
def test_closing_the_pool_warns_of_nothing():
    """A worker slow to exit is killed after 4 s without the nanny's warning, and a
    second cluster (8787 taken) starts without Dask's "Port 8787 is already in use"."""
    import contextlib
    import logging
    import socket
    import warnings

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    nanny_log = logging.getLogger("distributed.nanny")
    nanny_log.addHandler(handler)
    try:
        with socket.socket() as port_8787, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.suppress(OSError):  # already taken is as good
                port_8787.bind(("127.0.0.1", 8787))
                port_8787.listen()
            pool = DaskPool(None, 1)
            pool.client().run(_slow_teardown)
            pool.close()
    finally:
        nanny_log.removeHandler(handler)
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert not [str(w.message) for w in caught if "8787" in str(w.message)]
