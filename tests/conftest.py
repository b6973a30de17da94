"""Shared fixtures: real-data samples (skipped when ../shared is absent), an isolated
Prefect home so no test writes to the user's home, and a temporary Prefect server."""

from __future__ import annotations

import inspect
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def pytest_configure(config):
    """One torch thread in the test process: its models and batches are tiny, and a second
    OpenMP thread spin-waits at each of their hundreds of small ops (on a busy 2-core machine
    the zoo's tests took 4x as long at two threads). Flow stages run in Dask workers, one
    thread each already; tests that need another count set it themselves."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Root of the real samples in ../shared/realdata; skips the test when absent."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent (a user's clone): real-data test skipped")
    return REALDATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_homes(tmp_path_factory):
    """Keep Prefect and mirflow state out of the user's home for the whole session."""
    home = tmp_path_factory.mktemp("prefect_home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("MIRFLOW_DATA", str(tmp_path_factory.mktemp("mirflow_data")))
    yield


@pytest.fixture(scope="session")
def prefect_api_url(_isolated_homes, tmp_path_factory):
    """One temporary Prefect server (SQLite in a temporary folder) for the whole session,
    as ``prefect_test_harness`` starts one, but once: 10-20 s a start on a busy 2-core
    machine. On a port of its own, so the in-process temporary server of the CLI (the
    port-less instance) is never this one. Yields its API URL."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    database = tmp_path_factory.mktemp("prefect_db") / "prefect.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SubprocessASGIServer(port=port)
    # no telemetry heartbeat: its first write races the server's start on SQLite ("database is locked")
    settings = {PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}", PREFECT_SERVER_ANALYTICS_ENABLED: False}
    with temporary_settings(updates=settings):
        server.start(timeout=300)  # the server process takes its settings from here; 120 s were too few at load 20
    try:
        yield server.api_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prefect_server(prefect_api_url):
    """The session's Prefect server, set as this module's API (as ``prefect_test_harness``
    does, also for threads whose context was copied earlier); yields its API URL. Logs and
    events are sent before the module ends, so none arrive in another module's time."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}), \
            _temporary_global_settings_context(get_settings_context()):
        yield prefect_api_url

        async def drain():
            try:
                pending = APILogWorker.instance().drain()
                if inspect.isawaitable(pending):
                    await pending
            except RuntimeError:  # the log worker never started
                pass
            pending = EventsWorker.drain_all()
            if inspect.isawaitable(pending):
                await pending

        run_coro_as_sync(drain())


@pytest.fixture(scope="session")
def dask_scheduler(_isolated_homes):
    """The address of one local Dask cluster for the session's flow runs, made as
    ``DaskPool`` makes its own (worker processes of one thread, its config). A flow given
    it as ``dask_address`` skips starting a cluster and its workers' imports (torch,
    librosa: 5-10 s a run here); tests of the local cluster itself leave it unset."""
    import dask
    from distributed import LocalCluster

    from mirflow.core.cluster import LOCAL_CLUSTER_CONFIG

    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # read as the cluster starts: set for no other test
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, host="127.0.0.1")
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture
def scaler_fitted_on_all_rows(monkeypatch):
    """Injects the leak every pipeline's audit must catch: the scaler fitted on all rows."""
    from mirflow.stages import scaling

    real_fit = scaling.fit_scaler_on_train
    monkeypatch.setattr(scaling, "fit_scaler_on_train",
                        lambda X, split, **kwargs: real_fit(X, split.map(lambda _: "train"), **kwargs))
