"""The Demucs separator (mirflow.pipelines.vocal_genre.demucs_backend) on a randomly
initialised, small HT-Demucs saved locally (no weights are reachable here), and its
errors: no package, no weights, a checkpoint without Demucs's four sources."""

from __future__ import annotations

import importlib.metadata
import shutil

import numpy as np
import pytest

from mirflow.core.errors import ConfigError
from mirflow.core.materialize import materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.vocal_genre import demo, demucs_backend
from mirflow.pipelines.vocal_genre.params import VocalGenreParams
from mirflow.pipelines.vocal_genre.separation import (
    SliceSettings, read_slices, separator_of, slice_log_mel, waveform_log_mel, write_separated_song,
)

pytest.importorskip("demucs_infer")  # in the test extra

SETTINGS = SliceSettings(n_mels=32, slice_frames=32)
# htdemucs's architecture, narrow, with one transformer layer and at 22,050 Hz: a 3-s song
# separates in under a second of CPU.
TINY = dict(channels=4, depth=4, t_layers=1, t_heads=2, dconv_comp=4, nfft=1024, samplerate=22050, segment=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(demucs_backend.write_random_checkpoint(tmp_path_factory.mktemp("demucs") / "random.th", **TINY))


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return str(demo.synthesize(tmp_path_factory.mktemp("songs"), 1, seconds=3.0, genres=("blues", "disco"))[0])


@pytest.fixture(scope="module")
def stems(checkpoint, song):
    return demucs_backend.separate_file(song, checkpoint, SETTINGS.sr)


def test_demucs_gives_every_stem_and_accompaniment_is_all_but_vocals(stems):
    assert set(stems) == set(demucs_backend.STEMS) and all(len(w) == 3 * SETTINGS.sr for w in stems.values())
    # resampling is linear: the sources' sum resamples to the sum
    np.testing.assert_allclose(stems["accompaniment"], stems["drums"] + stems["bass"] + stems["other"], atol=1e-4)
    assert not np.allclose(stems["vocals"], stems["accompaniment"], atol=1e-3)


def test_the_separation_stage_writes_each_stem_reproducibly(tmp_path, checkpoint, song, stems):
    store = ArtifactStore(str(tmp_path / "store"))
    ref = ArtifactRef("separate", "song")
    summary = materialize(store, ref, {}, write_separated_song, (song, "demucs", SETTINGS, False, checkpoint))["summary"]
    assert summary["slices"] == 4
    for stem, wave in stems.items():  # a second separation (no random shift) gives the same slices
        expected = slice_log_mel(waveform_log_mel(wave, SETTINGS), SETTINGS).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(read_slices(store, ref, stem), expected)


def test_a_checkpoint_folder_with_a_bag_separates_as_its_model_file(tmp_path, checkpoint, song, stems):
    folder = tmp_path / "repo"
    folder.mkdir()
    shutil.copy(checkpoint, folder / "5eed0001.th")
    (folder / "mybag.yaml").write_text("models: ['5eed0001']\n")
    from_folder = demucs_backend.separate_file(song, str(folder), SETTINGS.sr)
    np.testing.assert_allclose(from_folder["vocals"], stems["vocals"], atol=1e-6)
    # the cache key follows the checkpoint's bytes, not its path; other weights change it
    (tmp_path / "copy").mkdir()
    copy = shutil.copy(checkpoint, tmp_path / "copy" / "random.th")
    assert demucs_backend.checkpoint_fingerprint(str(copy)) == demucs_backend.checkpoint_fingerprint(checkpoint)
    other = demucs_backend.write_random_checkpoint(tmp_path / "other.th", seed=1, **TINY)
    assert demucs_backend.checkpoint_fingerprint(str(other)) != demucs_backend.checkpoint_fingerprint(checkpoint)


def test_missing_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(ConfigError, match=r"demucs_weights .*nope: no such file or folder; put a Demucs checkpoint"):
        VocalGenreParams(demucs_weights=str(tmp_path / "nope")).check_inputs()
    (tmp_path / "a.th").touch()
    (tmp_path / "b.th").touch()
    with pytest.raises(ConfigError, match="one model or one bag, found a.th, b.th"):
        VocalGenreParams(demucs_weights=str(tmp_path)).check_inputs()
    with pytest.raises(ConfigError, match="stem 'drums' comes from Demucs alone: give --demucs-weights"):
        VocalGenreParams(stem="drums").check_inputs()
    assert separator_of("drums", demucs=True) == separator_of("vocals", demucs=True) == "demucs"


def test_a_missing_package_says_what_to_install(monkeypatch, checkpoint):
    def version(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ConfigError, match="needs the demucs-infer package: pip install demucs-infer"):
        VocalGenreParams(demucs_weights=checkpoint).check_inputs()


def test_a_model_without_the_four_sources_or_no_model_is_refused(tmp_path, song):
    two = demucs_backend.write_random_checkpoint(tmp_path / "two.th", sources=("vocals", "no_vocals"), **TINY)
    with pytest.raises(ConfigError, match=r"separates \['vocals', 'no_vocals'\], not \['bass', 'drums', 'other'\]"):
        demucs_backend.separate_file(song, str(two), SETTINGS.sr)
    (tmp_path / "junk.th").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.th: not a loadable Demucs checkpoint"):
        demucs_backend.separate_file(song, str(tmp_path / "junk.th"), SETTINGS.sr)
