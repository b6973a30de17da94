"""End-to-end runs of the GTZAN flow on tiny generated data: caching decisions,
quarantine, leakage audit, Prefect artifacts, and a cache-hit run in a second process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from flows.gtzan import gtzan
from mirflow.core.errors import LeakageError, MirflowError
from mirflow.datasets import gtzan as gtzan_data
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.runs import Run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("gtzan_flow")
    gtzan_data.synthesize(root / "data", n_per_genre=3, duration_s=3.0, seed=1)
    return root


def params(workspace: Path, **overrides) -> GtzanParams:
    values = dict(
        data_dir=str(workspace / "data"),
        store=str(workspace / "store"),
        n_workers=1,
        shard_size=8,
        max_epochs=3,
        patience=2,
        cnn_frames=64,
        fractions=(0.6, 0.2, 0.2),
    )
    return GtzanParams(**{**values, **overrides})


def statuses(result: dict) -> dict[str, list[str]]:
    manifest = Run.open(result["run_dir"].rsplit("/runs/", 1)[0], result["run_id"]).manifest
    by_stage: dict[str, list[str]] = {}
    for stage in manifest["stages"]:
        by_stage.setdefault(stage["stage"], []).append(stage["status"])
    return by_stage


def test_first_run_writes_report_metrics_and_prefect_artifacts(prefect_server, workspace):
    result = gtzan(params=params(workspace))
    run_dir = Path(result["run_dir"])
    for name in ("report.md", "metrics.json", "manifest.json", "params.json", "models/mlp.pt", "models/cnn.pt",
                 "mlp_confusion.png", "preprocessing.json", "inputs.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"mlp", "cnn"}
    for model in ("mlp", "cnn"):
        assert 0.0 <= metrics["models"][model]["test"]["accuracy"] <= 1.0
        assert metrics["models"][model]["parameters"] > 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["packages"]["prefect"] and manifest["seeds"]["seed"] == 0
    assert all(s["status"] == "computed" for s in manifest["stages"])
    # Dask workers run one stage at a time: their figure is the stage's own peak.
    on_workers = [s for s in manifest["stages"] if s["stage"] in ("extract", "train")]
    assert on_workers and all(s["peak_rss_scope"] == "stage" and s["peak_rss_bytes"] > 0 for s in on_workers)
    report = (run_dir / "report.md").read_text()
    assert "Confusion matrix" in report and "macro_f1" in report

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gtzan-metrics", "gtzan-report"])))}
    assert keys == {"gtzan-metrics", "gtzan-report"}


def test_unchanged_rerun_in_a_second_process_is_all_cache_hits(prefect_server, workspace):
    p = params(workspace)
    cli = [sys.executable, "-m", "mirflow.cli", "run", "gtzan", "--data-dir", p.data_dir, "--store", p.store,
           "--n-workers", "1", "--shard-size", "8", "--max-epochs", "3", "--patience", "2", "--cnn-frames", "64",
           "--fractions", "0.6", "0.2", "0.2"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("run ", 1)[1].split(":", 1)[0]
    manifest = Run.open(p.store, run_id).manifest
    assert {s["status"] for s in manifest["stages"]} == {"cached"}


def test_training_parameter_change_reruns_only_train_and_evaluate(prefect_server, workspace):
    result = gtzan(params=params(workspace, lr=0.003))
    by_stage = statuses(result)
    assert set(by_stage["extract"]) == {"cached"}
    assert by_stage["split"] == ["cached"] and by_stage["scale"] == ["cached"]
    assert set(by_stage["train"]) == {"computed"} and set(by_stage["evaluate"]) == {"computed"}


def test_explain_says_what_would_rerun_without_running(prefect_server, workspace):
    result = gtzan(params=params(workspace, max_epochs=4), explain=True)
    assert "train[mlp]: would re-run (changed: parameters)" in result["explain"]
    assert "extract[0]: cached" in result["explain"]
    assert not any(s["status"] == "computed" for s in result["stages"])


def test_editing_one_file_reextracts_only_its_shard(prefect_server, workspace):
    clip = workspace / "data" / "genres" / "jazz" / "jazz.00001.wav"
    y, sr = sf.read(clip)
    sf.write(clip, np.clip(y * 0.5 + 0.01, -1, 1), sr, subtype="PCM_16")
    by_stage = statuses(gtzan(params=params(workspace)))
    assert by_stage["extract"].count("computed") == 1
    assert by_stage["extract"].count("cached") == len(by_stage["extract"]) - 1


def test_corrupt_clip_is_quarantined_and_reported(prefect_server, workspace):
    bad = gtzan_data.write_corrupt_clip(workspace / "data" / "genres" / "rock" / "rock.00099.wav")
    try:
        result = gtzan(params=params(workspace, max_failure_fraction=0.5))
        manifest = Run.open(workspace / "store", result["run_id"]).manifest
        assert [f["path"] for f in manifest["failures"]] == ["genres/rock/rock.00099.wav"]
        assert "rock.00099.wav" in Path(result["report_path"]).read_text()
        with pytest.raises(MirflowError, match=r"1 of 31 input files are unreadable.*rock.00099.wav"):
            gtzan(params=params(workspace, max_failure_fraction=0.0))
    finally:
        bad.unlink()


def test_leakage_audit_fails_the_flow_for_a_scaler_fitted_on_all_rows(prefect_server, workspace, scaler_fitted_on_all_rows):
    with pytest.raises(LeakageError, match="fitted on all rows"):
        gtzan(params=params(workspace))


def test_leakage_audit_fails_the_flow_for_a_group_in_two_splits(prefect_server, workspace, monkeypatch):
    from mirflow.stages import splits

    def split_ignoring_groups(labels, groups, *, fractions, seed):
        names = np.array(["train", "validation", "test"])
        return pd.Series(names[np.arange(len(labels)) % 3], index=labels.index, name="split")

    monkeypatch.setattr(splits, "split_train_val_test", split_ignoring_groups)
    # three segments per clip share the clip's group; a split that ignores groups spreads them
    with pytest.raises(LeakageError, match="more than one split"):
        gtzan(params=params(workspace, segment="1s"))
