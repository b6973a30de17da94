"""AcousticBrainz genre's train stage (subtask 1): one network per source, and per
source and held-out fold, on the feature table; each writes the hidden activations and
scores of the rows the stacked networks will need."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core import progress
from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactWriter
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.pipelines.acousticbrainz_genre.networks import (
    MODEL, OUTPUTS, built, fixed_lists, fold_number, network, outputs_schema, train_config,
)
from mirflow.pipelines.acousticbrainz_genre.preprocessing import Preprocessing, read_preprocessing
from mirflow.pipelines.acousticbrainz_genre.targets import Labels, read_labels
from mirflow.stages import scaling, training
from mirflow.stages.featuresets import FeatureBatchSource, FeatureSet
from mirflow.stages.splits import read_split

READ_ROWS = 1024  # feature-table rows read at a time: a Parquet read costs time per column (2,676 here)


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
    if not stopping:  # the split stage checks this; never stop early on training rows instead
        raise ConfigError(f"{source}: no validation recordings to stop early on; raise validation_fraction")
    model, shape = built(network(len(ab_etl.FEATURES), len(labels.names), config), config["seed"])
    label = f"train[{source}/{fold}]"
    result = training.train_model(
        model,
        _feature_source(features, prep, labels, fitted, config, shuffle=True),
        _feature_source(features, prep, labels, stopping, config, shuffle=False),
        train_config(config),
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


def _embed(writer: ArtifactWriter, features: FeatureSet, prep: Preprocessing, model, row_ids: list[str],
           hidden: int, n_labels: int) -> None:
    """``outputs.parquet``: hidden activations and sigmoid scores for ``row_ids``, streamed."""
    schema = outputs_schema({"hidden": hidden, "scores": n_labels})

    def tables():
        for frame in features.iter_batches(ab_etl.FEATURES, set(row_ids), READ_ROWS):
            batch = training.ArrayBatchSource(prep.transform(frame), batch_size=len(frame))
            hidden_values = training.extract_hidden(model, batch)
            scores = training.predict(model, batch, "multilabel")
            ids = pa.array(frame["row_id"], pa.string())
            yield pa.Table.from_arrays([ids, fixed_lists(hidden_values), fixed_lists(scores)], schema=schema)

    ab_etl.write_parquet_stream(writer, OUTPUTS, schema, tables())


