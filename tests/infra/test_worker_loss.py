"""The GTZAN flow on an existing Dask cluster (`dask scheduler` + two `dask worker`
processes) survives losing a worker in the middle of extraction: Dask reschedules the
lost worker's tasks, the run completes, and its extraction shards, split and scaler are
byte-identical to those of a clean run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from distributed import Client
from prefect_stack import BIN, Processes, wait_for

from flows.gtzan import gtzan
from mirflow.datasets import gtzan as gtzan_data
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.runs import Run

WORKERS = ("w0", "w1")
COMPARED_STAGES = ("extract", "split", "scale")


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers without nannies (a killed worker
    stays dead), each its own process on loopback; yields (address, processes)."""
    processes = Processes(tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    try:
        processes.start("scheduler", [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", scheduler_file], env, cwd=tmp_path)
        wait_for(scheduler_file.exists, 60, "the Dask scheduler file", processes.logs)
        address = json.loads(scheduler_file.read_text())["address"]
        for name in WORKERS:
            processes.start(name, [BIN / "dask", "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                                   "--no-dashboard", "--host", "127.0.0.1"], env, cwd=tmp_path)
        with Client(address) as client:
            client.wait_for_workers(len(WORKERS), timeout=60)
        yield address, processes
    finally:
        processes.stop_all()


class KillWorkerDuringExtraction(threading.Thread):
    """SIGKILLs the first worker seen processing an extraction task: a lost machine."""

    def __init__(self, client: Client, processes: Processes):
        super().__init__(daemon=True)
        self.client, self.processes = client, processes
        self.killed: tuple[str, list[str]] | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for address, keys in self.client.processing().items():
                extracting = [str(k) for k in keys if str(k).startswith("extract-")]
                if extracting:
                    name = self.client.scheduler_info()["workers"][address]["name"]
                    os.kill(self.processes.started[name].pid, signal.SIGKILL)
                    self.killed = (name, extracting)
                    return
            time.sleep(0.02)


def stage_files(store: Path) -> dict[str, bytes]:
    """Every file of the compared stages' artifacts, bar the per-run metadata."""
    return {
        str(path.relative_to(store)): path.read_bytes()
        for stage in COMPARED_STAGES
        for path in sorted((store / "artifacts" / stage).rglob("*"))
        if path.is_file() and path.name != "_meta.json"
    }


@pytest.mark.heavy
def test_a_run_that_loses_a_worker_mid_extraction_matches_a_clean_run(prefect_server, cluster, tmp_path):
    address, processes = cluster
    gtzan_data.synthesize(tmp_path / "data", n_per_genre=5, duration_s=4.0, seed=5)  # 50 clips, ~10 shards

    def params(store: str) -> GtzanParams:
        return GtzanParams(data_dir=str(tmp_path / "data"), store=str(tmp_path / store), dask_address=address,
                           shard_size=5, models=["mlp"], max_epochs=2, patience=1, fractions=(0.6, 0.2, 0.2))

    gtzan(params=params("clean"))
    with Client(address) as client:
        killer = KillWorkerDuringExtraction(client, processes)
        killer.start()
        try:
            result = gtzan(params=params("killed"))
        finally:
            killer.done.set()
            killer.join()
        assert killer.killed, "no worker was seen processing an extraction task"
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 30, "the scheduler to drop the killed worker")

    manifest = Run.open(str(tmp_path / "killed"), result["run_id"]).manifest
    assert {s["status"] for s in manifest["stages"] if s["stage"] in COMPARED_STAGES} == {"computed"}
    clean, killed = stage_files(tmp_path / "clean"), stage_files(tmp_path / "killed")
    assert sum(name.endswith("table.parquet") for name in clean) >= 5
    assert killed.keys() == clean.keys()
    assert [name for name in clean if killed[name] != clean[name]] == []
