"""The CLI around finished runs: predict, runs list/show/compare, store du/gc, bad parameters."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from prefect.testing.utilities import prefect_test_harness

from flows.gtzan import gtzan
from mirflow.cli import main
from mirflow.datasets import gtzan as gtzan_data
from mirflow.pipelines.gtzan.params import GtzanParams


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_runs")
    gtzan_data.synthesize(root / "data", n_per_genre=3, duration_s=3.0, seed=2)
    base = dict(data_dir=str(root / "data"), store=str(root / "store"), n_workers=1, shard_size=16,
                max_epochs=2, patience=1, cnn_frames=32, fractions=(0.6, 0.2, 0.2))
    with prefect_test_harness(server_startup_timeout=120):
        first = gtzan(params=GtzanParams(**base))
        second = gtzan(params=GtzanParams(**base, lr=0.01, tag="faster"))
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


def test_bad_parameters_fail_before_any_work(tmp_path, capsys):
    assert main(["run", "gtzan", "--fractions", "0.5", "0.5", "0.5", "--store", str(tmp_path)]) == 2
    assert "sum to 1" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with prefect_test_harness(server_startup_timeout=120):
        assert main(["run", "gtzan", "--data-dir", str(tmp_path / "empty"), "--store", str(tmp_path / "s")]) == 2
    assert "no audio files" in capsys.readouterr().err
