"""MSD hotness pieces without Prefect: continent lookup, ETL of real and generated song
files, cleaning, the artist split, design matrices, fits, evaluation and the audit."""

from __future__ import annotations

import io
import os
import uuid

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.materialize import materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import msd
from mirflow.pipelines.msd_hotness import design as msd_design
from mirflow.pipelines.msd_hotness import evaluate, geo, linear
from mirflow.pipelines.msd_hotness import extract as msd_etl
from mirflow.stages.featuresets import TABLE, FeatureSet
from mirflow.stages.splits import read_split, write_split

RICK = "TRAXLZU12903D05F94"


def stage(store: ArtifactStore, name: str, func, *args) -> ArtifactRef:
    ref = ArtifactRef(name, uuid.uuid4().hex)
    materialize(store, ref, {}, func, args)
    return ref


def rel_paths(root) -> list[str]:
    return [os.path.relpath(p, root) for p in msd.list_files(root)]


@pytest.fixture(scope="module")
def songs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd_songs")
    msd.synthesize(root, 150, seed=5)
    return root


@pytest.fixture(scope="module")
def pipeline(songs_dir, tmp_path_factory):
    """ETL (3 shards) → clean → split → both designs → a small grid of fits (both feature sets) → evaluation."""
    store = ArtifactStore(str(tmp_path_factory.mktemp("msd_store")))
    paths = rel_paths(songs_dir)
    etl = [stage(store, "extract", msd_etl.write_song_shard, str(songs_dir), paths[i::3], False) for i in range(3)]
    clean = FeatureSet(store, tuple(stage(store, "clean", msd_etl.write_clean_shard, store, ref) for ref in etl))
    split = stage(store, "split", write_split, clean, (0.6, 0.2, 0.2), 0, None, None, False)
    designs = {v: stage(store, "design", msd_design.write_design, clean, split, v, 16, 2) for v in msd_design.VARIANTS}
    grid = linear.model_grid(list(msd_design.VARIANTS), ["lasso", "elasticnet"], [1e-4, 1e-2], list(linear.FEATURE_SETS))
    fits = [(spec, stage(store, "train", linear.write_fit, store, designs[spec.variant], spec, 0.5, 5000, 1e-4)) for spec in grid]
    evaluation = stage(store, "evaluate", evaluate.write_evaluation, store, designs, fits)
    return {"store": store, "etl": etl, "clean": clean, "split": split, "designs": designs, "evaluation": evaluation,
            "fits": [ref for _, ref in fits]}


# ----------------------------------------------------------------------------- continents


def test_continents_of_places_near_the_borders():
    places = {
        "Istanbul, European side": (41.01, 28.96, "Europe"), "Kadıköy, Asian side": (40.99, 29.06, "Asia"),
        "Perm": (58.0, 56.25, "Europe"), "Yekaterinburg": (56.84, 60.6, "Asia"), "Sochi": (43.58, 39.72, "Europe"),
        "Tbilisi": (41.7, 44.8, "Asia"), "Port Said": (31.26, 32.3, "Africa"), "El Arish, Sinai": (31.13, 33.8, "Asia"),
        "Ceuta": (35.89, -5.32, "Africa"), "Gibraltar": (36.14, -5.35, "Europe"), "Reykjavík": (64.15, -21.94, "Europe"),
        "Nuuk": (64.18, -51.72, "North America"), "Panama City": (8.98, -79.52, "North America"),
        "Bogotá": (4.71, -74.07, "South America"), "Honolulu": (21.31, -157.86, "Oceania"), "Dili": (-8.56, 125.57, "Asia"),
        "Darwin": (-12.46, 130.84, "Oceania"), "Anadyr": (64.73, 177.5, "Asia"), "Attu, Aleutians": (52.9, 172.9, "North America"),
        "Nome": (64.5, -165.4, "North America"), "McMurdo": (-77.85, 166.67, "Antarctica"), "Lagos": (6.45, 3.4, "Africa"),
    }
    lat, lon, expected = zip(*places.values())
    assert dict(zip(places, geo.continent_of(lat, lon))) == dict(zip(places, expected))


def test_missing_impossible_and_open_ocean_points_are_unknown():
    found = geo.continent_of([np.nan, 0.0, 95.0, 40.0, 51.5], [0.0, np.nan, 10.0, -150.0, 359.87])
    assert found.tolist() == [geo.UNKNOWN] * 4 + ["Europe"]  # 359.87 E is London
    with pytest.raises(ConfigError, match="latitude has 2 values but longitude has 1"):
        geo.continent_of([1.0, 2.0], [3.0])


# ----------------------------------------------------------------------------- ETL


def test_etl_row_of_a_known_real_track(realdata):
    root = realdata / "msd"
    table, failures = msd_etl.read_songs(root, rel_paths(root), timbre=True)
    assert failures == [] and table.num_rows == 98
    assert table.schema == msd_etl.song_schema(timbre=True)
    songs = table.to_pandas().set_index("row_id")
    rick = songs.loc[RICK]
    assert rick["rel_path"] == f"data/A/X/L/{RICK}.h5"
    assert (rick["title"], rick["artist_name"], rick["year"]) == ("Never Gonna Give You Up", "Rick Astley", 1987)
    assert rick["group"] == rick["artist_id"] == "ARWPYQI1187FB4D55A"
    assert rick["label"] == rick["song_hotttnesss"] == pytest.approx(0.8642488305884541)
    assert rick["artist_familiarity"] == pytest.approx(0.7549176454508227)
    assert (rick["key"], rick["mode"], rick["time_signature"]) == (1, 1, 4)
    assert rick["duration"] == pytest.approx(211.69587) and rick["loudness"] == pytest.approx(-7.75)
    assert list(rick["artist_terms"][:3]) == ["dance pop", "rock", "pop"]
    assert len(rick["artist_terms_freq"]) == len(rick["artist_terms_weight"]) == 12
    assert rick["timbre01_mean"] == pytest.approx(45.70642673796786)
    assert songs["label"].isna().sum() == 52


def test_etl_shard_bytes_depend_only_on_the_files(songs_dir, tmp_path):
    store = ArtifactStore(str(tmp_path))
    paths = rel_paths(songs_dir)[:40]
    shuffled = list(np.random.default_rng(0).permutation(paths))
    first = stage(store, "extract", msd_etl.write_song_shard, str(songs_dir), paths, False)
    second = stage(store, "extract", msd_etl.write_song_shard, str(songs_dir), shuffled, False)
    assert store.read_bytes(first, TABLE) == store.read_bytes(second, TABLE)
    assert store.read_parquet(first, TABLE).column("rel_path").to_pylist() == sorted(paths)


def test_unreadable_song_file_is_a_failure_with_its_relative_path(songs_dir, tmp_path):
    junk = tmp_path / "data" / "J" / "U" / "N" / "TRJUNKK12903CAFE00.h5"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x89HDF not really" * 100)
    good = msd.list_files(songs_dir)[0]
    (tmp_path / "data" / "ok.h5").write_bytes(good.read_bytes())
    table, failures = msd_etl.read_songs(tmp_path, ["data/ok.h5", "data/J/U/N/TRJUNKK12903CAFE00.h5"], timbre=False)
    assert table.column("rel_path").to_pylist() == ["data/ok.h5"]
    assert [f["path"] for f in failures] == ["data/J/U/N/TRJUNKK12903CAFE00.h5"]
    assert "not a readable MSD song file" in failures[0]["reason"]


# ----------------------------------------------------------------------------- clean


def test_clean_drops_songs_without_hotness_and_fills_gaps(songs_dir):
    raw = msd_etl.read_songs(songs_dir, rel_paths(songs_dir), timbre=False)[0].to_pandas()
    clean = msd_etl.clean_songs(raw)
    target = raw["label"]
    assert len(clean) == int((target.notna() & (target > 0)).sum()) > 0
    assert (clean["label"] > 0).all()
    assert not {"artist_latitude", "artist_longitude", "duration"} & set(clean.columns)
    kept = raw.set_index("row_id").loc[clean["row_id"]]
    np.testing.assert_allclose(clean["duration_after_fade_in"], kept["duration"] - kept["end_of_fade_in"])
    # the continent is derived before the fill: no location is "unknown", not (0, 0) = Africa
    unlocated = kept["artist_latitude"].isna().to_numpy()
    assert unlocated.any() and (clean["continent"].to_numpy()[unlocated] == geo.UNKNOWN).all()
    expected = geo.continent_of(kept["artist_latitude"], kept["artist_longitude"])
    assert (clean["continent"].to_numpy() == expected).all() and (expected[~unlocated] != geo.UNKNOWN).any()
    numeric = clean.select_dtypes("number")
    assert not numeric.isna().any().any() and (clean.loc[kept["year"].isna().to_numpy(), "year"] == 0).all()
    assert not clean["title"].isna().any()


def test_clean_real_songs(realdata):
    root = realdata / "msd"
    clean = msd_etl.clean_songs(msd_etl.read_songs(root, rel_paths(root), timbre=False)[0].to_pandas()).set_index("row_id")
    assert len(clean) == 98 - 52 - 12  # no hotness, hotness 0
    assert clean.loc[RICK, "continent"] == "Europe"  # Newton-le-Willows
    assert clean.loc[RICK, "duration_after_fade_in"] == pytest.approx(211.69587 - 0.139)


# ----------------------------------------------------------------------------- split


def test_split_keeps_every_artist_in_one_split_and_is_seeded(pipeline):
    store, clean = pipeline["store"], pipeline["clean"]
    split = read_split(store, pipeline["split"])
    assert split.groupby("group")["split"].nunique().max() == 1
    counts = split["split"].value_counts()
    assert set(counts.index) == {"train", "validation", "test"} and counts["train"] > counts["test"]
    again = read_split(store, stage(store, "split", write_split, clean, (0.6, 0.2, 0.2), 0, None, None, False))
    other = read_split(store, stage(store, "split", write_split, clean, (0.6, 0.2, 0.2), 1, None, None, False))
    pd.testing.assert_frame_equal(split, again)
    assert not split["split"].equals(other["split"])


def test_split_from_a_file_and_folds_keep_artists_whole(pipeline, tmp_path):
    store, clean = pipeline["store"], pipeline["clean"]
    songs = clean.read(["row_id", "group"])
    listed = songs.iloc[: len(songs) - 5].copy()
    listed["split"] = np.array(["train", "train", "val", "test"])[np.arange(len(listed)) % 4]
    listed[["row_id", "split"]].rename(columns={"row_id": "id"}).to_csv(tmp_path / "split.csv", index=False)
    ref = stage(store, "split", write_split, clean, (0.6, 0.2, 0.2), 0, str(tmp_path / "split.csv"), 2, False)
    split = read_split(store, ref)
    assert split["row_id"].tolist() == listed["row_id"].tolist()  # rows the file leaves out are left out
    assert split["split"].tolist() == listed["split"].replace("val", "validation").tolist()
    train = split[split["split"] == "train"]
    assert set(train["fold"]) == {0, 1} and (split.loc[split["split"] != "train", "fold"] == -1).all()
    assert train.groupby("group")["fold"].nunique().max() == 1


# ----------------------------------------------------------------------------- designs


def test_onehot_design_columns_scaling_and_sparsity(pipeline):
    store = pipeline["store"]
    design = msd_design.load_design(store, pipeline["designs"]["onehot"])
    summary = store.read_json(pipeline["designs"]["onehot"], "summary.json")
    assert set(summary["constant_columns_dropped"]) >= {"danceability", "energy", "genre"}
    columns = design.columns
    assert "artist_familiarity" in columns and "duration_after_fade_in" in columns and "danceability" not in columns
    assert {"continent=unknown", "mode=1", "time_signature=4"} <= set(columns)
    assert any(c.startswith("key=") for c in columns) and "term:hip hop" in columns and "title:synthetic" in columns
    assert sp.issparse(design.X) and design.X.shape == (summary["rows"], len(columns))
    train = (design.rows["split"] == "train").to_numpy()
    numeric = design.X[:, : summary["numeric_columns"]].toarray()
    np.testing.assert_allclose(numeric[train].min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(numeric[train].max(axis=0), 1.0, atol=1e-6)  # min-max fitted on train only
    assert summary["matrix_bytes"] == design.X.data.nbytes + design.X.indices.nbytes + design.X.indptr.nbytes


def test_vocabulary_and_levels_come_from_training_rows_only(pipeline):
    songs = pipeline["clean"].read(["row_id", "label", "title", "artist_terms", "artist_terms_weight", *msd_design.CATEGORICAL,
                                     "artist_familiarity", "danceability"])
    train, test = songs.iloc[::2], songs.iloc[1::2]
    design = msd_design.fit_design(train, "onehot", 16, min_df=1)
    train_words = {w for t in train["title"] for w in t.lower().split()}
    test_only = {w for t in test["title"] for w in t.lower().split()} - train_words
    assert test_only and not {f"title:{w}" for w in test_only} & set(design.vocabulary)
    numeric, sparse = msd_design.design_blocks(test, design)
    assert sparse.shape == (len(test), len(design.vocabulary)) and numeric.shape == (len(test), len(design.numeric))


def test_hashed_design_has_named_buckets_instead_of_bags(pipeline):
    store = pipeline["store"]
    design = msd_design.load_design(store, pipeline["designs"]["hashed"])
    buckets = [c for c in design.columns if c.startswith("hash[")]
    assert len(buckets) == 16 and buckets[0].startswith("hash[0] (")
    assert any("term:" in b for b in buckets) and any("artist_id=AR" in b for b in buckets)
    assert not any(c.startswith(("title:", "term:")) for c in design.columns)
    assert any(c.startswith("continent=") for c in design.columns)  # categoricals stay one-hot


def tiny_songs() -> pd.DataFrame:
    terms = [["rock", "pop"], ["rock"], [], ["jazz"]]
    weights = [[0.5, 1.0], [0.7], [], [0.9]]
    return pd.DataFrame({
        "title": ["Love me LOVE", "love song", "Rock on", "Love"], "artist_id": ["A1", "A2", "A1", "A3"],
        "artist_terms": [np.array(t, dtype=object) for t in terms], "artist_terms_weight": [np.array(w) for w in weights],
        "continent": ["Asia", "Europe", "Asia", "Africa"], "key": [1, 2, 3, 1], "mode": [0, 1, 1, 1],
        "time_signature": [4, 4, 4, 4], "genre": "", "label": [0.1, 0.2, 0.3, 0.4], "loudness": [-5.0, -3.0, -1.0, -2.0],
    })


def test_onehot_and_bags_by_hand():
    songs = tiny_songs()
    design = msd_design.fit_design(songs.iloc[:3], "onehot", 8, min_df=2)  # the last song is unseen
    assert design.constant == ("time_signature", "genre")
    assert list(design.vocabulary) == ["continent=Asia", "continent=Europe", "key=1", "key=2", "key=3", "mode=0", "mode=1",
                                 "title:love", "term:rock"]  # "me", "song", "on", "pop": in one training song only
    numeric, sparse = msd_design.design_blocks(songs, design)
    np.testing.assert_array_equal(numeric, songs[["loudness"]].to_numpy())
    np.testing.assert_array_equal(sparse.toarray(), [
        [1, 0, 1, 0, 0, 1, 0, 2, 0.5],  # "love" twice, term weight
        [0, 1, 0, 1, 0, 0, 1, 1, 0.7],
        [1, 0, 0, 0, 1, 0, 1, 0, 0.0],
        [0, 0, 1, 0, 0, 0, 1, 1, 0.0],  # Africa and jazz unseen: all-zero encodings
    ])
    assert msd_design.fit_design(songs, "onehot", 8, min_df=5).vocabulary[-1] == "mode=1"  # no word in 5 songs: no bag columns


def test_hashed_block_is_sklearns_signed_feature_hasher_and_names_carry_the_sign():
    from sklearn.feature_extraction import FeatureHasher

    songs = tiny_songs()
    design = msd_design.fit_design(songs, "hashed", 8, min_df=2)
    sparse = msd_design.design_blocks(songs, design)[1][:, len(design.vocabulary):]
    hasher = FeatureHasher(n_features=8, input_type="pair", alternate_sign=True)
    tokens = [[("artist_id=A1", 1), ("title:love", 1), ("title:me", 1), ("title:love", 1), ("term:rock", 0.5), ("term:pop", 1.0)],
              [("artist_id=A2", 1), ("title:love", 1), ("title:song", 1), ("term:rock", 0.7)],
              [("artist_id=A1", 1), ("title:rock", 1), ("title:on", 1)],
              [("artist_id=A3", 1), ("title:love", 1), ("term:jazz", 0.9)]]
    np.testing.assert_array_equal(sparse.toarray(), hasher.transform(tokens).toarray())
    assert (sparse.toarray() < 0).any()  # signed: colliding tokens partly cancel
    names = msd_design.sparse_names(songs, design, top=20)[len(design.vocabulary):]
    shown = [name[name.index("(") + 1 : -1].split(", ") for name in names]  # "hash[3] (artist_id=A1, -title:me)"
    for token in {t for row in tokens for t, _ in row}:
        alone = hasher.transform([[(token, 1.0)]])
        assert ("-" if alone.data[0] < 0 else "") + token in shown[alone.indices[0]], (token, names)


# ----------------------------------------------------------------------------- fits, evaluation


def test_models_beat_the_constant_baseline_and_stronger_penalties_are_sparser(pipeline):
    store, evaluation = pipeline["store"], pipeline["evaluation"]
    scores = store.read_json(evaluation, "metrics.json")
    assert len(scores) == 1 + 2 * 2 * 2 * 2  # baseline + 2 variants x 2 feature sets x 2 models x 2 alphas
    best = min(scores[m]["validation"]["rmse"] for m in scores if m != "constant")
    assert best < 0.8 * scores["constant"]["validation"]["rmse"]
    assert scores["lasso-onehot-0.01"]["nonzero_coefficients"] < scores["lasso-onehot-0.0001"]["nonzero_coefficients"]
    assert scores["constant"]["nonzero_coefficients"] == 0 and abs(scores["constant"]["train"]["r2"]) < 1e-9
    top = store.read_json(evaluation, "top_features.json")
    assert set(top) == {"onehot", "hashed", "onehot, no_artist_popularity", "hashed, no_artist_popularity"}
    assert 0 < len(top["onehot"]["features"]) <= 10
    assert {"artist_hotttnesss", "artist_familiarity"} & {f["feature"] for f in top["onehot"]["features"][:3]}
    table = pd.read_csv(io.BytesIO(store.read_bytes(evaluation, "results.csv")))
    assert len(table) == len(scores) and {"rmse_test", "train_seconds", "matrix_mib"} <= set(table.columns)
    for png in ("top_features.png", "rmse_vs_time.png"):
        assert store.read_bytes(evaluation, png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_feature_set_without_artist_popularity_leaves_both_columns_out(pipeline):
    store, evaluation = pipeline["store"], pipeline["evaluation"]
    scores = store.read_json(evaluation, "metrics.json")
    design = msd_design.load_design(store, pipeline["designs"]["onehot"])
    popularity = [design.columns.index(c) for c in ("artist_hotttnesss", "artist_familiarity")]
    weights = store.read_json(evaluation, "top_features.json")
    assert not {"artist_hotttnesss", "artist_familiarity"} & {f["feature"] for f in weights["onehot, no_artist_popularity"]["features"]}
    for ref in pipeline["fits"]:
        summary = store.read_json(ref, "summary.json")
        coef = np.load(io.BytesIO(store.read_bytes(ref, linear.COEF)))
        if summary["variant"] == "onehot" and summary["model"] == "lasso":
            left_out = {"artist_hotttnesss", "artist_familiarity"} if summary["feature_set"] == "no_artist_popularity" else set()
            assert set(summary["left_out_columns"]) == left_out
            assert (coef[popularity] == 0).all() == bool(left_out), summary["name"]
    # The generated target leans on the artist's popularity: without it, every variant's best model is worse.
    for variant in msd_design.VARIANTS:
        best = {f: min(r["validation"]["rmse"] for r in scores.values() if (r["variant"], r["feature_set"]) == (variant, f))
                for f in linear.FEATURE_SETS}
        assert best["no_artist_popularity"] > best["report"], (variant, best)
    table = evaluate.feature_set_table(scores)
    assert "| variant | model | alpha | test RMSE, report | test RMSE, no_artist_popularity |" in table
    assert len(table.splitlines()) == 2 + 2 * 2 * 2
    assert evaluate.feature_set_table({k: v for k, v in scores.items() if "no_artist" not in k}) == ""


def test_model_grid_has_one_baseline_and_every_combination():
    grid = linear.model_grid(["onehot", "hashed"], ["lasso"], [0.1, 0.01])
    assert [s.name for s in grid] == ["constant", "lasso-onehot-0.1", "lasso-onehot-0.01", "lasso-hashed-0.1", "lasso-hashed-0.01"]
    with pytest.raises(ConfigError, match="ridge"):
        linear.model_grid(["onehot"], ["ridge"], [0.1])
    grid = linear.model_grid(["onehot"], ["lasso"], [0.1], ["report", "no_artist_popularity"])
    assert [s.name for s in grid] == ["constant", "lasso-onehot-0.1", "lasso-onehot-no_artist_popularity-0.1"]
    with pytest.raises(ConfigError, match="no_artists"):
        linear.model_grid(["onehot"], ["lasso"], [0.1], ["no_artists"])


# ----------------------------------------------------------------------------- leakage audit


def test_audit_passes_on_the_pipeline(pipeline):
    for design in pipeline["designs"].values():
        report = msd_design.audit_leakage(pipeline["store"], design, pipeline["split"])
        assert report["scaler_rows"] == (read_split(pipeline["store"], pipeline["split"])["split"] == "train").sum()


def test_audit_catches_a_scaler_fitted_on_all_rows(pipeline, monkeypatch):
    from mirflow.stages import scaling

    real_fit = scaling.fit_scaler_on_train
    monkeypatch.setattr(scaling, "fit_scaler_on_train", lambda X, split, **kw: real_fit(X, split.map(lambda _: "train"), **kw))
    leaky = stage(pipeline["store"], "design", msd_design.write_design, pipeline["clean"], pipeline["split"], "onehot", 16, 2)
    with pytest.raises(LeakageError, match="fitted on all rows"):
        msd_design.audit_leakage(pipeline["store"], leaky, pipeline["split"])


def test_audit_catches_an_artist_in_two_splits(pipeline, monkeypatch):
    from mirflow.stages import splits

    def ignoring_groups(labels, groups, *, fractions, seed):
        names = np.array(["train", "validation", "test"])
        return pd.Series(names[np.arange(len(groups)) % 3], index=groups.index, name="split")

    monkeypatch.setattr(splits, "split_train_val_test", ignoring_groups)
    store, clean = pipeline["store"], pipeline["clean"]
    split = stage(store, "split", write_split, clean, (0.6, 0.2, 0.2), 0, None, None, False)
    design = stage(store, "design", msd_design.write_design, clean, split, "hashed", 16, 2)
    with pytest.raises(LeakageError, match="groups appear in more than one split"):
        msd_design.audit_leakage(store, design, split)
