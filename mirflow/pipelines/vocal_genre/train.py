"""One round of the song-level k-fold for one model variant: train on the round's
training songs (best-validation checkpoint), predict the slices of its test songs."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.models import IMAGE_MODELS, build_model
from mirflow.pipelines.vocal_genre.folds import read_folds, round_column
from mirflow.pipelines.vocal_genre.separation import read_slices
from mirflow.pipelines.vocal_genre.transfer import freeze_all_but, load_transfer
from mirflow.pipelines.vocal_genre.tricks import slice_augment
from mirflow.stages.training import MODEL, ArrayBatchSource, TrainConfig, model_bytes, predict, train_model

PREDICTIONS = "predictions.parquet"  # the round's validation and test slices: row_id, song, label, fold, round, split, p_<class>...
HISTORY = "history.json"


def model_spec(name: str, n_classes: int, n_mels: int) -> dict:
    """A zoo model for 1-channel log-mel slices, with the small-input stem where it has a stem."""
    if name == "cnn":
        return {"name": "cnn", "n_classes": n_classes, "n_mels": n_mels, "in_channels": 1}
    spec = {"name": name, "n_classes": n_classes, "in_channels": 1}
    return {**spec, "stem": "small"} if "stem" in inspect.signature(IMAGE_MODELS[name]).parameters else spec


def _slices(store: ArtifactStore, songs: dict[str, ArtifactRef], stem: str, rows: pd.DataFrame) -> np.ndarray:
    by_song = {song: read_slices(store, songs[song], stem) for song in rows["song"].unique()}
    return np.stack([by_song[song][i] for song, i in zip(rows["song"], rows["slice"])])[:, None]


def write_fold_model(writer: ArtifactWriter, store: ArtifactStore, songs: dict[str, ArtifactRef], folds: ArtifactRef,
                     fold: int, stem: str, spec: dict, config: dict, augment: dict, pretrained: str | None,
                     unfreeze: str | None) -> dict:
    """Train ``spec`` on round ``fold`` of the song-level folds (``augment``: the tricks'
    settings; ``pretrained`` + ``unfreeze``: transfer) and predict its validation and test songs' slices."""
    rows = read_folds(store, folds)
    classes = sorted(rows["label"].unique())
    code = {label: i for i, label in enumerate(classes)}
    parts = {name: rows[rows[round_column(fold)] == name] for name in ("train", "validation", "test")}
    x = {name: _slices(store, songs, stem, part) for name, part in parts.items()}
    mean, std = float(x["train"].mean()), float(x["train"].std()) or 1.0  # from training slices only
    x = {name: (values - mean) / std for name, values in x.items()}
    y = {name: part["label"].map(code).to_numpy(dtype=np.int64, copy=True) for name, part in parts.items()}
    model = build_model(spec, seed=config["seed"] + fold)
    notes = load_transfer(model, pretrained) if pretrained else []
    trainable = freeze_all_but(model, unfreeze) if pretrained else sum(p.numel() for p in model.parameters())
    train_config = TrainConfig(**config, task="multiclass", patience=config["max_epochs"],
                               augment=slice_augment(augment, config["max_epochs"], len(classes)))
    result = train_model(model, ArrayBatchSource(x["train"], y["train"], config["batch_size"], shuffle=True,
                                                 seed=config["seed"] + fold),
                         ArrayBatchSource(x["validation"], y["validation"], 256), train_config)
    scored = [parts[name].assign(round=fold, split=name) for name in ("validation", "test")]
    table = pd.concat(scored)[["row_id", "song", "label", "fold", "round", "split"]].reset_index(drop=True)
    table[[f"p_{c}" for c in classes]] = np.concatenate(
        [predict(model, ArrayBatchSource(x[name], None, 256), "multiclass") for name in ("validation", "test")])
    writer.write_parquet(PREDICTIONS, pa.Table.from_pandas(table, preserve_index=False))
    writer.write_json(HISTORY, result.history)
    inputs = {"stem": stem, "normalisation": {"mean": mean, "std": std}, "classes": classes, "fold": fold}
    writer.write_bytes(MODEL, model_bytes(model, inputs))
    return {"fold": fold, "best_epoch": result.best_epoch, "validation_accuracy": result.history[result.best_epoch - 1]["val_metric"],
            "test_slices": len(parts["test"]), "trainable_parameters": int(trainable), "transfer_notes": notes,
            "train_seconds": round(result.train_seconds, 2)}
