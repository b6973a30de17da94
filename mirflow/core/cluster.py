"""Dask for the heavy lifting, started only when a stage actually has work to do.

Prefect runs the flow and its tasks in the flow process (cheap: ~5 ms a task); the
tasks hand their compute to Dask workers as plain functions (~1.5 ms a task). The
workers therefore never talk to Prefect, so they start no temporary Prefect servers
of their own, and a re-run whose stages are all cached never starts a cluster.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from mirflow.core import progress

log = logging.getLogger(__name__)

LOCAL_CLUSTER_CONFIG = {
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 for workers. Setting it at all pins
    # glibc's mmap threshold, so every STFT-sized array is mmap'd and unmapped again:
    # librosa feature extraction ran ~60 % slower. None stops the nanny setting it
    # (``_start_client`` also removes any copy already in this process's environment).
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # Send a worker only as many tasks as it has threads and keep the rest on the
    # scheduler, where they start by priority (shard stages: largest first). Dask's
    # default (1.1) queues one more task on each worker, in arrival order.
    "distributed.scheduler.worker-saturation": 1.0,
    # The statistical profiler samples each worker's task thread every 10 ms for a
    # dashboard these clusters do not serve; measured, it more than doubled the event loop's
    # CPU while a worker extracts.
    "distributed.worker.profile.enabled": False,
    # Every scheduler, nanny and worker checks its event loop's health every 20 ms and
    # samples system metrics for the dashboard every 500 ms; and the scheduler looks for
    # work to steal, of which queuing (above) leaves none. Measured on an idle 2-worker
    # cluster: 14 % of a core in all, 3 % with these settings; on a 2-core machine that
    # is CPU taken from the workers and GIL hand-offs inside them. A blocked event loop is
    # still reported (distributed.admin.tick.limit, 3 s).
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.scheduler.work-stealing": False,
    # Each worker process (restarted ones too) runs mirflow.core.memory's dask_setup:
    # malloc keeps freed arrays for reuse (why: keep_freed_memory). A cluster given by
    # address keeps its own settings.
    "distributed.worker.preload": ["mirflow.core.memory"],
}


class DaskPool:
    """A lazily connected Dask client: a local cluster of worker processes, or an
    existing scheduler given by address. Thread-safe; one per flow run."""

    def __init__(self, address: str | None = None, n_workers: int = 2):
        self.address, self.n_workers = address, n_workers
        self._client = None
        self._cluster = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._client is not None

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self):
        client = self._start_client()
        # stage functions on workers report progress as scheduler events
        client.subscribe_topic(progress.TOPIC, _forward_progress)
        return client

    def _start_client(self):
        import dask  # with distributed, only once a stage has work: a cached re-run needs neither
        from distributed import Client, LocalCluster

        if self.address:
            log.info("connecting to the Dask scheduler at %s", self.address)
            return Client(self.address, set_as_default=False)
        # The scheduler and nannies log every worker start and stop at INFO: too chatty
        # beside the flow's own log.
        logging.getLogger("distributed").setLevel(logging.WARNING)
        _quiet_worker_teardown(logging.getLogger("distributed.nanny"))
        # Workers inherit this process's environment, where an earlier default Dask
        # cluster (its nanny writes its settings into the process running it) or the
        # user's shell may have left MALLOC_TRIM_THRESHOLD_; with it, extraction here
        # took twice the CPU.
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            # Processes, one thread each: librosa and h5py hold the GIL for much of their work.
            self._cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # Without a dashboard the scheduler still serves its health routes, on 8787
                # by default: a second cluster then warned "Port 8787 is already in use".
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                host="127.0.0.1",
            )
        log.info("started a local Dask cluster with %d worker processes", self.n_workers)
        return Client(self._cluster, set_as_default=False)

    def run(self, func: Callable[..., Any], *args: Any, key_prefix: str = "mirflow", priority: int = 0,
            **kwargs: Any) -> Any:
        """Run one function on a worker and wait for its result; of the waiting ones, Dask
        starts those of higher ``priority`` first. ``pure=False``: a retry after a failure
        must really run again, not reuse the failed future."""
        future = self.client().submit(func, *args, pure=False, key=f"{key_prefix}-{_unique()}", priority=priority,
                                      **kwargs)
        return future.result()

    def close(self, wait: bool = True) -> None:
        """Disconnect and stop a local cluster. With ``wait=False`` the worker processes
        exit in the background (1–2 s of interpreter teardown that nobody needs to wait
        for once the last result is in); the thread is not a daemon, so the interpreter
        still waits for it before it exits and leaves no orphan workers."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            if wait:
                cluster.close()
            else:
                threading.Thread(target=cluster.close, name="mirflow-dask-cluster-close").start()


def _not_worker_teardown_kill(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Worker process still alive after")


def _quiet_worker_teardown(nanny_log: logging.Logger) -> None:
    """Drop the nanny's "Worker process still alive after 4.0 seconds, killing" warning.

    A nanny stopping its worker (the pool closing, or a restart the nanny announces
    itself) gives the process 4 s to exit, then kills it. A worker that imported torch
    spends seconds in interpreter teardown (measured: 4-7 s on a busy 2-core machine),
    so every run ended with this warning, though nothing was lost: results are all in by
    then, and the kill only ends that teardown."""
    if _not_worker_teardown_kill not in nanny_log.filters:
        nanny_log.addFilter(_not_worker_teardown_kill)


def _forward_progress(event: tuple) -> None:
    _, message = event  # (scheduler time, message with the worker's address added)
    progress.notify(message["task"], message["done"], message["total"])


def _unique() -> str:
    import uuid

    return uuid.uuid4().hex
