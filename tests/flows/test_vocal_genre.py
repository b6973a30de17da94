"""Two runs of the vocal_genre flow on tiny generated songs: the first trains two models and
their ensembles; the second, with one song added, separates only that song and starts from
the first run's checkpoint (--pretrained) for the transfer table. Then the same with the
Demucs separator (a random checkpoint). (The ablation grid's
table: tests/pipelines/test_vocal_genre_evaluate.py.)"""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest

from flows.vocal_genre import vocal_genre
from mirflow.pipelines.vocal_genre import demo
from mirflow.pipelines.vocal_genre.params import VocalGenreParams
from mirflow.runs import Run


@pytest.fixture(scope="module")
def runs(prefect_server, dask_scheduler, tmp_path_factory):
    root = tmp_path_factory.mktemp("vocal_genre")
    demo.synthesize(root / "data", 3, seed=1, seconds=1.6, genres=("blues", "classical", "disco"))
    tiny = dict(data_dir=str(root / "data"), store=str(root / "store"), dask_address=dask_scheduler, folds=2,
                n_mels=32, slice_frames=32, max_epochs=2, batch_size=8, validation_fraction=0.2, time_mask=4, freq_mask=4)
    first = vocal_genre(VocalGenreParams(**tiny, models=["cnn", "resnet20"]))
    shutil.copy(root / "data" / "blues" / "blues.00000.wav", root / "data" / "blues" / "blues.00099.wav")
    second = vocal_genre(VocalGenreParams(**tiny, models=["cnn"], pretrained=first["run_dir"], unfreeze=["0"]))
    return Run.open(str(root / "store"), first["run_id"]), Run.open(str(root / "store"), second["run_id"]), tiny


@pytest.fixture(scope="module")
def demucs_runs(runs, tmp_path_factory):
    """Two runs with a random HT-Demucs checkpoint: on the songs above, then with one more song."""
    pytest.importorskip("demucs_infer")
    from mirflow.pipelines.vocal_genre import demucs_backend

    *_, tiny = runs
    weights = demucs_backend.write_random_checkpoint(
        tmp_path_factory.mktemp("demucs") / "random.th", channels=4, depth=4, t_layers=1, t_heads=2, dconv_comp=4,
        nfft=1024, samplerate=22050, segment=2)
    params = dict(tiny, models=["cnn"], max_epochs=1, demucs_weights=str(weights))
    first = vocal_genre(VocalGenreParams(**params))
    shutil.copy(f"{tiny['data_dir']}/disco/disco.00000.wav", f"{tiny['data_dir']}/disco/disco.00099.wav")
    second = vocal_genre(VocalGenreParams(**params))
    return Run.open(tiny["store"], first["run_id"]), Run.open(tiny["store"], second["run_id"])


def _statuses(run: Run, stage: str) -> list[str]:
    return [s["status"] for s in run.manifest["stages"] if s["stage"] == stage]


def test_every_song_is_scored_once_out_of_fold_per_slice_and_per_song(runs):
    first, *_ = runs
    metrics = first.metrics["models"]
    for model in ("cnn", "resnet20", "ensemble-sum", "ensemble-learned"):
        assert {"song_accuracy", "accuracy", "song_macro_f1"} <= set(metrics[model]["test"])
        assert metrics[model]["test"]["songs"] == 9
    songs = pd.read_parquet(io.BytesIO(first.file("predictions/cnn.parquet")))
    assert sorted(songs["song"]) == sorted(songs["song"].unique()) and set(songs["fold"]) == {0, 1}
    spec = first.model("cnn")[0].spec  # round 0's model, rebuilt from its file alone
    assert (spec["name"], spec["n_classes"], spec["n_mels"], spec["in_channels"]) == ("cnn", 3, 32, 1)


def test_the_report_has_both_ensembles_and_the_audit_passed(runs):
    first, *_ = runs
    assert "### Ensembles of the models" in first.report and "cross-fitted" in first.report
    combined = json.loads(first.file("ensembles.json"))
    assert set(combined) == {"sum", "learned", "learned_in_sample"} and set(combined["learned"]["weights_by_fold"]) == {"0", "1"}
    assert _statuses(first, "separate") == ["computed"] * 9 and _statuses(first, "train") == ["computed"] * 4


def test_an_added_song_is_the_only_one_separated_again(runs):
    _, second, _ = runs
    assert sorted(_statuses(second, "separate")) == ["cached"] * 9 + ["computed"]


def test_pretrained_from_a_previous_run_gives_the_transfer_table(runs):
    _, second, _ = runs
    rows = {r["training"]: r for r in json.loads(second.file("transfer.json"))}
    assert set(rows) == {"from scratch", "pretrained, unfreeze 0"}
    assert rows["pretrained, unfreeze 0"]["trainable_parameters"] == 128 * 3 + 3  # the cnn's last linear layer alone
    assert rows["from scratch"]["trainable_parameters"] > 10 * (128 * 3 + 3)
    assert "### Transfer from" in second.report


def test_demucs_separates_each_song_once_and_the_report_says_so(demucs_runs):
    first, second = demucs_runs
    assert _statuses(first, "separate") == ["computed"] * 10  # not REPET-SIM's artefacts: another separator
    assert sorted(_statuses(second, "separate")) == ["cached"] * 10 + ["computed"]
    assert "separator: demucs, checkpoint" in first.report and first.metrics["models"]["cnn"]["test"]["songs"] == 10
