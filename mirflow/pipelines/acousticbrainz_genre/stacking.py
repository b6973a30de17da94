"""AcousticBrainz genre's stack stage (subtask 2): a network per source on the
concatenated outputs of every source's subtask-1 networks, in one of three modes:

- ``crossfit``: hidden activations, out of fold (the report's inputs without its leak);
- ``crossfit_scores``: the networks' per-source scores (sigmoid probabilities), out of
  fold. Hidden units of different fold networks need not mean the same thing (unit 7 of
  the network without fold 0 is not unit 7 of the one without fold 1), so concatenating
  them mixes inputs; a score means "probability of genre g" in every fold network;
- ``insample``: the full networks' activations of their own training rows (the report's
  leaky variant, for comparison).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.errors import ConfigError, LeakageError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.pipelines.acousticbrainz_genre.networks import (
    FULL, MODEL, OUTPUTS, built, fixed_lists, network, outputs_schema, read_outputs, train_config,
)
from mirflow.pipelines.acousticbrainz_genre.targets import read_labels
from mirflow.stages import training
from mirflow.stages.splits import read_split

# mode -> (the member networks' output it stacks, whether training rows take it out of fold)
MODES = {"crossfit": ("hidden", True), "crossfit_scores": ("scores", True), "insample": ("hidden", False)}


def _stacked_inputs(
    store: ArtifactStore, members: dict[str, dict[str, ArtifactRef]], fold: str, row_ids, column: str
) -> np.ndarray:
    """The member networks' ``column`` outputs (hidden activations or scores) for
    ``row_ids`` side by side (sources sorted)."""
    return np.hstack([read_outputs(store, members[s][fold], column, row_ids) for s in sorted(members)])


def _check_members(store: ArtifactStore, members: dict[str, dict[str, ArtifactRef]]) -> None:
    """Each member artifact is the network its slot names (source and held-out fold)."""
    for source, by_fold in members.items():
        for fold, ref in by_fold.items():
            summary = store.read_json(ref, "summary.json")
            if (summary["source"], summary["fold"]) != (source, fold):
                raise LeakageError(f"stacking input {source}/{fold} is the network of {summary['source']}/{summary['fold']}")


def _fit(x: np.ndarray, y: np.ndarray, stop: tuple[np.ndarray, np.ndarray], config: dict):
    model, shape = built(network(x.shape[1], y.shape[1], config), config["seed"])
    batch = config["batch_size"]
    result = training.train_model(
        model,
        training.ArrayBatchSource(x, y, batch_size=batch, shuffle=True, seed=config["seed"]),
        training.ArrayBatchSource(*stop, batch_size=batch),
        train_config(config),
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
    """The stack stage: a network on the concatenated outputs (``MODES``) of every
    source's subtask-1 network (``members[source][fold]``), for ``source``'s genres.

    Cross-fitted modes: training rows of fold k take the outputs of the networks fitted
    without fold k; validation/test rows are scored once per fold and averaged.
    ``insample``: every row takes the full networks' outputs (leaky for training rows).
    Training rows also get out-of-fold stacked scores (a stacked network per fold), for
    choosing the F threshold.
    """
    if mode not in MODES:
        raise ConfigError(f"stacking mode {mode!r}; choose one of {list(MODES)}")
    column, crossfit = MODES[mode]
    _check_members(store, members)
    split = read_split(store, split_ref)
    labels = read_labels(store, targets_ref, source)
    rows = split[split["recordingmbid"].isin(labels.index)]
    train = rows[rows["split"] == "train"].sort_values("fold", kind="stable")  # fold by fold, as x is read
    held_out = rows[rows["split"] != "train"]
    folds = sorted(int(f) for f in members[source] if f != FULL)
    views = [str(k) for k in folds] if crossfit else [FULL]

    x = np.vstack([_stacked_inputs(store, members, str(k) if crossfit else FULL, train["row_id"][train["fold"] == k], column)
                   for k in folds])
    y = labels.rows(train["recordingmbid"])
    held_x = [_stacked_inputs(store, members, view, held_out["row_id"], column) for view in views]
    validation = (held_out["split"] == "validation").to_numpy()
    if not validation.any():  # the split stage checks this; never stop early on training rows instead
        raise ConfigError(f"{source}: no validation recordings to stop the stacked network early on; raise validation_fraction")
    stop_y = labels.rows(held_out["recordingmbid"][validation])
    stop = (np.vstack([v[validation] for v in held_x]), np.tile(stop_y, (len(views), 1)))  # every view of each row

    started = time.perf_counter()
    out_of_fold = np.zeros(y.shape, np.float32)
    for k in folds:
        in_fold = (train["fold"] == k).to_numpy()
        fold_model, _, _ = _fit(x[~in_fold], y[~in_fold], stop, config)
        out_of_fold[in_fold] = _scores(fold_model, x[in_fold], config["batch_size"])
    model, shape, result = _fit(x, y, stop, config)
    held_scores = np.mean([_scores(model, v, config["batch_size"]) for v in held_x], axis=0)

    ids = pd.concat([train["row_id"], held_out["row_id"]]).tolist()
    schema = outputs_schema({"scores": y.shape[1]})
    table = pa.Table.from_arrays([pa.array(ids, pa.string()), fixed_lists(np.vstack([out_of_fold, held_scores]))], schema=schema)
    writer.write_bytes(MODEL, training.model_bytes(model))
    writer.write_json("history.json", result.history)
    ab_etl.write_parquet_stream(writer, OUTPUTS, schema, [table])
    return {
        "source": source, "mode": mode, "inputs": column, "members": sorted(members), "views": len(views), "train_rows": len(train),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "train_seconds": time.perf_counter() - started, **shape,
    }


