"""End-to-end runs of the MSD hotness flow on tiny generated data and on the real
samples: outputs, caching, ETL bytes independent of workers and of interruptions,
the leakage audit failing the flow, and demo data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.msd_hotness import msd_hotness
from mirflow.core.errors import LeakageError, MirflowError
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import msd
from mirflow.datasets.base import DEMO_MARKER
from mirflow.pipelines.msd_hotness.params import MsdHotnessParams
from mirflow.runs import Run
from mirflow.stages.featuresets import TABLE
from mirflow.stages.shards import plan_shards


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd_flow")
    msd.synthesize(root / "data", 150, seed=2)
    return root


CLUSTER: dict[str, str] = {}  # dask_address: the session's Dask cluster, for the runs of this module on tiny data


@pytest.fixture(scope="module", autouse=True)
def _on_the_shared_cluster(dask_scheduler):
    CLUSTER["dask_address"] = dask_scheduler


def params(workspace: Path, store: str = "store", **overrides) -> MsdHotnessParams:
    values = dict(data_dir=str(workspace / "data"), store=str(workspace / store), **CLUSTER, shard_size=25, alphas=[1e-3, 1e-2])
    return MsdHotnessParams(**{**values, **overrides})


def manifest(result: dict) -> dict:
    return Run.open(result["run_dir"].rsplit("/runs/", 1)[0], result["run_id"]).manifest


def statuses(result: dict) -> dict[str, list[str]]:
    by_stage: dict[str, list[str]] = {}
    for stage in manifest(result)["stages"]:
        by_stage.setdefault(stage["stage"], []).append(stage["status"])
    return by_stage


def etl_tables(store_dir: Path) -> dict[str, bytes]:
    """table.parquet of every finished ETL artifact in a store, by key."""
    store = ArtifactStore(str(store_dir))
    return {ref.key: store.read_bytes(ref, TABLE) for ref in store.list_artifacts() if ref.stage == "extract"}


@pytest.fixture(scope="module")
def first_run(prefect_server, workspace):
    return msd_hotness(params=params(workspace))


def test_first_run_writes_results_figures_and_prefect_artifacts(first_run):
    run_dir = Path(first_run["run_dir"])
    for name in ("report.md", "metrics.json", "manifest.json", "results.csv", "top_features.png", "rmse_vs_time.png", "top_features.json"):
        assert (run_dir / name).is_file(), name
    models = json.loads((run_dir / "metrics.json").read_text())["models"]
    assert len(models) == 1 + 2 * 2 * 2 * 2  # baseline + (onehot, hashed) x 2 feature sets x (lasso, elasticnet) x 2 alphas
    baseline = models["constant"]["test"]["rmse"]
    assert min(m["test"]["rmse"] for name, m in models.items() if name != "constant") < baseline
    assert first_run["best_model"] != "constant"
    run = manifest(first_run)
    assert {s["status"] for s in run["stages"]} == {"computed"}
    assert run["inputs"]["song_files"] == 150 and 0 < run["inputs"]["rows"] < 150
    assert set(run["feature_memory"]) == {"onehot", "hashed"}
    assert run["selection"] == {"split": "validation", "metric": "rmse", "higher_is_better": False}
    report = (run_dir / "report.md").read_text()
    assert "Feature-matrix memory" in report
    assert "| variant | model | alpha | test RMSE, report | test RMSE, no_artist_popularity |" in report
    assert "feature_set" in (run_dir / "results.csv").read_text().splitlines()[0]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    wanted = ["msd-hotness-metrics", "msd-hotness-report"]
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))}
    assert keys == set(wanted)


def cli_options(p: MsdHotnessParams) -> list[str]:
    """``mirflow run msd_hotness`` options giving ``params(workspace)``."""
    return ["--data-dir", p.data_dir, "--store", p.store, "--n-workers", "1", "--shard-size", "25", "--alphas", "0.001", "0.01"]


def test_unchanged_rerun_from_the_cli_is_all_cache_hits(first_run, workspace, capsys):
    from mirflow.cli import main

    p = params(workspace)
    assert main(["run", "msd_hotness", *cli_options(p)]) == 0
    run_id = capsys.readouterr().out.split("run ", 1)[1].split(":", 1)[0]
    assert {s["status"] for s in Run.open(p.store, run_id).manifest["stages"]} == {"cached"}


@pytest.mark.heavy  # a second interpreter: ~10 s of imports; the same run in-process is above
def test_cli_rerun_in_a_second_process_is_all_cache_hits(first_run, workspace):
    from prefect.settings import PREFECT_API_URL

    p = params(workspace)
    cli = [sys.executable, "-m", "mirflow.cli", "run", "msd_hotness", *cli_options(p)]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the test's server: no temporary one to start
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("run ", 1)[1].split(":", 1)[0]
    assert {s["status"] for s in Run.open(p.store, run_id).manifest["stages"]} == {"cached"}


def test_a_new_alpha_fits_only_the_new_models(first_run, workspace):
    by_stage = statuses(msd_hotness(params=params(workspace, alphas=[1e-3, 1e-2, 1e-1])))
    for stage in ("extract", "clean", "split", "design"):
        assert set(by_stage[stage]) == {"cached"}, stage
    assert by_stage["train"].count("computed") == 8 and by_stage["train"].count("cached") == 17
    assert by_stage["evaluate"] == ["computed"]


@pytest.mark.heavy  # a second local cluster, of two worker processes
def test_etl_bytes_do_not_depend_on_the_number_of_workers(first_run, workspace):
    msd_hotness(params=params(workspace, store="store-2-workers", dask_address=None, n_workers=2, variants=["hashed"],
                              models=["lasso"], alphas=[1e-2]))
    one, two = etl_tables(workspace / "store"), etl_tables(workspace / "store-2-workers")
    assert len(one) > 3 and one == two


def test_an_interrupted_etl_resumes_to_the_same_bytes(first_run, workspace, monkeypatch):
    import tasks.msd_hotness

    data = workspace / "data"
    songs = pd.DataFrame({"rel_path": [os.path.relpath(p, data) for p in msd.list_files(data)]})
    shards = plan_shards(songs, 25)
    # Shards are submitted largest first and collected in that order: the flow has waited
    # for every other shard when the last one fails.
    last = sorted(shards, key=lambda shard: (-len(shard.files), shard.index))[-1].index
    real_run_stage = tasks.msd_hotness.run_stage

    def crash_on_the_last_shard(ctx, stage, *args, label=None, **kwargs):
        if label == f"extract[{last}]":
            raise MirflowError(f"simulated crash while reading shard {last}")
        return real_run_stage(ctx, stage, *args, label=label, **kwargs)

    short = dict(store="store-resumed", variants=["hashed"], models=["lasso"], alphas=[1e-2])
    monkeypatch.setattr(tasks.msd_hotness, "run_stage", crash_on_the_last_shard)
    with pytest.raises(MirflowError, match="simulated crash"):
        msd_hotness(params=params(workspace, **short))
    assert len(etl_tables(workspace / "store-resumed")) == len(shards) - 1
    monkeypatch.setattr(tasks.msd_hotness, "run_stage", real_run_stage)
    by_stage = statuses(msd_hotness(params=params(workspace, **short)))
    assert by_stage["extract"].count("cached") == len(shards) - 1 and by_stage["extract"].count("computed") == 1
    assert etl_tables(workspace / "store-resumed") == etl_tables(workspace / "store")


def _tampered_copy(workspace: Path, name: str, stage: str, file: str, tamper) -> Path:
    """A copy of the first run's store with one artifact file rewritten in place."""
    copy = workspace / name
    shutil.copytree(workspace / "store", copy)
    for path in copy.glob(f"artifacts/{stage}/*/*/{file}"):
        tamper(path)
    return copy


def test_audit_fails_the_flow_on_a_scaler_fitted_on_other_rows(first_run, workspace):
    def widen(path: Path) -> None:
        scalers = json.loads(path.read_text())
        scalers["numeric"]["center"] = [c - 1.0 for c in scalers["numeric"]["center"]]
        path.write_text(json.dumps(scalers))

    _tampered_copy(workspace, "store-leaky-scaler", "design", "scalers.json", widen)
    with pytest.raises(LeakageError, match="fitted on non-training rows"):
        msd_hotness(params=params(workspace, store="store-leaky-scaler"))


def test_audit_fails_the_flow_on_an_artist_in_two_splits(first_run, workspace):
    def move_one_song(path: Path) -> None:
        split = pd.read_parquet(path)
        artist = split.loc[split["split"] == "train", "group"].value_counts().index[0]  # an artist with several songs
        split.loc[split.index[split["group"] == artist][0], "split"] = "test"
        split.to_parquet(path, index=False)

    _tampered_copy(workspace, "store-leaky-split", "split", "split.parquet", move_one_song)
    with pytest.raises(LeakageError, match="groups appear in more than one split"):
        msd_hotness(params=params(workspace, store="store-leaky-split"))


def test_flow_on_real_msd_files(prefect_server, realdata, tmp_path):
    result = msd_hotness(params=MsdHotnessParams(
        data_dir=str(realdata / "msd"), store=str(tmp_path / "store"), **CLUSTER, shard_size=40, alphas=[1e-3, 1e-2]
    ))
    run = manifest(result)
    assert run["failures"] == [] and run["inputs"]["song_files"] == 98
    assert run["inputs"]["rows"] == 98 - 52 - 12  # songs with a hotness above 0
    store = ArtifactStore(str(tmp_path / "store"))
    tables = [store.read_parquet(ArtifactRef("extract", s["key"]), TABLE).to_pandas() for s in run["stages"] if s["stage"] == "extract"]
    songs = pd.concat(tables).set_index("row_id")
    assert len(songs) == 98
    rick = songs.loc["TRAXLZU12903D05F94"]
    assert (rick["title"], rick["artist_name"], rick["year"]) == ("Never Gonna Give You Up", "Rick Astley", 1987)
    assert rick["label"] == pytest.approx(0.8642488305884541)
    models = json.loads((Path(result["run_dir"]) / "metrics.json").read_text())["models"]
    assert sum(models["constant"][s]["n"] for s in ("train", "validation", "test")) == 34


def test_explain_without_data_dir_generates_the_demo_set_and_computes_nothing(prefect_server, tmp_path):
    result = msd_hotness(params=MsdHotnessParams(store=str(tmp_path / "store"), demo_songs=30, seed=4), explain=True)
    demo = Path(os.environ["MIRFLOW_DATA"]) / "msd-demo-seed4-n30"
    assert (demo / DEMO_MARKER).is_file() and len(msd.list_files(demo)) == 30
    assert "extract[0]: would re-run (never computed before)" in result["explain"]
    assert not any(s["status"] == "computed" for s in result["stages"])


def test_folds_cross_validate_every_model_with_artists_whole(prefect_server, workspace, first_run):
    result = msd_hotness(params=params(workspace, variants=["onehot"], models=["lasso"], alphas=[1e-2], folds=2))
    run = Run.open(workspace / "store", result["run_id"])
    assert "Cross-validation: 2 folds of the training split" in run.report
    for model in ("constant", "lasso-onehot-0.01"):
        cv = run.metrics["models"][model]["cross_validation"]["rmse"]
        assert len(cv["folds"]) == 2 and cv["std"] == pytest.approx(np.std(cv["folds"], ddof=1))
    labels = {stage["label"] for stage in run.manifest["stages"]}
    assert {"split[fold 1]", "design[onehot, fold 0]", "evaluate[fold 1]"} <= labels
