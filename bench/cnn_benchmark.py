"""cnn_benchmark's data path (issue 16), two figures measured in one run:

1. ResNet-20 on 32x32 inputs on the CPU: training images/s through the flow's path
   (`ImageBatches` + `train_model`) against a plain PyTorch loop over the same images,
   normalised in memory beforehand, with the same model, batch size and thread count;
   and the fraction of the flow's training time spent making batches. Target: >= 0.95x.
2. Upsampled 224x224 training batches (random resized crops): the process's peak RSS
   after ``--steps`` batches over its RSS after the first 10, on a 5,000- and a
   50,000-image set. Target: <= 1.2x, the same for both (nothing scales with the set).
   The batches only: a model's 224x224 steps on 2 CPU cores would take hours.

    python -m bench.cnn_benchmark [--images 2000] [--epochs 2] [--threads 2] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import psutil
import torch

from mirflow.models import build_model
from mirflow.pipelines.cnn_benchmark.images import ImageBatches
from mirflow.stages.training import TrainConfig, train_model

BATCH = 128


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 100, n)


def flow_throughput(pixels, labels, epochs: int, threads: int) -> dict:
    train = ImageBatches(pixels, labels, BATCH, [0.5] * 3, [0.25] * 3, shuffle=True)
    validation = ImageBatches(pixels[:BATCH], labels[:BATCH], BATCH, [0.5] * 3, [0.25] * 3)
    config = TrainConfig(optimizer="sgd", lr=0.01, max_epochs=epochs, patience=epochs, scheduler="none",
                         num_threads=threads, device="cpu")
    model = build_model({"name": "resnet20", "n_classes": 100}, seed=0)
    result = train_model(model, train, validation, config)
    return {"images_per_s": epochs * len(labels) / result.train_seconds,
            "data_wait_fraction": train.wait_seconds / result.train_seconds}


def plain_throughput(pixels, labels, epochs: int, threads: int) -> float:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.25
    y = torch.from_numpy(labels)
    model = build_model({"name": "resnet20", "n_classes": 100}, seed=0).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), BATCH):
            rows = order[start:start + BATCH]
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():  # the flow's epochs include a validation pass of one batch
        model.eval()(x[:BATCH])
    seconds = time.perf_counter() - started
    torch.set_num_threads(previous)
    return epochs * len(y) / seconds


def upsampled_memory(n: int, steps: int) -> dict:
    pixels, labels = _images(n, seed=1)
    batches = ImageBatches(pixels, labels, 64, [0.5] * 3, [0.25] * 3, size=224, crop=True, shuffle=True)
    process, rss, step = psutil.Process(), [], 0
    while step < steps:
        for x, _ in batches:
            rss.append(process.memory_info().rss)
            step += 1
            if step == steps:
                break
        batches.set_epoch(batches.epoch + 1)
    return {"images": n, "steps": steps, "rss_after_10_mb": rss[9] / 2**20, "peak_mb": max(rss) / 2**20,
            "ratio": max(rss) / rss[9]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    pixels, labels = _images(args.images)
    plain = plain_throughput(pixels, labels, args.epochs, args.threads)
    flow = flow_throughput(pixels, labels, args.epochs, args.threads)
    result = {
        "throughput": {"plain_images_per_s": plain, "flow_images_per_s": flow["images_per_s"],
                       "ratio": flow["images_per_s"] / plain, "data_wait_fraction": flow["data_wait_fraction"],
                       "threads": args.threads, "images": args.images, "epochs": args.epochs},
        "upsampled_memory": [upsampled_memory(n, args.steps) for n in (5_000, 50_000)],
        "load_average": psutil.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
