"""cnn_benchmark's images: CIFAR arrays with a held-out validation share, normalisation
fitted on training images only, batches resized and cropped one batch at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import cifar100
from mirflow.pipelines.cnn_benchmark import images
from mirflow.pipelines.cnn_benchmark.measure import top_k_accuracy


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn_images")
    cifar100.synthesize(root / "data", 240, seed=3)
    store = ArtifactStore(str(root / "store"))
    ref = ArtifactRef("images", "k1")
    with store.writing(ref) as writer:
        summary = images.write_images(writer, str(root / "data"), "coarse", 0.25, 0)
    return store, ref, summary, root / "data"


def test_images_keep_cifar_order_and_hold_out_validation(image_set):
    store, ref, summary, data = image_set
    pixels, labels, split = (images.read_array(store, ref, name) for name in (images.IMAGES, images.LABELS, images.SPLIT))
    train_pixels, _, train_coarse = cifar100.read_split(data, "train")
    assert summary["rows"]["test"] == 40
    assert summary["rows"]["validation"] == pytest.approx(50, abs=8)  # stratified per class: rounding
    assert pixels.shape == (240, 3, 32, 32)
    np.testing.assert_array_equal(pixels[:200], train_pixels.transpose(0, 3, 1, 2))  # HWC pickles -> CHW
    np.testing.assert_array_equal(labels[:200], train_coarse)
    assert set(split[:200]) == {images.TRAIN, images.VALIDATION} and set(split[200:]) == {images.TEST}


def test_normalisation_is_fitted_on_training_images_only(image_set, tmp_path):
    store, ref, _, _ = image_set
    pixels, split = images.read_array(store, ref, images.IMAGES), images.read_array(store, ref, images.SPLIT)
    fitted = ArtifactRef("normalise", "k2")
    with store.writing(fitted) as writer:
        stats = images.write_normalisation(writer, store, ref)
    train = pixels[split == images.TRAIN] / 255
    np.testing.assert_allclose(stats["mean"], train.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], train.std(axis=(0, 2, 3)), rtol=1e-6)
    assert not np.allclose(stats["mean"], (pixels / 255).mean(axis=(0, 2, 3)), rtol=1e-6)


def test_batches_are_normalised_resized_and_cropped_per_batch():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    labels = np.arange(10)
    plain = images.ImageBatches(pixels, labels, 4, [0.5] * 3, [0.25] * 3)
    x, y = next(iter(plain))
    torch.testing.assert_close(x, (torch.from_numpy(pixels[:4]).float() / 255 - 0.5) / 0.25)
    assert [len(y) for _, y in plain] == [4, 4, 2]
    resized = images.ImageBatches(pixels, labels, 4, [0.5] * 3, [0.25] * 3, size=24)
    cropped = images.ImageBatches(pixels, labels, 4, [0.5] * 3, [0.25] * 3, size=24, crop=True, shuffle=True)
    assert next(iter(resized))[0].shape == (4, 3, 24, 24)
    epoch_one = [(x.clone(), y.clone()) for x, y in cropped]
    cropped.set_epoch(2)
    epoch_two = list(cropped)
    assert sorted(torch.cat([y for _, y in epoch_one]).tolist()) == list(range(10))
    assert not torch.equal(epoch_one[0][0], epoch_two[0][0])  # new crops (and order) each epoch
    assert cropped.wait_seconds > 0


def test_top_k_accuracy():
    probabilities = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
    labels = np.array([2, 1, 0])
    assert top_k_accuracy(probabilities, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(probabilities, labels, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(probabilities, labels, 3) == 1.0


def test_parameters_take_per_model_pairs_and_the_report_preset():
    from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams

    given = CnnBenchmarkParams(batch_sizes="allcnn_c=500, resnet20=128", pretrained="resnet20=/w.pt")
    assert given.batch_sizes == {"allcnn_c": 500, "resnet20": 128} and given.pretrained == {"resnet20": "/w.pt"}
    with pytest.raises(ValueError, match="model=value pairs"):
        CnnBenchmarkParams(batch_sizes="allcnn_c:500")
    report = CnnBenchmarkParams(preset="report", max_epochs=7)
    assert report.max_epochs == 7 and report.inference_batches == 100 and report.batch_sizes["resnet18"] == 256


def test_inference_batches_start_over_at_the_end_of_the_test_set():
    from mirflow.pipelines.cnn_benchmark.measure import _repeated

    source = images.ImageBatches(np.zeros((5, 3, 4, 4), np.uint8), np.arange(5), 2, [0.0] * 3, [1.0] * 3)
    assert [len(x) for x in _repeated(source, 5)] == [2, 2, 1, 2, 2]


def test_a_part_of_the_set_is_read_batch_by_batch_from_the_memory_map(tmp_path):
    """The train job's batches read their rows from the mapped arrays: a copy of the part would hold the set twice."""
    from mirflow.pipelines.cnn_benchmark.measure import _batches

    pixels = np.random.default_rng(1).integers(0, 256, (9, 3, 4, 4), dtype=np.uint8)
    split = np.array([images.TRAIN, images.TEST] * 4 + [images.TRAIN], dtype=np.int8)
    for name, array in ((images.IMAGES, pixels), (images.LABELS, np.arange(9)), (images.SPLIT, split)):
        np.save(tmp_path / name, array)
    job = {"arrays": str(tmp_path), "image_size": None, "mean": [0.0] * 3, "std": [1.0] * 3, "config": {"seed": 0}}
    test = _batches(job, images.TEST, 3)
    assert isinstance(test.images, np.memmap)
    x, y = next(iter(test))
    assert y.tolist() == [1, 3, 5]
    torch.testing.assert_close(x, torch.from_numpy(pixels[[1, 3, 5]]).float() / 255)
    assert sorted(torch.cat([y for _, y in _batches(job, images.TRAIN, 2, training=True)]).tolist()) == [0, 2, 4, 6, 8]
