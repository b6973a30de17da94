"""The benchmark's images: CIFAR-100 read once into arrays with a validation split, the
per-channel normalisation fitted on training images only, and batches made on the fly.

Images are uint8 pixels (CIFAR) or float32 values (log-mel crops, see `logmels`); pixels
are taken as pixel / 255 everywhere (`unit_scale`)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import cifar100
from mirflow.stages.splits import split_train_val_test

IMAGES, LABELS, SPLIT = "images.npy", "labels.npy", "split.npy"  # split: 0 train, 1 validation, 2 test
TRAIN, VALIDATION, TEST = 0, 1, 2
NORMALISATION = "normalisation.json"


def save_array(writer: ArtifactWriter, name: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    writer.write_bytes(name, buffer.getvalue())


def read_array(store: ArtifactStore, ref: ArtifactRef, name: str) -> np.ndarray:
    return np.load(io.BytesIO(store.read_bytes(ref, name)), allow_pickle=False)


def write_images(writer: ArtifactWriter, data_dir: str, label: str, validation_fraction: float, seed: int) -> dict:
    """CIFAR-100 train and test as (N, 3, 32, 32) uint8; a stratified share of train held out for validation."""
    train_images, *train_labels = cifar100.read_split(data_dir, "train")
    test_images, *test_labels = cifar100.read_split(data_dir, "test")
    column = 0 if label == "fine" else 1
    y_train, y_test = train_labels[column], test_labels[column]
    held_out = split_train_val_test(y_train, np.arange(len(y_train)), seed=seed,
                                    fractions=(1 - validation_fraction, validation_fraction, 0.0))
    split = np.concatenate([np.where(held_out.to_numpy() == "train", TRAIN, VALIDATION),
                            np.full(len(y_test), TEST)]).astype(np.int8)
    images = np.concatenate([train_images, test_images]).transpose(0, 3, 1, 2)
    save_array(writer, IMAGES, np.ascontiguousarray(images))
    save_array(writer, LABELS, np.concatenate([y_train, y_test]).astype(np.int64))
    save_array(writer, SPLIT, split)
    return {"rows": {name: int((split == code).sum()) for name, code in
                     (("train", TRAIN), ("validation", VALIDATION), ("test", TEST))}}


def unit_scale(images: np.ndarray) -> float:
    """What an image array's values are multiplied by before normalisation: 1/255 for pixels."""
    return 1 / 255 if images.dtype == np.uint8 else 1.0


def write_normalisation(writer: ArtifactWriter, store: ArtifactStore, images: ArtifactRef) -> dict:
    """Per-channel mean and standard deviation (of pixel / 255, or of the values) over the training images only."""
    pixels, split = read_array(store, images, IMAGES), read_array(store, images, SPLIT)
    train, scale = pixels[split == TRAIN], unit_scale(pixels)
    mean = [float(train[:, c].mean(dtype=np.float64) * scale) for c in range(train.shape[1])]
    std = [float(train[:, c].std(dtype=np.float64) * scale) for c in range(train.shape[1])]
    stats = {"mean": mean, "std": std, "fitted_on": "train", "rows": len(train)}
    writer.write_json(NORMALISATION, stats)
    return stats


class ImageBatches:
    """Batches of normalised float images from uint8 (or float32) arrays, made one batch at a time.

    With ``size`` each batch is resized to size x size as it is made (never the whole set:
    that took the report past 32 GB at 224x224); with ``crop`` too, each image is a random
    resized crop (scale 0.35-1 of the area, aspect 3/4-4/3): the training augmentation.
    ``wait_seconds`` adds up the time spent making batches: the training loop's wait for data.
    ``rows`` (ascending) picks the images of ``images`` that ``labels`` label, so a memory-mapped
    set is read a batch at a time instead of copied whole (a 50,000-image set held twice).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, mean, std, *,
                 size: int | None = None, crop: bool = False, shuffle: bool = False, seed: int = 0,
                 rows: np.ndarray | None = None):
        import torch

        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.rows = np.arange(len(labels)) if rows is None else rows
        # (x * unit_scale - mean) / std as one in-place multiply-add per batch
        std = np.asarray(std, dtype=np.float64)
        self.scale = torch.tensor(unit_scale(images) / std, dtype=torch.float32).view(1, -1, 1, 1)
        self.shift = torch.tensor(-np.asarray(mean) / std, dtype=torch.float32).view(1, -1, 1, 1)
        self.size, self.crop, self.shuffle, self.seed = size, crop, shuffle, seed
        self.epoch, self.wait_seconds = 0, 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple]:
        import torch

        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.labels)) if self.shuffle else np.arange(len(self.labels))
        for start in range(0, len(order), self.batch_size):
            began = time.perf_counter()
            rows = np.sort(order[start:start + self.batch_size])  # sorted: sequential reads of a memory map
            x = torch.from_numpy(np.ascontiguousarray(self.images[self.rows[rows]])).float()
            x = x.mul_(self.scale).add_(self.shift)
            if self.size is not None:
                x = _random_resized_crop(x, self.size, rng) if self.crop else _resize(x, self.size)
            y = torch.from_numpy(self.labels[rows])
            self.wait_seconds += time.perf_counter() - began
            yield x, y


def _resize(x, size: int):
    from torch.nn import functional as F

    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _random_resized_crop(x, size: int, rng: np.random.Generator):
    """One affine sampling grid per image: a random crop, resized, in a single batched call."""
    import torch
    from torch.nn import functional as F

    n = len(x)
    area, aspect = rng.uniform(0.35, 1.0, n), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), n))
    width, height = np.minimum(np.sqrt(area * aspect), 1), np.minimum(np.sqrt(area / aspect), 1)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 1, 1] = width, height
    theta[:, 0, 2] = rng.uniform(-1, 1, n) * (1 - width)
    theta[:, 1, 2] = rng.uniform(-1, 1, n) * (1 - height)
    grid = F.affine_grid(torch.from_numpy(theta), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)
