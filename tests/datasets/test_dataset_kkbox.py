"""KKBOX CSV tables: real samples, synthetic copies, truncated and malformed files."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mirflow.core.errors import DataError
from mirflow.datasets import kkbox

TABLES = ["members", "song_extra_info", "songs", "test", "train"]


@pytest.fixture(scope="module")
def real(realdata):
    return realdata / "kkbox"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return kkbox.synthesize(tmp_path_factory.mktemp("kkbox"), 3000, seed=1)


# ----------------------------------------------------------------------------- real samples


def test_every_real_table_parses(real):
    paths = kkbox.list_files(real)
    assert [p.stem for p in paths] == TABLES
    rows = {p.stem: len(kkbox.read_file(p)) for p in paths}
    # test.csv: 4,999 real rows, then 35,000 blank ",,,,," rows that are dropped.
    assert rows == {"members": 34403, "song_extra_info": 39999, "songs": 39999, "test": 4999, "train": 19999}


def test_real_train_and_test_values(real):
    train = kkbox.read_file(real / "train.csv")
    first = train.iloc[0]
    assert first["msno"] == "FGtllVqz18RPiwJj/edr2gV78zirAiY/9SmYvia+kCg="
    assert first["song_id"] == "BBzumQNXUHKdEBOB7mAJuzok+IJA1c2Ryg/yzTF6tik="
    assert (first["source_system_tab"], first["source_screen_name"], first["source_type"]) == (
        "explore", "Explore", "online-playlist")
    assert train["target"].dtype == "int8" and train["target"].sum() == 15243
    assert train["source_system_tab"].dtype == "category"
    assert train["source_system_tab"].isna().sum() == 50
    test = kkbox.read_file(real / "test.csv")
    assert test["id"].tolist() == list(range(4999))
    assert test.iloc[-1]["msno"] == "7OCuEA38gDlVIrp9v0iTZ5BE12MFYNsVtRIIQvk/SS8="
    assert pd.isna(test.iloc[-1]["source_screen_name"])


def test_real_song_values(real):
    songs = kkbox.read_file(real / "songs.csv").set_index("song_id")
    blackpink = songs.loc["o0kFgae9QtnYgRkVPqLJwa05zIhRlUjfF7O1tDw0ZDU="]
    assert blackpink["song_length"] == 197328
    assert blackpink["genre_ids"].tolist() == ["444"]
    assert blackpink["artist_name"].tolist() == ["BLACKPINK"]
    assert blackpink["composer"].tolist() == ["TEDDY", "FUTURE BOUNCE", "Bekuh BOOM"]
    assert blackpink["lyricist"].tolist() == ["TEDDY"]
    assert blackpink["language"] == 31
    akon = songs.loc["664Cs+Ge1tPoiHtZLIcvCGzk4WI3GqkniUDd+viK+hI="]
    assert akon["composer"].tolist() == ['Aliaune "Akon" Thiam', "Giorgio Tuinfort", "C. Kelly"]
    assert akon["lyricist"] is None
    assert songs.loc["CXoTN1eb7AI+DntdU1vbcwGRV4SCIDxZu+YD8JP8r4E=", "artist_name"].tolist() == [
        "張信哲 (Jeff Chang)"]
    assert songs["genre_ids"].isna().sum() == 717
    assert songs["song_length"].dtype == "int64" and songs["language"].dtype == "Int64"
    extra = kkbox.read_file(real / "song_extra_info.csv").set_index("song_id")
    assert extra.loc["LP7pLJoJFBvyuUwvu+oLzjT+bI+UeBPURCecJsX1jjs="].tolist() == ["我們", "TWUM71200043"]
    quoted = extra.loc["vKdlYuR0JrBm7iOHXQ9njTHI8RhF13m4TCOybmK6VYc=", "name"]
    assert quoted == '心債 (電視劇 "香城浪子" 主題曲)'


def test_real_member_values(real):
    members = kkbox.read_file(real / "members.csv")
    first = members.iloc[0]
    assert first["msno"] == "XQxgAYj3klVKjR3oxPPXYYFp4soD4TuBghkhMTD4oTw="
    assert (first["city"], first["bd"], first["registered_via"]) == (1, 0, 7)
    assert pd.isna(first["gender"])
    assert first["registration_init_time"] == pd.Timestamp("2011-08-20")
    assert first["expiration_date"] == pd.Timestamp("2017-09-20")
    assert members["registration_init_time"].dtype == "datetime64[ms]"
    assert set(members["gender"].cat.categories) == {"female", "male"}


def test_real_training_table_joins_as_documented(real):
    table, failures = kkbox.read_table(kkbox.list_files(real))
    assert failures == []
    assert len(table) == 19999 + 4999
    train = table[table["target"].notna()]
    # Counts from SOURCE.md: the samples are independent heads of the files.
    assert train["song_length"].notna().sum() == 2845
    assert train["name"].notna().sum() == 1614
    assert train["city"].notna().all()
    assert table.loc[table["target"].isna(), "id"].notna().all()


# ----------------------------------------------------------------------------- damaged files


def test_truncated_last_line_is_dropped(real, tmp_path):
    lines = (real / "train.csv").read_bytes().split(b"\n")
    path = tmp_path / "train.csv"
    path.write_bytes(b"\n".join(lines[:101]) + b"\n" + lines[101][:30])
    assert len(kkbox.read_file(path)) == 100
    songs = tmp_path / "songs.csv"  # cut inside a quoted field
    songs.write_bytes(b"".join((real / "songs.csv").open("rb").readlines()[:178])
                      + b'664Cs+Ge1tPoiHtZLIcvCGzk4WI3GqkniUDd+viK+hI=,266843,139,Akon,"Aliaune ""Ak')
    assert len(kkbox.read_file(songs)) == 177


def test_missing_column_names_file_and_column(tmp_path, synthetic):
    path = tmp_path / "members.csv"
    pd.read_csv(synthetic[0]).drop(columns="bd").to_csv(path, index=False)
    with pytest.raises(DataError, match=r"members\.csv: missing column 'bd'"):
        kkbox.read_file(path)
    table, failures = kkbox.read_table([path, *synthetic[1:]])
    assert [(f.path, "'bd'" in f.reason) for f in failures] == [(str(path), True)]
    assert len(table) == 3750 and table["bd"].isna().all() and table["bd"].dtype == "Int64"


def test_bad_values_and_names_are_data_errors(tmp_path):
    songs = tmp_path / "songs.csv"
    songs.write_text(
        "song_id,song_length,genre_ids,artist_name,composer,lyricist,language\nabc=,,465,A,,,3\n"
    )
    with pytest.raises(DataError, match="song_length"):
        kkbox.read_file(songs)
    junk = tmp_path / "train.csv"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(DataError, match="train.csv"):
        kkbox.read_file(junk)
    with pytest.raises(DataError, match="not a KKBOX table"):
        kkbox.read_file(tmp_path / "sample_submission.csv")


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_tables_match_real_format(synthetic, real):
    assert [p.stem for p in synthetic] == TABLES
    for path in synthetic:
        assert path.read_text().splitlines()[0] == (real / path.name).read_text().splitlines()[0]
        real_types = kkbox.read_file(real / path.name).dtypes.map(str)
        assert kkbox.read_file(path).dtypes.map(str).equals(real_types)


def test_synthetic_content_and_marker(synthetic):
    tables = {p.stem: kkbox.read_file(p) for p in synthetic}
    assert len(tables["train"]) == 3000 and len(tables["test"]) == 750
    assert tables["song_extra_info"]["name"].str.startswith(kkbox.SYNTHETIC_MARKER).all()
    assert tables["song_extra_info"]["isrc"].dropna().str.match(r"ZZ[A-Z0-9]{10}$").all()
    for ident in tables["members"]["msno"]:
        assert len(ident) == 44 and len(base64.b64decode(ident)) == 32
    assert tables["train"]["song_id"].isin(tables["songs"]["song_id"]).all()
    assert tables["train"]["msno"].isin(tables["members"]["msno"]).all()
    assert tables["songs"]["composer"].dropna().map(len).max() > 1  # some multi-valued fields


def test_synthetic_target_is_learnable(synthetic):
    """Source tab alone predicts re-listens; adding user x genre predicts them better."""
    table, _ = kkbox.read_table(synthetic)
    train = table[table["target"].notna()]
    user_genre = train["msno"].astype(str) + "/" + train["genre_ids"].map(lambda g: "" if g is None else g[0])
    tab = pd.get_dummies(train["source_system_tab"].astype(str)).to_numpy(float)
    both = np.hstack([tab, pd.get_dummies(user_genre).to_numpy(float)])
    y = train["target"].to_numpy(int)
    half = len(y) // 2

    def auc(x):
        model = LogisticRegression(max_iter=1000).fit(x[:half], y[:half])
        return roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])

    assert auc(tab) > 0.6
    assert auc(both) > auc(tab) + 0.04


def test_training_table_survives_parquet(synthetic):
    table, _ = kkbox.read_table(synthetic)
    assert table["target"].dtype == "Int8" and table["city"].dtype == "Int64"
    buffer = io.BytesIO()
    table.to_parquet(buffer)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(buffer.getvalue())), table)


def test_synthesize_is_deterministic(tmp_path):
    first = kkbox.synthesize(tmp_path / "a", 200, seed=5)
    second = kkbox.synthesize(tmp_path / "b", 200, seed=5)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_list_files_only_lists_present_tables(tmp_path, synthetic):
    shutil.copy(synthetic[-1], tmp_path / "train.csv")
    (tmp_path / "notes.csv").write_text("a\n1\n")
    assert kkbox.list_files(tmp_path) == [tmp_path / "train.csv"]


@pytest.mark.parametrize("n", [1, 7])
def test_tiny_synthetic_copies_read_back(tmp_path, n):
    table, failures = kkbox.read_table(kkbox.synthesize(tmp_path, n, seed=2))
    assert failures == [] and len(table) == n + max(1, n // 4)
