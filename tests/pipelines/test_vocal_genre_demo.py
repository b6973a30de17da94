"""vocal_genre's demo songs (mirflow.pipelines.vocal_genre.demo) and their separation stage."""

from __future__ import annotations

import numpy as np

from mirflow.core.materialize import materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import gtzan
from mirflow.pipelines.vocal_genre import demo
from mirflow.pipelines.vocal_genre.separation import SliceSettings, read_slices, write_separated_song

SETTINGS = SliceSettings(n_mels=32, slice_frames=32)


def test_demo_songs_have_the_genre_layout_and_are_marked_synthetic(tmp_path):
    paths = demo.synthesize(tmp_path, 2, seed=3, seconds=1.0, genres=("blues", "disco"))
    songs = gtzan.discover(tmp_path)
    assert sorted(songs["clip_id"]) == ["blues.00000", "blues.00001", "disco.00000", "disco.00001"]
    assert list(songs["genre"]) == ["blues", "blues", "disco", "disco"] and gtzan.is_synthetic(tmp_path)
    again = demo.synthesize(tmp_path / "again", 2, seed=3, seconds=1.0, genres=("blues", "disco"))
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_separation_writes_each_stem_of_a_song_and_quarantines_unreadable_audio(tmp_path):
    path = demo.synthesize(tmp_path / "data", 1, seconds=3.0, genres=("blues", "disco"))[0]
    store = ArtifactStore(str(tmp_path / "store"))
    ref = ArtifactRef("separate", "song")
    summary = materialize(store, ref, {}, write_separated_song, (str(path), "repet_sim", SETTINGS, False))["summary"]
    vocals, accompaniment = read_slices(store, ref, "vocals"), read_slices(store, ref, "accompaniment")
    assert summary["slices"] == 4 and vocals.shape == accompaniment.shape == (4, 32, 32)
    assert not np.allclose(vocals, accompaniment)
    broken = gtzan.write_corrupt_clip(tmp_path / "broken.wav")
    failed = materialize(store, ArtifactRef("separate", "broken"), {}, write_separated_song,
                         (str(broken), None, SETTINGS, False))["summary"]
    assert failed["slices"] == 0 and "broken.wav" in failed["failure"]
