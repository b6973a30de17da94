"""cnn_benchmark's data path (issue 16), two figures:

1. ResNet-20 on 32x32 inputs on the CPU: training images/s through the flow's path
   (`ImageBatches` + `train_model`, one epoch and its validation pass) against a plain
   PyTorch loop over the same images, normalised in memory beforehand (plus the same
   validation batch), with the same model seed, batch size and thread count, in one
   process: one warm-up epoch of each first (not counted), then ``repeats`` epochs of each,
   interleaved, medians compared. Also the share of the flow's time spent making batches.
   Target: >= 0.95x.
2. Upsampled 224x224 training: the flow's own path (`measure._batches` over the arrays
   as the flow writes them, random resized crops, `train_model`) for ``steps`` steps of a
   light CNN (the zoo's `cnn`, 8-16-32-64 channels, batch 8), on a 5,000- and a
   50,000-image set, each in a fresh process: peak RSS over RSS after 10 steps.
   Target: <= 1.2x for both (nothing scales with the set).

    python -m bench.cnn_benchmark [--images 1024] [--repeats 3] [--threads 2] [--steps 200]
    python -m bench.run_all --only cnn_benchmark
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NEEDS_PREFECT = False  # stage functions and training loops only: no flow run
BATCH = 128
TARGET_RATIO, MEMORY_TARGET = 0.95, 1.2
SET_SIZES = (5_000, 50_000)
LIGHT_MODEL = {"name": "cnn", "n_classes": 100, "in_channels": 3, "n_mels": 224, "channels": [8, 16, 32, 64]}


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 100, n)


def _resnet20():
    from mirflow.models import build_model

    return build_model({"name": "resnet20", "n_classes": 100}, seed=0)


def flow_epoch(pixels, labels, threads: int) -> dict:
    """One epoch through the flow's path: images/s and the share of time spent making batches."""
    from mirflow.pipelines.cnn_benchmark.images import ImageBatches
    from mirflow.stages.training import TrainConfig, train_model

    train = ImageBatches(pixels, labels, BATCH, [0.5] * 3, [0.25] * 3, shuffle=True)
    validation = ImageBatches(pixels[:BATCH], labels[:BATCH], BATCH, [0.5] * 3, [0.25] * 3)
    config = TrainConfig(optimizer="sgd", lr=0.01, max_epochs=1, patience=1, scheduler="none",
                         num_threads=threads, device="cpu")
    result = train_model(_resnet20(), train, validation, config)
    return {"images_per_s": len(labels) / result.train_seconds, "data_wait_fraction": train.wait_seconds / result.train_seconds}


def plain_epoch(x, y, threads: int) -> float:
    """One epoch of a plain loop over normalised in-memory tensors (and one validation batch): images/s."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = _resnet20().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for start in range(0, len(y), BATCH):
        rows = order[start:start + BATCH]
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.eval()(x[:BATCH])
    seconds = time.perf_counter() - started
    torch.set_num_threads(previous)
    return len(y) / seconds


def throughput(n_images: int, repeats: int, threads: int) -> dict:
    import torch

    pixels, labels = _images(n_images)
    x, y = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.25, torch.from_numpy(labels)
    plain_epoch(x, y, threads), flow_epoch(pixels, labels, threads)  # warm-up: not counted
    plain, flow = [], []
    for _ in range(repeats):
        plain.append(plain_epoch(x, y, threads))
        flow.append(flow_epoch(pixels, labels, threads))
    plain_median = float(np.median(plain))
    flow_median = float(np.median([f["images_per_s"] for f in flow]))
    return {"plain_images_per_s": plain, "flow_images_per_s": [f["images_per_s"] for f in flow],
            "ratio": flow_median / plain_median, "plain_median": plain_median, "flow_median": flow_median,
            "data_wait_fraction": float(np.median([f["data_wait_fraction"] for f in flow])),
            "threads": threads, "images": n_images, "repeats": repeats}


class _FirstSteps:
    """The first ``steps`` batches of a training source (a fraction of an epoch), sampling RSS before each."""

    def __init__(self, source, steps: int):
        import psutil

        self.source, self.steps, self.rss, self._process = source, steps, [], psutil.Process()

    def __len__(self) -> int:
        return self.steps * self.source.batch_size

    def __iter__(self):
        for step, batch in enumerate(self.source):
            if step == self.steps:
                return
            self.rss.append(self._process.memory_info().rss)
            yield batch


def upsampled_training(n: int, steps: int, threads: int) -> dict:
    """``steps`` 224x224 training steps on an ``n``-image set, as the flow's train job makes its batches."""
    from mirflow.models import build_model
    from mirflow.pipelines.cnn_benchmark.images import IMAGES, LABELS, SPLIT, TRAIN
    from mirflow.pipelines.cnn_benchmark.measure import _batches
    from mirflow.stages.training import TrainConfig, train_model

    pixels, labels = _images(n, seed=1)
    with tempfile.TemporaryDirectory(prefix="mirflow-bench-cnn-") as folder:
        for name, array in ((IMAGES, pixels), (LABELS, labels), (SPLIT, np.full(n, TRAIN, dtype=np.int8))):
            np.save(Path(folder) / name, array)
        del pixels, labels
        job = {"arrays": folder, "image_size": 224, "mean": [0.5] * 3, "std": [0.25] * 3, "config": {"seed": 0}}
        train = _FirstSteps(_batches(job, TRAIN, 8, training=True), steps)
        validation = _FirstSteps(_batches(job, TRAIN, 8), 1)
        config = TrainConfig(optimizer="sgd", lr=0.01, max_epochs=1, patience=1, scheduler="none",
                             num_threads=threads, device="cpu")
        started = time.perf_counter()
        result = train_model(build_model(LIGHT_MODEL, seed=0), train, validation, config)
    peak = max(result.peak_memory_bytes, *train.rss)
    return {"images": n, "steps": steps, "batch": 8, "seconds": time.perf_counter() - started,
            "rss_after_10_mb": train.rss[10] / 2**20, "peak_mb": peak / 2**20, "ratio": peak / train.rss[10]}


def _in_fresh_process(n: int, steps: int, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.cnn_benchmark", "--memory-case", str(n), "--steps", str(steps),
                           "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def measure(n_images: int, repeats: int, threads: int, steps: int) -> dict:
    return {"throughput": throughput(n_images, repeats, threads),
            "upsampled_memory": [_in_fresh_process(n, steps, threads) for n in SET_SIZES]}


def run(quick: bool) -> dict:
    """The run_all entry: ``quick`` takes fewer images, repeats and steps."""
    n_images, repeats, steps = (512, 1, 30) if quick else (1024, 3, 200)
    figures = measure(n_images, repeats, 2, steps)
    speed, memory = figures["throughput"], figures["upsampled_memory"]
    return {
        "name": "cnn_benchmark",
        "title": "CNN benchmark data path (issue 16)",
        "setup": (f"ResNet-20, 32x32, CPU, {speed['threads']} threads, batch {BATCH}, {n_images} random images: one "
                  f"epoch through the flow's path (ImageBatches + train_model, with its validation pass) against a "
                  f"plain PyTorch loop over the same images normalised in memory beforehand (same model seed, one "
                  f"validation batch), one warm-up epoch each, then {repeats} interleaved epochs each, medians compared. "
                  f"Upsampled 224x224: the flow's batches (random resized crops) and {steps} training steps of the "
                  f"zoo's light `cnn` (8-16-32-64 channels, batch 8) per set, each set in a fresh process."),
        "figures": figures,
        "tables": [
            {"columns": ["loop", "images/s per repeat", "median"],
             "rows": [["plain PyTorch", ", ".join(f"{v:.0f}" for v in speed["plain_images_per_s"]), f"{speed['plain_median']:.0f}"],
                      ["flow path", ", ".join(f"{v:.0f}" for v in speed["flow_images_per_s"]), f"{speed['flow_median']:.0f}"]]},
            {"columns": ["images in set", "steps", "RSS after 10 steps MB", "peak RSS MB", "peak / after 10", "seconds"],
             "rows": [[m["images"], m["steps"], f"{m['rss_after_10_mb']:.0f}", f"{m['peak_mb']:.0f}",
                       f"{m['ratio']:.3f}", f"{m['seconds']:.0f}"] for m in memory]},
        ],
        "targets": [
            {"what": f"flow ≥ {TARGET_RATIO}× the plain loop (medians)", "value": f"{speed['ratio']:.3f}×",
             "met": speed["ratio"] >= TARGET_RATIO},
            *({"what": f"224x224 peak RSS flat over {steps} steps on {m['images']:,} images (≤ {MEMORY_TARGET}×)",
               "value": f"{m['ratio']:.3f}×", "met": m["ratio"] <= MEMORY_TARGET} for m in memory),
        ],
        "notes": [f"share of the flow's training time spent making batches: {100 * speed['data_wait_fraction']:.2f} %",
                  f"peak RSS 50,000 vs 5,000 images: {memory[1]['peak_mb'] - memory[0]['peak_mb']:+.0f} MB "
                  f"(the larger uint8 set itself is {45_000 * 3 * 32 * 32 / 2**20:.0f} MB more)"],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return []  # generates its own images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--only", choices=("throughput", "memory"), help="Measure one of the two figures.")
    parser.add_argument("--memory-case", type=int, help=argparse.SUPPRESS)  # one set size, in this process
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(upsampled_training(args.memory_case, args.steps, args.threads)))
    elif args.only == "throughput":
        print(json.dumps(throughput(args.images, args.repeats, args.threads), indent=2))
    elif args.only == "memory":
        print(json.dumps([_in_fresh_process(n, args.steps, args.threads) for n in SET_SIZES], indent=2))
    else:
        print(json.dumps(measure(args.images, args.repeats, args.threads, args.steps), indent=2))


if __name__ == "__main__":
    main()
