"""Stage functions on a small feature set in a real store: predefined split files,
k folds, train-only scaling and the leakage audit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.fingerprint import stable_hash
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.stages import classification as steps
from mirflow.stages.featuresets import FAILURES, TABLE, FeatureSet
from mirflow.stages.splits import SPLIT, read_split, write_split


@pytest.fixture
def features(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    rng = np.random.default_rng(0)
    genres = ["blues", "jazz", "rock"]
    clips = [f"{g}.{i:05d}" for g in genres for i in range(10)]
    frame = pd.DataFrame({"row_id": clips, "clip_id": clips, "label": [c.split(".")[0] for c in clips], "group": clips,
                          "f1": rng.normal(size=30), "f2": rng.normal(5, 2, size=30)})
    # Spectrograms of 4 bands and varying length, with the per-row summaries extraction stores.
    spectrograms = [rng.normal(band, 1 + band, size=(4, 5 + i % 4)).astype(np.float32) * (i + 1) for i, band in
                    enumerate(np.arange(30) % 4)]
    frames, band_sum, band_sum_sq = steps.spectrogram_summary_columns("logmel")
    frame["logmel"] = [s.ravel() for s in spectrograms]
    frame[frames] = [s.shape[1] for s in spectrograms]
    frame[band_sum], frame[band_sum_sq] = zip(*(steps.band_sums(s) for s in spectrograms))
    shards = []
    for index, part in enumerate(frame.iloc[i::3] for i in range(3)):
        ref = ArtifactRef("extract", f"{index:02d}" * 32)
        with store.writing(ref) as writer:
            writer.write_parquet(TABLE, pa.Table.from_pandas(part, preserve_index=False))
            writer.write_json(FAILURES, [])
        shards.append(ref)
    return FeatureSet(store, tuple(shards))


def _materialise(store, stage, func, *args):
    ref = ArtifactRef(stage, stage[0] * 64)
    with store.writing(ref) as writer:
        func(writer, *args)
    return ref


def test_predefined_split_file_and_k_folds(features, tmp_path):
    listing = pd.DataFrame({"id": [f"{g}.{i:05d}" for g in ("blues", "jazz", "rock") for i in range(9)]})
    listing["split"] = ["train"] * 15 + ["validation"] * 6 + ["test"] * 6
    listing.to_csv(tmp_path / "split.csv", index=False)
    ref = _materialise(features.store, "split", write_split, features, (0.7, 0.15, 0.15), 0, str(tmp_path / "split.csv"), 3)
    split = read_split(features.store, ref).set_index("row_id")
    assert len(split) == 27  # clips the file leaves out are left out
    assert split.loc["blues.00000", "split"] == "train" and split.loc["rock.00008", "split"] == "test"
    folds = split.loc[split["split"] == "train", "fold"]
    assert set(folds) == {0, 1, 2} and (split.loc[split["split"] != "train", "fold"] == -1).all()


def test_listed_split_puts_clips_where_listed_and_counts_the_excluded(features):
    listed = {"blues.00000": "train", "jazz.00001": "validation", "rock.00002": "test", "rock.00003": "valid",
              "pop.00000": "test"}  # a listed clip the data lacks is no error: the filtered lists cover all of GTZAN
    ref = ArtifactRef("split", "s" * 64)
    with features.store.writing(ref) as writer:
        summary = write_split(writer, features, (0.7, 0.15, 0.15), 0, None, None, True, listed)
    split = read_split(features.store, ref).set_index("row_id")["split"]
    assert split.to_dict() == {"blues.00000": "train", "jazz.00001": "validation", "rock.00002": "test",
                               "rock.00003": "validation"}
    assert summary["excluded"] == 26 and summary["rows"] == {"train": 1, "validation": 2, "test": 1}


def test_an_empty_validation_split_fails_never_falling_back_to_training_rows(features, tmp_path):
    store = features.store
    listing = pd.DataFrame({"id": ["blues.00000", "jazz.00000", "rock.00000", "rock.00001"],
                            "split": ["train", "train", "train", "test"]})
    listing.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(ConfigError, match=r"split_file .*split\.csv leaves no validation rows"):
        write_split(None, features, (0.7, 0.15, 0.15), 0, str(tmp_path / "split.csv"), None)  # fails before writing

    split_ref = _materialise(store, "split", write_split, features, (0.6, 0.2, 0.2), 1, None, None)
    no_validation = read_split(store, split_ref).replace({"split": {"validation": "test"}})
    split_ref = _materialise(store, "x", lambda w: w.write_parquet(SPLIT, pa.Table.from_pandas(no_validation)))
    scaler_ref = _materialise(store, "scale", steps.write_scaler, features, split_ref, ("f1", "f2"), "standard", None, 8)
    spec = steps.InputSpec("mlp", ("f1", "f2"), "logmel", 4, 8)
    config = dict(lr=1e-3, weight_decay=0.0, batch_size=8, max_epochs=1, patience=1, seed=0)
    with pytest.raises(ConfigError, match="leaves no validation rows"):
        _materialise(store, "train", steps.write_trained_model, features, split_ref, scaler_ref, spec, [4], config)


def test_scaler_fits_train_rows_only_and_audit_catches_tampering(features):
    store = features.store
    split_ref = _materialise(store, "split", write_split, features, (0.6, 0.2, 0.2), 1, None, None)
    scaler_ref = _materialise(store, "scale", steps.write_scaler, features, split_ref, ("f1", "f2"), "standard", None, 8)
    split = read_split(store, split_ref)
    train_ids = split.loc[split["split"] == "train", "row_id"]
    table = features.read(["row_id", "f2"]).set_index("row_id")
    scaler = steps.read_preprocessing(store, scaler_ref).scaler
    assert scaler.center[1] == pytest.approx(table.loc[train_ids, "f2"].mean())
    assert steps.audit_leakage(features, split_ref, scaler_ref, ("f1", "f2"))["scaler_rows"] == len(train_ids)

    leaky = _materialise(store, "scale2", steps.write_scaler, features, _materialise(
        store, "all", lambda w: w.write_parquet(SPLIT, pa.Table.from_pandas(split.assign(split="train")))),
        ("f1", "f2"), "standard", None, 8)
    with pytest.raises(LeakageError, match="fitted on 30 rows"):
        steps.audit_leakage(features, split_ref, leaky, ("f1", "f2"))


def test_band_statistics_from_per_row_sums_equal_those_of_the_training_frames(features):
    store = features.store
    split_ref = _materialise(store, "split", write_split, features, (0.6, 0.2, 0.2), 1, None, None)
    scaler_ref = _materialise(store, "scale", steps.write_scaler, features, split_ref, ("f1", "f2"), "standard",
                              "logmel", 4)
    split = read_split(store, split_ref)
    train = features.read(["row_id", "logmel"]).set_index("row_id").loc[split.loc[split["split"] == "train", "row_id"]]
    frames = np.concatenate([np.asarray(v, np.float64).reshape(4, -1) for v in train["logmel"]], axis=1)
    prep = steps.read_preprocessing(store, scaler_ref)
    np.testing.assert_allclose(prep.band_mean, frames.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(prep.band_std, frames.std(axis=1), rtol=1e-5)


def test_shuffled_batches_cover_the_rows_once_and_the_window_holds_model_inputs(features):
    """Each epoch: every wanted row once, in whole batches but the last, an order that
    depends only on (seed, epoch); to_xy sees rows as they are read, never a window."""
    from mirflow.stages.featuresets import FeatureBatchSource

    wanted = [f"{g}.{i:05d}" for g in ("blues", "jazz", "rock") for i in range(8)]  # 24 of the 30 rows
    seen_rows = []

    def to_xy(frame: pd.DataFrame):
        seen_rows.append(len(frame))
        return frame[["f1"]].to_numpy(), frame["row_id"].to_numpy()

    source = FeatureBatchSource(features, ["f1"], wanted, to_xy, batch_size=5, shuffle=True, seed=3)
    source.SHUFFLE_WINDOW = 2  # a window of 10 rows: several per epoch

    def epoch(number: int) -> list[list[str]]:
        source.set_epoch(number)
        return [list(ids) for _, ids in source]

    first = epoch(1)
    assert sorted(row for batch in first for row in batch) == sorted(wanted)
    assert [len(batch) for batch in first] == [5, 5, 5, 5, 4]
    assert max(seen_rows) <= 5  # read (and transformed) a batch at a time
    assert epoch(1) == first and epoch(2) != first


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_source_read_again_keeps_a_small_table_in_memory_and_streams_a_large_one(features, monkeypatch, shuffle):
    """Passes 1 and 2 read every shard from Parquet, later passes none while the rows fit
    ``KEEP_BYTES`` (every pass, when they do not); the batches are those of a fresh source."""
    from mirflow.stages.featuresets import FeatureBatchSource

    reads = []
    real_read = features.store.iter_parquet_batches
    monkeypatch.setattr(features.store, "iter_parquet_batches", lambda ref, *a, **k: (reads.append(ref), real_read(ref, *a, **k))[1])
    wanted = [f"{g}.{i:05d}" for g in ("blues", "jazz", "rock") for i in range(8)]

    def source(keep_bytes: int) -> FeatureBatchSource:
        made = FeatureBatchSource(features, ["f1", "logmel"], wanted, lambda f: (f[["f1"]].to_numpy(), f["row_id"].to_numpy()),
                                  batch_size=5, shuffle=shuffle, seed=3, read_rows=4)
        made.KEEP_BYTES = keep_bytes
        return made

    def epoch(made: FeatureBatchSource, number: int) -> list[list[str]]:
        made.set_epoch(number)
        return [list(ids) for _, ids in made]

    expected = [epoch(source(0), number) for number in range(4)]
    for keep_bytes, reads_per_shard in ((2**20, 2), (2000, 4)):  # ~3.3 kB with the arrays in the cells, 0.8 kB without
        reads.clear()
        kept = source(keep_bytes)
        assert [epoch(kept, number) for number in range(4)] == expected
        assert len(reads) == reads_per_shard * len(features.shards), keep_bytes


def test_trained_model_file_rebuilds_the_trained_network_after_a_default_changes(features, monkeypatch):
    """The train stage's file records every constructor argument, so editing a model
    default later (here the MLP's activation, which keeps the weights' shapes) cannot
    wrap the stored weights in a different network."""
    from mirflow.models.mlp import MLP
    from mirflow.stages import training

    store = features.store
    split_ref = _materialise(store, "split", write_split, features, (0.6, 0.2, 0.2), 1, None, None)
    scaler_ref = _materialise(store, "scale", steps.write_scaler, features, split_ref, ("f1", "f2"), "standard", None, 4)
    config = {"seed": 0, "batch_size": 8, "lr": 1e-2, "weight_decay": 0.0, "max_epochs": 2, "patience": 1, "hidden": [6]}
    spec = steps.InputSpec("mlp", ("f1", "f2"), "logmel", 4, 8)
    model_ref = _materialise(store, "train", steps.write_trained_model, features, split_ref, scaler_ref, spec, [6], config)
    data = store.read_bytes(model_ref, training.MODEL)
    trained, _ = training.load_model_bytes(data)
    hidden, dropout, _ = MLP.__init__.__defaults__
    monkeypatch.setattr(MLP.__init__, "__defaults__", (hidden, dropout, "tanh"))
    rebuilt, _ = training.load_model_bytes(data)
    assert rebuilt.spec == trained.spec and rebuilt.spec["activation"] == "relu"
    x = torch.linspace(-3, 3, 10).reshape(5, 2)
    torch.testing.assert_close(rebuilt(x), trained(x))


def test_cnn_trains_on_a_random_window_per_row_drawn_anew_each_epoch_from_the_seed(features):
    store = features.store
    split_ref = _materialise(store, "split", write_split, features, (0.6, 0.2, 0.2), 1, None, None)
    scaler_ref = _materialise(store, "scale", steps.write_scaler, features, split_ref, ("f1",), "standard", "logmel", 4)
    prep = steps.read_preprocessing(store, scaler_ref)
    spec = steps.InputSpec("cnn", (), "logmel", 4, 3)
    stored = features.read(["row_id", "label", "logmel"]).set_index("row_id")
    train_ids = stored.index[:12].tolist()

    def epoch(number: int, seed: int = 5) -> dict[str, np.ndarray]:
        source = steps._source(features, spec, prep, ["blues", "jazz", "rock"], train_ids, 4, True, seed)
        source.set_epoch(number)
        windows = [x[:, 0] for x, _ in source]
        return np.concatenate(windows)

    first = epoch(1)
    np.testing.assert_array_equal(epoch(1), first)
    assert not np.array_equal(epoch(2), first) and not np.array_equal(epoch(1, seed=6), first)
    # Every window is 3 consecutive band-normalised frames of one training row, and
    # across epochs a row's windows start at different frames.
    normalised = [(np.asarray(v, np.float32).reshape(4, -1) - prep.band_mean[:, None]) / prep.band_std[:, None]
                  for v in stored.loc[train_ids, "logmel"]]
    starts = set()
    for window in np.concatenate([epoch(e) for e in range(1, 6)]):
        found = [(r, s) for r, mel in enumerate(normalised) for s in range(mel.shape[1] - 2)
                 if np.allclose(mel[:, s : s + 3], window)]
        assert len(found) >= 1
        starts |= set(found)
    assert len(starts) > len(train_ids)


def _labelled_features(store: ArtifactStore, labels: list[str], signal: np.ndarray, name: str) -> FeatureSet:
    frame = pd.DataFrame(signal, columns=[f"f{i}" for i in range(signal.shape[1])])
    ids = [f"clip{i:04d}" for i in range(len(labels))]
    frame.insert(0, "row_id", ids)
    frame.insert(1, "clip_id", ids)
    frame.insert(2, "label", labels)
    frame.insert(3, "group", ids)
    ref = ArtifactRef("extract", stable_hash(name))
    with store.writing(ref) as writer:
        writer.write_parquet(TABLE, pa.Table.from_pandas(frame, preserve_index=False))
        writer.write_json(FAILURES, [])
    return FeatureSet(store, (ref,))


def _test_accuracy(features: FeatureSet, listed: dict[str, str]) -> float:
    """split -> scale -> train -> evaluate, the stage functions a run calls; test accuracy."""
    store, columns = features.store, tuple(c for c in features.schema().names if c.startswith("f"))
    spec = steps.InputSpec("mlp", columns, "logmel", 4, 16)
    config = {"lr": 3e-3, "weight_decay": 1e-4, "batch_size": 32, "max_epochs": 40, "patience": 8, "seed": 0}
    refs = {}
    for stage, func, args in (
        ("split", write_split, (features, (0.7, 0.15, 0.15), 0, None, None, True, listed)),
        ("scale", steps.write_scaler, (features, "split", columns, "standard", None, 4)),
        ("train", steps.write_trained_model, (features, "split", "scale", spec, [32], config)),
        ("evaluate", steps.write_evaluation, (features, "split", "scale", "train", spec, 256)),
    ):
        refs[stage] = ArtifactRef(stage, stable_hash([features.shards[0].key, stage]))
        with store.writing(refs[stage]) as writer:
            summary = func(writer, *[refs.get(a, a) if isinstance(a, str) and a in refs else a for a in args])
            writer.write_json("summary.json", summary)
    return store.read_json(refs["evaluate"], "metrics.json")["test"]["accuracy"]


def test_true_labels_are_learned_and_shuffled_training_labels_are_not(tmp_path):
    """A label-order bug between training and evaluation would score near chance with
    true labels too; shuffling the training rows' labels must take the model to chance."""
    store = ArtifactStore(str(tmp_path / "store"))
    rng = np.random.default_rng(0)
    classes = [f"genre{c}" for c in range(10)]  # chance: 0.1
    labels = [classes[i % 10] for i in range(400)]
    centres = rng.normal(0, 1, size=(10, 12))
    signal = centres[[i % 10 for i in range(400)]] + rng.normal(0, 0.8, size=(400, 12))
    listed = {f"clip{i:04d}": ("train" if i < 280 else "validation" if i < 340 else "test") for i in range(400)}
    shuffled = labels[:280]
    rng.shuffle(shuffled)
    true_accuracy = _test_accuracy(_labelled_features(store, labels, signal, "true"), listed)
    shuffled_accuracy = _test_accuracy(_labelled_features(store, shuffled + labels[280:], signal, "shuffled"), listed)
    assert true_accuracy >= 0.4, true_accuracy  # >= 4x chance
    assert shuffled_accuracy <= 0.2, shuffled_accuracy  # <= 2x chance
