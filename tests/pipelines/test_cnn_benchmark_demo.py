"""The default demo's recipe makes every default model learn: each one, trained and tested
as the flow does (`write_benchmark`: fresh processes, the demo's images, sizes and recipe),
ends clearly above chance. Minutes of training, so `heavy`."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import cifar100
from mirflow.pipelines.cnn_benchmark import benchmark, images
from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams, model_spec, train_config

DEMO = CnnBenchmarkParams(threads=1, inference_batches=1)


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> dict[str, Future]:
    """Every default model's benchmark on the demo set, as a future of its result. Two train
    at a time: each in processes of its own with one torch thread (the demo's settings here),
    so a 2-core machine does both at once, and the results are those of one at a time."""
    root = tmp_path_factory.mktemp("cnn_demo")
    cifar100.synthesize(root / "data", DEMO.demo_images, seed=DEMO.seed, classes=DEMO.demo_classes)
    store = ArtifactStore(str(root / "store"))
    image_set, normalisation = ArtifactRef("images", "k1"), ArtifactRef("normalise", "k2")
    with store.writing(image_set) as writer:
        images.write_images(writer, str(root / "data"), DEMO.label, DEMO.validation_fraction, DEMO.seed)
    with store.writing(normalisation) as writer:
        images.write_normalisation(writer, store, image_set)
    settings = {"image_size": DEMO.image_size, "threads": DEMO.threads, "batches": DEMO.inference_batches,
                "pretrained": None}

    def trained_and_tested(model: str) -> dict:
        with store.writing(ArtifactRef("train", model)) as writer:
            return benchmark.write_benchmark(writer, store, image_set, normalisation,
                                             model_spec(DEMO, model, cifar100.N_FINE, 3), train_config(DEMO, model), settings)

    with ThreadPoolExecutor(2) as pool:
        return {model: pool.submit(trained_and_tested, model) for model in DEMO.models}


@pytest.mark.heavy
@pytest.mark.parametrize("model", DEMO.models)
def test_every_default_model_learns_in_the_demo(model, demo_results):
    result = demo_results[model].result()
    chance = 1 / DEMO.demo_classes
    assert result["top1"] > 2.5 * chance, result
