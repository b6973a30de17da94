"""The benchmark on audio (``features_from``): the log-mel spectrograms of a finished GTZAN
run's feature set as 1 x n_mels x 128 images, in that run's own split.

The run is read through `mirflow.runs` (its feature set and split artifacts), never
through another pipeline's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.cnn_benchmark.images import IMAGES, LABELS, SPLIT, TEST, TRAIN, VALIDATION, save_array
from mirflow.runs import Run
from mirflow.stages.classification import spectrogram_summary_columns
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.splits import read_split

LOGMEL = "logmel"  # the gtzan feature set's spectrogram column (float32 n_mels x frames, flattened)
FRAMES = spectrogram_summary_columns(LOGMEL)[0]
CROP_FRAMES = 128
SPLIT_CODES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}


@dataclass(frozen=True)
class LogmelRun:
    run_id: str
    features: FeatureSet
    split: ArtifactRef
    classes: list[str]


def open_logmel_run(store: ArtifactStore, run_id: str) -> LogmelRun:
    """A finished gtzan run with log-mels and a split; a one-line ConfigError otherwise."""
    run = Run.open(store, run_id)  # not found: ConfigError naming the store
    flow = run.manifest.get("flow")
    if flow != "gtzan":
        raise ConfigError(f"features_from {run.run_id}: a {flow} run, not a gtzan run")
    features = run.feature_set()
    if not features.shards or LOGMEL not in features.schema().names:
        raise ConfigError(f"features_from {run.run_id}: its feature set has no {LOGMEL!r} column (log-mel spectrograms)")
    split = run.split()
    if split is None:
        raise ConfigError(f"features_from {run.run_id}: the run has no split stage")
    classes = sorted(read_split(store, split)["label"].unique())
    return LogmelRun(run.run_id, features, split, classes)


def centre_crop(logmel: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` frames from the middle of an n_mels x T spectrogram; a shorter one is padded
    with its quietest value (silence on the dB scale)."""
    start = max(0, (logmel.shape[1] - frames) // 2)
    crop = logmel[:, start:start + frames]
    return np.pad(crop, ((0, 0), (0, frames - crop.shape[1])), constant_values=logmel.min())


def write_logmel_images(writer: ArtifactWriter, features: FeatureSet, split: ArtifactRef, classes: list[str],
                        frames: int = CROP_FRAMES) -> dict:
    """(N, 1, n_mels, frames) float32 crops of every row the run's split places, its labels
    as indices into ``classes`` and its split, in the images stage's format."""
    placed = read_split(features.store, split).set_index("row_id")["split"]
    crops, labels, parts = [], [], []
    for batch in features.iter_batches(["label", LOGMEL, FRAMES], row_ids=set(placed.index)):
        for row_id, label, values, n_frames in batch[["row_id", "label", LOGMEL, FRAMES]].itertuples(index=False):
            crops.append(centre_crop(np.asarray(values, dtype=np.float32).reshape(-1, n_frames), frames))
            labels.append(classes.index(label))
            parts.append(SPLIT_CODES[placed[row_id]])
    save_array(writer, IMAGES, np.stack(crops)[:, None])
    save_array(writer, LABELS, np.asarray(labels, dtype=np.int64))
    save_array(writer, SPLIT, np.asarray(parts, dtype=np.int8))
    counts = np.bincount(parts, minlength=3)
    return {"rows": {name: int(counts[code]) for name, code in SPLIT_CODES.items()}, "classes": classes}
