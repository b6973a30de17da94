"""One run of the CNN cost benchmark on a tiny generated CIFAR-format set: the figures, the
cost table, the measured costs and the checkpoint in the run folder; and one on a finished
gtzan run's log-mels (``features_from``)."""

from __future__ import annotations

import json

import pytest
from gtzan_runs import GENRES, write_gtzan_run

from flows.cnn_benchmark import cnn_benchmark
from mirflow.core.store import ArtifactStore
from mirflow.datasets import cifar100
from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams
from mirflow.runs import Run

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def finished(prefect_server, dask_scheduler, tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn_benchmark")
    cifar100.synthesize(root / "data", 160, seed=2)
    params = CnnBenchmarkParams(data_dir=str(root / "data"), store=str(root / "store"), dask_address=dask_scheduler,
                                models=["resnet20"], label="coarse", max_epochs=2, image_size=16, batch_size=32,
                                inference_batches=2, threads=1)
    result = cnn_benchmark(params)
    return Run.open(str(root / "store"), result["run_id"])


def test_run_folder_has_the_figures_and_the_cost_table(finished):
    for name in ("ball_chart.png", "cost_table.png", "accuracy_over_epochs.png"):
        assert finished.file(name).startswith(PNG)
    assert "Data: CIFAR-100 from" in finished.report
    rows = json.loads(finished.file("cost_table.json"))
    assert [row["model"] for row in rows] == ["resnet20"]
    assert set(rows[0]) >= {"train memory (MB)", "train s/epoch", "infer memory (MB)", "infer ms/batch of 100"}


def test_costs_and_accuracy_are_measured(finished):
    metrics = finished.metrics["models"]["resnet20"]
    assert metrics["n_parameters"] == 269_722 + 64 * 10 + 10  # ResNet-20 with a 20-class head
    assert 0 <= metrics["test"]["top1"] <= metrics["test"]["top5"] <= 1
    assert metrics["accuracy_density"] == pytest.approx(metrics["test"]["top1"] / (metrics["n_parameters"] / 1e6))
    # each measured in its own process: more than the interpreter with torch, less than a leak would take
    assert 100 < metrics["infer_peak_memory_mb"] < 4000 and 100 < metrics["train_peak_memory_mb"] < 4000
    assert metrics["infer_ms_per_batch"] > 0 and metrics["seconds_per_epoch"] > 0
    assert 0 < metrics["data_wait_fraction"] < 1
    assert finished.manifest["hardware"]["torch_threads"] == [1]


def test_checkpoint_rebuilds_the_model_alone(finished):
    model, _ = finished.model("resnet20")
    assert model.spec == {"name": "resnet20", "n_classes": 20, "in_channels": 3}


@pytest.mark.heavy  # a second flow run (the module's budget holds one); the gtzan run is written, not run
def test_benchmark_runs_on_a_gtzan_runs_logmels(prefect_server, dask_scheduler, tmp_path):
    store = str(tmp_path / "store")
    write_gtzan_run(ArtifactStore(store), "20260101-000000-gtzan-aaaaaa")
    params = CnnBenchmarkParams(store=store, dask_address=dask_scheduler, features_from="gtzan-aaaaaa",
                                models=["resnet20"], max_epochs=1, image_size=16, batch_size=16,
                                inference_batches=1, threads=1)
    run = Run.open(store, cnn_benchmark(params)["run_id"])
    assert "log-mel spectrograms of gtzan run `gtzan-aaaaaa`" in run.report
    model, _ = run.model("resnet20")
    assert model.spec == {"name": "resnet20", "n_classes": len(GENRES), "in_channels": 1}
