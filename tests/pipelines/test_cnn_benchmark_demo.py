"""The default demo's recipe makes every default model learn: each one, trained and tested
as the flow does (`write_benchmark`: fresh processes, the demo's images, sizes and recipe),
ends clearly above chance. Minutes of training, so `heavy`."""

from __future__ import annotations

import pytest

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import cifar100
from mirflow.pipelines.cnn_benchmark import benchmark, images
from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams, model_spec, train_config

DEMO = CnnBenchmarkParams(threads=1, inference_batches=1)


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn_demo")
    cifar100.synthesize(root / "data", DEMO.demo_images, seed=DEMO.seed, classes=DEMO.demo_classes)
    store = ArtifactStore(str(root / "store"))
    image_set, normalisation = ArtifactRef("images", "k1"), ArtifactRef("normalise", "k2")
    with store.writing(image_set) as writer:
        images.write_images(writer, str(root / "data"), DEMO.label, DEMO.validation_fraction, DEMO.seed)
    with store.writing(normalisation) as writer:
        images.write_normalisation(writer, store, image_set)
    return store, image_set, normalisation


@pytest.mark.heavy
@pytest.mark.parametrize("model", DEMO.models)
def test_every_default_model_learns_in_the_demo(model, demo_set):
    store, image_set, normalisation = demo_set
    settings = {"image_size": DEMO.image_size, "threads": DEMO.threads, "batches": DEMO.inference_batches,
                "pretrained": None}
    with store.writing(ArtifactRef("train", model)) as writer:
        result = benchmark.write_benchmark(writer, store, image_set, normalisation,
                                           model_spec(DEMO, model, cifar100.N_FINE, 3), train_config(DEMO, model), settings)
    chance = 1 / DEMO.demo_classes
    assert result["top1"] > 2.5 * chance, result
