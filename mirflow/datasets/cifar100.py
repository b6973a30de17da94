"""CIFAR-100, python version: pickles ``cifar-100-python/{train,test,meta}``.

Each split file is a dict with bytes keys: ``b"data"`` (N x 3072 uint8, each row 1024 red, 1024
green then 1024 blue values of a 32x32 image, row-major), ``b"fine_labels"``, ``b"coarse_labels"``,
``b"filenames"``, ``b"batch_label"``; ``meta`` holds ``b"fine_label_names"`` (100) and
``b"coarse_label_names"`` (20). Pickles are unpickled with an allow-list (numpy arrays only), so a
tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets.base import Failure, RemoteFile

if TYPE_CHECKING:  # pandas is imported where used: `mirflow data list` needs none
    import pandas as pd

NAME = "cifar100"
LICENCE = (
    "No licence published; use with citation of Krizhevsky (2009), "
    "'Learning Multiple Layers of Features from Tiny Images'"
)
HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
BASE_URL = "https://www.cs.toronto.edu/~kriz/"
# md5 as in torchvision.datasets.CIFAR100 (tgz_md5); size as reported by torchvision and keras downloads.
INDEX: tuple[RemoteFile, ...] = (
    RemoteFile("cifar-100-python.tar.gz", "cifar-100-python.tar.gz", 169001437,
               "md5:eb9058c3a382ffc7106e4002c42a8d85", extract=True),
)
LOGIN_INSTRUCTIONS: str | None = None

FOLDER = "cifar-100-python"
SPLITS = ("train", "test")
N_FINE, N_COARSE, SIDE = 100, 20, 32
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),  # numpy 1.x pickles, the published files among them
    ("numpy._core.multiarray", "_reconstruct"),  # numpy 2.x pickles
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the CIFAR format")
        return super().find_class(module, name)


def _folder(data_dir: str | Path) -> Path:
    """``data_dir/cifar-100-python`` (the archive's layout) or ``data_dir`` itself if it holds the pickles."""
    nested = Path(data_dir) / FOLDER
    return nested if nested.is_dir() else Path(data_dir)


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(path, f"not a readable CIFAR pickle: {err}") from err
    if not isinstance(content, dict):
        raise DataError(path, f"expected a dict, got {type(content).__name__}")
    return content


def _field(path: Path, content: dict, key: bytes) -> object:
    if key not in content:
        raise DataError(path, f"missing field {key!r}")
    return content[key]


def _names(path: Path, content: dict, key: bytes, count: int) -> list[str]:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _field(path, content, key)]
    if len(names) != count:
        raise DataError(path, f"{key!r} has {len(names)} names, expected {count}")
    return names


def _labels(path: Path, content: dict, key: bytes, n: int, count: int) -> np.ndarray:
    labels = np.asarray(_field(path, content, key), dtype=np.int64)
    if labels.shape != (n,) or (n and (labels.min() < 0 or labels.max() >= count)):
        raise DataError(path, f"{key!r} must be {n} labels in [0, {count}), got shape {labels.shape}")
    return labels


def list_files(data_dir: str | Path) -> list[Path]:
    """The two split pickles (``test``, ``train``); ``meta`` is read with ``read_meta``."""
    return sorted(_folder(data_dir) / split for split in SPLITS)


def read_file(path: str | Path) -> dict:
    """One split pickle: ``images`` (N x 32 x 32 x 3 uint8, HWC), ``fine_labels``, ``coarse_labels``
    (int64), ``filenames``, ``batch_label``."""
    path = Path(path)
    content = _load(path)
    data = np.asarray(_field(path, content, b"data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise DataError(path, f"b'data' must be N x {3 * SIDE * SIDE} uint8, got {data.shape} {data.dtype}")
    n = len(data)
    filenames = _names(path, content, b"filenames", n)
    batch_label = _field(path, content, b"batch_label")
    return {
        "images": data.reshape(n, 3, SIDE, SIDE).transpose(0, 2, 3, 1),
        "fine_labels": _labels(path, content, b"fine_labels", n, N_FINE),
        "coarse_labels": _labels(path, content, b"coarse_labels", n, N_COARSE),
        "filenames": filenames,
        "batch_label": batch_label.decode() if isinstance(batch_label, bytes) else str(batch_label),
    }


def read_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images N x 32 x 32 x 3 uint8, fine labels, coarse labels) of ``train`` or ``test``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown CIFAR-100 split {split!r}; expected one of {SPLITS}")
    unit = read_file(_folder(data_dir) / split)
    return unit["images"], unit["fine_labels"], unit["coarse_labels"]


def read_meta(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """(100 fine label names, 20 coarse label names), indexed by label."""
    path = _folder(data_dir) / "meta"
    content = _load(path)
    fine = _names(path, content, b"fine_label_names", N_FINE)
    return fine, _names(path, content, b"coarse_label_names", N_COARSE)


def read_table(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, list[Failure]]:
    """One row per image: ``split`` (file name), ``index`` (row in that file), ``filename``,
    ``fine_label``, ``coarse_label``. Pixels stay out (60,000 x 3 KiB); ``read_split`` gives them."""
    import pandas as pd

    tables, failures = [], []
    for path in map(Path, paths):
        try:
            tables.append(_image_rows(path.name, read_file(path)))
        except DataError as err:
            failures.append(Failure(err.path, err.reason))
    if not tables:
        no_labels = np.empty(0, dtype=np.int64)
        tables.append(_image_rows("", {"filenames": [], "fine_labels": no_labels, "coarse_labels": no_labels}))
    return pd.concat(tables, ignore_index=True), failures


def _image_rows(split: str, unit: dict) -> pd.DataFrame:
    import pandas as pd

    n = len(unit["filenames"])
    return pd.DataFrame({
        "split": pd.Series([split] * n, dtype="str"),
        "index": np.arange(n, dtype=np.int64),
        "filename": pd.Series(unit["filenames"], dtype="str"),
        "fine_label": unit["fine_labels"],
        "coarse_label": unit["coarse_labels"],
    })


def synthesize(out_dir: str | Path, n: int, seed: int = 0, classes: int = N_FINE) -> list[Path]:
    """``n`` synthetic images in the pickle format (a sixth, at least 1, in ``test``); returns meta, test, train.

    Fine class ``c`` belongs to coarse class ``c // 5``; the coarse class sets the image's colour and
    ``c % 5`` the angle and frequency of a stripe pattern, under pixel noise. ``batch_label`` and
    label names say "synthetic". ``classes`` fine labels are used, spread evenly over the 100 (at
    most 20: each in its own coarse class, so of its own colour): fewer, more separable classes
    let a small demo set be learnt in a few epochs.
    """
    if n < 2:
        raise ConfigError(f"n must be >= 2 (a train and a test image), got {n}")
    if not 2 <= classes <= N_FINE:
        raise ConfigError(f"classes must be in [2, {N_FINE}], got {classes}")
    used = np.arange(classes) * (N_FINE // classes)
    rng = np.random.default_rng(seed)
    folder = Path(out_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    colours = rng.uniform(50, 205, size=(N_COARSE, 3))
    n_test = max(1, n // 6)
    meta = {b"fine_label_names": [f"synthetic_fine_{c:02d}".encode() for c in range(N_FINE)],
            b"coarse_label_names": [f"synthetic_coarse_{c:02d}".encode() for c in range(N_COARSE)]}
    _dump(folder / "meta", meta)
    for split, count in (("test", n_test), ("train", n - n_test)):
        fine = rng.permutation(used[np.arange(count) % classes])
        patterns = np.stack([_pattern(colours[c // 5], c % 5) for c in fine])
        images = patterns + rng.normal(0, 20, patterns.shape)
        _dump(folder / split, {
            b"data": np.clip(images, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).reshape(count, -1),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"filenames": [f"synthetic_{split}_{i:06d}.png".encode() for i in range(count)],
            b"batch_label": f"synthetic {split} batch 1 of 1 (mirflow, seed {seed})".encode(),
        })
    return [folder / "meta", folder / "test", folder / "train"]


def _pattern(colour: np.ndarray, variant: int) -> np.ndarray:
    """A 32x32x3 float image: ``colour`` plus stripes whose angle and frequency depend on ``variant``."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    angle = variant * np.pi / 5
    stripes = 60 * np.sin(2 * np.pi * (variant + 1) * (x * np.cos(angle) + y * np.sin(angle)))
    return colour + stripes[..., None]


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=4)
