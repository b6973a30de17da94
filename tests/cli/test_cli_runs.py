"""The CLI around finished runs: predict, runs list/show/compare, store du/gc (bad parameters:
test_cli_startup.py)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from flows.gtzan import gtzan
from mirflow.cli import main
from mirflow.datasets import gtzan as gtzan_data
from mirflow.pipelines.gtzan.params import GtzanParams


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, prefect_server, dask_scheduler):
    root = tmp_path_factory.mktemp("cli_runs")
    gtzan_data.synthesize(root / "data", n_per_genre=3, duration_s=3.0, seed=2)
    base = dict(data_dir=str(root / "data"), store=str(root / "store"), dask_address=dask_scheduler, shard_size=16,
                max_epochs=2, patience=1, cnn_frames=32, fractions=(0.6, 0.2, 0.2))
    first = gtzan(params=GtzanParams(**base))
    second = gtzan(params=GtzanParams(**base, lr=0.01, tag="faster", models=["mlp"]))  # what `runs compare` needs
    return root, first, second


def test_predict_labels_files_and_folders_with_error_rows(finished_runs, tmp_path, capsys):
    root, first, _ = finished_runs
    stereo = tmp_path / "songs" / "long_stereo.flac"
    stereo.parent.mkdir()
    y, sr = sf.read(root / "data" / "genres" / "metal" / "metal.00000.wav")
    long = pd.concat([pd.Series(y)] * 30).to_numpy()  # 90 s: scored in windows
    sf.write(stereo, pd.DataFrame({"l": long, "r": long}).to_numpy(), sr)
    sf.write(tmp_path / "songs" / "at_44k.wav", y[:: 1], 44100)
    (tmp_path / "songs" / "broken.mp3").write_bytes(b"not audio at all")
    out = tmp_path / "labels.csv"
    code = main(["predict", first["run_dir"], str(tmp_path / "songs"), str(root / "data" / "genres" / "jazz" / "jazz.00000.wav"),
                 "--model", "mlp", "--out", str(out)])
    assert code == 1  # one unreadable file: non-zero at the end, every other row written
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[:2]) == ["path", "genre"]
    assert len(table) == 4
    probabilities = table[[c for c in table.columns if c.startswith("p_")]]
    assert probabilities.shape[1] == 10
    good = table[table["error"] == ""]
    assert len(good) == 3 and (probabilities.loc[good.index].astype(float).sum(axis=1) - 1).abs().max() < 1e-4
    assert table.loc[table["path"].str.endswith("broken.mp3"), "error"].item() != ""
    assert "broken.mp3" in capsys.readouterr().err


def test_predict_default_model_writes_csv_to_stdout(finished_runs, capsys):
    root, first, _ = finished_runs
    clip = root / "data" / "genres" / "blues" / "blues.00001.wav"
    assert main(["predict", first["run_id"], str(clip), "--store", str(root / "store")]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert table["path"].tolist() == [str(clip)] and table["genre"].item() in gtzan_data.GENRES


def test_predict_gives_bad_audio_error_rows_and_scores_the_rest(finished_runs, tmp_path, capsys):
    root, first, _ = finished_runs
    y, sr = sf.read(root / "data" / "genres" / "jazz" / "jazz.00001.wav", dtype="float32")
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "good.wav", y, sr)
    sf.write(songs / "huge.wav", y * np.float32(1e30), sr, subtype="FLOAT")
    sf.write(songs / "cut.wav", y, sr, subtype="PCM_16")
    (songs / "cut.wav").write_bytes((songs / "cut.wav").read_bytes()[:20_000])
    sf.write(songs / "tiny.wav", y[:10], sr)
    out = tmp_path / "labels.csv"

    assert main(["predict", first["run_dir"], str(songs), "--model", "mlp", "--out", str(out)]) == 1

    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert table.loc[str(songs / "good.wav"), "genre"] in gtzan_data.GENRES
    assert "beyond 1000 times full scale" in table.loc[str(songs / "huge.wav"), "error"]
    assert table.loc[str(songs / "cut.wav"), "error"].startswith("truncated")
    assert table.loc[str(songs / "tiny.wav"), "error"].startswith("too short")
    err = capsys.readouterr().err
    assert all(f"cannot read {songs / name}" in err for name in ("huge.wav", "cut.wav", "tiny.wav"))


def _copied_run(first: dict, tmp_path: Path) -> Path:
    """The run folder alone, in a store of its own (predict needs nothing else)."""
    copy = tmp_path / "store" / "runs" / first["run_id"]
    shutil.copytree(first["run_dir"], copy)
    return copy


def _fail_if_called(*args, **kwargs):
    raise AssertionError("audio was scored before the command's inputs were checked")


def _delete(name: str):
    return lambda run_dir: (run_dir / name).unlink()


def _old_format_model(run_dir: Path) -> None:
    """models/mlp.pt as files were written before they carried their full spec and inputs."""
    import torch

    path = run_dir / "models" / "mlp.pt"
    payload = torch.load(path, weights_only=True)
    torch.save({"spec": {"name": "mlp", "n_in": payload["spec"]["n_in"], "hidden": payload["spec"]["hidden"],
                         "n_out": payload["spec"]["n_out"]}, "state_dict": payload["state_dict"]}, path)


def _make_mlp_only(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["models"]["cnn"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "models" / "cnn.pt").unlink()


@pytest.mark.parametrize(
    "defect, model, message",
    [
        (_delete("models/mlp.pt"), "mlp", "is missing models/mlp.pt"),
        (_delete("preprocessing.json"), "mlp", "is missing preprocessing.json"),
        (_old_format_model, "mlp", "models/mlp.pt: model file from an older mirflow (keys ['spec', 'state_dict'], "
                                   "not its full spec and inputs); re-run the flow that trained it"),
        (_make_mlp_only, "cnn", "has no trained model 'cnn'; it trained: mlp"),
        (_make_mlp_only, "svm", "has no trained model 'svm'; it trained: mlp"),
    ],
    ids=["deleted-model", "deleted-preprocessing", "old-format-model", "cnn-on-mlp-only-run", "unknown-model"],
)
def test_predict_checks_the_run_folder_before_reading_audio(finished_runs, tmp_path, capsys, monkeypatch, defect, model, message):
    root, first, _ = finished_runs
    run_dir = _copied_run(first, tmp_path)
    defect(run_dir)
    monkeypatch.setattr("mirflow.pipelines.gtzan.predict.load_audio", _fail_if_called)
    clip = root / "data" / "genres" / "blues" / "blues.00001.wav"

    assert main(["predict", str(run_dir), str(clip), "--model", model]) == 2

    err = capsys.readouterr().err
    assert err.startswith("mirflow: error: ") and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("out", ["a_file/labels.csv", "a_folder"])
def test_predict_checks_that_out_is_writable_before_scoring(finished_runs, tmp_path, capsys, monkeypatch, out):
    root, first, _ = finished_runs
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_folder").mkdir()
    monkeypatch.setattr("mirflow.pipelines.gtzan.predict.predict_files", _fail_if_called)
    clip = root / "data" / "genres" / "blues" / "blues.00001.wav"

    assert main(["predict", first["run_dir"], str(clip), "--out", str(tmp_path / out)]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"mirflow: error: cannot write --out {tmp_path / out}: ") and err.count("\n") == 1


def test_predict_creates_the_folder_of_out(finished_runs, tmp_path):
    root, first, _ = finished_runs
    clip = root / "data" / "genres" / "blues" / "blues.00001.wav"
    out = tmp_path / "new" / "labels.csv"
    assert main(["predict", first["run_dir"], str(clip), "--out", str(out)]) == 0
    assert pd.read_csv(out)["path"].tolist() == [str(clip)]


def test_runs_list_show_compare(finished_runs, capsys):
    root, first, second = finished_runs
    store = str(root / "store")
    assert main(["runs", "list", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert first["run_id"] in listing and second["run_id"] in listing and "faster" in listing
    assert main(["runs", "show", first["run_id"], "--store", store]) == 0
    assert "gtzan report" in capsys.readouterr().out
    assert main(["runs", "compare", first["run_id"], second["run_id"], "--store", store]) == 0
    compared = capsys.readouterr().out
    assert '"params.lr"' in compared and '"params.tag"' in compared and "train[mlp]" in compared


def test_store_du_and_gc_keep_what_runs_reference(finished_runs, capsys):
    root, first, _ = finished_runs
    store = str(root / "store")
    assert main(["store", "du", "--store", store]) == 0
    assert "extract" in capsys.readouterr().out
    stray = Path(store) / "artifacts" / "train" / "zz" / ("zz" * 32)
    stray.mkdir(parents=True)
    (stray / "_meta.json").write_text("{}")
    assert main(["store", "gc", "--store", store]) == 0
    assert "removed 1 artifacts" in capsys.readouterr().out
    assert not stray.exists()
    assert main(["predict", first["run_dir"], str(root / "data" / "genres" / "pop")]) == 0  # still usable

