"""One model's benchmark stage, and the run's figures: the ball chart, the cost table and
accuracy over epochs (report 000, figures 7-9)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.cnn_benchmark.images import IMAGES, LABELS, NORMALISATION, SPLIT
from mirflow.pipelines.cnn_benchmark.measure import in_fresh_process

BENCHMARK = "benchmark.json"
MODEL = "model.pt"
COST_COLUMNS = {  # metric -> column of the cost table
    "train_peak_memory_mb": "train memory (MB)", "seconds_per_epoch": "train s/epoch",
    "infer_peak_memory_mb": "infer memory (MB)", "infer_ms_per_batch": "infer ms/batch of 100",
}


def write_benchmark(writer: ArtifactWriter, store: ArtifactStore, images: ArtifactRef, normalisation: ArtifactRef,
                    spec: dict, config: dict, settings: dict) -> dict:
    """Train ``spec`` in a fresh process, then time its inference in another; the best model and the figures."""
    stats = store.read_json(normalisation, NORMALISATION)
    with tempfile.TemporaryDirectory(prefix="mirflow-cnn-") as folder:
        folder = Path(folder)
        for name in (IMAGES, LABELS, SPLIT):
            (folder / name).write_bytes(store.read_bytes(images, name))
        job = {"spec": spec, "config": config, "arrays": str(folder), "model_path": str(folder / MODEL),
               "mean": stats["mean"], "std": stats["std"], **settings}
        trained = in_fresh_process({**job, "mode": "train"}, folder)
        inferred = in_fresh_process({**job, "mode": "infer"}, folder)
        writer.write_bytes(MODEL, (folder / MODEL).read_bytes())
    result = {"model": spec["name"], "spec": spec, **trained, **inferred}
    writer.write_json(BENCHMARK, result)
    return {k: v for k, v in result.items() if k != "history"}


def model_metrics(result: dict) -> dict:
    """The run's metrics of one model: test accuracy and its costs (memory in MB, time per batch in ms)."""
    return {
        "test": {"top1": result["top1"], "top5": result["top5"]},
        "n_parameters": result["n_parameters"],
        "accuracy_density": result["top1"] / (result["n_parameters"] / 1e6),  # top-1 per million parameters
        "train_peak_memory_mb": result["train_peak_memory_bytes"] / 2**20,
        "seconds_per_epoch": result["seconds_per_epoch"],
        "data_wait_fraction": result["data_wait_fraction"],
        "infer_peak_memory_mb": result["infer_peak_memory_bytes"] / 2**20,
        "infer_ms_per_batch": 1000 * result["infer_seconds_per_batch"],
        "best_epoch": result["best_epoch"],
    }


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def ball_chart_png(metrics: dict[str, dict]) -> bytes:
    """Top-1 accuracy against inference time per batch; ball area proportional to the parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5))
    largest = max(m["n_parameters"] for m in metrics.values())
    for name, m in metrics.items():
        axes.scatter(m["infer_ms_per_batch"], m["test"]["top1"], s=2000 * m["n_parameters"] / largest, alpha=0.5)
        axes.annotate(f"{name}\n{m['n_parameters'] / 1e6:.2f} M", (m["infer_ms_per_batch"], m["test"]["top1"]),
                      ha="center", va="center", fontsize=8)
    axes.set_xlabel("inference time per batch of 100 (ms)")
    axes.set_ylabel("top-1 test accuracy")
    axes.set_title("accuracy vs inference cost (ball area = parameters)")
    axes.margins(0.25)
    return _png(figure)


def cost_rows(metrics: dict[str, dict]) -> list[dict]:
    return [{"model": name, **{column: round(m[key], 1) for key, column in COST_COLUMNS.items()}}
            for name, m in metrics.items()]


def cost_table_png(metrics: dict[str, dict]) -> bytes:
    """Memory and time in training and inference per model (the report's figure 9) as a table image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cost_rows(metrics)
    figure, axes = plt.subplots(figsize=(8, 0.5 + 0.35 * len(rows)))
    axes.axis("off")
    axes.table(cellText=[list(row.values()) for row in rows], colLabels=list(rows[0]), loc="center")
    return _png(figure)


def accuracy_curves_png(histories: dict[str, list[dict]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        axes.plot([h["epoch"] for h in history], [h["val_metric"] for h in history], marker="o", label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    axes.legend()
    return _png(figure)
