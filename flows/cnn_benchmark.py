"""CNN cost benchmark (report 000, project B): accuracy x parameters x memory x time.

images → normalisation fitted on train → per model, on Dask: train + measure in fresh
processes (one model at a time unless ``parallel``) → ball chart, cost table, report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow.pipelines.cnn_benchmark.params import CnnBenchmarkParams
from mirflow.runs import Selection
from tasks.cnn_benchmark import benchmark_model, collect_benchmark, fit_normalisation, load_images
from tasks.run import finish_run, start_run


@pipeline_flow("cnn_benchmark")
def cnn_benchmark(params: CnnBenchmarkParams = CnnBenchmarkParams(), explain: bool = False) -> dict:
    """Benchmark image CNNs on CIFAR-100 (or the generated demo set); `explain` only reports what would re-run."""
    params.check_inputs()
    ctx = start_run("cnn_benchmark", params, explain)
    try:
        image_set = load_images(ctx)
        normalisation = fit_normalisation(ctx, image_set)
        futures = {}
        for model in params.models:
            futures[model] = benchmark_model.submit(ctx, image_set, normalisation, model)
            if not params.parallel:  # costs are only comparable when each model runs alone
                futures[model].result()
        results = {model: future.result() for model, future in futures.items()}
        outputs = collect_benchmark(ctx, results, normalisation)
        return finish_run(ctx, outputs, Selection(split="validation", metric="top1"))
    finally:
        ctx.close()
