"""CIFAR-100 python-pickle module: synthetic round trips, label/meta consistency, bad pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets import cifar100


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cifar")
    cifar100.synthesize(out, 600, seed=1)
    return out


def _raw(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def test_synthesize_writes_the_python_pickle_format(synthetic):
    folder = synthetic / "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == ["meta", "test", "train"]
    train, meta = _raw(folder / "train"), _raw(folder / "meta")
    assert set(train) == {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"}
    assert set(meta) == {b"fine_label_names", b"coarse_label_names"}
    assert train[b"data"].shape == (500, 3072) and train[b"data"].dtype == np.uint8
    assert b"synthetic" in train[b"batch_label"] and b"synthetic" in _raw(folder / "test")[b"batch_label"]
    assert len(_raw(folder / "test")[b"fine_labels"]) == 100


def test_read_split_returns_the_written_arrays_as_hwc_images(synthetic):
    raw = _raw(synthetic / "cifar-100-python/train")
    images, fine, coarse = cifar100.read_split(synthetic, "train")
    assert images.shape == (500, 32, 32, 3) and images.dtype == np.uint8
    data = raw[b"data"]
    i, y, x = 17, 5, 29
    assert [images[i, y, x, c] for c in range(3)] == [data[i, c * 1024 + y * 32 + x] for c in range(3)]
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(500, -1), data)
    np.testing.assert_array_equal(fine, raw[b"fine_labels"])
    np.testing.assert_array_equal(coarse, raw[b"coarse_labels"])
    # the folder holding the pickles works as data_dir too
    np.testing.assert_array_equal(cifar100.read_split(synthetic / "cifar-100-python", "train")[0], images)


def test_labels_are_consistent_with_meta(synthetic):
    fine_names, coarse_names = cifar100.read_meta(synthetic)
    assert len(fine_names) == 100 and len(coarse_names) == 20
    assert all(name.startswith("synthetic_") for name in fine_names + coarse_names)
    for split in cifar100.SPLITS:
        _, fine, coarse = cifar100.read_split(synthetic, split)
        assert fine.min() >= 0 and fine.max() < len(fine_names)
        assert coarse.min() >= 0 and coarse.max() < len(coarse_names)
        parents = {f: set(coarse[fine == f]) for f in np.unique(fine)}
        assert all(len(p) == 1 for p in parents.values())  # a fine class has one superclass
    _, train_fine, _ = cifar100.read_split(synthetic, "train")
    assert set(train_fine) == set(range(100))


def test_classes_are_learnable(synthetic):
    train_x, train_y, _ = cifar100.read_split(synthetic, "train")
    test_x, test_y, _ = cifar100.read_split(synthetic, "test")
    flat_train, flat_test = train_x.reshape(len(train_x), -1) / 255.0, test_x.reshape(len(test_x), -1) / 255.0
    centroids = np.stack([flat_train[train_y == c].mean(0) for c in range(100)])
    distances = (flat_test**2).sum(1)[:, None] - 2 * flat_test @ centroids.T + (centroids**2).sum(1)
    assert (distances.argmin(1) == test_y).mean() > 0.5  # chance is 0.01


def test_read_table_lists_images_without_pixels(synthetic, tmp_path):
    table, failures = cifar100.read_table([*cifar100.list_files(synthetic), tmp_path / "missing"])
    assert list(table.columns) == ["split", "index", "filename", "fine_label", "coarse_label"]
    assert table["split"].value_counts().to_dict() == {"train": 500, "test": 100}
    assert table.loc[table["split"] == "test", "index"].tolist() == list(range(100))
    _, fine, _ = cifar100.read_split(synthetic, "test")
    np.testing.assert_array_equal(table.loc[table["split"] == "test", "fine_label"], fine)
    assert [f.path for f in failures] == [str(tmp_path / "missing")]
    empty, _ = cifar100.read_table([])
    assert list(empty.columns) == list(table.columns) and len(empty) == 0


def test_synthesize_is_deterministic(tmp_path):
    first = cifar100.synthesize(tmp_path / "a", 12, seed=4)
    again = cifar100.synthesize(tmp_path / "b", 12, seed=4)
    other = cifar100.synthesize(tmp_path / "c", 12, seed=5)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again))
    assert first[2].read_bytes() != other[2].read_bytes()
    with pytest.raises(ConfigError):
        cifar100.synthesize(tmp_path / "d", 1)


class _RunsCode:
    def __reduce__(self):
        return os.getcwd, ()


@pytest.mark.parametrize(
    "content, words",
    [
        ({b"data": _RunsCode()}, "refusing to load"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, "missing field b.filenames."),
        ({b"data": np.zeros((2, 100), np.uint8)}, "N x 3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100], b"coarse_labels": [0, 0],
          b"filenames": [b"a", b"b"], b"batch_label": b"x"}, "fine_labels"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_bad_pickles_are_data_errors_naming_the_file(tmp_path, content, words):
    path = tmp_path / "train"
    path.write_bytes(pickle.dumps(content, protocol=4))
    with pytest.raises(DataError, match=words) as err:
        cifar100.read_file(path)
    assert err.value.path == str(path)


def test_truncated_pickle_and_unknown_split(synthetic, tmp_path):
    truncated = tmp_path / "test"
    truncated.write_bytes((synthetic / "cifar-100-python/test").read_bytes()[:1000])
    with pytest.raises(DataError):
        cifar100.read_file(truncated)
    with pytest.raises(ConfigError):
        cifar100.read_split(synthetic, "validation")


def test_pickles_naming_numpy_1_modules_load(synthetic, tmp_path):
    """The published files were written by numpy 1.x, whose arrays name numpy.core.multiarray."""
    content = _raw(synthetic / "cifar-100-python/test")
    new_module, old_module = b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"
    old_style = pickle.dumps(content, protocol=3).replace(new_module, old_module)
    assert b"cnumpy.core.multiarray\n" in old_style
    path = tmp_path / "test"
    path.write_bytes(old_style)
    np.testing.assert_array_equal(cifar100.read_file(path)["fine_labels"], content[b"fine_labels"])


def test_a_demo_set_of_fewer_classes_gives_each_its_own_colour(tmp_path):
    """The demo's classes are learnable from a few hundred images: even their mean colour
    tells them apart (a nearest-centroid rule on held-out images)."""
    cifar100.synthesize(tmp_path, 360, seed=0, classes=10)
    (train, fine, coarse), (test, test_fine, _) = (cifar100.read_split(tmp_path, s) for s in ("train", "test"))
    assert len(set(fine)) == len(set(coarse)) == 10
    used = np.unique(fine)
    centroids = np.stack([train[fine == c].mean(axis=(0, 1, 2)) for c in used])
    colours = test.mean(axis=(1, 2)).astype(float)
    predicted = used[np.argmin(((colours[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    assert (predicted == test_fine).mean() > 0.9
