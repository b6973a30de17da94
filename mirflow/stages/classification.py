"""Stage functions shared by the classification pipelines: scale, train, evaluate (the
split stage is ``mirflow.stages.splits.write_split``, which the regression pipeline shares too).

Each ``write_*`` function fills one artifact through the store's writer and returns a
small JSON summary. They know nothing of Prefect; ``tasks/`` decides when they run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core import progress
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages import leakage, scaling, splits
from mirflow.stages.featuresets import FeatureBatchSource, FeatureSet
from mirflow.stages.scoring import InputSpec, Preprocessing, clip_probabilities, model_inputs, row_probabilities, window_start
from mirflow.stages.splits import SPLITS, read_split

# Training, models and metrics (torch, scikit-learn, matplotlib: seconds to import) are
# imported in the functions that use them, so importing a flow stays fast.

SCALER = "scaler.json"


# -- scale -------------------------------------------------------------------------
def write_scaler(
    writer: ArtifactWriter,
    features: FeatureSet,
    split_ref: ArtifactRef,
    feature_columns: Sequence[str],
    kind: str,
    tensor_column: str | None,
    n_mels: int,
) -> dict:
    """Fit the feature scaler and the spectrogram band normalisation on train rows only."""
    split = read_split(features.store, split_ref).set_index("row_id")["split"]
    table = features.read(["row_id", *feature_columns]).set_index("row_id").loc[split.index]
    scaler = scaling.fit_scaler_on_train(table.to_numpy(np.float64), split, kind=kind, columns=list(feature_columns))
    band_mean, band_std = np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
    if tensor_column:
        band_mean, band_std = _band_statistics(features, set(split.index[split == "train"]), tensor_column, n_mels)
    writer.write_json(SCALER, Preprocessing(scaler, band_mean, band_std).to_dict())
    return {"kind": kind, "fitted_rows": int((split == "train").sum())}


def spectrogram_summary_columns(column: str) -> tuple[str, str, str]:
    """The per-row columns stored beside a spectrogram column: its frame count and, per
    band, the sum and the sum of squares of its values. The scale stage fits band
    statistics from these alone, without decoding a single spectrogram."""
    return f"{column}_frames", f"{column}_band_sum", f"{column}_band_sum_sq"


def band_sums(spectrogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band sum and sum of squares of one (bands, frames) spectrogram, in float64."""
    values = spectrogram.astype(np.float64)
    return values.sum(axis=1), np.square(values).sum(axis=1)


def _band_statistics(features: FeatureSet, train_ids: set[str], column: str, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean/std over every frame of the training spectrograms, from their per-row sums.

    Not an sklearn scaler: StandardScaler would need every frame of every training
    spectrogram decoded (or fed to ``partial_fit``); the sums stored beside each row give
    the same mean and (population) std from a few numbers per row."""
    frames_column, sum_column, square_column = spectrogram_summary_columns(column)
    rows = features.read(["row_id", frames_column, sum_column, square_column])
    rows = rows[rows["row_id"].isin(train_ids)]
    frames = max(int(rows[frames_column].sum()), 1)
    total = np.sum(np.stack(rows[sum_column].to_list()), axis=0) if len(rows) else np.zeros(n_mels)
    total_sq = np.sum(np.stack(rows[square_column].to_list()), axis=0) if len(rows) else np.zeros(n_mels)
    mean = total / frames
    std = np.sqrt(np.maximum(total_sq / frames - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def read_preprocessing(store: ArtifactStore, ref: ArtifactRef) -> Preprocessing:
    return Preprocessing.from_dict(store.read_json(ref, SCALER))


def preprocessing_reference(store: ArtifactStore, ref: ArtifactRef) -> dict:
    """Which fitted preprocessing a model was trained with: the scale artifact and the
    sha256 of its file (a run folder's preprocessing.json is a copy of that file)."""
    return {"artifact": f"{ref.stage}/{ref.key}", "sha256": hashlib.sha256(store.read_bytes(ref, SCALER)).hexdigest()}


def audit_leakage(
    features: FeatureSet, split_ref: ArtifactRef, scaler_ref: ArtifactRef, feature_columns: Sequence[str]
) -> dict:
    """Recompute from the saved artifacts that no group straddles two splits and that
    the scaler's statistics are those of the training rows; raise LeakageError if not."""
    store = features.store
    split = read_split(store, split_ref)
    preprocessing = read_preprocessing(store, scaler_ref)
    table = features.read(["row_id", *feature_columns]).set_index("row_id").loc[split["row_id"]]
    by_row = split.set_index("row_id")
    problems = leakage.group_problems(by_row["split"], by_row["group"])
    problems += scaling.audit_scaler(preprocessing.scaler, table.to_numpy(np.float64), by_row["split"])
    return leakage.verdict(problems, split["group"].nunique(), preprocessing.scaler.n_rows)


# -- model inputs --------------------------------------------------------------------
# Tabular rows up to this size are read once per training, not once per epoch.
IN_MEMORY_BYTES = 256 * 2**20


def _source(features, spec, prep, classes, row_ids, batch_size, shuffle, seed):
    """Training (``shuffle``) or validation batches: scaled features, or one CNN window
    per row, random in training (anew each epoch), centred for the validation loss."""
    from mirflow.stages import training

    index = {name: i for i, name in enumerate(classes)}

    def labels(frame: pd.DataFrame) -> np.ndarray:
        return np.array(frame["label"].map(index), dtype=np.int64)  # writable: torch warns on read-only arrays

    if spec.model == "mlp" and len(row_ids) * len(spec.feature_columns) * 4 <= IN_MEMORY_BYTES:
        frame = pd.concat(features.iter_batches(spec.columns, set(row_ids), batch_size=4096), ignore_index=True)
        return training.ArrayBatchSource(model_inputs(frame, spec, prep), labels(frame), batch_size, shuffle, seed)
    if spec.model == "cnn" and shuffle:
        return _RandomWindows(features, spec, prep, labels, row_ids, batch_size, seed)
    return FeatureBatchSource(features, spec.columns, row_ids, lambda f: (model_inputs(f, spec, prep), labels(f)),
                              batch_size, shuffle, seed)


class _RandomWindows(FeatureBatchSource):
    """The CNN's training batches: one random window of each row's spectrogram, drawn
    from (seed, epoch, row) by ``scoring.window_start``."""

    def __init__(self, features, spec: InputSpec, prep: Preprocessing, labels, row_ids, batch_size: int, seed: int):
        super().__init__(features, spec.columns, row_ids, self._inputs, batch_size, shuffle=True, seed=seed)
        self.spec, self.prep, self.labels = spec, prep, labels

    def _inputs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        frames = [len(values) // self.spec.n_mels for values in frame[self.spec.tensor_column]]
        starts = [window_start(row, n, self.spec.cnn_frames, self.seed, self._epoch) for row, n in zip(frame["row_id"], frames)]
        return model_inputs(frame, self.spec, self.prep, starts), self.labels(frame)


def architecture(spec: InputSpec, n_classes: int, hidden: Sequence[int]) -> dict:
    """The arguments the pipeline sets; the rest are the model's defaults, which the
    model file records in full (``model.spec``)."""
    if spec.model == "cnn":
        return {"name": "cnn", "n_mels": spec.n_mels, "n_frames": spec.cnn_frames, "n_classes": n_classes}
    return {"name": "mlp", "n_in": len(spec.feature_columns), "hidden": list(hidden), "n_out": n_classes}


# -- train -------------------------------------------------------------------------
def write_trained_model(
    writer: ArtifactWriter,
    features: FeatureSet,
    split_ref: ArtifactRef,
    scaler_ref: ArtifactRef,
    spec: InputSpec,
    hidden: Sequence[int],
    config: dict,
) -> dict:
    """Train one model with early stopping on validation loss; keep the best weights."""
    from mirflow.stages import training
    from mirflow.models import build_model, count_parameters

    store = features.store
    split = read_split(store, split_ref)
    prep = read_preprocessing(store, scaler_ref)
    classes = sorted(split["label"].unique())
    ids = {name: split.loc[split["split"] == name, "row_id"].tolist() for name in SPLITS}
    seed = int(config["seed"])
    splits.require_rows({name: len(part) for name, part in ids.items()}, ("train", "validation"), f"split {split_ref.key[:12]}")
    train_source = _source(features, spec, prep, classes, ids["train"], config["batch_size"], True, seed)
    val_source = _source(features, spec, prep, classes, ids["validation"], config["batch_size"], False, seed)
    model = build_model(architecture(spec, len(classes), hidden), seed=seed)
    train_config = training.TrainConfig(
        lr=config["lr"],
        weight_decay=config["weight_decay"],
        batch_size=config["batch_size"],
        max_epochs=config["max_epochs"],
        patience=config["patience"],
        seed=seed,
        task="multiclass",
    )
    label = f"train[{spec.model}]"
    result = training.train_model(
        model, train_source, val_source, train_config,
        on_epoch=lambda record: progress.report(label, record["epoch"], train_config.max_epochs),
    )
    inputs = {"input": dataclasses.asdict(spec), "preprocessing": preprocessing_reference(store, scaler_ref), "classes": classes}
    writer.write_bytes(training.MODEL, training.model_bytes(model, inputs))
    writer.write_json("history.json", result.history)
    return {
        "model": spec.model,
        "classes": classes,
        "architecture": model.spec,
        "parameters": count_parameters(model),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "peak_memory_bytes": result.peak_memory_bytes,
    }


# -- evaluate ----------------------------------------------------------------------
SEGMENT_PREDICTIONS = "segment_predictions.parquet"


def write_evaluation(
    writer: ArtifactWriter,
    features: FeatureSet,
    split_ref: ArtifactRef,
    scaler_ref: ArtifactRef,
    model_ref: ArtifactRef,
    spec: InputSpec,
    batch_size: int,
) -> dict:
    """Per-split metrics, predictions, confusion matrix and inference time of one model.

    Rows are scored and clips aggregated as ``mirflow.stages.scoring`` defines (what
    `mirflow predict` does too). Metrics are per clip; where clips were cut into several
    rows (segments), the per-row accuracy and macro F1 stand beside them as
    ``segment_*`` and the per-row predictions go to ``segment_predictions.parquet``."""
    from mirflow.stages import metrics, training

    store = features.store
    split = read_split(store, split_ref)
    prep = read_preprocessing(store, scaler_ref)
    model, _ = training.load_model_bytes(store.read_bytes(model_ref, training.MODEL), f"{model_ref.stage}/{model_ref.key}")
    trained = store.read_json(model_ref, "summary.json")
    classes = trained["classes"]
    p_columns = [f"p_{c}" for c in classes]
    report: dict = {key: trained[key] for key in ("model", "classes", "parameters", "train_seconds", "peak_memory_bytes")}
    scored, clips = {}, {}
    for name in SPLITS:
        ids = set(split.loc[split["split"] == name, "row_id"])
        if not ids:
            continue
        frames, seconds = [], 0.0
        for frame in features.iter_batches(["clip_id", *spec.columns], ids, batch_size):
            started = time.perf_counter()
            probabilities = row_probabilities(model, frame, spec, prep)
            seconds += time.perf_counter() - started
            frames.append(frame[["row_id", "clip_id", "label"]].join(pd.DataFrame(probabilities, columns=p_columns)))
        scored[name] = _predicted(pd.concat(frames, ignore_index=True), classes).assign(split=name)
        clips[name] = _clip_predictions(scored[name], classes).assign(split=name)
        report[name] = metrics.classification_report(clips[name]["label"], clips[name]["predicted"], labels=classes)
        report[name]["inference_ms_per_row"] = 1000 * seconds / len(scored[name])
    segmented = sum(map(len, scored.values())) > sum(map(len, clips.values()))
    if segmented:
        for name, rows in scored.items():
            per_row = metrics.classification_report(rows["label"], rows["predicted"], labels=classes)
            report[name].update({f"segment_{key}": per_row[key] for key in ("n", "accuracy", "macro_f1")})
    evaluated = "test" if "test" in report else "validation"
    writer.write_bytes("confusion.png", metrics.confusion_matrix_png(report[evaluated]["confusion_matrix"], classes))
    writer.write_parquet("predictions.parquet", _table(clips, ["clip_id", "label", "predicted", *p_columns, "rows", "split"]))
    if segmented:
        writer.write_parquet(SEGMENT_PREDICTIONS, _table(scored, ["row_id", "clip_id", "label", "predicted", *p_columns, "split"]))
    writer.write_json("metrics.json", report)
    return {"model": spec.model, "evaluated_split": evaluated, **{k: report[k]["accuracy"] for k in SPLITS if k in report}}


def _predicted(scored: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """``scored`` with the most probable class as ``predicted``."""
    return scored.assign(predicted=[classes[i] for i in scored[[f"p_{c}" for c in classes]].to_numpy().argmax(1)])


def _clip_predictions(rows: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per clip: the mean of its rows' probabilities (``scoring.clip_probabilities``),
    its label and its number of rows."""
    p_columns = [f"p_{c}" for c in classes]
    clip_ids, probabilities = clip_probabilities(rows["clip_id"], rows[p_columns].to_numpy())
    by_clip = rows.groupby("clip_id", sort=False)
    clips = pd.DataFrame(probabilities, columns=p_columns).assign(
        clip_id=clip_ids, label=by_clip["label"].first().loc[clip_ids].to_numpy(), rows=by_clip.size().loc[clip_ids].to_numpy()
    )
    return _predicted(clips, classes)


def _table(parts: dict[str, pd.DataFrame], columns: list[str]) -> pa.Table:
    return pa.Table.from_pandas(pd.concat(parts.values(), ignore_index=True)[columns], preserve_index=False)
