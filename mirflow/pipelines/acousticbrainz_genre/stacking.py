"""AcousticBrainz genre across four taxonomies (report 003): targets, one release-group
split for all sources, subtask-1 networks with k-fold cross-fitting, stacked networks on
their hidden activations (subtask 2), and the MediaEval evaluation.

What keeps it leakage-free:

- one split of recordings shared by every source, by release group (groups linked
  through any source are merged), the official validation set as test;
- fill values and z-scaler fitted on the training split only (``ab_etl``);
- a stacked network trains on out-of-fold activations: a fold-k training row's input
  comes from the subtask-1 networks fitted without fold k. Validation and test rows go
  through every fold's networks and the stacked predictions are averaged, so they are
  scored from the same kind of input it was trained on. ``insample`` instead feeds the
  full networks' activations of their own training rows (the report's leaky variant);
- F-score thresholds are chosen on training out-of-fold predictions, never on test.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from mirflow.core import progress
from mirflow.core.errors import ConfigError, LeakageError, MirflowError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import acousticbrainz as ab
from mirflow.models import build_model, count_parameters
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.stages import leakage, metrics, scaling, splits, training
from mirflow.stages.featuresets import FeatureBatchSource, FeatureSet
from mirflow.stages.splits import SPLIT, read_split

TARGETS = "targets.parquet"
TAXONOMIES = "taxonomies.json"
PREPROCESSING = "preprocessing.json"
MODEL = training.MODEL
OUTPUTS = "outputs.parquet"  # row_id, hidden (subtask 1 only), scores: fixed-size float32 lists
METRICS = "metrics.json"
FULL = "all"  # the fold name of a network trained on every training row
MODES = ("crossfit", "insample")
SYSTEMS = ("subtask1", "subtask2", "random")
READ_ROWS = 1024  # feature-table rows read at a time: a Parquet read costs time per column (2,676 here)

# Published figures (macro ROC AUC; per-track F of the Oramas et al. baseline on the task's results page).
PAPER_AUC = {
    "subtask1": {"allmusic": 0.6476, "discogs": 0.7592, "lastfm": 0.8276, "tagtraum": 0.8017},
    "subtask2": {"allmusic": 0.8122, "discogs": 0.8863, "lastfm": 0.9064, "tagtraum": 0.8874},
}
REPORT_AUC = {"subtask1": {"lastfm": 0.85281, "tagtraum": 0.82729}}  # report 003, Table 1 (partial)
ORAMAS_F = {"allmusic": 0.588, "discogs": 0.685, "lastfm": 0.560, "tagtraum": 0.624}


# -- targets ---------------------------------------------------------------------------
def write_targets(writer: ArtifactWriter, groundtruth: dict[str, dict[str, str]]) -> dict:
    """The targets stage: every (source, recording) genre set from the ground-truth TSVs
    (``groundtruth[source][split]`` = path), and each source's taxonomy: the labels
    (genres and subgenres) of its official training rows."""
    frames = [
        ab.read_groundtruth(path).assign(source=source, official_split=split)
        for source, by_split in sorted(groundtruth.items())
        for split, path in sorted(by_split.items())
    ]
    table = pd.concat(frames, ignore_index=True)
    repeated = table.duplicated(["source", "recordingmbid"])
    table = table[~repeated]
    taxonomies = {}
    for source, part in table.groupby("source"):
        labelled = part[part["official_split"] == "train"] if (part["official_split"] == "train").any() else part
        taxonomies[source] = sorted({genre for genres in labelled["genres"] for genre in genres})
    columns = ["source", "recordingmbid", "releasegroupmbid", "official_split", "genres"]
    schema = pa.schema([pa.field(c, pa.string()) for c in columns[:-1]] + [pa.field("genres", pa.list_(pa.string()))])
    writer.write_parquet(TARGETS, pa.Table.from_pandas(table[columns], schema=schema, preserve_index=False))
    writer.write_json(TAXONOMIES, taxonomies)
    return {
        "recordings": {s: int(n) for s, n in table["source"].value_counts().sort_index().items()},
        "labels": {s: len(names) for s, names in taxonomies.items()},
        "repeated_rows_dropped": int(repeated.sum()),
    }


def read_targets(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    return store.read_parquet(ref, TARGETS).to_pandas()


@dataclass(frozen=True)
class Labels:
    """One source's genre sets as a recordings x labels 0/1 matrix, looked up by MBID."""

    source: str
    names: tuple[str, ...]
    index: pd.Index  # recordingmbid
    matrix: sp.csr_matrix

    def rows(self, mbids: Sequence[str]) -> np.ndarray:
        positions = self.index.get_indexer(list(mbids))
        if (positions < 0).any():
            raise ConfigError(f"{self.source}: no genres for recording {list(mbids)[int(np.argmin(positions))]!r}")
        return self.matrix[positions].toarray()


def read_labels(store: ArtifactStore, ref: ArtifactRef, source: str) -> Labels:
    targets = read_targets(store, ref)
    part = targets[targets["source"] == source]
    names = store.read_json(ref, TAXONOMIES).get(source)
    if names is None:
        raise ConfigError(f"source {source!r} has no ground truth; present: {sorted(store.read_json(ref, TAXONOMIES))}")
    column = {name: j for j, name in enumerate(names)}
    cells = [(i, column[g]) for i, genres in enumerate(part["genres"]) for g in set(genres) if g in column]
    rows, cols = (np.array(v, dtype=np.int64) for v in zip(*cells)) if cells else (np.zeros(0, int), np.zeros(0, int))
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(part), len(names)))
    return Labels(source, tuple(names), pd.Index(part["recordingmbid"]), matrix)


def release_group_components(targets: pd.DataFrame) -> pd.Series:
    """Group per recording: release groups linked by a recording (in any source) are one
    group, named by its smallest release-group MBID."""
    pairs = targets[["recordingmbid", "releasegroupmbid"]].drop_duplicates()
    recording, recordings = pd.factorize(pairs["recordingmbid"])
    release, releases = pd.factorize(pairs["releasegroupmbid"])
    n = len(recordings) + len(releases)
    links = sp.coo_matrix((np.ones(len(pairs)), (recording, len(recordings) + release)), shape=(n, n))
    _, component = connected_components(links, directed=False)
    name = pd.Series(np.asarray(releases)).groupby(component[len(recordings):]).min()
    return pd.Series(name.reindex(component[: len(recordings)]).to_numpy(), index=pd.Index(recordings), name="group")


def _strata(targets: pd.DataFrame) -> pd.Series:
    """``source:genre`` (top-level genres) per recording: what the split stratifies on."""
    exploded = targets[["recordingmbid", "source", "genres"]].explode("genres").dropna(subset=["genres"])
    top = exploded[~exploded["genres"].str.contains("---", regex=False)]
    keys = top["source"] + ":" + top["genres"]
    return keys.groupby(top["recordingmbid"]).agg(lambda v: sorted(set(v)))


# -- split -----------------------------------------------------------------------------
def write_recording_split(
    writer: ArtifactWriter,
    features: FeatureSet,
    targets_ref: ArtifactRef,
    validation_fraction: float,
    test_fraction: float,
    folds: int,
    seed: int,
) -> dict:
    """The split stage: one split of the recordings that have features and genres, for
    every source, by release group. Test = the official validation set when the data has
    one (official training recordings of a group with test recordings are dropped), else
    ``test_fraction``; validation = ``validation_fraction`` of the rest. Training rows
    also get ``folds`` group k-fold numbers (others -1), for cross-fitting."""
    targets = read_targets(features.store, targets_ref)
    rows = features.read(list(ab_etl.ID_COLUMNS))
    rows = rows[rows["recordingmbid"].isin(targets["recordingmbid"])].set_index("row_id", drop=False)
    rows["group"] = rows["recordingmbid"].map(release_group_components(targets))
    strata = _strata(targets)
    labels = pd.Series([strata.get(m, []) for m in rows["recordingmbid"]], index=rows.index, dtype=object)
    test = rows["official_split"] == "validation"
    dropped = 0
    if test.any():
        leaking = ~test & rows["group"].isin(set(rows.loc[test, "group"]))
        dropped = int(leaking.sum())
        rows, labels, test = rows[~leaking], labels[~leaking], test[~leaking]
        rest = ~test
        fractions = (1 - validation_fraction, validation_fraction, 0.0)
        assigned = splits.split_train_val_test(labels[rest], rows.loc[rest, "group"], fractions=fractions, seed=seed)
        rows["split"] = "test"
        rows.loc[rest, "split"] = assigned.astype(str).to_numpy()
    else:
        fractions = (1 - validation_fraction - test_fraction, validation_fraction, test_fraction)
        rows["split"] = splits.split_train_val_test(labels, rows["group"], fractions=fractions, seed=seed).astype(str).to_numpy()
    train = rows["split"] == "train"
    fold = splits.kfold_assignments(labels[train], rows.loc[train, "group"], k=folds, seed=seed)
    rows["fold"] = -1
    rows.loc[train, "fold"] = fold.to_numpy()
    table = rows[["row_id", "recordingmbid", "group", "split", "fold"]].reset_index(drop=True).astype({"fold": "int32"})
    writer.write_parquet(SPLIT, pa.Table.from_pandas(table, preserve_index=False))
    return {
        "rows": {name: int((table["split"] == name).sum()) for name in splits.SPLITS},
        "groups": int(table["group"].nunique()),
        "dropped_for_test_group_overlap": dropped,
        "test_is_official_validation": bool(test.any()),
    }


def _split_series(split: pd.DataFrame) -> pd.Series:
    return pd.Series(split["split"].to_numpy(), index=pd.Index(split["row_id"]), name="split")


# -- scale and audit ----------------------------------------------------------------------
def write_preprocessing(writer: ArtifactWriter, features: FeatureSet, split_ref: ArtifactRef) -> dict:
    """The scale stage: training-mean fill and z-scaler, fitted on the training split only."""
    split = _split_series(read_split(features.store, split_ref))
    prep = ab_etl.fit_preprocessing(features, split)
    writer.write_json(PREPROCESSING, prep.to_dict())
    return {"fitted_rows": prep.scaler.n_rows, "rows": len(split)}


def read_preprocessing(store: ArtifactStore, ref: ArtifactRef) -> ab_etl.Preprocessing:
    return ab_etl.Preprocessing.from_dict(store.read_json(ref, PREPROCESSING))


def audit_leakage(features: FeatureSet, split_ref: ArtifactRef, prep_ref: ArtifactRef) -> dict:
    """Recompute from the saved artifacts that no release group straddles two splits or
    two folds and that fill and scaler are the training rows'; LeakageError if not."""
    split = read_split(features.store, split_ref)
    series = _split_series(split)
    groups = pd.Series(split["group"].to_numpy(), index=series.index)
    problems = ab_etl.audit_preprocessing(features, series, groups, read_preprocessing(features.store, prep_ref))
    train = split[split["split"] == "train"]
    straddling = train.groupby("group")["fold"].nunique()
    if (straddling > 1).any():
        several = straddling.index[straddling > 1]
        problems.append(f"{len(several)} release groups appear in more than one fold, e.g. {several[0]!r}")
    return leakage.verdict(problems, split["group"].nunique(), (split["split"] == "train").sum())


# -- subtask 1: one network per source, and per source and fold ----------------------------------
def fold_number(fold: str) -> int | None:
    """``"all"`` -> None (every training row), ``"3"`` -> 3."""
    return None if fold == FULL else int(fold)


def subtask1_rows(split: pd.DataFrame, labelled: pd.Series, fold: str) -> tuple[list[str], list[str], list[str]]:
    """(training, early-stopping, embedded) row ids of one subtask-1 network.

    Training: training-split rows labelled by the source, minus fold ``fold``.
    Early stopping: validation-split rows labelled by the source (never the held-out fold).
    Embedded (activations written for the stacked networks, every source's rows): the
    held-out fold's training rows, or all training rows for the full network, plus
    every validation and test row.
    """
    number = fold_number(fold)
    train = split["split"] == "train"
    held_out = train & (split["fold"] == number) if number is not None else pd.Series(False, index=split.index)
    fitted = train & labelled & ~held_out
    validation = (split["split"] == "validation") & labelled
    embedded = (held_out if number is not None else train) | ~train
    ids = split["row_id"]
    return ids[fitted].tolist(), ids[validation].tolist(), ids[embedded].tolist()


def expected_parameters(n_in: int, hidden: int, n_out: int) -> int:
    """Report 003's count for one hidden layer: n_in·h + h + h·G + G."""
    return n_in * hidden + hidden + hidden * n_out + n_out


def network(n_in: int, n_out: int, config: dict) -> dict:
    return {"name": "mlp", "n_in": n_in, "n_out": n_out, "hidden": [config["hidden"]], "dropout": config["dropout"]}


def _built(arch: dict, seed: int):
    """The network, after checking its parameter count against the formula."""
    model = build_model(arch, seed=seed)
    actual = count_parameters(model)
    expected = expected_parameters(arch["n_in"], arch["hidden"][0], arch["n_out"])
    if actual != expected:
        raise MirflowError(f"network {arch} has {actual} parameters, the formula n_in·h + h + h·G + G gives {expected}")
    return model, {"parameters": actual, "parameters_formula": expected, "architecture": arch}


def _train_config(config: dict) -> training.TrainConfig:
    keys = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "seed")
    return training.TrainConfig(**{k: config[k] for k in keys}, task="multilabel")


def _feature_source(features, prep, labels: Labels, row_ids, config: dict, shuffle: bool) -> FeatureBatchSource:
    """Batches from the feature table: fill + scaler applied per batch, genres joined by MBID."""

    def to_xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return prep.transform(frame), labels.rows(frame["recordingmbid"])

    columns = ["recordingmbid", *ab_etl.FEATURES]
    return FeatureBatchSource(features, columns, row_ids, to_xy, config["batch_size"], shuffle, config["seed"], READ_ROWS)


def write_subtask1_model(
    writer: ArtifactWriter,
    features: FeatureSet,
    split_ref: ArtifactRef,
    targets_ref: ArtifactRef,
    prep_ref: ArtifactRef,
    source: str,
    fold: str,
    config: dict,
) -> dict:
    """The train stage: one subtask-1 network (layout width -> hidden, ReLU, dropout ->
    sigmoid over the source's labels), then its hidden activations and scores for the
    rows ``subtask1_rows`` embeds (``outputs.parquet``)."""
    store = features.store
    split = read_split(store, split_ref)
    labels = read_labels(store, targets_ref, source)
    prep = read_preprocessing(store, prep_ref)
    fitted, stopping, embedded = subtask1_rows(split, split["recordingmbid"].isin(labels.index), fold)
    if not fitted:
        raise ConfigError(f"{source} fold {fold}: no training recordings with {source} genres")
    model, shape = _built(network(len(ab_etl.FEATURES), len(labels.names), config), config["seed"])
    label = f"train[{source}/{fold}]"
    result = training.train_model(
        model,
        _feature_source(features, prep, labels, fitted, config, shuffle=True),
        _feature_source(features, prep, labels, stopping or fitted, config, shuffle=False),
        _train_config(config),
        on_epoch=lambda record: progress.report(label, record["epoch"], config["max_epochs"]),
    )
    writer.write_bytes(MODEL, training.model_bytes(model))
    writer.write_json("history.json", result.history)
    _embed(writer, features, prep, model, embedded, config["hidden"], len(labels.names))
    return {
        "source": source, "fold": fold, "labels": list(labels.names), "train_rows": len(fitted),
        "train_rows_sha256": scaling.fingerprint_rows(fitted), "embedded_rows": len(embedded),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "train_seconds": result.train_seconds,
        "peak_memory_bytes": result.peak_memory_bytes, **shape,
    }


def _outputs_schema(widths: dict[str, int]) -> pa.Schema:
    return pa.schema([pa.field("row_id", pa.string())] + [pa.field(n, pa.list_(pa.float32(), w)) for n, w in widths.items()])


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values, np.float32).ravel()), values.shape[1])


def _embed(writer: ArtifactWriter, features: FeatureSet, prep: ab_etl.Preprocessing, model, row_ids: list[str],
           hidden: int, n_labels: int) -> None:
    """``outputs.parquet``: hidden activations and sigmoid scores for ``row_ids``, streamed."""
    schema = _outputs_schema({"hidden": hidden, "scores": n_labels})

    def tables():
        for frame in features.iter_batches(ab_etl.FEATURES, set(row_ids), READ_ROWS):
            batch = training.ArrayBatchSource(prep.transform(frame), batch_size=len(frame))
            hidden_values = training.extract_hidden(model, batch)
            scores = training.predict(model, batch, "multilabel")
            ids = pa.array(frame["row_id"], pa.string())
            yield pa.Table.from_arrays([ids, _fixed(hidden_values), _fixed(scores)], schema=schema)

    ab_etl.write_parquet_stream(writer, OUTPUTS, schema, tables())


def read_outputs(store: ArtifactStore, ref: ArtifactRef, column: str, row_ids: Sequence[str]) -> np.ndarray:
    """One output column (``hidden`` or ``scores``) of an artifact for ``row_ids``, in that order."""
    table = store.read_parquet(ref, OUTPUTS, columns=["row_id", column])
    positions = pd.Index(table.column("row_id").to_pylist()).get_indexer(list(row_ids))
    if (positions < 0).any():
        missing = list(row_ids)[int(np.argmin(positions))]
        raise MirflowError(f"{ref.stage} artifact {ref.key[:12]} has no {column} for row {missing!r}")
    values = table.column(column).combine_chunks()
    width = values.type.list_size
    return values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)[positions]


# -- subtask 2: stacked networks ------------------------------------------------------------
def _stacked_inputs(store: ArtifactStore, members: dict[str, dict[str, ArtifactRef]], fold: str, row_ids) -> np.ndarray:
    """The member networks' hidden activations for ``row_ids`` side by side (sources sorted)."""
    return np.hstack([read_outputs(store, members[s][fold], "hidden", row_ids) for s in sorted(members)])


def _check_members(store: ArtifactStore, members: dict[str, dict[str, ArtifactRef]]) -> None:
    """Each member artifact is the network its slot names (source and held-out fold)."""
    for source, by_fold in members.items():
        for fold, ref in by_fold.items():
            summary = store.read_json(ref, "summary.json")
            if (summary["source"], summary["fold"]) != (source, fold):
                raise LeakageError(f"stacking input {source}/{fold} is the network of {summary['source']}/{summary['fold']}")


def _fit(x: np.ndarray, y: np.ndarray, stop: tuple[np.ndarray, np.ndarray], config: dict):
    model, shape = _built(network(x.shape[1], y.shape[1], config), config["seed"])
    batch = config["batch_size"]
    result = training.train_model(
        model,
        training.ArrayBatchSource(x, y, batch_size=batch, shuffle=True, seed=config["seed"]),
        training.ArrayBatchSource(*stop, batch_size=batch),
        _train_config(config),
    )
    return model, shape, result


def _scores(model, x: np.ndarray, batch: int) -> np.ndarray:
    if not len(x):  # a source without rows in some fold or split (tiny data)
        return np.zeros((0, model.spec["n_out"]), np.float32)
    return training.predict(model, training.ArrayBatchSource(x, batch_size=batch), "multilabel")


def write_stacked_model(
    writer: ArtifactWriter,
    store: ArtifactStore,
    split_ref: ArtifactRef,
    targets_ref: ArtifactRef,
    source: str,
    members: dict[str, dict[str, ArtifactRef]],
    mode: str,
    config: dict,
) -> dict:
    """The stack stage: a network on the concatenated hidden activations of every
    source's subtask-1 network (``members[source][fold]``), for ``source``'s genres.

    ``crossfit``: training rows of fold k take the activations of the networks fitted
    without fold k; validation/test rows are scored once per fold and averaged.
    ``insample``: every row takes the full networks' activations (leaky for training rows).
    Training rows also get out-of-fold stacked scores (a stacked network per fold), for
    choosing the F threshold.
    """
    if mode not in MODES:
        raise ConfigError(f"stacking mode {mode!r}; choose one of {MODES}")
    _check_members(store, members)
    split = read_split(store, split_ref)
    labels = read_labels(store, targets_ref, source)
    rows = split[split["recordingmbid"].isin(labels.index)]
    train, held_out = rows[rows["split"] == "train"], rows[rows["split"] != "train"]
    folds = sorted(int(f) for f in members[source] if f != FULL)
    views = [str(k) for k in folds] if mode == "crossfit" else [FULL]

    x = np.zeros((len(train), len(members) * config["hidden"]), np.float32)
    for k in folds:
        in_fold = (train["fold"] == k).to_numpy()
        x[in_fold] = _stacked_inputs(store, members, str(k) if mode == "crossfit" else FULL, train["row_id"][in_fold])
    y = labels.rows(train["recordingmbid"])
    held_x = [_stacked_inputs(store, members, view, held_out["row_id"]) for view in views]
    validation = (held_out["split"] == "validation").to_numpy()
    stop_y = labels.rows(held_out["recordingmbid"][validation])
    stop = (np.vstack([v[validation] for v in held_x]), np.tile(stop_y, (len(views), 1)))  # every view of each row
    if not validation.any():
        stop = (x, y)

    started = time.perf_counter()
    out_of_fold = np.zeros(y.shape, np.float32)
    for k in folds:
        in_fold = (train["fold"] == k).to_numpy()
        fold_model, _, _ = _fit(x[~in_fold], y[~in_fold], stop, config)
        out_of_fold[in_fold] = _scores(fold_model, x[in_fold], config["batch_size"])
    model, shape, result = _fit(x, y, stop, config)
    held_scores = np.mean([_scores(model, v, config["batch_size"]) for v in held_x], axis=0)

    ids = pd.concat([train["row_id"], held_out["row_id"]]).tolist()
    schema = _outputs_schema({"scores": y.shape[1]})
    table = pa.Table.from_arrays([pa.array(ids, pa.string()), _fixed(np.vstack([out_of_fold, held_scores]))], schema=schema)
    writer.write_bytes(MODEL, training.model_bytes(model))
    writer.write_json("history.json", result.history)
    ab_etl.write_parquet_stream(writer, OUTPUTS, schema, [table])
    return {
        "source": source, "mode": mode, "members": sorted(members), "views": len(views), "train_rows": len(train),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "train_seconds": time.perf_counter() - started, **shape,
    }


# -- evaluate ----------------------------------------------------------------------------
def write_source_evaluation(
    writer: ArtifactWriter,
    store: ArtifactStore,
    split_ref: ArtifactRef,
    targets_ref: ArtifactRef,
    source: str,
    subtask1: dict[str, ArtifactRef],
    stacked_ref: ArtifactRef,
    seed: int,
) -> dict:
    """The evaluate stage: macro ROC AUC and MediaEval per-track P/R/F of subtask 1,
    subtask 2 and a random baseline on every split, the threshold of each chosen on its
    training out-of-fold scores. Training figures are out-of-fold too."""
    split = read_split(store, split_ref)
    labels = read_labels(store, targets_ref, source)
    rows = split[split["recordingmbid"].isin(labels.index)].reset_index(drop=True)
    truth = labels.rows(rows["recordingmbid"])
    scores = {system: np.zeros(truth.shape, np.float32) for system in SYSTEMS}
    train = (rows["split"] == "train").to_numpy()
    for k in sorted(int(f) for f in subtask1 if f != FULL):
        in_fold = train & (rows["fold"] == k).to_numpy()
        scores["subtask1"][in_fold] = read_outputs(store, subtask1[str(k)], "scores", rows["row_id"][in_fold])
    scores["subtask1"][~train] = read_outputs(store, subtask1[FULL], "scores", rows["row_id"][~train])
    scores["subtask2"] = read_outputs(store, stacked_ref, "scores", rows["row_id"])
    scores["random"] = np.random.default_rng([seed, *source.encode()]).random(truth.shape)

    results: dict = {}
    for system in SYSTEMS:
        threshold = metrics.choose_threshold(truth[train], scores[system][train])
        results[system] = {
            name: metrics.multilabel_report(truth[part], scores[system][part], labels.names, threshold)
            for name in splits.SPLITS
            if (part := (rows["split"] == name).to_numpy()).any()
        }
    models = {}
    for system, ref in (("subtask1", subtask1[FULL]), ("subtask2", stacked_ref)):
        summary = store.read_json(ref, "summary.json")
        models[system] = {key: summary[key] for key in ("parameters", "parameters_formula", "train_seconds", "best_epoch")}
    writer.write_json(METRICS, {"source": source, "labels": len(labels.names), "systems": results, "models": models})
    evaluated = "test" if "test" in results["subtask1"] else "validation"
    return {system: results[system][evaluated]["roc_auc_macro"] for system in SYSTEMS}


# -- the run folder ---------------------------------------------------------------------------
def run_metrics(evaluation: dict) -> dict[str, dict]:
    """One entry per system, ``<system>-<source>``: scalar metrics per split plus the
    network's parameters (the shape ``runs.RunOutputs`` takes)."""
    out = {}
    for system, by_split in evaluation["systems"].items():
        entry: dict = {split: _flat(report) for split, report in by_split.items()}
        entry.update(evaluation["models"].get(system, {}))
        out[f"{system}-{evaluation['source']}"] = entry
    return out


def _flat(report: dict) -> dict:
    track = report["per_track"]
    return {
        "roc_auc_macro": report["roc_auc_macro"],
        "precision": track["precision"],
        "recall": track["recall"],
        "f_score": track["f_score"],
        "label_f_score": report["per_label"]["f_score"],
        "threshold": report["threshold"],
        "tracks": report["n_tracks"],
    }


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def report_tables(evaluations: dict[str, dict], mode: str) -> list[str]:
    """Markdown laid out like report 003's tables 1 and 2: ours beside the published figures."""
    split = "test" if "test" in next(iter(evaluations.values()))["systems"]["subtask1"] else "validation"
    titles = {"allmusic": "AllMusic", "discogs": "Discogs", "lastfm": "Lastfm", "tagtraum": "Tagtraum"}
    header = ["| | " + " | ".join(titles[s] for s in ab.SOURCES) + " |", "|---|" + "---|" * len(ab.SOURCES)]

    def auc_row(name: str, values: dict) -> str:
        return f"| {name} | " + " | ".join(_cell(values.get(s)) for s in ab.SOURCES) + " |"

    names = {"subtask1": "Subtask 1", "subtask2": f"Subtask 2 ({mode} stacking)", "random": "Random baseline"}
    ours = [auc_row(names[system], {s: e["systems"][system][split]["roc_auc_macro"] for s, e in evaluations.items()})
            for system in SYSTEMS]
    published = [auc_row("Subtask 1 (Oramas et al. 2018)", PAPER_AUC["subtask1"]),
                 auc_row("Subtask 2 (Oramas et al. 2018)", PAPER_AUC["subtask2"]),
                 auc_row("Subtask 1 (report 003, Table 1)", REPORT_AUC["subtask1"])]
    track = ["| source | system | precision | recall | F | threshold | published F |", "|---|---|---|---|---|---|---|"]
    for source in (s for s in ab.SOURCES if s in evaluations):
        for system in SYSTEMS:
            report = evaluations[source]["systems"][system][split]
            p, r, f = (_cell(report["per_track"][k]) for k in ("precision", "recall", "f_score"))
            track.append(f"| {source} | {names[system]} | {p} | {r} | {f} | {report['threshold']:.3f} | {_cell(ORAMAS_F.get(source))} |")
    return [
        f"### Table 1: ROC AUC (macro) on the {split} split, this run\n\n" + "\n".join(header + ours),
        "### Table 2: ROC AUC published\n\n" + "\n".join(header + published),
        f"### Per-track precision, recall and F (MediaEval 2018) on the {split} split\n\n"
        "Thresholds chosen on training out-of-fold scores; published F: the Oramas et al. baseline on the task's "
        "results page.\n\n" + "\n".join(track),
    ]
