"""Prefect's temporary server under `mirflow run` and `mirflow serve`: mirflow's defaults
for its settings, a start-up timeout that says what to do, a demo run whose log has no
ERROR, traceback or warning, no server left behind by a killed run, and a quick quiet
Ctrl-C on `mirflow serve`."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect.context import refresh_global_settings_context
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings
from prefect_stack import REPO, Processes, wait_for

from flows.temporary_server import apply_server_defaults
from mirflow.cli import main

TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
ANALYTICS = "PREFECT_SERVER_ANALYTICS_ENABLED"
TINY_RUN = ["--demo-clips-per-genre", "3", "--models", "mlp", "--n-workers", "1", "--max-epochs", "1",
            "--cnn-frames", "32", "--fractions", "0.6", "0.2", "0.2"]


@pytest.fixture
def prefect_env(monkeypatch):
    """This test's changes to Prefect's environment settings, undone afterwards."""
    for name in (TIMEOUT, ANALYTICS, "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    refresh_global_settings_context()


def test_server_defaults_apply_unless_the_user_set_the_setting(prefect_env):
    apply_server_defaults()
    settings = get_current_settings().server
    assert settings.ephemeral.startup_timeout_seconds >= 120 and settings.analytics_enabled is False
    prefect_env.setenv(TIMEOUT, "7")
    prefect_env.setenv(ANALYTICS, "true")
    refresh_global_settings_context()
    apply_server_defaults()
    settings = get_current_settings().server
    assert settings.ephemeral.startup_timeout_seconds == 7 and settings.analytics_enabled is True


@pytest.mark.heavy
def test_server_start_timeout_says_what_to_do(prefect_env, tmp_path, capsys):
    prefect_env.setenv(TIMEOUT, "1")  # no server answers within 1 s
    refresh_global_settings_context()
    try:
        assert main(["run", "gtzan", "--store", str(tmp_path / "store")]) == 2
    finally:
        SubprocessASGIServer().stop()
    error = capsys.readouterr().err
    assert error.startswith("mirflow: error: Prefect's temporary server did not start") and error.count("\n") == 1
    assert f"{TIMEOUT}=300" in error and "prefect server start" in error and "PREFECT_API_URL" in error


def clean_env(tmp_path: Path) -> dict[str, str]:
    """A fresh Prefect home and no server configured: the temporary server is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect_home"), "MIRFLOW_DATA": str(tmp_path / "data"),
            "PYTHONPATH": str(REPO)}


# `python -m mirflow.cli ARGS` with Ctrl-C's default handling, as from a terminal: a test
# run from a background job of a script would hand SIGINT down ignored.
MIRFLOW = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "runpy.run_module('mirflow.cli', run_name='__main__')")


def mirflow(*args: str) -> list[str]:
    return [sys.executable, "-c", MIRFLOW, *args]


def temporary_server(process: psutil.Process) -> psutil.Process | None:
    return next((child for child in process.children() if "prefect.server.api.server:create_app" in child.cmdline()),
                None)


@pytest.mark.heavy
def test_demo_run_logs_no_error_traceback_or_warning(tmp_path):
    processes = Processes(tmp_path)
    try:
        run = processes.start("run", mirflow("run", "gtzan", "--store", tmp_path / "store", *TINY_RUN),
                              clean_env(tmp_path), cwd=tmp_path)
        assert run.wait(timeout=540) == 0, processes.log("run")
    finally:
        processes.stop_all()
    log = processes.log("run", tail=10**6)
    assert "best model: mlp" in log
    assert not re.search(r"ERROR|Traceback|(?i:warning)|still alive", log), log


@pytest.mark.heavy
def test_killed_run_leaves_no_temporary_server(tmp_path):
    processes = Processes(tmp_path)
    server = None
    try:
        run = processes.start("run", mirflow("run", "gtzan", "--store", tmp_path / "store", *TINY_RUN),
                              clean_env(tmp_path), cwd=tmp_path)
        wait_for(lambda: "Beginning flow run" in processes.log("run"), 300, "the flow run to begin",
                 lambda: processes.log("run"))
        server = temporary_server(psutil.Process(run.pid))
        assert server is not None
        run.kill()  # what the OOM killer does
        run.wait(timeout=10)
        gone, _ = psutil.wait_procs([server], timeout=15)
        assert gone, "the temporary server outlived its killed `mirflow run`"
    finally:
        if server is not None and server.is_running():
            server.kill()
        processes.stop_all()


@pytest.mark.heavy
def test_ctrl_c_stops_serve_quickly_without_tracebacks(tmp_path):
    processes = Processes(tmp_path)
    try:
        serve = processes.start("serve", mirflow("serve"), clean_env(tmp_path), cwd=tmp_path)
        wait_for(lambda: "Your deployments are being served" in processes.log("serve"), 300, "`mirflow serve` to serve",
                 lambda: processes.log("serve"))
        time.sleep(2)  # into the runner's loop
        family = [psutil.Process(serve.pid), *psutil.Process(serve.pid).children(recursive=True)]
        started = time.monotonic()
        os.killpg(serve.pid, signal.SIGINT)  # a terminal's Ctrl-C: to the foreground process group
        assert serve.wait(timeout=60) == 0, processes.log("serve")
        assert time.monotonic() - started < 30, processes.log("serve")
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, alive
    finally:
        processes.stop_all()
    log = processes.log("serve", tail=10**6)
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "All deployments have been paused" in log
