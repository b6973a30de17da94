"""End-to-end runs of the KKBOX re-listen flow: one on tiny generated data (outputs,
report, Prefect artifacts, learning, batch scoring reproducing the run's own test
predictions), one on the real heads in ../shared/realdata/kkbox."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.kkbox_relisten import kkbox_relisten
from mirflow.datasets import kkbox
from mirflow.pipelines.kkbox_relisten.params import KkboxRelistenParams
from mirflow.runs import Run

FAST = dict(lrs=[1e-1, 1e-2], max_epochs=8, batch_size=256, lgbm_rounds=50)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kkbox_flow")
    kkbox.synthesize(root / "data", 4000, seed=1)
    return root


@pytest.fixture(scope="module")
def first_run(prefect_server, dask_scheduler, workspace):
    return kkbox_relisten(params=KkboxRelistenParams(data_dir=str(workspace / "data"), store=str(workspace / "store"),
                                                     dask_address=dask_scheduler, **FAST))


def test_run_folder_holds_models_predictions_figure_and_report(first_run):
    run_dir = Path(first_run["run_dir"])
    for name in ("report.md", "metrics.json", "convergence.png", "transform.json", "models/network.pt",
                 "models/lightgbm.txt", "predictions/network.parquet", "predictions/lightgbm.parquet", "lr_grid.json"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    assert "Join coverage of train.csv rows: songs.csv 4000/4000 (100.0%)" in report
    assert "Cold start" in report and "lr 0.1:" in report and "convergence.png" in report
    manifest = Run.open(str(run_dir.parent.parent), first_run["run_id"]).manifest
    assert [s["stage"] for s in manifest["stages"]][:3] == ["consolidate", "split", "transform"]
    assert manifest["inputs"]["split"]["rows"] == {"train": 3200, "validation": 400, "test": 400}  # chronological 80/10/10


def test_both_models_learn_the_generated_dependence(first_run):
    models = json.loads((Path(first_run["run_dir"]) / "metrics.json").read_text())["models"]
    for name in ("network", "lightgbm"):
        test = models[name]["test"]
        assert test["roc_auc"] > 0.6, (name, test)  # 0.5 = no signal
        assert {"cold_roc_auc", "warm_roc_auc", "accuracy", "log_loss"} <= set(test)
    assert models["network"]["lr"] in (1e-1, 1e-2)


def test_prefect_artifacts_are_published(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["kkbox-relisten-metrics", "kkbox-relisten-report"])))}
    assert keys == {"kkbox-relisten-metrics", "kkbox-relisten-report"}


@pytest.mark.heavy  # a second flow run (the fast group shares one per module)
def test_real_heads_run_and_report_their_low_join_coverage(prefect_server, realdata, tmp_path):
    data = realdata / "kkbox"
    result = kkbox_relisten(params=KkboxRelistenParams(data_dir=str(data), store=str(tmp_path / "store"), n_workers=1,
                                                       lrs=[1e-2], max_epochs=2, lgbm_rounds=10))
    report = (Path(result["run_dir"]) / "report.md").read_text()
    assert "songs.csv 2845/19999 (14.2%)" in report and "members.csv 19999/19999 (100.0%)" in report


def runs_own_test_rows(first_run, workspace: Path, folder: Path, model: str) -> tuple[Path, pd.DataFrame]:
    """The run's test rows as a KKBOX test.csv (id = row number in train.csv) and the
    run's stored predictions for them."""
    stored = pd.read_parquet(Path(first_run["run_dir"]) / f"predictions/{model}.parquet")
    test = stored[stored["split"] == "test"]
    train = pd.read_csv(workspace / "data" / "train.csv", dtype=str, keep_default_na=False)
    rows = train.iloc[test["row_id"].to_numpy()].drop(columns="target")
    rows.insert(0, "id", test["row_id"].to_numpy())
    rows.to_csv(folder / "test.csv", index=False)
    return folder / "test.csv", test


@pytest.mark.parametrize("model", ["network", "lightgbm"])
def test_scoring_the_runs_own_test_rows_reproduces_its_test_predictions(first_run, workspace, tmp_path, model):
    from mirflow.cli import main

    test_csv, test = runs_own_test_rows(first_run, workspace, tmp_path, model)
    out = tmp_path / "predictions.csv"
    argv = ["score", first_run["run_dir"], str(test_csv), "--out", str(out), "--tables", str(workspace / "data"),
            "--model", model, "--chunk-rows", "97"]  # chunks that do not divide the rows
    assert main(argv) == 0
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["id", "target"]
    assert scored["id"].tolist() == test["row_id"].tolist()
    np.testing.assert_allclose(scored["target"], test["score"], atol=1e-6)


def test_unknown_users_and_songs_are_scored_through_the_unknown_index(first_run, workspace):
    from mirflow.pipelines.kkbox_relisten.scoring import Scorer

    run = Run.open(str(Path(first_run["run_dir"]).parent.parent), first_run["run_id"])
    scorer = Scorer(run, workspace / "data", "network")
    rows = pd.DataFrame([{"msno": "never-seen-user", "song_id": "never-seen-song", "source_system_tab": "radio",
                          "source_screen_name": "", "source_type": "never-seen-type"}])
    scores, unknown = scorer.score(rows)
    assert unknown == {"msno": 1, "song_id": 1} and 0 < scores[0] < 1


def test_the_score_flow_writes_a_submission(first_run, workspace, tmp_path):
    from flows.kkbox_score import kkbox_score
    from mirflow.pipelines.kkbox_relisten.params import KkboxScoreParams

    test_csv, test = runs_own_test_rows(first_run, workspace, tmp_path, "network")
    summary = kkbox_score(params=KkboxScoreParams(run=first_run["run_dir"], input_csv=str(test_csv), out=str(tmp_path / "p.csv"),
                                                  tables=str(workspace / "data"), model="network"))
    assert summary["rows"] == len(test) == len(pd.read_csv(tmp_path / "p.csv"))


@pytest.fixture
def model_server(first_run, workspace, tmp_path):
    """`mirflow serve-model` in its own process (real uvicorn), small limits to test them."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mirflow.cli", "serve-model", first_run["run_dir"], "--port", str(port), "--model", "network",
         "--tables", str(workspace / "data"), "--max-rows", "3", "--max-body-bytes", "2000"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.mark.heavy
def test_serve_model_answers_predictions_and_refuses_bad_or_large_requests(model_server, first_run, workspace, tmp_path):
    import httpx

    test_csv, test = runs_own_test_rows(first_run, workspace, tmp_path, "network")
    rows = pd.read_csv(test_csv, dtype=str, keep_default_na=False).drop(columns="id").head(3).to_dict("records")
    answer = httpx.post(f"{model_server}/predict", json={"rows": rows}, timeout=30)
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json()["predictions"], test["score"].head(3), atol=1e-6)  # the run's own, in row order

    model = httpx.get(f"{model_server}/model").json()
    assert model["run_id"] == first_run["run_id"] and model["fields"][:2] == ["msno", "song_id"] and "test" in model["metrics"]

    bad = [rows[0], {**rows[1], "song_id": 7}]
    refused = httpx.post(f"{model_server}/predict", json={"rows": bad})
    assert refused.status_code == 422 and "rows[1].song_id" in refused.json()["detail"]
    missing = httpx.post(f"{model_server}/predict", json={"rows": [{"msno": "x"}]})
    assert missing.status_code == 422 and "rows[0].song_id: missing" in missing.json()["detail"]
    assert httpx.post(f"{model_server}/predict", content=b"{not json").status_code == 422
    assert httpx.post(f"{model_server}/predict", json={"rows": rows + rows[:1]}).status_code == 413  # 4 rows > --max-rows 3
    big = httpx.post(f"{model_server}/predict", json={"rows": rows, "padding": "x" * 3000})
    assert big.status_code == 413 and "2000" in big.json()["detail"]
