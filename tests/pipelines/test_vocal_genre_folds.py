"""vocal_genre's song-level folds and their leakage audit (mirflow.pipelines.vocal_genre.folds)."""

from __future__ import annotations

import pytest

from mirflow.core.errors import LeakageError
from mirflow.core.materialize import materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.vocal_genre import folds
from mirflow.stages import splits


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "store"))


def _songs(store: ArtifactStore) -> list[tuple[str, str, str, ArtifactRef]]:
    """4 genres x 6 songs of 3 slices; two songs are one recording (a GTZAN duplicate: one group)."""
    songs = []
    for genre in ("blues", "jazz", "pop", "rock"):
        for i in range(6):
            ref = ArtifactRef("separate", f"{genre}{i}")
            with store.writing(ref) as writer:
                writer.write_json("summary.json", {"slices": 3})
            song = f"{genre}.{i:05d}"
            songs.append((song, genre, "rock.00000" if song == "rock.00005" else song, ref))
    return songs


def _folds(store: ArtifactStore, k: int = 3) -> ArtifactRef:
    ref = ArtifactRef("folds", f"k{k}")
    materialize(store, ref, {}, folds.write_song_folds, (store, _songs(store), k, 0.2, 0))
    return ref


def test_each_song_is_tested_once_and_never_trains_its_own_round(store):
    rows = folds.read_folds(store, _folds(store))
    assert len(rows) == 24 * 3 and rows.groupby("song")["fold"].nunique().max() == 1
    for k in range(3):
        sides = rows.groupby("song")[folds.round_column(k)].agg(set)
        assert sides.map(len).max() == 1  # a song's slices are all on one side
        tested = set(rows.loc[rows[folds.round_column(k)] == "test", "song"])
        assert tested == set(rows.loc[rows["fold"] == k, "song"])
        assert {"train", "validation"} <= set(rows[folds.round_column(k)])
    assert rows.groupby("fold")["label"].nunique().min() == 4  # stratified: every genre in every fold
    assert rows.loc[rows["group"] == "rock.00000", "fold"].nunique() == 1  # duplicates stay together
    assert folds.audit_folds(store, _folds(store)) == {"groups_checked": 23, "scaler_rows": 0}


def test_a_slice_level_split_leaks_songs_and_fails_the_audit(store, monkeypatch):
    """Report 004's mistake: slices assigned to folds on their own, so one song's slices land on both sides."""
    real = splits.kfold_assignments
    monkeypatch.setattr(folds, "kfold_assignments", lambda labels, groups, k, seed: real(labels, None, k=k, seed=seed))
    with pytest.raises(LeakageError, match="songs have slices in more than one fold"):
        folds.audit_folds(store, _folds(store))
