"""AcousticBrainz genre stages without Prefect: ETL shards (synthetic and real files),
layout report, targets, the shared release-group split, train-only preprocessing and its
audit, subtask-1 row selection, parameter formulas, cross-fitted stacking, evaluation."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import acousticbrainz as ab
from mirflow.models import MLP, count_parameters
from mirflow.pipelines.acousticbrainz_genre import evaluate, networks, preprocessing, stacking, subtask1
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.pipelines.acousticbrainz_genre.report import report_tables
from mirflow.pipelines.acousticbrainz_genre.split import release_group_components, write_recording_split
from mirflow.pipelines.acousticbrainz_genre.targets import TAXONOMIES, read_labels, read_targets, write_targets
from mirflow.stages import metrics, scaling, splits
from mirflow.stages.featuresets import TABLE, FeatureSet
from mirflow.stages.shards import plan_shards
from mirflow.stages.splits import SPLIT, read_split

CONFIG = dict(hidden=16, dropout=0.5, lr=3e-3, weight_decay=0.0, batch_size=32, max_epochs=2, patience=1, seed=0)
SOURCES = ("discogs", "lastfm")


def stage(store: ArtifactStore, name: str, func, *args) -> ArtifactRef:
    ref = ArtifactRef(name, uuid.uuid4().hex)
    with store.writing(ref) as writer:
        writer.write_json("summary.json", func(writer, *args))
    return ref


def etl(store: ArtifactStore, data_dir: Path, shard_size: int = 10_000) -> FeatureSet:
    shards = plan_shards(ab_etl.feature_files(data_dir), shard_size)
    return FeatureSet(store, tuple(stage(store, "extract", ab_etl.write_ab_shard, list(s.files)) for s in shards))


def groundtruth(data_dir: Path, sources=ab.SOURCES) -> dict[str, dict[str, str]]:
    found = ab_etl.groundtruth_inputs(data_dir)
    return {s: {split: f["path"] for split, f in found[s].items()} for s in sources}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ab_data")
    ab.synthesize(out, 120, seed=5)
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data_dir) -> dict:
    store = ArtifactStore(str(tmp_path_factory.mktemp("ab_store")))
    features = etl(store, data_dir, shard_size=60)
    targets = stage(store, "targets", write_targets, groundtruth(data_dir, SOURCES))
    split = stage(store, "split", write_recording_split, features, targets, 0.2, 0.2, 2, 0)
    prep = stage(store, "scale", preprocessing.write_preprocessing, features, split)
    return {"store": store, "features": features, "targets": targets, "split": split, "prep": prep}


# -- ETL ------------------------------------------------------------------------------------
def test_etl_shard_streams_batches_keeping_rows_aligned_with_files(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(ab_etl, "READ_BATCH", 4)
    files = ab_etl.feature_files(data_dir).iloc[:10].to_dict("records")
    for position, name in ((2, "truncated"), (5, "not_json")):  # failures inside the first two batches
        bad = tmp_path / f"{name}.json"
        bad.write_bytes(Path(files[0]["path"]).read_bytes()[:500] if name == "truncated" else b"\xff\x00")
        files.insert(position, {"path": str(bad), "rel_path": bad.name, "fingerprint": "x", "official_split": "train"})
    store = ArtifactStore(str(tmp_path / "store"))
    ref = stage(store, "extract", ab_etl.write_ab_shard, files)

    table = store.read_parquet(ref, TABLE).to_pandas()
    good = [f for f in files if f["rel_path"] not in ("truncated.json", "not_json.json")]
    assert table["row_id"].tolist() == [f["rel_path"] for f in good]
    assert list(table.columns) == [*ab_etl.ID_COLUMNS, *ab.LAYOUT]
    expected, _ = ab.read_table([f["path"] for f in good])
    np.testing.assert_array_equal(table[list(ab.LAYOUT)].to_numpy(), expected[list(ab.LAYOUT)].to_numpy())
    assert table["recordingmbid"].tolist() == expected["recordingmbid"].tolist()
    assert [f["path"] for f in store.read_json(ref, "failures.json")] == ["truncated.json", "not_json.json"]
    assert pq.ParquetFile(io.BytesIO(store.read_bytes(ref, TABLE))).num_row_groups == 3  # 12 files, batches of 4
    stats = store.read_json(ref, ab_etl.COLUMN_STATS)
    median = ab.LAYOUT.index("rhythm.beats_loudness.median")
    assert stats["rows"] - stats["count"][median] == int(table["rhythm.beats_loudness.median"].isna().sum())


def test_etl_stage_on_the_real_files_produces_rows(realdata, tmp_path):
    real = realdata / "acousticbrainz"
    paths = sorted(real.rglob("*.json"))
    files = [{"path": str(p), "rel_path": p.relative_to(real).as_posix(), "fingerprint": "x", "official_split": "train"}
             for p in paths]
    store = ArtifactStore(str(tmp_path / "store"))
    features = FeatureSet(store, (stage(store, "extract", ab_etl.write_ab_shard, files),))
    table = features.read([*ab_etl.ID_COLUMNS, "rhythm.bpm", "tonal.key_key=D"]).set_index("row_id")
    assert len(table) == 31 and len(paths) == 32  # 31 Essentia documents + the mirdata index file
    assert [f["path"] for f in features.failures()] == ["mediaeval/acousticbrainz_genre_index_sample.json"]
    row = table.loc["mediaeval/acousticbrainz-mediaeval-train/01/01a0a332-d340-4806-a88b-cb60a05355c0.json"]
    assert row["recordingmbid"] == "01a0a332-d340-4806-a88b-cb60a05355c0"
    assert row["rhythm.bpm"] == pytest.approx(116.889778137) and row["tonal.key_key=D"] == 1
    layout = ab_etl.layout_report(features)
    assert layout["rows"] == 31 and layout["columns_with_missing"] == {}


def test_layout_report_names_constant_and_missing_columns(tmp_path, data_dir):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    for path in ab.list_files(copy):
        doc = json.loads(path.read_text())
        doc["rhythm"]["danceability"] = 1.25
        path.write_text(json.dumps(doc))
    features = etl(ArtifactStore(str(tmp_path / "store")), copy, shard_size=40)
    assert len(features.shards) > 1
    layout = ab_etl.layout_report(features)
    assert layout["width"] == len(ab.LAYOUT) == 2676 and layout["rows"] == 120
    assert "rhythm.danceability" in layout["constant_columns"]
    assert "rhythm.bpm" not in layout["constant_columns"]
    table = features.read(["rhythm.beats_loudness.median", "tonal.chords_strength.mean"])
    assert layout["columns_with_missing"]["rhythm.beats_loudness.median"] == table.iloc[:, 0].isna().sum() > 0
    assert layout["columns_with_missing"]["tonal.chords_strength.mean"] == table.iloc[:, 1].isna().sum() > 0


# -- targets and split ----------------------------------------------------------------------------
def test_targets_keep_each_sources_taxonomy(prepared):
    store, targets = prepared["store"], prepared["targets"]
    taxonomies = store.read_json(targets, TAXONOMIES)
    assert set(taxonomies) == set(SOURCES)
    assert "hiphop---rap" in taxonomies["lastfm"] and "hip hop" in taxonomies["discogs"]
    table = read_targets(store, targets)
    assert table.groupby("recordingmbid")["source"].nunique().max() == 2  # recordings in both sources
    labels = read_labels(store, targets, "lastfm")
    row = table[table["source"] == "lastfm"].iloc[0]
    expected = [name in set(row["genres"]) for name in labels.names]
    assert labels.rows([row["recordingmbid"]])[0].astype(bool).tolist() == expected


def test_release_groups_linked_by_a_recording_are_one_group():
    targets = pd.DataFrame({
        "recordingmbid": ["r1", "r1", "r2", "r3", "r4"],
        "releasegroupmbid": ["gB", "gA", "gB", "gC", "gA"],
    })
    groups = release_group_components(targets)
    assert groups.to_dict() == {"r1": "gA", "r2": "gA", "r3": "gC", "r4": "gA"}


def test_one_split_for_all_sources_by_release_group(prepared, data_dir):
    store = prepared["store"]
    split = read_split(store, prepared["split"])
    official = split["row_id"].str.startswith(ab.feature_dir("validation"))
    assert (split.loc[official, "split"] == "test").all() and (split.loc[~official, "split"] != "test").all()
    assert (split.groupby("group")["split"].nunique() == 1).all()
    train = split[split["split"] == "train"]
    assert set(train["fold"]) == {0, 1} and (split.loc[split["split"] != "train", "fold"] == -1).all()
    assert (train.groupby("group")["fold"].nunique() == 1).all()
    rest = split[split["split"] != "test"]
    assert 0.1 < (rest["split"] == "validation").mean() < 0.3
    assert split["row_id"].is_unique


def test_official_training_recordings_sharing_a_group_with_test_are_dropped(tmp_path, data_dir):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    train_tsv, validation_tsv = (copy / ab.groundtruth_name("discogs", split) for split in ab.SPLITS)
    test_group = ab.read_groundtruth(validation_tsv)["releasegroupmbid"].iloc[0]
    lines = train_tsv.read_text().splitlines()
    first = lines[1].split("\t")
    lines[1] = "\t".join([first[0], test_group, *first[2:]])
    train_tsv.write_text("\n".join(lines) + "\n")
    store = ArtifactStore(str(tmp_path / "store"))
    features = etl(store, copy)
    targets = stage(store, "targets", write_targets, groundtruth(copy))
    ref = stage(store, "split", write_recording_split, features, targets, 0.2, 0.2, 2, 0)
    split = read_split(store, ref)
    assert first[0] not in set(split["recordingmbid"])
    assert store.read_json(ref, "summary.json")["dropped_for_test_group_overlap"] >= 1
    assert (split.groupby("group")["split"].nunique() == 1).all()


def test_a_source_without_validation_recordings_fails_at_the_split(prepared, monkeypatch):
    """Its networks would have nothing to stop early on, and never stop on training rows instead."""
    real = splits.split_train_val_test

    def no_lastfm_validation(labels, groups, *, fractions, seed):
        assigned = real(labels, groups, fractions=fractions, seed=seed).astype(str)
        lastfm = labels.map(lambda keys: any(key.startswith("lastfm:") for key in keys))
        return assigned.where(~(lastfm & (assigned == "validation")), "train")

    monkeypatch.setattr(splits, "split_train_val_test", no_lastfm_validation)
    p = prepared
    with pytest.raises(ConfigError, match="validation_fraction=0.2 leaves no lastfm recording in the validation split"):
        stage(p["store"], "split", write_recording_split, p["features"], p["targets"], 0.2, 0.2, 2, 0)


# -- preprocessing and audit ----------------------------------------------------------------------------
def test_missing_values_are_filled_with_the_training_mean_then_scaled(prepared):
    store, features = prepared["store"], prepared["features"]
    split = read_split(store, prepared["split"]).set_index("row_id")
    prep = preprocessing.read_preprocessing(store, prepared["prep"])
    column = "rhythm.beats_loudness.median"
    values = features.read(["row_id", column]).set_index("row_id")[column].reindex(split.index).astype(float)
    train = split["split"] == "train"
    j = ab.LAYOUT.index(column)
    assert prep.fill[j] == pytest.approx(values[train].mean())
    assert prep.fill[j] != pytest.approx(values.mean())  # never the whole data's mean
    assert prep.scaler.n_rows == int(train.sum())
    rows = features.read(["row_id", *ab.LAYOUT]).set_index("row_id").reindex(split.index)
    scaled = prep.transform(rows)
    assert scaled.dtype == np.float32 and np.isfinite(scaled).all()
    assert np.allclose(scaled[values.isna().to_numpy(), j], 0.0, atol=1e-5)  # the fill is the training mean
    assert np.allclose(scaled[train.to_numpy()].mean(axis=0), 0.0, atol=1e-4)
    assert preprocessing.audit_leakage(features, prepared["split"], prepared["prep"])["scaler_rows"] == int(train.sum())


def test_audit_catches_a_scaler_fitted_on_all_rows_and_a_group_in_two_splits(prepared, tmp_path):
    store, features = prepared["store"], prepared["features"]
    split = read_split(store, prepared["split"])
    leaky = preprocessing.fit_preprocessing(features, pd.Series("train", index=pd.Index(split["row_id"])))
    leaky_ref = ArtifactRef("scale", uuid.uuid4().hex)
    with store.writing(leaky_ref) as writer:
        writer.write_json(preprocessing.PREPROCESSING, leaky.to_dict())
    with pytest.raises(LeakageError, match="fitted on all rows"):
        preprocessing.audit_leakage(features, prepared["split"], leaky_ref)

    group = split.loc[split["split"] == "train", "group"].value_counts().index[0]  # a group with >1 recordings
    moved = split.copy()
    moved.loc[moved.index[moved["group"] == group][0], "split"] = "validation"
    moved_ref = ArtifactRef("split", uuid.uuid4().hex)
    with store.writing(moved_ref) as writer:
        writer.write_parquet(SPLIT, pa.Table.from_pandas(moved, preserve_index=False))
    with pytest.raises(LeakageError, match="more than one split"):
        preprocessing.audit_leakage(features, moved_ref, prepared["prep"])


# -- subtask 1 and stacking ----------------------------------------------------------------------------
def test_subtask1_rows_hold_out_their_fold_and_stop_early_on_validation():
    split = pd.DataFrame({
        "row_id": list("abcdefg"),
        "split": ["train", "train", "train", "train", "validation", "test", "validation"],
        "fold": [0, 1, 0, 1, -1, -1, -1],
    })
    labelled = pd.Series([True, True, False, True, True, True, False])
    assert subtask1.subtask1_rows(split, labelled, "0") == (["b", "d"], ["e"], ["a", "c", "e", "f", "g"])
    assert subtask1.subtask1_rows(split, labelled, "1") == (["a"], ["e"], ["b", "d", "e", "f", "g"])
    assert subtask1.subtask1_rows(split, labelled, "all") == (["a", "b", "d"], ["e"], list("abcdefg"))


def test_parameter_counts_follow_the_reports_formula():
    for n_in, genres in ((2669, 766), (len(ab.LAYOUT), 315), (1024, 21)):
        model = MLP(n_in, genres, hidden=(256,), dropout=0.5)
        assert count_parameters(model) == networks.expected_parameters(n_in, 256, genres)
    assert networks.expected_parameters(2669, 256, 766) == 2669 * 256 + 256 + 256 * 766 + 766


@pytest.fixture(scope="module")
def members(prepared) -> dict[str, dict[str, ArtifactRef]]:
    p = prepared
    return {
        source: {
            fold: stage(p["store"], "train", subtask1.write_subtask1_model, p["features"], p["split"], p["targets"],
                        p["prep"], source, fold, CONFIG)
            for fold in ("all", "0", "1")
        }
        for source in SOURCES
    }


def test_fold_networks_never_fit_or_embed_other_training_folds(prepared, members):
    store = prepared["store"]
    split = read_split(store, prepared["split"])
    for source, by_fold in members.items():
        labelled = split["recordingmbid"].isin(read_labels(store, prepared["targets"], source).index)
        for fold, ref in by_fold.items():
            summary = store.read_json(ref, "summary.json")
            fitted, _, embedded = subtask1.subtask1_rows(split, labelled, fold)
            assert summary["train_rows_sha256"] == scaling.fingerprint_rows(fitted)
            assert summary["parameters"] == networks.expected_parameters(len(ab.LAYOUT), 16, len(summary["labels"]))
            outputs = store.read_parquet(ref, networks.OUTPUTS, columns=["row_id"]).to_pandas()["row_id"]
            assert set(outputs) == set(embedded)
            if fold != "all":
                in_fold = split.loc[(split["split"] == "train") & (split["fold"] == int(fold)), "row_id"]
                assert not set(in_fold) & set(fitted)
                assert set(split.loc[split["row_id"].isin(outputs) & (split["split"] == "train"), "row_id"]) == set(in_fold)


def test_stacking_modes_and_the_evaluation(prepared, members):
    p, store = prepared, prepared["store"]
    stacked = {mode: stage(store, "stack", stacking.write_stacked_model, store, p["split"], p["targets"], "lastfm", members,
                           mode, CONFIG) for mode in stacking.MODES}
    summaries = {mode: store.read_json(ref, "summary.json") for mode, ref in stacked.items()}
    assert {mode: s["views"] for mode, s in summaries.items()} == {"crossfit": 2, "crossfit_scores": 2, "insample": 1}
    assert summaries["crossfit"]["architecture"]["n_in"] == 2 * CONFIG["hidden"]  # two member sources side by side
    widths = [len(store.read_json(members[s]["all"], "summary.json")["labels"]) for s in SOURCES]
    assert summaries["crossfit_scores"]["architecture"]["n_in"] == sum(widths)  # every member source's genre scores
    evaluated = stage(store, "evaluate", evaluate.write_source_evaluation, store, p["split"], p["targets"], "lastfm",
                      members["lastfm"], stacked, 0)
    evaluation = store.read_json(evaluated, evaluate.METRICS)
    systems = evaluation["systems"]
    assert set(systems) == {"subtask1", "subtask2-crossfit", "subtask2-crossfit_scores", "subtask2-insample", "random"}
    for system in systems:
        for split_name in ("train", "validation", "test"):
            report = systems[system][split_name]
            assert 0 <= report["roc_auc_macro"] <= 1 and 0 <= report["per_track"]["f_score"] <= 1
    # The threshold is the one chosen on training out-of-fold scores of the fold networks.
    split = read_split(store, p["split"])
    labels = read_labels(store, p["targets"], "lastfm")
    train = split[(split["split"] == "train") & split["recordingmbid"].isin(labels.index)]
    scores = np.vstack([networks.read_outputs(store, members["lastfm"][str(k)], "scores", train.loc[train["fold"] == k, "row_id"])
                        for k in (0, 1)])
    truth = np.vstack([labels.rows(train.loc[train["fold"] == k, "recordingmbid"]) for k in (0, 1)])
    assert systems["subtask1"]["test"]["threshold"] == pytest.approx(metrics.choose_threshold(truth, scores))
    expected = metrics.multilabel_report(truth, scores, labels.names, systems["subtask1"]["test"]["threshold"])
    assert systems["subtask1"]["train"]["roc_auc_macro"] == pytest.approx(expected["roc_auc_macro"])
    assert systems["subtask1"]["train"]["per_track"] == pytest.approx(expected["per_track"])  # train figures are out of fold
    assert systems["subtask2-insample"] != systems["subtask2-crossfit"]
    assert set(evaluate.run_metrics(evaluation)) == {f"{system}-lastfm" for system in systems}
    tables = report_tables({"lastfm": evaluation})
    rows = [line.split(" | ")[0] for line in tables[0].splitlines()[-5:]]
    assert rows == ["| Subtask 1", "| Subtask 2 (stacked on out-of-fold activations)", "| Subtask 2 (stacked on out-of-fold scores)",
                    "| Subtask 2 (stacked on in-sample activations, leaky)", "| Random baseline"]
    assert "| Subtask 2 (Oramas et al. 2018) | 0.8122 | 0.8863 | 0.9064 | 0.8874 |" in tables[1]
    assert "| lastfm | Subtask 1 |" in tables[2] and "0.5600" in tables[2]


def test_stacking_refuses_members_in_the_wrong_slot(prepared, members):
    swapped = {s: dict(v) for s, v in members.items()}
    swapped["discogs"]["0"], swapped["discogs"]["1"] = members["discogs"]["1"], members["discogs"]["0"]
    p = prepared
    with pytest.raises(LeakageError, match="discogs/0 is the network of discogs/1"):
        stage(p["store"], "stack", stacking.write_stacked_model, p["store"], p["split"], p["targets"], "lastfm", swapped,
              "crossfit", CONFIG)
