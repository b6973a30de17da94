"""Tasks of the CNN cost benchmark (report 000, project B): the images (or the generated demo
set), the normalisation fitted on training images, one benchmark per model on Dask, the report."""

from __future__ import annotations

import os

from mirflow import runs
from mirflow.core.fingerprint import file_fingerprint
from mirflow.core.store import ArtifactRef
from mirflow.datasets import cifar100
from mirflow.pipelines.cnn_benchmark import benchmark, images, logmels
from mirflow.pipelines.cnn_benchmark.params import model_spec, train_config
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, data_dir_or_demo, run_logger, run_stage


@task(**STAGE_DEFAULTS)
def load_images(ctx: RunContext) -> ArtifactRef:
    params = ctx.params
    if params.features_from:
        source = logmels.open_logmel_run(ctx.store, params.features_from)
        inputs = {"shards": [ref.key for ref in source.features.shards], "split": source.split.key}
        return run_stage(ctx, "images", logmels.write_logmel_images, {"frames": logmels.CROP_FRAMES}, inputs,
                         (source.features, source.split, source.classes, logmels.CROP_FRAMES))
    data_dir = data_dir_or_demo(
        ctx, "cifar100", params.demo_images,
        lambda folder: cifar100.synthesize(folder, params.demo_images, seed=params.seed, classes=params.demo_classes),
        variant=f"classes{params.demo_classes}")
    prints = [file_fingerprint(path, data_dir, params.fingerprint) for path in cifar100.list_files(data_dir)]
    settings = {"label": params.label, "validation_fraction": params.validation_fraction, "seed": params.seed}
    return run_stage(ctx, "images", images.write_images, settings, prints,
                     (data_dir, params.label, params.validation_fraction, params.seed))


@task(**STAGE_DEFAULTS)
def fit_normalisation(ctx: RunContext, image_set: ArtifactRef) -> ArtifactRef:
    return run_stage(ctx, "normalise", images.write_normalisation, {}, image_set.key, (ctx.store, image_set))


@task(**STAGE_DEFAULTS, task_run_name="benchmark-{model}")
def benchmark_model(ctx: RunContext, image_set: ArtifactRef, normalisation: ArtifactRef, model: str) -> ArtifactRef:
    """Train and measure one model on a Dask worker, itself in fresh processes (see `measure`)."""
    params = ctx.params
    if params.features_from:
        n_classes, channels = len(logmels.open_logmel_run(ctx.store, params.features_from).classes), 1
    else:
        n_classes, channels = cifar100.N_FINE if params.label == "fine" else cifar100.N_COARSE, 3
    spec, config = model_spec(params, model, n_classes, channels), train_config(params, model)
    settings = {"image_size": params.image_size, "threads": params.threads, "batches": params.inference_batches,
                "pretrained": params.pretrained.get(model)}
    inputs = {"images": image_set.key, "normalisation": normalisation.key}
    return run_stage(ctx, "train", benchmark.write_benchmark, {"spec": spec, "config": config, **settings}, inputs,
                     (ctx.store, image_set, normalisation, spec, config, settings), on_dask=True,
                     label=f"train[{model}]")


def data_note(params) -> str:
    """The report's line on what the models saw."""
    if params.features_from:
        return (f"Data: the log-mel spectrograms of gtzan run `{params.features_from}` "
                f"(1 x 128 bands x {logmels.CROP_FRAMES} frames crops), in that run's own train/validation/test split.")
    source = (f"CIFAR-100 from `{params.data_dir}`" if params.data_dir else
              f"a generated CIFAR-format demo set ({params.demo_images} images, {params.demo_classes} classes)")
    return f"Data: {source}, {params.label} labels, images at {params.image_size or 32}x{params.image_size or 32}."


@task(**UNCACHED)
def collect_benchmark(ctx: RunContext, results: dict[str, ArtifactRef], normalisation: ArtifactRef) -> runs.RunOutputs:
    """Metrics per model, the ball chart, the cost table and the accuracy curves for the run folder."""
    if ctx.explain:
        return runs.RunOutputs({})
    import torch  # only once there are results to collect

    store = ctx.store
    found = {model: store.read_json(ref, benchmark.BENCHMARK) for model, ref in results.items()}
    metrics = {model: {**benchmark.model_metrics(r), "validation": {"top1": r["history"][r["best_epoch"] - 1]["val_metric"]}}
               for model, r in found.items()}
    hardware = {"devices": sorted({r["device"] for r in found.values()}),
                "torch_threads": sorted({r["torch_threads"] for r in found.values()}), "cpu_count": os.cpu_count(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    outputs = runs.RunOutputs(metrics, extra={"hardware": hardware}, notes=[data_note(ctx.params)])
    outputs.files["ball_chart.png"] = benchmark.ball_chart_png(metrics)
    outputs.files["cost_table.png"] = benchmark.cost_table_png(metrics)
    outputs.files["accuracy_over_epochs.png"] = benchmark.accuracy_curves_png({m: r["history"] for m, r in found.items()})
    outputs.files["cost_table.json"] = benchmark.cost_rows(metrics)
    outputs.files["preprocessing.json"] = store.read_bytes(normalisation, images.NORMALISATION)
    for model, ref in results.items():
        outputs.files[f"models/{model}.pt"] = store.read_bytes(ref, benchmark.MODEL)
    outputs.figures.update({"Accuracy vs inference cost (ball area = parameters)": "ball_chart.png",
                            "Memory and time in training and inference": "cost_table.png",
                            "Validation accuracy over epochs": "accuracy_over_epochs.png"})
    run_logger().info("cost table:\n%s", "\n".join(str(row) for row in benchmark.cost_rows(metrics)))
    return outputs
