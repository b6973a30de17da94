"""The deployments against a Prefect server backed by a real PostgreSQL that the test
starts (Debian's `postgresql` package; skipped only when its binaries are absent)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from prefect_stack import (
    Processes,
    assert_run_outputs,
    assert_upcoming_runs,
    deploy_and_start_worker,
    deployment_names,
    free_port,
    run_deployment,
    tiny_params,
    wait_for,
    wait_for_final_state,
)

NEW_USER = "mirflow-pg"


def postgres_bin() -> Path | None:
    """Debian puts the server binaries in /usr/lib/postgresql/<version>/bin, off PATH."""
    found = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None)
    return Path(found).resolve().parent if found else None


def unprivileged_user() -> str:
    """initdb refuses to run as root: the package's `postgres` user, or one we create."""
    for name in ("postgres", NEW_USER):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NEW_USER], check=True)
    return NEW_USER


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL cluster on a free loopback port; yields its asyncpg URL
    and a psql command for its `prefect` database."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are absent (apt-get install postgresql)")
    # pytest's tmp folders are private to their owner: the cluster gets a folder its user owns.
    folder = Path(tempfile.mkdtemp(prefix="mirflow-pg-"))
    as_user = []
    if os.geteuid() == 0:
        user = unprivileged_user()
        shutil.chown(folder, user)
        as_user = ["runuser", "-u", user, "--"]
    data, port = folder / "data", free_port()
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "-tA", "-d"]
    processes = Processes(tmp_path)
    try:
        subprocess.run([*as_user, bindir / "initdb", "-D", data, "-U", "prefect", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        processes.start("postgres", [*as_user, bindir / "postgres", "-D", data, "-p", port, "-k", folder,
                                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], dict(os.environ))
        wait_for(lambda: subprocess.run([*psql, "postgres", "-c", "select 1"], capture_output=True).returncode == 0,
                 60, "PostgreSQL to accept connections", lambda: processes.log("postgres"))
        subprocess.run([*psql, "postgres", "-c", "create database prefect"], check=True, capture_output=True)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect", [*psql, "prefect"]
    finally:
        processes.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.heavy
def test_deployments_run_on_a_postgres_backed_server(postgres, tmp_path):
    database_url, psql = postgres
    processes = Processes(tmp_path)
    store = tmp_path / "store"
    try:
        deployed = deploy_and_start_worker(processes, tmp_path / "prefect_home", database_url)
        assert_upcoming_runs(deployed)
        run_id = run_deployment(deployed.server, deployment_names("gtzan")[0], tiny_params("gtzan", store))
        run = wait_for_final_state(deployed.server, run_id)
        assert run["state"]["type"] == "COMPLETED", (run["state"], processes.log("worker"))
        assert_run_outputs(deployed.server, run_id, "gtzan", store)
    finally:
        processes.stop_all()
    # The server really kept its state in PostgreSQL, not in a SQLite file of its home.
    completed = subprocess.run([*psql, "-c", f"select state_type from flow_run where id = '{run_id}'"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert completed == "COMPLETED"
    assert not list((tmp_path / "prefect_home").glob("*.db"))
