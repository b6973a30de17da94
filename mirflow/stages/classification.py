"""Stage functions shared by the classification pipelines: scale, train, evaluate (the
split stage is ``mirflow.stages.splits.write_split``, which the regression pipeline shares too).

Each ``write_*`` function fills one artifact through the store's writer and returns a
small JSON summary. They know nothing of Prefect; ``tasks/`` decides when they run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core import progress
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages import leakage, scaling, splits
from mirflow.stages.featuresets import FeatureBatchSource, FeatureSet
from mirflow.stages.splits import SPLITS, read_split

# Training, models and metrics (torch, scikit-learn, matplotlib: seconds to import) are
# imported in the functions that use them, so importing a flow stays fast.

SCALER = "scaler.json"


# -- scale -------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """Everything fitted on the training rows that turns a stored row into model input."""

    scaler: scaling.FittedScaler
    band_mean: np.ndarray  # per mel band, over training rows' frames
    band_std: np.ndarray

    def to_dict(self) -> dict:
        return {
            "scaler": self.scaler.to_dict(),
            "band_mean": self.band_mean.tolist(),
            "band_std": self.band_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            scaling.FittedScaler.from_dict(data["scaler"]),
            np.asarray(data["band_mean"], dtype=np.float32),
            np.asarray(data["band_std"], dtype=np.float32),
        )


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
@dataclass(frozen=True)
class InputSpec:
    """How a stored row becomes a model input for one model kind."""

    model: str  # "mlp" | "cnn"
    feature_columns: tuple[str, ...]
    tensor_column: str
    n_mels: int
    cnn_frames: int

    @property
    def columns(self) -> list[str]:
        return ["label", self.tensor_column] if self.model == "cnn" else ["label", *self.feature_columns]


def model_inputs(frame: pd.DataFrame, spec: InputSpec, prep: Preprocessing) -> np.ndarray:
    if spec.model == "cnn":
        mean, std = prep.band_mean[:, None], prep.band_std[:, None]
        crops = []
        for values in frame[spec.tensor_column]:
            mel = np.asarray(values, np.float32).reshape(spec.n_mels, -1)
            # Crop before normalising (a clip's spectrogram is many times the model's
            # input); pad after, so that padding is zeros = the band mean.
            middle = center_frames(mel, spec.cnn_frames) if mel.shape[1] > spec.cnn_frames else mel
            crops.append(center_frames((middle - mean) / std, spec.cnn_frames))
        return np.stack(crops)[:, None, :, :]
    return np.asarray(scaling.apply_scaler(prep.scaler, frame[list(spec.feature_columns)].to_numpy(np.float64)), np.float32)


def center_frames(spec: np.ndarray, frames: int) -> np.ndarray:
    """Crop the middle ``frames`` columns, or zero-pad both sides (zero = band mean)."""
    have = spec.shape[1]
    if have >= frames:
        start = (have - frames) // 2
        return spec[:, start : start + frames]
    left = (frames - have) // 2
    return np.pad(spec, ((0, 0), (left, frames - have - left)))


# Tabular rows up to this size are read once per training, not once per epoch.
IN_MEMORY_BYTES = 256 * 2**20


def _source(features, spec, prep, classes, row_ids, batch_size, shuffle, seed):
    from mirflow.stages import training

    index = {name: i for i, name in enumerate(classes)}

    def to_xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        labels = np.array(frame["label"].map(index), dtype=np.int64)  # writable: torch warns on read-only arrays
        return model_inputs(frame, spec, prep), labels

    if spec.model == "mlp" and len(row_ids) * len(spec.feature_columns) * 4 <= IN_MEMORY_BYTES:
        frames = list(features.iter_batches(spec.columns, set(row_ids), batch_size=4096))
        x, y = to_xy(pd.concat(frames, ignore_index=True))
        return training.ArrayBatchSource(x, y, batch_size, shuffle, seed)
    return FeatureBatchSource(features, spec.columns, row_ids, to_xy, batch_size, shuffle, seed)


def model_spec(spec: InputSpec, n_classes: int, hidden: Sequence[int]) -> dict:
    if spec.model == "cnn":
        return {"name": "cnn", "n_mels": spec.n_mels, "n_classes": n_classes}
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
    arch = model_spec(spec, len(classes), hidden)
    model = build_model(arch, seed=seed)
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
    writer.write_bytes(training.MODEL, training.model_bytes(model, arch))
    writer.write_json("history.json", result.history)
    return {
        "model": spec.model,
        "classes": classes,
        "architecture": arch,
        "parameters": count_parameters(model),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "peak_memory_bytes": result.peak_memory_bytes,
    }


# -- evaluate ----------------------------------------------------------------------
def write_evaluation(
    writer: ArtifactWriter,
    features: FeatureSet,
    split_ref: ArtifactRef,
    scaler_ref: ArtifactRef,
    model_ref: ArtifactRef,
    spec: InputSpec,
    batch_size: int,
) -> dict:
    """Per-split metrics, predictions, confusion matrix and inference time of one model."""
    from mirflow.stages import metrics, training

    store = features.store
    split = read_split(store, split_ref)
    prep = read_preprocessing(store, scaler_ref)
    model, _ = training.load_model_bytes(store.read_bytes(model_ref, training.MODEL))
    trained = store.read_json(model_ref, "summary.json")
    classes = trained["classes"]
    report: dict = {key: trained[key] for key in ("model", "classes", "parameters", "train_seconds", "peak_memory_bytes")}
    predictions = []
    for name in SPLITS:
        ids = set(split.loc[split["split"] == name, "row_id"])
        if not ids:
            continue
        frames, seconds = [], 0.0
        for frame in features.iter_batches(spec.columns, ids, batch_size):
            x = model_inputs(frame, spec, prep)
            started = time.perf_counter()
            probabilities = training.predict(model, training.ArrayBatchSource(x, batch_size=len(x)), "multiclass")
            seconds += time.perf_counter() - started
            frames.append(frame[["row_id", "label"]].assign(predicted=[classes[i] for i in probabilities.argmax(1)])
                          .join(pd.DataFrame(probabilities, columns=[f"p_{c}" for c in classes])))
        scored = pd.concat(frames, ignore_index=True).assign(split=name)
        report[name] = metrics.classification_report(scored["label"], scored["predicted"], labels=classes)
        report[name]["inference_ms_per_row"] = 1000 * seconds / len(scored)
        predictions.append(scored)
    evaluated = "test" if "test" in report else "validation"
    writer.write_bytes("confusion.png", metrics.confusion_matrix_png(report[evaluated]["confusion_matrix"], classes))
    writer.write_parquet("predictions.parquet", pa.Table.from_pandas(pd.concat(predictions, ignore_index=True), preserve_index=False))
    writer.write_json("metrics.json", report)
    return {"model": spec.model, "evaluated_split": evaluated, **{k: report[k]["accuracy"] for k in SPLITS if k in report}}
