"""`mirflow serve` and the Prefect UI: the served deployments get their cron runs, a run
triggered from the CLI completes, and headless Chromium shows it Completed with the
metrics table rendered on its artifact page."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prefect_stack import (
    BIN,
    REPO,
    Processes,
    assert_run_outputs,
    deployment_names,
    pause_schedules,
    read_deployment,
    run_deployment,
    start_prefect_server,
    stop_process,
    tiny_params,
    upcoming_runs,
    wait_for,
    wait_for_final_state,
)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--virtual-time-budget=20000",
                  "--window-size=1400,1000"]


def chromium(binary: str, profile, *args: str) -> str:
    """One headless Chromium call; its whole process tree is stopped afterwards."""
    process = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            stop_process(process, grace=5)
    return out


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.heavy
def test_served_run_shows_completed_with_its_metrics_table_in_the_ui(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is absent (apt-get install chromium)")
    processes = Processes(tmp_path)
    store = tmp_path / "store"
    try:
        server = start_prefect_server(processes, tmp_path / "prefect_home")
        processes.start("serve", [BIN / "mirflow", "serve"], server.env, cwd=tmp_path)
        full_name = deployment_names("gtzan")[0]
        deployment = wait_for(lambda: read_deployment(server, full_name), 180, f"`mirflow serve` to register {full_name}",
                              processes.logs)
        assert wait_for(lambda: upcoming_runs(server, deployment), 90, "the served cron schedule's runs", processes.logs)
        pause_schedules(server, deployment)
        run_id = run_deployment(server, full_name, tiny_params("gtzan", store))
        run = wait_for_final_state(server, run_id)
        assert run["state"]["type"] == "COMPLETED", (run["state"], processes.log("serve"))
        metrics = assert_run_outputs(server, run_id, "gtzan", store)["gtzan-metrics"]

        profile = tmp_path / "chromium"
        run_page = visible_text(chromium(browser, profile, "--dump-dom", f"{server.ui_url}/runs/flow-run/{run_id}"))
        assert run["name"] in run_page and "Completed" in run_page, run_page[:2000]
        artifact_html = chromium(browser, profile, "--dump-dom", f"{server.ui_url}/artifacts/artifact/{metrics['id']}")
        assert "<table" in artifact_html, visible_text(artifact_html)[:2000]
        table = visible_text(artifact_html[artifact_html.index("<table"):artifact_html.index("</table>")])
        assert all(word in table for word in ("model", "split", "accuracy", "macro_f1", "mlp", "validation", "test")), table

        screenshot = tmp_path / "ui_flow_run.png"
        chromium(browser, profile, f"--screenshot={screenshot}", f"{server.ui_url}/runs/flow-run/{run_id}")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
        (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, REPO / "bench" / "results" / "ui_flow_run.png")
    finally:
        processes.stop_all()
