"""MSD song files: real samples, synthetic copies in the same layout, corrupt files."""

from __future__ import annotations

import io
import math
import re

import h5py
import numpy as np
import pandas as pd
import pytest

from mirflow.core.errors import DataError
from mirflow.datasets import msd


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return msd.synthesize(tmp_path_factory.mktemp("msd"), 90, seed=3)


def _layout(path) -> dict[str, str]:
    """Every dataset of a song file -> its dtype and trailing shape."""
    with h5py.File(path, "r") as h5:
        out = {}
        h5.visititems(lambda name, obj: out.__setitem__(name, f"{obj.dtype.descr} {obj.shape[1:]}")
                      if isinstance(obj, h5py.Dataset) else None)
    return out


# ----------------------------------------------------------------------------- real samples


def test_every_real_sample_parses(realdata):
    paths = msd.list_files(realdata / "msd")
    assert len(paths) == 98
    table, failures = msd.read_table(paths, timbre=True)
    assert failures == []
    assert len(table) == 98
    assert table["track_id"].tolist() == [p.stem for p in paths]
    assert table["genre"].isna().all()  # empty in every real file
    assert (table["danceability"] == 0).all() and (table["energy"] == 0).all()
    assert table["song_hotttnesss"].isna().sum() == 52
    assert table["year"].isna().sum() == 54


def test_real_values_official_example(realdata):
    song = msd.read_file(realdata / "msd/data/A/X/L/TRAXLZU12903D05F94.h5", timbre=True)
    assert song["title"] == "Never Gonna Give You Up"
    assert song["artist_name"] == "Rick Astley"
    assert song["release"] == "Big Tunes - Back 2 The 80s"
    assert song["song_id"] == "SOCWJDB12A58A776AF"
    assert song["artist_id"] == "ARWPYQI1187FB4D55A"
    assert song["artist_location"] == "Newton-le-Willows, Merseyside, England"
    assert song["year"] == 1987
    assert song["duration"] == pytest.approx(211.69587)
    assert song["tempo"] == pytest.approx(113.359)
    assert song["loudness"] == pytest.approx(-7.75)
    assert (song["key"], song["mode"], song["time_signature"]) == (1, 1, 4)
    assert song["artist_latitude"] == pytest.approx(53.45644)
    assert song["artist_familiarity"] == pytest.approx(0.7549176454508227)
    assert song["song_hotttnesss"] == pytest.approx(0.8642488305884541)
    assert song["artist_terms"][:3] == ["dance pop", "rock", "pop"]
    assert len(song["artist_terms"]) == len(song["artist_terms_weight"]) == 12
    assert song["artist_terms_weight"][0] == 1.0
    assert song["timbre01_mean"] == pytest.approx(45.70642673796786)
    assert song["timbre12_var"] == pytest.approx(140.60704726992927)
    assert song["genre"] is None and song["analyzer_version"] is None


def test_real_values_missing_and_non_ascii(realdata):
    song = msd.read_file(realdata / "msd/data/B/D/A/TRBDAID128F92E88C6.h5")
    assert song["title"] == "Bewitched_ Bothered & Bewildered"
    assert song["artist_name"] == "The Allies"
    assert math.isnan(song["song_hotttnesss"])
    assert song["year"] is None  # stored as 0
    assert song["key"] == 0  # C: a real zero, kept
    assert song["artist_playmeid"] == -1
    assert song["artist_terms"][0] == "ccm" and len(song["artist_terms"]) == 22
    cerati = msd.read_file(realdata / "msd/data/B/D/D/TRBDDMU128F9350474.h5")
    assert (cerati["title"], cerati["artist_name"], cerati["year"]) == ("Médium", "Gustavo Cerati", 2006)


def test_synthetic_layout_matches_real(realdata, synthetic):
    real = _layout(realdata / "msd/data/A/X/L/TRAXLZU12903D05F94.h5")
    assert _layout(synthetic[0]) == real


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_files_look_like_msd(synthetic):
    assert len(synthetic) == 90 and synthetic == sorted(synthetic)
    for path in synthetic:
        assert re.fullmatch(r"TR[A-Z]{5}12[0-9A-F]{9}", path.stem)
        assert path.parent.relative_to(path.parents[3]).parts == tuple(path.stem[2:5])
        assert path.parents[3].name == "data"
    with h5py.File(synthetic[0], "r") as h5:
        for group, dtype in msd.SONG_TABLE_DTYPES.items():
            assert h5[f"{group}/songs"].dtype == dtype


def test_synthetic_table_types_marker_and_signal(synthetic):
    table, failures = msd.read_table(synthetic, timbre=True)
    assert failures == [] and len(table) == 90
    assert (table["genre"] == msd.SYNTHETIC_MARKER).all()
    assert table["title"].dtype == "string" and table["year"].dtype == "Int64"
    assert table["key"].dtype == "int64" and table["tempo"].dtype == "float64"
    assert table.columns[-1] == "timbre12_var"
    # Real-MSD quirks reproduced: missing and zero hotness, unknown years and places.
    assert 0 < table["song_hotttnesss"].isna().sum() < 45
    assert (table["song_hotttnesss"] == 0).sum() > 0
    assert table["year"].isna().any() and table["artist_latitude"].isna().any()
    assert (table["danceability"] == 0).all() and (table["energy"] == 0).all()
    rated = table[table["song_hotttnesss"] > 0]
    assert np.corrcoef(rated["artist_familiarity"], rated["song_hotttnesss"])[0, 1] > 0.4
    assert np.corrcoef(table["loudness"], table["timbre01_mean"])[0, 1] > 0.8


def test_synthesize_is_deterministic(tmp_path):
    first = msd.synthesize(tmp_path / "a", 3, seed=7)
    second = msd.synthesize(tmp_path / "b", 3, seed=7)
    other = msd.synthesize(tmp_path / "c", 3, seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.name for p in first] != [p.name for p in other]


def test_table_survives_parquet(synthetic):
    table, _ = msd.read_table(synthetic[:20], timbre=True)
    buffer = io.BytesIO()
    table.to_parquet(buffer)
    back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(back, table)
    assert isinstance(back["artist_terms"].iloc[0][0], str)


def test_empty_table_keeps_columns():
    table, failures = msd.read_table([])
    assert len(table) == 0 and failures == []
    assert table["year"].dtype == "Int64" and "artist_terms" in table


# ----------------------------------------------------------------------------- bad files


def test_corrupt_files_are_failures_not_fatal(tmp_path, synthetic):
    junk = tmp_path / "TRJUNKK12903CAFE00.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "TRHALFF12903CAFE00.h5"
    truncated.write_bytes(synthetic[0].read_bytes()[:2000])
    table, failures = msd.read_table([synthetic[0], junk, truncated, synthetic[1]])
    assert len(table) == 2
    assert [f.path for f in failures] == [str(junk), str(truncated)]
    with pytest.raises(DataError, match="TRJUNKK12903CAFE00.h5"):
        msd.read_file(junk)


def test_multi_song_file_is_rejected(tmp_path, synthetic):
    """An aggregate file (like the subset's summary file) is not one song."""
    path = tmp_path / "summary.h5"
    with h5py.File(synthetic[0], "r") as src, h5py.File(path, "w") as dst:
        for group in msd.SONG_TABLE_DTYPES:
            rows = src[f"{group}/songs"][()]
            dst.create_dataset(f"{group}/songs", data=np.concatenate([rows, rows]))
    with pytest.raises(DataError, match="2 rows"):
        msd.read_file(path)
