"""cnn_benchmark on audio (``features_from``): a finished gtzan run's log-mels as 1 x 128 x 128
crops in that run's own split, read through the run's manifest; clear errors for a run
that is missing, not gtzan, or without log-mels."""

from __future__ import annotations

import numpy as np
import pytest
from gtzan_runs import GENRES, N_MELS, write_gtzan_run

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.cnn_benchmark import images, logmels
from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams
from mirflow.stages.splits import read_split


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory):
    store = ArtifactStore(str(tmp_path_factory.mktemp("gtzan_runs") / "store"))
    write_gtzan_run(store, "20260101-000000-gtzan-aaaaaa", "gtzan")
    write_gtzan_run(store, "20260101-000000-msd_hotness-bbbbbb", "msd_hotness")
    write_gtzan_run(store, "20260101-000000-gtzan-cccccc", "gtzan", with_logmel=False)
    return store


def test_logmel_images_are_crops_in_the_runs_own_split(runs_store):
    source = logmels.open_logmel_run(runs_store, "gtzan-aaaaaa")
    assert source.classes == sorted(GENRES)
    ref = ArtifactRef("images", "logmels")
    with runs_store.writing(ref) as writer:
        summary = logmels.write_logmel_images(writer, source.features, source.split, source.classes)
    crops, labels, split = (images.read_array(runs_store, ref, name) for name in (images.IMAGES, images.LABELS, images.SPLIT))
    assert crops.shape == (36, 1, N_MELS, 128) and crops.dtype == np.float32
    # every crop carries its row's level, so the labels follow the rows
    np.testing.assert_array_equal(crops[:, 0, 0, 0], [-10.0 * GENRES.index(source.classes[k]) for k in labels])
    listed = read_split(runs_store, source.split)
    expected = {name: int((listed["split"] == name).sum()) for name in ("train", "validation", "test")}
    assert summary["rows"] == expected and np.bincount(split, minlength=3).tolist() == list(expected.values())


def test_centre_crop_pads_short_spectrograms_with_their_quietest_value():
    short = np.arange(2 * 5, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(logmels.centre_crop(short, 7)[:, 5:], np.zeros((2, 2)))
    np.testing.assert_array_equal(logmels.centre_crop(np.tile(np.arange(10.0), (2, 1)), 4)[0], [3, 4, 5, 6])


def test_normalisation_of_float_images_uses_their_values(runs_store):
    ref = ArtifactRef("images", "floats")
    with runs_store.writing(ref) as writer:
        images.save_array(writer, images.IMAGES, np.array([[[[2.0]]], [[[4.0]]], [[[100.0]]]], dtype=np.float32))
        images.save_array(writer, images.SPLIT, np.array([images.TRAIN, images.TRAIN, images.TEST], dtype=np.int8))
    with runs_store.writing(ArtifactRef("normalise", "floats")) as writer:
        stats = images.write_normalisation(writer, runs_store, ref)
    assert stats["mean"] == [3.0] and stats["std"] == [1.0]  # not divided by 255, test image left out


@pytest.mark.parametrize("run_id, problem", [
    ("no-such-run", "not found"),
    ("msd_hotness-bbbbbb", "a msd_hotness run, not a gtzan run"),
    ("gtzan-cccccc", "no 'logmel' column"),
])
def test_features_from_a_wrong_run_is_a_one_line_error(runs_store, run_id, problem):
    with pytest.raises(ConfigError, match=problem) as error:
        CnnBenchmarkParams(store=runs_store.url, features_from=run_id).check_inputs()
    assert "\n" not in str(error.value)


def test_features_from_uses_the_crops_at_their_own_size():
    assert CnnBenchmarkParams(features_from="x").image_size is None
    assert CnnBenchmarkParams(features_from="x", image_size=64).image_size == 64
