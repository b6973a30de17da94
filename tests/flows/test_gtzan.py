"""End-to-end runs of the GTZAN flow on tiny generated data: caching decisions,
quarantine, leakage audit, Prefect artifacts, and a cache-hit run in a second process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
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
from mirflow.core.store import ArtifactRef, ArtifactStore


CLUSTER: dict[str, str] = {}  # dask_address: the session's Dask cluster, for every run of this module


@pytest.fixture(scope="module", autouse=True)
def _on_the_shared_cluster(dask_scheduler):
    CLUSTER["dask_address"] = dask_scheduler


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("gtzan_flow")
    gtzan_data.synthesize(root / "data", n_per_genre=3, duration_s=3.0, seed=1)
    return root


def params(workspace: Path, **overrides) -> GtzanParams:
    values = dict(
        data_dir=str(workspace / "data"),
        store=str(workspace / "store"),
        **CLUSTER,
        shard_size=8,
        max_epochs=3,
        patience=2,
        cnn_frames=64,
        fractions=(0.6, 0.2, 0.2),
    )
    return GtzanParams(**{**values, **overrides})


def cli_options(p: GtzanParams) -> list[str]:
    """``mirflow run gtzan`` options giving ``params(workspace)``."""
    return ["--data-dir", p.data_dir, "--store", p.store, "--n-workers", "1", "--shard-size", "8", "--max-epochs",
            str(p.max_epochs), "--patience", "2", "--cnn-frames", "64", "--fractions", "0.6", "0.2", "0.2", "--lr", str(p.lr)]


def statuses(result: dict) -> dict[str, list[str]]:
    manifest = Run.open(result["run_dir"].rsplit("/runs/", 1)[0], result["run_id"]).manifest
    by_stage: dict[str, list[str]] = {}
    for stage in manifest["stages"]:
        by_stage.setdefault(stage["stage"], []).append(stage["status"])
    return by_stage


# The gtzan tasks that run a stage (tasks.runtime.run_stage), by task-run name; the shards
# the store holds are settled together by one "stored-" task run (tasks.shards.run_shard_tasks).
STAGE_TASKS = ("extract-shard-", "stored-extract_audio_shard", "split_rows-", "fit_scaler_on_train-", "train-", "evaluate-")


def latest_task_states() -> dict[str, str]:
    """Task-run name -> state name of the newest flow run on the test's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    # Task runs and their states reach the server as events, a moment after the flow
    # returns: read until every task run has a final state twice in a row.
    seen, deadline = None, time.monotonic() + 60
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        while True:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            states = {run.name: run.state.name for run in task_runs if run.state is not None and run.state.is_final()}
            if (len(states) == len(task_runs) and states == seen) or time.monotonic() > deadline:
                return states
            seen = states
            time.sleep(0.2)


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
    states = latest_task_states()
    assert any(name.startswith(STAGE_TASKS) for name in states) and set(states.values()) == {"Completed"}


def test_unchanged_rerun_from_the_cli_is_all_cache_hits(prefect_server, workspace, capsys):
    from mirflow.cli import main

    p = params(workspace)
    assert main(["run", "gtzan", *cli_options(p)]) == 0
    run_id = capsys.readouterr().out.split("run ", 1)[1].split(":", 1)[0]
    stages = Run.open(p.store, run_id).manifest["stages"]
    assert {s["status"] for s in stages} == {"cached"}
    # One task run settles every stored shard: a re-run's task runs do not grow with the data.
    states = latest_task_states()
    assert sum(s["stage"] == "extract" for s in stages) > 1
    assert not any(name.startswith("extract-shard-") for name in states)
    assert states["stored-extract_audio_shard"] == "Cached"


@pytest.mark.heavy  # a second interpreter and its temporary Prefect server: 25-40 s; the same run in-process is above
def test_unchanged_rerun_in_a_second_process_is_all_cache_hits(prefect_server, workspace):
    from prefect.settings import PREFECT_API_URL

    p = params(workspace)
    gtzan(params=p)  # the run to repeat: all cached when the first-run test ran in this session (not in `-m heavy`)
    # `mirflow run gtzan …`, then which heavy libraries it loaded: a cached re-run needs none
    command = ("import sys; from mirflow.cli import main; code = main(sys.argv[1:]); "
               "print('loaded', *[m for m in ('torch', 'sklearn', 'scipy', 'dask', 'distributed') if m in sys.modules]); sys.exit(code)")
    cli = [sys.executable, "-c", command, "run", "gtzan", *cli_options(p)]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the test's server, to read its task runs
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "loaded"
    run_id = done.stdout.split("run ", 1)[1].split(":", 1)[0]
    manifest = Run.open(p.store, run_id).manifest
    assert {s["status"] for s in manifest["stages"]} == {"cached"}
    # The Prefect UI tells the hits apart: stage tasks end "Cached", the others "Completed".
    states = latest_task_states()
    stage_states = {name: state for name, state in states.items() if name.startswith(STAGE_TASKS)}
    n_extract = sum(s["stage"] == "extract" for s in manifest["stages"])
    assert len(stage_states) == len(manifest["stages"]) - n_extract + 1 and set(stage_states.values()) == {"Cached"}
    assert {state for name, state in states.items() if name not in stage_states} == {"Completed"}


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


def test_cli_explain_needs_no_prefect_api_and_agrees_with_the_run(prefect_server, workspace, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mirflow.cli import main

    p = params(workspace, lr=0.002)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing answers there
        assert main(["run", "gtzan", *cli_options(p), "--explain"]) == 0
    plan = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert plan["train[mlp]"] == "would re-run (changed: parameters)"
    manifest = Run.open(p.store, gtzan(params=p)["run_id"]).manifest
    done = {stage["label"]: stage["status"] for stage in manifest["stages"]}
    assert {label: "cached" if line.startswith("cached") else "computed" for label, line in plan.items()} == done


def test_editing_one_file_reextracts_only_its_shard(prefect_server, workspace):
    clip = workspace / "data" / "genres" / "jazz" / "jazz.00001.wav"
    y, sr = sf.read(clip)
    sf.write(clip, np.clip(y * 0.5 + 0.01, -1, 1), sr, subtype="PCM_16")
    by_stage = statuses(gtzan(params=params(workspace)))
    assert by_stage["extract"].count("computed") == 1
    assert by_stage["extract"].count("cached") == len(by_stage["extract"]) - 1


def write_bad_clips(folder: Path) -> dict[str, str]:
    """Corrupt, absurdly loud, truncated and too-short clips: file name -> expected reason."""
    gtzan_data.write_corrupt_clip(folder / "rock.00099.wav")
    y, sr = sf.read(folder / "rock.00000.wav", dtype="float32")
    sf.write(folder / "rock.00098.wav", y * np.float32(1e30), sr, subtype="FLOAT")
    sf.write(folder / "rock.00097.wav", y, sr, subtype="PCM_16")
    (folder / "rock.00097.wav").write_bytes((folder / "rock.00097.wav").read_bytes()[:20_000])
    sf.write(folder / "rock.00096.wav", y[:10], sr)
    return {"rock.00099.wav": "soundfile", "rock.00098.wav": "beyond 1000 times full scale",
            "rock.00097.wav": "truncated", "rock.00096.wav": "too short"}


def test_bad_clips_are_quarantined_with_their_reasons_in_the_report(prefect_server, workspace):
    folder = workspace / "data" / "genres" / "rock"
    bad = write_bad_clips(folder)
    try:
        result = gtzan(params=params(workspace, max_failure_fraction=0.5))
        manifest = Run.open(workspace / "store", result["run_id"]).manifest
        reasons = {Path(f["path"]).name: f["reason"] for f in manifest["failures"]}
        assert sorted(reasons) == sorted(bad)
        report = Path(result["report_path"]).read_text()
        for name, reason in bad.items():
            assert reason in reasons[name]
            assert f"| genres/rock/{name} | {reasons[name]} |" in report
        with pytest.raises(MirflowError, match=r"4 of 34 input files are unusable.*rock\.0009\d\.wav"):
            gtzan(params=params(workspace, max_failure_fraction=0.0))
    finally:
        for name in bad:
            (folder / name).unlink()


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


def test_store_gc_between_two_shards_keeps_the_running_flows_work(prefect_server, workspace, tmp_path, monkeypatch, caplog,
                                                                  capsys):
    """`mirflow store gc` while a run is between shards: the first shard is finished but no
    run folder refers to it yet, the second is half-written under .tmp/. The run must
    still succeed with every shard intact."""
    from mirflow.cli import main
    from mirflow.core.cluster import DaskPool

    store = str(tmp_path / "store")
    lock, extract_shards = threading.Lock(), []

    def gc_after(stage):
        def stage_then_gc(writer, *args):
            summary = stage(writer, *args)  # the shard's files are written, not yet committed
            assert main(["store", "gc", "--store", store]) == 0
            return summary
        return stage_then_gc

    def in_process(pool, func, artifacts, ref, meta, stage, args, key_prefix="", priority=0):
        """Run each stage here, one at a time, the second shard with a gc inside it."""
        with lock:
            if key_prefix == "extract":
                extract_shards.append(ref)
                stage = gc_after(stage) if len(extract_shards) == 2 else stage
            return func(artifacts, ref, meta, stage, args)

    monkeypatch.setattr(DaskPool, "run", in_process)
    result = gtzan(params=params(workspace, store=store, models=["mlp"]))
    assert len(extract_shards) > 2
    gc_said = caplog.text + capsys.readouterr().out  # printed by the CLI, in the task's log or on stdout
    assert "removed 0 artifacts not referenced by any run and 0 .tmp folders" in gc_said
    assert "kept 2 unreferenced items made or reused since the oldest live run started" in gc_said
    manifest = Run.open(store, result["run_id"]).manifest
    shards = [ArtifactRef("extract", s["key"]) for s in manifest["stages"] if s["stage"] == "extract"]
    assert set(shards) == set(extract_shards) and all(ArtifactStore(store).has(ref) for ref in shards)
    assert list((tmp_path / "store" / "leases").iterdir()) == []  # released at the end of the run


def test_folds_cross_validate_and_the_report_names_split_and_generated_data(prefect_server, workspace):
    result = gtzan(params=params(workspace, models=["mlp"], folds=2))
    run = Run.open(workspace / "store", result["run_id"])
    lines = run.report.splitlines()
    assert any("Generated data, not the real data set" in line for line in lines[:5])
    assert "Split: **random**" in run.report and "Artist leakage is not controlled" in run.report
    assert "Cross-validation: 2 folds of the training split" in run.report
    cv = run.metrics["models"]["mlp"]["cross_validation"]["accuracy"]
    assert len(cv["folds"]) == 2 and cv["mean"] == pytest.approx(np.mean(cv["folds"]))
    labels = {stage["label"] for stage in run.manifest["stages"]}
    assert {"split[fold 0]", "split[fold 1]", "train[mlp, fold 0]", "evaluate[mlp, fold 1]"} <= labels
