"""One definition of how a clip is scored (mirflow.stages.scoring): `mirflow predict` on a
run's own files reproduces the run's stored clip predictions for every model, clip-level
metrics head a segmented run's report, and the CNN is scored over every window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from flows.gtzan import gtzan
from mirflow.datasets import gtzan as gtzan_data
from mirflow.models import build_model
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.pipelines.gtzan.predict import predict_files
from mirflow.runs import Run
from mirflow.stages import scaling, scoring

GENRES = ("blues", "classical", "metal")


@pytest.fixture(scope="module")
def segmented_run(prefect_server, dask_scheduler, tmp_path_factory):
    """A tiny run with 1 s segments over 2 s and 3 s clips: 2 or 3 rows per clip, and
    3 CNN windows of 16 frames per row."""
    root = tmp_path_factory.mktemp("scoring")
    paths = gtzan_data.synthesize(root / "data", n_per_genre=5, duration_s=2.0, seed=4, genres=GENRES)
    for path in paths[::2]:
        y, sr = sf.read(path, dtype="float32")
        sf.write(path, np.concatenate([y, y[: len(y) // 2]]), sr, subtype="PCM_16")
    params = GtzanParams(data_dir=str(root / "data"), store=str(root / "store"), dask_address=dask_scheduler, shard_size=8,
                         max_epochs=2, patience=1, cnn_frames=16, segment="1s", fractions=(0.4, 0.3, 0.3))
    result = gtzan(params=params)
    return Run.open(params.store, result["run_id"]), paths


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_predict_on_the_runs_own_files_reproduces_its_stored_predictions(segmented_run, model):
    run, paths = segmented_run
    stored = run.predictions(model).set_index("clip_id")
    assert sorted(stored["rows"].unique()) == [2, 3]  # clips of several rows, of two lengths
    assert set(stored["split"]) == {"train", "validation", "test"}
    table, errors = predict_files(run, [str(p) for p in paths], model)
    assert not errors
    table.index = [Path(p).stem for p in table["path"]]
    columns = [f"p_{genre}" for genre in GENRES]
    np.testing.assert_allclose(table.loc[stored.index, columns].to_numpy(float), stored[columns].to_numpy(), atol=1e-5)
    assert (table.loc[stored.index, "genre"] == stored["predicted"]).all()


def test_segmented_run_reports_clip_metrics_first_and_segment_metrics_beside_them(segmented_run):
    run, _ = segmented_run
    for model in ("mlp", "cnn"):
        test = run.metrics["models"][model]["test"]
        clips = run.predictions(model).query("split == 'test'")
        segments = pd.read_parquet(run.store.run_location(run.run_id) + f"/predictions/{model}_segments.parquet")
        assert test["n"] == len(clips) and test["segment_n"] == clips["rows"].sum() == (segments["split"] == "test").sum()
        assert test["accuracy"] == (clips["label"] == clips["predicted"]).mean()
        test_segments = segments[segments["split"] == "test"]
        assert test["segment_accuracy"] == (test_segments["label"] == test_segments["predicted"]).mean()
    header = next(line for line in run.report.splitlines() if line.startswith("| model"))
    assert header.index("| accuracy") < header.index("segment_accuracy")


def test_cnn_row_scores_average_every_window_of_the_spectrogram():
    model = build_model({"name": "cnn", "n_classes": 3, "n_mels": 16, "channels": [4]}, seed=0).eval()
    mel = np.random.default_rng(0).normal(size=(16, 20)).astype(np.float32)
    spec = scoring.InputSpec("cnn", (), "logmel", 16, 8)
    no_features = scaling.FittedScaler("standard", np.zeros(0), np.ones(0), (), 0, "")
    prep = scoring.Preprocessing(no_features, np.full(16, 0.5, np.float32), np.full(16, 2.0, np.float32))
    got = scoring.row_probabilities(model, pd.DataFrame({"logmel": [mel.ravel()]}), spec, prep)
    normalised = (mel - 0.5) / 2.0
    windows = torch.from_numpy(np.stack([normalised[:, s : s + 8] for s in (0, 6, 12)])[:, None])
    with torch.no_grad():
        expected = torch.softmax(model(windows), 1).mean(0).numpy()
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)


def test_windows_cover_every_frame_and_training_windows_depend_on_seed_epoch_and_row_only():
    for frames in (5, 8, 9, 16, 17, 1292):
        starts = scoring.window_starts(frames, 8)
        covered = np.zeros(frames, bool)
        for start in starts:
            covered[start : start + 8] = True
        assert covered.all() and len(starts) == max(-(-frames // 8), 1)
    drawn = {scoring.window_start("clip#001", 100, 8, seed=1, epoch=e) for e in range(20)}
    assert len(drawn) > 10 and all(0 <= s <= 92 for s in drawn)
    assert scoring.window_start("clip#001", 100, 8, 1, 3) == scoring.window_start("clip#001", 100, 8, 1, 3)
    assert scoring.window_start("clip#001", 100, 8, 1, 3) != scoring.window_start("clip#001", 100, 8, 2, 3)


def test_a_clip_is_one_row_up_to_one_and_a_half_clip_lengths_then_clip_length_windows():
    sr = 100
    assert len(scoring.clip_rows(np.ones(45 * sr, np.float32), sr, None)) == 1
    windows = scoring.clip_rows(np.ones(95 * sr, np.float32), sr, None)
    assert [len(w) for w in windows] == [30 * sr] * 3
    assert len(scoring.clip_rows(np.ones(95 * sr, np.float32), sr, 10.0)) == 9
