"""KKBOX re-listen tasks: consolidate, split, transform (fitted on training rows), audit,
train the network per learning rate and LightGBM on Dask, evaluate, collect the outputs."""

from __future__ import annotations

from pathlib import Path

from mirflow import runs
from mirflow.core.fingerprint import file_fingerprint
from mirflow.core.store import ArtifactRef
from mirflow.datasets import kkbox
from mirflow.pipelines.kkbox_relisten import evaluate, relisten
from mirflow.pipelines.kkbox_relisten.features import ROW_FIELDS, SIDE_KEYS
from mirflow.pipelines.kkbox_relisten.params import TABLES
from mirflow.stages.splits import SPLITS
from tasks.common import STAGE_DEFAULTS, UNCACHED, task
from tasks.runtime import RunContext, data_dir_or_demo, run_logger, run_stage


@task(**STAGE_DEFAULTS)
def consolidate(ctx: RunContext) -> tuple[str, ArtifactRef]:
    """The data folder and its joined training rows; the demo data set when no data folder is given."""
    p = ctx.params
    data_dir = data_dir_or_demo(ctx, "kkbox", p.demo_rows, lambda folder: kkbox.synthesize(folder, p.demo_rows, seed=p.seed))
    inputs = [file_fingerprint(Path(data_dir) / f"{t}.csv", data_dir, p.fingerprint) for t in TABLES]
    params = {"min_join_coverage": p.min_join_coverage}
    return data_dir, run_stage(ctx, "consolidate", relisten.write_consolidated, params, inputs, (data_dir, p.min_join_coverage))


@task(**STAGE_DEFAULTS)
def split_rows(ctx: RunContext, joined: ArtifactRef) -> ArtifactRef:
    p = ctx.params
    params = {"split": p.split, "fractions": list(p.fractions), "seed": p.seed}
    args = (ctx.store, joined, p.split, p.fractions, p.seed)
    return run_stage(ctx, "split", relisten.write_split, params, {"joined": joined.key}, args)


@task(**STAGE_DEFAULTS)
def fit_transform(ctx: RunContext, joined: ArtifactRef, split: ArtifactRef) -> ArtifactRef:
    args = (ctx.store, joined, split, ctx.params.min_category_count)
    inputs = {"joined": joined.key, "split": split.key}
    return run_stage(ctx, "transform", relisten.write_transform, {"min_count": ctx.params.min_category_count}, inputs, args, on_dask=True)


@task(**UNCACHED)
def audit_leakage(ctx: RunContext, joined: ArtifactRef, split: ArtifactRef, transform: ArtifactRef) -> dict:
    """Never cached: re-reads the saved artifacts on every run and fails the flow on a leak."""
    if ctx.explain:
        return {}
    return relisten.audit_leakage(ctx.store, joined, split, transform, ctx.params.min_category_count)


@task(**STAGE_DEFAULTS, task_run_name="train-network-lr{lr}")
def train_network(ctx: RunContext, encoded: ArtifactRef, split: ArtifactRef, lr: float) -> ArtifactRef:
    p = ctx.params
    config = {
        "lr": lr, "seed": p.seed, "embedding_dim": p.embedding_dim, "hidden": list(p.hidden), "batch_size": p.batch_size,
        "max_epochs": p.max_epochs, "patience": p.patience, "min_delta": p.min_delta,
        "plateau_patience": p.plateau_patience, "plateau_factor": p.plateau_factor, "loss": p.loss,
    }
    inputs = {"encoded": encoded.key, "split": split.key}
    return run_stage(ctx, "train", relisten.write_network, config, inputs, (ctx.store, encoded, split, config),
                     on_dask=True, label=f"train[network lr={lr:g}]")


@task(**STAGE_DEFAULTS, task_run_name="train-lightgbm")
def train_lightgbm(ctx: RunContext, encoded: ArtifactRef, split: ArtifactRef) -> ArtifactRef:
    config = {"model": "lightgbm", "seed": ctx.params.seed, "rounds": ctx.params.lgbm_rounds, "leaves": ctx.params.lgbm_leaves}
    inputs = {"encoded": encoded.key, "split": split.key}
    return run_stage(ctx, "train", relisten.write_lightgbm, config, inputs, (ctx.store, encoded, split, config),
                     on_dask=True, label="train[lightgbm]")


@task(**STAGE_DEFAULTS)
def evaluate_models(ctx: RunContext, encoded: ArtifactRef, split: ArtifactRef, networks: list[tuple[float, ArtifactRef]],
                    lightgbm: ArtifactRef | None) -> ArtifactRef:
    inputs = {"encoded": encoded.key, "split": split.key, "networks": [(lr, r.key) for lr, r in networks],
              "lightgbm": lightgbm and lightgbm.key}
    args = (ctx.store, encoded, split, networks, lightgbm)
    return run_stage(ctx, "evaluate", evaluate.write_evaluation, {}, inputs, args)


@task(**UNCACHED)
def collect_outputs(ctx: RunContext, data_dir: str, joined: ArtifactRef, split: ArtifactRef, encoded: ArtifactRef, evaluation: ArtifactRef) -> runs.RunOutputs:
    """Metrics, models, predictions, the convergence figure, the join coverage and
    cold-start shares, and what `mirflow score` / `serve-model` need (transform.json)."""
    if ctx.explain:
        return runs.RunOutputs({})
    store = ctx.store
    consolidated, split_summary = store.read_json(joined, "summary.json"), store.read_json(split, "summary.json")
    outputs = runs.RunOutputs(store.read_json(evaluation, evaluate.METRICS))
    selected = store.read_json(evaluation, evaluate.SELECTED)
    for model, where in selected.items():
        ref = ArtifactRef(where["stage"], where["key"])
        name = "models/network.pt" if model == "network" else "models/lightgbm.txt"
        outputs.files[name] = store.read_bytes(ref, "model.pt" if model == "network" else relisten.LGBM_MODEL)
        outputs.files[f"predictions/{model}.parquet"] = store.read_bytes(evaluation, evaluate.predictions_file(model))
    outputs.files["transform.json"] = store.read_bytes(encoded, relisten.TRANSFORM)
    outputs.files["convergence.png"] = store.read_bytes(evaluation, evaluate.CONVERGENCE)
    grid = store.read_json(evaluation, evaluate.GRID)
    outputs.files["lr_grid.json"] = grid
    outputs.figures["Validation loss and accuracy per epoch per learning rate"] = "convergence.png"
    coverage = consolidated["coverage"]
    outputs.notes = [
        "Join coverage of train.csv rows: " + "; ".join(
            f"{name}.csv {c['matched']}/{c['rows']} ({c['share']:.1%})" for name in SIDE_KEYS for c in [coverage[name]]) + ".",
        f"Split `{split_summary['strategy']}`: " + ", ".join(f"{s} {split_summary['rows'][s]}" for s in SPLITS) + " rows. "
        + "Cold start (user or song never in training): " + "; ".join(
            f"{s} {c['either']:.1%} (new user {c['new_user']:.1%}, new song {c['new_song']:.1%})"
            for s in ("validation", "test") for c in [split_summary[f"cold_start_{s}"]]) + ".",
        "Learning-rate grid (network): " + "; ".join(
            f"lr {g['lr']:g}: " + ("diverged" if g["diverged"] else
                                   f"best validation loss {g['best_val_loss']:.4f} at epoch {g['best_epoch']} of {g['epochs_run']}, "
                                   f"accuracy {g['history'][g['best_epoch'] - 1]['val_metric']:.3f}")
            for g in grid) + ".",
    ]
    # Where serve-model finds songs, song_extra_info and members unless told otherwise.
    outputs.files["inputs.json"] = {"tables": str(Path(data_dir).resolve()), "fields": list(ROW_FIELDS)}
    outputs.extra = {"inputs": {"coverage": coverage, "split": split_summary, "rows": consolidated["rows"]}}
    run_logger().info("join coverage: %s", {n: round(c["share"], 3) for n, c in coverage.items()})
    return outputs


@task(**UNCACHED)
def score_rows(params) -> dict:
    """Batch scoring with a finished run (``mirflow score``): never cached, it writes a
    file outside the store."""
    from mirflow.pipelines.kkbox_relisten.scoring import Scorer, score_csv

    runs.check_writable(params.out)
    scorer = Scorer(runs.resolve_run(params.run, params.store), params.tables or Path(params.input_csv).parent, params.model)
    summary = score_csv(scorer, params.input_csv, params.out, params.chunk_rows)
    run_logger().info("scored %d rows with %s of run %s -> %s (unknown users %d, songs %d)", summary["rows"], summary["model"],
                      summary["run_id"], summary["out"], summary["unknown_msno"], summary["unknown_song_id"])
    return summary
