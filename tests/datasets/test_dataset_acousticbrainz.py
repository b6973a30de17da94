"""AcousticBrainz / MediaEval 2018 genre module: real samples, synthetic round trips, failures."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets import acousticbrainz as ab

TRAIN_01A0 = "mediaeval/acousticbrainz-mediaeval-train/01/01a0a332-d340-4806-a88b-cb60a05355c0.json"
VALID_BE9E = "mediaeval/acousticbrainz-mediaeval-validation/be/be9e01e5-8f93-494d-bbaa-ddcc5a52f629.json"
SERVER_NO_MBID = "lowlevel_server_testdata/335679c30222c2b482337ef4570fe758.json"


@pytest.fixture(scope="module")
def real(realdata: Path) -> Path:
    return realdata / "acousticbrainz"


@pytest.fixture(scope="module")
def real_documents(real: Path) -> list[Path]:
    paths = sorted(p for p in real.rglob("*.json") if p.name != "acousticbrainz_genre_index_sample.json")
    assert len(paths) == 31  # 3 MediaEval + 3 server test files + 25 labs outliers (SOURCE.md)
    return paths


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("acousticbrainz")
    return out, ab.synthesize(out, 120, seed=3)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _nesting(doc: dict, prefix: str = "") -> set[str]:
    """Every dict key path of a document (lists are leaves)."""
    keys = set()
    for key, value in doc.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _nesting(value, f"{prefix}{key}.")
    return keys


# --- real samples ------------------------------------------------------------------------------


def test_every_real_document_maps_onto_the_whole_layout(real_documents):
    for path in real_documents:
        assert set(ab.feature_layout(_json(path))) == set(ab.LAYOUT), path
    table, failures = ab.read_table(real_documents, dtype=np.float64)
    assert failures == []
    assert list(table.columns) == ["recordingmbid", *ab.LAYOUT]
    assert len(table) == 31
    assert not table[list(ab.LAYOUT)].isna().any().any()
    assert (table.filter(like="tonal.key_key=").sum(axis=1) == 1).all()
    assert (table.filter(like="tonal.chords_scale=").sum(axis=1) == 1).all()


def test_real_values_land_in_their_named_columns(real):
    doc = ab.read_file(real / TRAIN_01A0)
    features = dict(zip(ab.LAYOUT, doc["features"]))
    assert doc["recordingmbid"] == "01a0a332-d340-4806-a88b-cb60a05355c0"
    assert doc["length"] == pytest.approx(453.564086914)
    assert doc["synthetic"] is False
    assert features["lowlevel.average_loudness"] == pytest.approx(0.224948942661)
    assert features["rhythm.bpm"] == pytest.approx(116.889778137)
    assert features["rhythm.beats_count"] == 840
    assert features["rhythm.danceability"] == pytest.approx(0.928388893604)
    assert features["lowlevel.mfcc.mean.00"] == pytest.approx(-749.758178711)
    assert features["lowlevel.mfcc.cov.00.01"] == pytest.approx(-3390.23828125)
    assert features["lowlevel.melbands.mean.39"] == pytest.approx(4.81667711938e-07)
    assert features["lowlevel.spectral_centroid.dvar2"] == pytest.approx(69337.7265625)
    assert features["tonal.hpcp.mean.35"] == pytest.approx(0.0384787395597)
    assert features["tonal.chords_histogram.23"] == pytest.approx(14.5782146454)
    assert features["metadata.audio_properties.length"] == pytest.approx(453.564086914)
    keys = {name: value for name, value in features.items() if name.startswith("tonal.key_")}
    assert {name for name, value in keys.items() if value == 1} == {"tonal.key_key=D", "tonal.key_scale=minor"}
    assert sum(value == 0 for value in keys.values()) == 12  # 11 other keys + major


def test_real_validation_and_odd_server_documents(real):
    table, failures = ab.read_table([real / VALID_BE9E, real / SERVER_NO_MBID], dtype=np.float64)
    assert failures == []
    valid, server = table.iloc[0], table.iloc[1]
    assert valid["recordingmbid"] == "be9e01e5-8f93-494d-bbaa-ddcc5a52f629"
    assert valid["rhythm.bpm"] == pytest.approx(99.8474197388)
    assert valid["lowlevel.average_loudness"] == pytest.approx(0.875494062901)
    assert valid["tonal.key_key=F#"] == 1 and valid["tonal.key_scale=minor"] == 1
    assert valid["tonal.chords_key=C#"] == 1 and valid["tonal.chords_scale=major"] == 1
    # 4 s of audio, no MBID tag and no MBID in the name: the file stem identifies it
    assert server["recordingmbid"] == "335679c30222c2b482337ef4570fe758"
    assert server["metadata.audio_properties.length"] == pytest.approx(3.99997735023)
    assert server["rhythm.beats_count"] == 7
    assert server["tonal.key_key=C"] == 1 and server["tonal.key_scale=minor"] == 1


def test_labs_outlier_submissions_share_the_mbid_in_their_names(real):
    paths = sorted((real / "lowlevel_labs_outliers/00").glob("*.json"))
    table, failures = ab.read_table(paths)
    assert failures == [] and len(table) == 25
    assert set(table["recordingmbid"]) == {"00c47ea6-3a10-4a32-b1f1-990ac756c6a0"}
    assert table["tonal.key_key=G#"].sum() > 0 and table["tonal.key_key=F"].sum() > 0  # keys differ


def test_a_json_that_is_not_an_essentia_document_is_a_failure(real):
    index = real / "mediaeval/acousticbrainz_genre_index_sample.json"
    table, failures = ab.read_table([index, real / TRAIN_01A0])
    assert len(table) == 1
    assert [f.path for f in failures] == [str(index)]
    assert "lowlevel" in failures[0].reason


def test_real_groundtruth_rows_in_the_original_tsv_format(real, tmp_path):
    derived = (real / "mediaeval/DERIVED_groundtruth_rows_from_mirdata_index.tsv").read_text().splitlines()[1:]
    by_file: dict[tuple[str, str], list[list[str]]] = {}
    for line in derived:
        source, split, *row = line.split("\t")
        by_file.setdefault((source, split), []).append(row)
    for i, ((source, split), rows) in enumerate(by_file.items()):
        width = max(len(row) for row in rows) - 2
        header = ["recordingmbid", "releasegroupmbid", *(f"genre{k}" for k in range(1, width + 1))]
        pad = i % 2 == 0  # the real files pad with tabs; read unpadded (ragged) rows too
        lines = ["\t".join(header)] + ["\t".join(row + [""] * (width + 2 - len(row)) * pad) for row in rows]
        text = "\n".join(lines) + "\n"
        name = ab.groundtruth_name(source, split)
        if source == "discogs":
            (tmp_path / f"{name}.bz2").write_bytes(bz2.compress(text.encode()))
        else:
            (tmp_path / name).write_text(text)
    files = ab.groundtruth_files(tmp_path)
    assert set(files) == {(s, split) for s in ab.SOURCES for split in ab.SPLITS}
    assert files[("discogs", "train")].name.endswith(".tsv.bz2")

    labels = {key: ab.read_groundtruth(path).set_index("recordingmbid") for key, path in files.items()}
    discogs = labels[("discogs", "train")].loc["6eafad9e-3e4e-4af7-ad2c-dba94cfedecf"]
    assert discogs["releasegroupmbid"] == "fa7475c1-78a3-31e3-8b27-ca4fef89ba12"
    assert discogs["genres"] == ["electronic", "electronic---ambient", "electronic---dark ambient",
                                 "stage & screen", "stage & screen---soundtrack"]
    allmusic = labels[("allmusic", "train")]
    assert allmusic.loc["bd523884-e1b7-4401-b882-743356fc0e33", "genres"] == ["pop/rock"]
    assert allmusic.loc["6eafad9e-3e4e-4af7-ad2c-dba94cfedecf", "genres"][1] == "stage & screen---film music"
    # one recording, two sources, two taxonomies
    assert labels[("tagtraum", "train")].loc["77a9cc42-cc81-49d8-893c-34b9a5b6559d", "genres"] == [
        "easylistening", "jazz", "jazz---bigband"]
    assert labels[("lastfm", "train")].loc["77a9cc42-cc81-49d8-893c-34b9a5b6559d", "genres"] == ["instrumental"]
    assert sum(len(table) for table in labels.values()) == len(derived) == 16


# --- synthetic copies --------------------------------------------------------------------------


def test_synthesize_writes_the_task_layout_marked_synthetic(synthetic):
    out, paths = synthetic
    documents, tables = paths[:120], paths[120:]
    assert len(paths) == 128 and documents == ab.list_files(out)
    assert set(tables) == set(ab.groundtruth_files(out).values())
    splits = {p.parent.parent.name for p in documents}
    assert splits == {"acousticbrainz-mediaeval-train", "acousticbrainz-mediaeval-validation"}
    for path in documents:
        doc = _json(path)
        assert path.parent.name == path.stem[:2]
        assert doc["metadata"]["tags"]["synthetic"] == ["1"]
        assert doc["metadata"]["tags"]["musicbrainz_recordingid"] == [path.stem]
        assert doc["rhythm"]["beats_count"] == len(doc["rhythm"]["beats_position"])
    assert len(ab.list_files(out, "validation")) + len(ab.list_files(out, "train")) == 120


def test_synthetic_documents_nest_like_real_ones(synthetic, real):
    real_doc = _json(real / TRAIN_01A0)
    complete = [d for d in map(_json, synthetic[1][:120]) if "median" in d["rhythm"]["beats_loudness"]
                and "chords_strength" in d["tonal"]]
    for section in ("lowlevel", "rhythm", "tonal", "metadata.audio_properties"):
        real_part, synthetic_part = real_doc, complete[0]
        for key in section.split("."):
            real_part, synthetic_part = real_part[key], synthetic_part[key]
        assert _nesting(synthetic_part) == _nesting(real_part), section


def test_synthetic_round_trip_json_to_table(synthetic):
    documents = synthetic[1][:120]
    table, failures = ab.read_table(documents, dtype=np.float64)
    assert failures == [] and len(table) == 120
    assert list(table["recordingmbid"]) == [p.stem for p in documents]
    for row, path in zip(table.itertuples(index=False), documents[:10]):
        doc, values = _json(path), dict(zip(table.columns, row))
        assert values["rhythm.bpm"] == doc["rhythm"]["bpm"]
        assert values["lowlevel.mfcc.icov.03.07"] == doc["lowlevel"]["mfcc"]["icov"][3][7]
        assert values["lowlevel.barkbands.dvar2.26"] == doc["lowlevel"]["barkbands"]["dvar2"][26]
        assert values["metadata.audio_properties.length"] == doc["metadata"]["audio_properties"]["length"]
        assert values[f"tonal.key_key={doc['tonal']['key_key']}"] == 1
        assert values[f"tonal.chords_scale={doc['tonal']['chords_scale']}"] == 1


def test_missing_descriptors_become_nan_not_zero(synthetic, tmp_path):
    documents = synthetic[1][:120]
    table, _ = ab.read_table(documents)
    lacking = np.array(["median" not in _json(p)["rhythm"]["beats_loudness"] for p in documents])
    assert 0 < lacking.sum() < len(documents)
    assert table["rhythm.beats_loudness.median"].isna().to_numpy().tolist() == lacking.tolist()

    doc = next(d for d in map(_json, documents) if set(ab.feature_layout(d)) == set(ab.LAYOUT))
    del doc["lowlevel"]["mfcc"]
    doc["tonal"].pop("key_key")
    doc["rhythm"]["bpm"] = None
    path = tmp_path / "acousticbrainz-mediaeval-train/aa/aaaaaaaa-0000-4000-8000-000000000000.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    row = ab.read_table([path])[0].iloc[0]
    missing = [c for c in ab.LAYOUT if c.startswith(("lowlevel.mfcc.", "tonal.key_key="))] + ["rhythm.bpm"]
    assert len(missing) == 351 + 12 + 1
    assert row[missing].isna().all()
    assert row.drop(["recordingmbid", *missing]).notna().all()


def test_malformed_documents_are_failures_naming_the_file(synthetic, tmp_path):
    good = synthetic[1][0]
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(good.read_bytes()[:5000])
    not_json = tmp_path / "binary.json"
    not_json.write_bytes(b"\xff\xfe\x00garbage")
    wrong_type = tmp_path / "string_bpm.json"
    doc = _json(good)
    doc["rhythm"]["bpm"] = "fast"
    wrong_type.write_text(json.dumps(doc))
    bad_key = tmp_path / "bad_key.json"
    doc = _json(good)
    doc["tonal"]["key_key"] = "H"
    bad_key.write_text(json.dumps(doc))
    missing = tmp_path / "absent.json"

    bad = [truncated, not_json, wrong_type, bad_key, missing]
    table, failures = ab.read_table([good, *bad])
    assert len(table) == 1
    assert [f.path for f in failures] == [str(p) for p in bad]
    assert "rhythm.bpm" in failures[2].reason and "'H'" in failures[3].reason
    with pytest.raises(DataError) as err:
        ab.read_file(truncated)
    assert err.value.path == str(truncated)


def test_flat_key_names_are_spelled_as_sharps(synthetic):
    doc = _json(synthetic[1][0])
    doc["tonal"]["key_key"] = "Bb"
    flat = ab.flatten_lowlevel(doc)
    assert flat["tonal.key_key=A#"] == 1 and sum(flat[f"tonal.key_key={k}"] for k in ab.KEYS) == 1


def test_iter_tables_streams_batches(synthetic):
    documents = synthetic[1][:10]
    batches = list(ab.iter_tables(iter(documents), batch_size=4))
    assert [len(table) for table, _ in batches] == [4, 4, 2]
    whole, _ = ab.read_table(documents)
    pd.testing.assert_frame_equal(pd.concat([t for t, _ in batches], ignore_index=True), whole)
    with pytest.raises(ConfigError):
        next(ab.iter_tables(documents, batch_size=0))


def test_synthetic_groundtruth_has_four_overlapping_taxonomies(synthetic):
    out, paths = synthetic
    split_of = {p.stem: p.parent.parent.name.rsplit("-", 1)[1] for p in paths[:120]}
    vocabulary: dict[str, set[str]] = {}
    sources_of: dict[str, set[str]] = {}
    releases: dict[str, set[str]] = {}
    multi_genre = 0
    for (source, split), path in ab.groundtruth_files(out).items():
        header = path.read_text().splitlines()[0].split("\t")
        table = ab.read_groundtruth(path)
        assert header[:3] == ["recordingmbid", "releasegroupmbid", "genre1"]
        assert len(header) - 2 == table["genres"].map(len).max()
        for row in table.itertuples():
            assert split_of[row.recordingmbid] == split
            vocabulary.setdefault(source, set()).update(row.genres)
            sources_of.setdefault(row.recordingmbid, set()).add(source)
            releases.setdefault(row.releasegroupmbid, set()).add(row.recordingmbid)
            multi_genre += sum("---" not in g for g in row.genres) > 1
    genres = {s: {g for g in v if "---" not in g} for s, v in vocabulary.items()}
    assert genres["allmusic"] & genres["discogs"] & genres["lastfm"] & genres["tagtraum"]  # shared names
    assert genres["allmusic"] != genres["discogs"] != genres["lastfm"] != genres["tagtraum"]
    assert all(any("---" in g for g in v) for v in vocabulary.values())  # subgenres everywhere
    assert max(map(len, sources_of.values())) >= 3
    assert max(map(len, releases.values())) >= 3
    assert multi_genre > 0


def test_synthetic_genres_are_learnable_from_the_features(synthetic):
    out, paths = synthetic
    table, _ = ab.read_table(paths[:120], dtype=np.float64)
    frames = [ab.read_groundtruth(ab.groundtruth_files(out)[("discogs", split)]) for split in ab.SPLITS]
    labels = pd.concat(frames).assign(genre=lambda t: t["genres"].map(lambda g: g[0]))
    data = labels.merge(table, on="recordingmbid")
    x = data[list(ab.LAYOUT)].to_numpy()
    x = np.nan_to_num((x - np.nanmean(x, 0)) / (np.nanstd(x, 0) + 1e-12))
    genres = data["genre"].to_numpy()
    train = np.arange(len(data)) % 3 != 0
    classes = np.unique(genres[train])
    centroids = np.stack([x[train & (genres == c)].mean(0) for c in classes])  # nearest-centroid classifier
    predicted = classes[np.argmin(((x[~train, None, :] - centroids) ** 2).sum(-1), axis=1)]
    chance = data["genre"].value_counts(normalize=True).max()
    assert (predicted == genres[~train]).mean() > chance + 0.3


def test_synthesize_is_deterministic(tmp_path):
    first = ab.synthesize(tmp_path / "a", 6, seed=7)
    again = ab.synthesize(tmp_path / "b", 6, seed=7)
    other = ab.synthesize(tmp_path / "c", 6, seed=8)
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in again]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again))
    assert [p.name for p in first[:6]] != [p.name for p in other[:6]]


def test_read_groundtruth_ragged_rows_and_errors(tmp_path):
    path = tmp_path / "gt.tsv"
    path.write_text("recordingmbid\treleasegroupmbid\tgenre1\tgenre2\r\n"
                    "r1\tg1\trock\trock---alternative rock\r\n"
                    "r2\tg1\tjazz\r\n"
                    "\r\n"
                    "r3\tg2\tpop\t\r\n"
                    "r4\tg3\r\n")
    table = ab.read_groundtruth(path)
    assert table["genres"].tolist() == [["rock", "rock---alternative rock"], ["jazz"], ["pop"], []]
    assert table["releasegroupmbid"].tolist() == ["g1", "g1", "g2", "g3"]

    bad_header = tmp_path / "header.tsv"
    bad_header.write_text("mbid\tgroup\tgenre1\nr1\tg1\trock\n")
    short_row = tmp_path / "short.tsv"
    short_row.write_text("recordingmbid\treleasegroupmbid\tgenre1\nr1\tg1\trock\nr2\n")
    corrupt = tmp_path / "corrupt.tsv.bz2"
    corrupt.write_bytes(b"not bzip2 at all")
    for bad, words in ((bad_header, "header"), (short_row, "line 3"), (corrupt, "cannot read")):
        with pytest.raises(DataError, match=words) as err:
            ab.read_groundtruth(bad)
        assert err.value.path == str(bad)


def test_names_and_index():
    assert ab.groundtruth_name("lastfm", "validation") == "acousticbrainz-mediaeval-lastfm-validation.tsv"
    with pytest.raises(ConfigError):
        ab.groundtruth_name("spotify", "train")
    with pytest.raises(ConfigError):
        ab.list_files(".", "test")
    names = [f.name for f in ab.INDEX]
    assert len(names) == len(set(names)) == 16
    for remote in ab.INDEX:
        assert remote.checksum == ab.UNKNOWN_CHECKSUM or len(remote.checksum) == len("md5:") + 32
        assert remote.extract == remote.name.endswith(".tar.bz2")
    assert not any("allmusic" in name for name in names)  # behind a data usage agreement
