"""KKBOX re-listen prediction (report 002): embedding network over a learning-rate grid,
and a LightGBM baseline.

consolidate (joins, coverage check) → split (chronological or random; cold-start shares)
→ transform fitted on train (Dask) → leakage audit → train network per lr + LightGBM
(Dask) → evaluate (AUC, accuracy, log loss; cold/warm; convergence figure) → report
"""

from __future__ import annotations

from flows.common import pipeline_flow
from mirflow.pipelines.kkbox_relisten.params import KkboxRelistenParams
from mirflow.runs import Selection
from tasks.kkbox_relisten import (
    audit_leakage,
    collect_outputs,
    consolidate,
    evaluate_models,
    fit_transform,
    split_rows,
    train_lightgbm,
    train_network,
)
from tasks.run import finish_run, start_run


@pipeline_flow("kkbox_relisten")
def kkbox_relisten(params: KkboxRelistenParams = KkboxRelistenParams(), explain: bool = False) -> dict:
    """Re-listen prediction on KKBOX tables; `explain` only reports what would re-run."""
    params.check_inputs()  # missing or mislaid data fails here, before a cluster starts
    ctx = start_run("kkbox_relisten", params, explain)
    try:
        data_dir, joined = consolidate(ctx)
        split = split_rows(ctx, joined)
        encoded = fit_transform(ctx, joined, split)
        audit_leakage(ctx, joined, split, encoded)
        lrs = params.lrs if "network" in params.models else []
        networks = {lr: train_network.submit(ctx, encoded, split, lr) for lr in lrs}
        lightgbm = train_lightgbm.submit(ctx, encoded, split) if "lightgbm" in params.models else None
        trained = [(lr, future.result()) for lr, future in networks.items()]
        evaluation = evaluate_models(ctx, encoded, split, trained, lightgbm and lightgbm.result())
        outputs = collect_outputs(ctx, data_dir, joined, split, encoded, evaluation)
        return finish_run(ctx, outputs, Selection(split="validation", metric="roc_auc", higher_is_better=True))
    finally:
        ctx.close()
