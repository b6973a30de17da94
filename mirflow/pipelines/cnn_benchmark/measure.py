"""Train one model and measure its costs, each measurement in a fresh Python process.

A process that trained a model keeps its allocator's memory and torch's caches, so
inference memory would include training's: ``in_fresh_process`` runs each job as
``python -m mirflow.pipelines.cnn_benchmark.measure JOB.json`` (a subprocess, which a
daemonic Dask worker may start where multiprocessing may not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mirflow.core import memory
from mirflow.core.errors import MirflowError
from mirflow.pipelines.cnn_benchmark.images import IMAGES, LABELS, SPLIT, TEST, TRAIN, VALIDATION, ImageBatches

INFERENCE_BATCH = 100  # the report's protocol: batches of 100, averaged over many batches
RESULT = "result.json"


def in_fresh_process(job: dict, folder: Path) -> dict:
    """Run ``job`` (JSON-able; "mode" train or infer) in a new interpreter; its result dict."""
    if job["mode"] not in JOBS:
        raise MirflowError(f"unknown measurement {job['mode']!r}; choose one of {sorted(JOBS)}")
    job_path, result_path = folder / f"{job['mode']}_job.json", folder / f"{job['mode']}_{RESULT}"
    job_path.write_text(json.dumps({**job, "result": str(result_path)}))
    done = subprocess.run([sys.executable, "-m", __name__, str(job_path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MirflowError(f"{job['mode']} of {job['spec']['name']} failed (exit {done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:] or 'no message'}")
    return json.loads(result_path.read_text())


def _arrays(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.load(folder / name, mmap_mode="r") for name in (IMAGES, LABELS, SPLIT))


def _batches(job: dict, part: int, batch_size: int, training: bool = False) -> ImageBatches:
    images, labels, split = _arrays(Path(job["arrays"]))
    rows = np.flatnonzero(split == part)
    return ImageBatches(images, np.asarray(labels[rows]), batch_size, job["mean"], job["std"], rows=rows,
                        size=job["image_size"], crop=training and job["image_size"] is not None,
                        shuffle=training, seed=job["config"]["seed"])


def _repeated(source: ImageBatches, n: int):
    """The first ``n`` batches of ``source``, starting over at its end (a test set of fewer batches)."""
    made = 0
    while True:
        for x, _ in source:
            yield x
            made += 1
            if made == n:
                return


def _threads(job: dict) -> int:
    """The job's torch threads, by default every core this process may use: Dask's nanny sets
    OMP_NUM_THREADS=1 for its workers, which their child processes would otherwise inherit."""
    import torch

    threads = job["threads"] or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def train(job: dict) -> dict:
    """Train with the best-validation checkpoint, then top-1 and top-5 on the test images."""
    import torch

    from mirflow.models import build_model, load_pretrained
    from mirflow.stages.training import TrainConfig, predict, train_model

    threads = _threads(job)
    model = build_model(job["spec"], seed=job["config"]["seed"])
    reinitialised = load_pretrained(model, job["pretrained"]) if job["pretrained"] else None
    train_source = _batches(job, TRAIN, job["config"]["batch_size"], training=True)
    config = TrainConfig(**job["config"], num_threads=threads)
    result = train_model(model, train_source, _batches(job, VALIDATION, INFERENCE_BATCH), config,
                         checkpoint_path=Path(job["model_path"]))
    test = _batches(job, TEST, INFERENCE_BATCH)
    probabilities = predict(model, test, "multiclass")
    epochs = result.epochs_run
    return {
        "top1": top_k_accuracy(probabilities, test.labels, 1),
        "top5": top_k_accuracy(probabilities, test.labels, 5),
        "n_parameters": result.n_parameters,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.train_seconds / epochs,
        "data_wait_fraction": train_source.wait_seconds / result.train_seconds,
        "train_peak_memory_bytes": result.peak_cuda_memory_bytes or result.peak_memory_bytes,
        "memory_kind": "cuda_max_allocated" if result.peak_cuda_memory_bytes else "process_rss",
        "device": result.device,
        "torch_threads": torch.get_num_threads(),
        "pretrained_reinitialised": reinitialised,
    }


def infer(job: dict) -> dict:
    """Mean time of a forward pass on a batch of 100 test images, over ``batches`` batches (one warm-up first)."""
    import torch

    from mirflow.stages.training import load_model, resolve_device

    _threads(job)
    device = resolve_device("auto")
    model, _ = load_model(Path(job["model_path"]))
    model.to(device)
    batches = _repeated(_batches(job, TEST, INFERENCE_BATCH), job["batches"] + 1)
    memory.reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, rows = [], 0
    with torch.no_grad():
        for i, x in enumerate(batches):  # made one at a time: an upsampled test set would not fit
            x = x.to(device)
            began = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first batch pays for lazy initialisation
                seconds.append(time.perf_counter() - began)
                rows = max(rows, len(x))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else memory.peak_rss_bytes()
    return {"infer_seconds_per_batch": float(np.mean(seconds)), "infer_peak_memory_bytes": int(peak),
            "infer_batch_rows": rows}


# What a fresh process runs, by mode; named here (and checked in in_fresh_process) so the
# stage's cache key follows the code the subprocess runs: the models, training, inference.
JOBS = {"train": train, "infer": infer}

if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    outcome = JOBS[job["mode"]](job)
    Path(job["result"]).write_text(json.dumps(outcome))
