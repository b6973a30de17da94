"""Real Prefect processes for tests: a server, deployments, a process worker and flow
runs, started and stopped by PID (shared by the deployment, PostgreSQL, UI and
worker-loss tests)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil
from annotated_types import Ge, Gt

from flows import entrypoint, load_flow, params_model, serve, training_flows

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop a process and every descendant, by PID: SIGINT first (Prefect's worker and
    server shut down cleanly on it; a worker that had lost its server ignored SIGTERM),
    SIGKILL after ``grace``. Descendants are collected first because Prefect starts each
    flow run in a session of its own, out of reach of a process-group signal."""
    try:
        root = psutil.Process(process.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(family, timeout=grace)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=10)
    process.wait(timeout=10)


class Processes:
    """The processes one test starts, each in a session of its own and logging to
    ``<folder>/<name>.log``; ``stop_all`` leaves none behind."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list, env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:
            process = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started[name] = process
        return process

    def log(self, name: str, tail: int = 6000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} log ---\n{self.log(name)}" for name in self.started)

    def stop(self, name: str) -> None:
        stop_process(self.started.pop(name))

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``. A poll the
    server does not answer in time is one more poll, not a failure: with six flow runs going,
    a server on SQLite once took over 30 s to answer a read (CI, 2 cores)."""
    deadline, slow = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.TimeoutException as error:
            value, slow = None, error
        if value:
            return value
        time.sleep(0.5)
    note = f" (last poll: {slow!r})" if slow else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{note}\n{diagnostics()}")


@dataclass
class PrefectServer:
    api_url: str
    env: dict[str, str]  # for CLIs, workers and flow runs that talk to this server
    processes: Processes

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.api_url + path, timeout=30)

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(self.api_url + path, json=body, timeout=30)

    def cli(self, *args: str, check: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess:
        """The `prefect` command against this server."""
        result = subprocess.run([str(BIN / "prefect"), *args], env=self.env, cwd=cwd, capture_output=True,
                                text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


def start_prefect_server(processes: Processes, home: Path, database_url: str | None = None) -> PrefectServer:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (SQLite
    there unless ``database_url`` is given); returns once /api/health answers."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="200",
                MIRFLOW_DATA=str(home / "mirflow_data"))
    server_env = {**base, "PREFECT_UI_API_URL": api_url}  # else the UI calls :4200
    if database_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    process = processes.start("server", [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
                              server_env)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited {process.returncode}:\n{processes.log('server')}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{api_url}/health", timeout=5).status_code == 200
        return False

    wait_for(healthy, 180, "the Prefect server's /api/health", lambda: processes.log("server"))
    return PrefectServer(api_url, {**base, "PREFECT_API_URL": api_url}, processes)


def work_pool() -> str:
    pools = {e["work_pool"]["name"] for e in serve.read_deployments(PREFECT_FILE)}
    assert len(pools) == 1, pools
    return pools.pop()


def deploy_all(server: PrefectServer) -> None:
    """What the README says to do: create the process pool, then deploy every entry of
    deployments/prefect.yaml from the repo root."""
    server.cli("work-pool", "create", work_pool(), "--type", "process")
    server.cli("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")


def start_worker(server: PrefectServer) -> None:
    server.processes.start("worker", [BIN / "prefect", "worker", "start", "--pool", work_pool(), "--type", "process"],
                           {**server.env, "PREFECT_WORKER_QUERY_SECONDS": "1"})


def deployment_names(name: str) -> list[str]:
    """``FLOW/DEPLOYMENT`` of every deployment prefect.yaml declares for a registered flow."""
    flow_name = load_flow(name).name
    return [f"{flow_name}/{e['name']}" for e in serve.read_deployments(PREFECT_FILE)
            if e.get("entrypoint") == entrypoint(name)]


def read_deployment(server: PrefectServer, full_name: str) -> dict | None:
    response = server.get(f"/deployments/name/{full_name}")
    return response.json() if response.status_code == 200 else None


def upcoming_runs(server: PrefectServer, deployment: dict) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    response = server.post("/flow_runs/filter", body)
    assert response.status_code == 200, response.text
    return [run for run in response.json() if run["auto_scheduled"]]


def pause_schedules(server: PrefectServer, deployment: dict) -> None:
    """So no cron run starts during a test (and writes to ./mirflow_store)."""
    for schedule in deployment["schedules"]:
        response = httpx.patch(f"{server.api_url}/deployments/{deployment['id']}/schedules/{schedule['id']}",
                               json={"active": False}, timeout=30)
        assert response.status_code < 300, response.text


def lower_bound(info) -> Any:
    bound = next(m for m in info.metadata if isinstance(m, (Ge, Gt)))
    return bound.ge if isinstance(bound, Ge) else bound.gt + 1


TINY = {
    "gtzan": {"models": ["mlp"], "cnn_frames": 32, "fractions": [0.6, 0.2, 0.2]},
    "acousticbrainz_genre": {"demo_recordings": 120, "folds": 2, "hidden": 32},
    "msd_hotness": {"demo_songs": 150},
    "kkbox_relisten": {"demo_rows": 1000, "lrs": [1e-2], "lgbm_rounds": 5},
    "vocal_genre": {"models": ["cnn"], "folds": 2, "n_mels": 32, "slice_frames": 32},
}


def tiny_params(name: str, store: Path) -> dict:
    """The smallest run of a flow: its demo data set at the lower bound of every `demo_*`
    size, one epoch, one Dask worker, this test's store."""
    model = params_model(name)
    values = {f: lower_bound(info) for f, info in model.model_fields.items()
              if f.startswith("demo_") or f in ("max_epochs", "patience")}
    values = {**values, **TINY.get(name, {}), "store": str(store), "n_workers": 1}
    return model.model_validate(values).model_dump(mode="json", exclude_defaults=True)


def run_deployment(server: PrefectServer, full_name: str, params: dict) -> str:
    """`prefect deployment run FLOW/DEPLOYMENT --param params=…`; the flow run's id."""
    out = server.cli("deployment", "run", full_name, "--param", "params=" + json.dumps(params)).stdout
    return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)


def wait_for_final_state(server: PrefectServer, run_id: str, timeout: float = 420) -> dict:
    def final():
        run = server.get(f"/flow_runs/{run_id}").json()
        return run if run["state"] and run["state"]["type"] in FINAL_STATES else None

    return wait_for(final, timeout, f"flow run {run_id} to finish", server.processes.logs)


def run_logs(server: PrefectServer, run_id: str) -> str:
    logs = server.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
    return "\n".join(entry["message"] for entry in logs)


def assert_run_outputs(server: PrefectServer, run_id: str, name: str, store: Path) -> dict[str, dict]:
    """The run's Prefect artifacts by key, and the report in its run folder, which is the
    markdown artifact's text; returns the artifacts by key."""
    key = name.replace("_", "-")
    artifacts = server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()
    by_key = {a["key"]: a for a in artifacts}
    assert {f"{key}-metrics", f"{key}-report"} <= set(by_key), sorted(by_key)
    run_folders = list((store / "runs").iterdir())
    assert len(run_folders) == 1, run_folders
    assert run_folders[0].name in by_key[f"{key}-metrics"]["description"]
    assert (run_folders[0] / "report.md").read_text() == by_key[f"{key}-report"]["data"]
    rows = json.loads(by_key[f"{key}-metrics"]["data"])
    assert rows and all(0.0 <= row["accuracy"] <= 1.0 for row in rows if "accuracy" in row)
    return by_key


@dataclass
class Deployed:
    server: PrefectServer
    folder: Path
    upcoming: dict[str, list[dict]]  # the scheduled runs each deployment's cron produced
    deployed_at: datetime  # upcoming runs start after this (not after "now": a nightly slot may pass mid-test)
    triggered: dict[str, str] = field(default_factory=dict)  # what a test started: flow run ids


def deploy_and_start_worker(processes: Processes, home: Path, database_url: str | None = None) -> Deployed:
    """A server with every deployment of prefect.yaml, the upcoming runs their schedules
    produced (then paused, so none starts mid-test), and a process worker."""
    server = start_prefect_server(processes, home, database_url)
    deployed_at = datetime.now(timezone.utc)
    deploy_all(server)
    upcoming = {}
    for name in training_flows():
        for full_name in deployment_names(name):
            deployment = read_deployment(server, full_name)
            upcoming[full_name] = wait_for(lambda: upcoming_runs(server, deployment), 90,
                                           f"scheduled runs of {full_name}", processes.logs)
            pause_schedules(server, deployment)
    start_worker(server)
    return Deployed(server, processes.folder, upcoming, deployed_at)


def assert_upcoming_runs(deployed: Deployed) -> None:
    for full_name in (n for name in training_flows() for n in deployment_names(name)):
        starts = [datetime.fromisoformat(run["expected_start_time"]) for run in deployed.upcoming[full_name]]
        assert starts and all(start > deployed.deployed_at for start in starts), full_name
        assert len(set(starts)) == len(starts), full_name
