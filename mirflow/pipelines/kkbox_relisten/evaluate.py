"""Evaluate the KKBOX models: ROC AUC (the competition's metric), accuracy and log loss
per split, for cold-start and warm rows apart; the learning-rate grid's convergence
figure. Also the one way to load a trained model and score encoded rows with it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.pipelines.kkbox_relisten import relisten
from mirflow.stages import metrics
from mirflow.stages.featuresets import TABLE
from mirflow.stages.splits import SPLITS

METRICS = "metrics.json"
GRID = "grid.json"
CONVERGENCE = "convergence.png"
SELECTED = "selected.json"  # which artifact holds each reported model


def predictions_file(model: str) -> str:
    return f"predictions_{model}.parquet"


class Model:
    """A trained network (``.pt``, loaded with ``weights_only=True``) or LightGBM model
    (its text dump), scoring encoded rows (``relisten.encode``'s columns) to P(re-listen)."""

    def __init__(self, kind: str, data: bytes, cardinalities: list[int]):
        self.kind, self.cardinalities = kind, cardinalities
        if kind == "network":
            from mirflow.stages import training

            self.network, self.spec = training.load_model_bytes(data)
        else:
            import lightgbm as lgb

            self.booster = lgb.Booster(model_str=data.decode())

    def predict(self, encoded: pd.DataFrame) -> np.ndarray:
        if self.kind == "lightgbm":
            return self.booster.predict(relisten.lgbm_inputs(encoded, self.cardinalities))
        from mirflow.stages import training

        x = (encoded[relisten.CODE_COLUMNS].to_numpy(np.int64, copy=True), encoded[relisten.NUMBER_COLUMNS].to_numpy(np.float32, copy=True))
        return training.predict(self.network, training.ArrayBatchSource(x, batch_size=8192), "binary")


def binary_metrics(truth: np.ndarray, scores: np.ndarray, cold: np.ndarray) -> dict:
    """``metrics.binary_report`` of all rows, plus ``cold_*`` / ``warm_*`` of the rows whose
    user or song has (not) been seen in training."""
    result = metrics.binary_report(truth, scores)
    for name, rows in (("cold", cold), ("warm", ~cold)):
        part = metrics.binary_report(truth[rows], scores[rows]) if rows.any() else {"n": 0}
        result.update({f"{name}_{k}": part.get(k) for k in ("n", "roc_auc", "accuracy", "log_loss")})
    return result


def select_network(trained: list[tuple[float, ArtifactRef, dict]]) -> tuple[float, ArtifactRef, dict] | None:
    """The learning rate with the lowest validation loss among those that did not diverge."""
    usable = [t for t in trained if not t[2]["diverged"]]
    return min(usable, key=lambda t: t[2]["best_val_loss"]) if usable else None


def _network_scores(store: ArtifactStore, encoded: ArtifactRef, model_ref: ArtifactRef, row_ids: np.ndarray) -> np.ndarray:
    from mirflow.stages import training

    network, _ = training.load_model_bytes(store.read_bytes(model_ref, training.MODEL))
    return training.predict(network, relisten.batches(store, encoded, row_ids, 8192), "binary")


def write_evaluation(writer: ArtifactWriter, store: ArtifactStore, encoded: ArtifactRef, split_ref: ArtifactRef,
                     networks: list[tuple[float, ArtifactRef]], lightgbm: ArtifactRef | None) -> dict:
    split = relisten.read_split(store, split_ref)
    table_ids = store.read_parquet(encoded, TABLE, columns=["row_id", "target"]).to_pandas()
    rows = table_ids.merge(split, on="row_id", how="left")  # stored order: what the batch source yields
    cold = (rows["new_user"] | rows["new_song"]).to_numpy()
    trained = [(lr, ref, store.read_json(ref, "summary.json")) for lr, ref in networks]
    grid = [{"lr": lr, **{k: s.get(k) for k in ("diverged", "epochs_run", "best_epoch", "best_val_loss")},
             "history": store.read_json(ref, relisten.HISTORY)} for lr, ref, s in trained]
    scores, selected = {}, {}
    chosen = select_network(trained)
    if chosen is not None:
        scores["network"] = _network_scores(store, encoded, chosen[1], rows["row_id"].to_numpy())
        selected["network"] = {"stage": chosen[1].stage, "key": chosen[1].key, "lr": chosen[0]}
    if lightgbm is not None:
        table = store.read_parquet(encoded, TABLE).to_pandas()
        cardinalities = relisten.read_transform(store, encoded).cardinalities
        scores["lightgbm"] = Model("lightgbm", store.read_bytes(lightgbm, relisten.LGBM_MODEL), cardinalities).predict(table)
        selected["lightgbm"] = {"stage": lightgbm.stage, "key": lightgbm.key}
    results = {}
    for model, score in scores.items():
        results[model] = {s: binary_metrics(rows["target"].to_numpy()[m], score[m], cold[m])
                          for s in SPLITS if (m := (rows["split"] == s).to_numpy()).any()}
        if model == "network":
            results[model].update(lr=chosen[0], best_epoch=chosen[2]["best_epoch"], epochs_run=chosen[2]["epochs_run"])
        frame = pd.DataFrame({"row_id": rows["row_id"], "split": rows["split"], "target": rows["target"], "score": score})
        writer.write_parquet(predictions_file(model), pa.Table.from_pandas(frame, preserve_index=False))
    writer.write_json(METRICS, results)
    writer.write_json(GRID, grid)
    writer.write_json(SELECTED, selected)
    writer.write_bytes(CONVERGENCE, convergence_png(grid))
    return {"models": sorted(results), "diverged": [g["lr"] for g in grid if g["diverged"]]}


def convergence_png(grid: list[dict]) -> bytes:
    """Validation loss and accuracy per epoch, one line per learning rate (report 002's figure 2)."""
    import io

    buffer = io.BytesIO()
    convergence_figure(grid).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def convergence_figure(grid: list[dict]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for entry in grid:
        epochs = [h["epoch"] for h in entry["history"]]
        label = f"lr {entry['lr']:g}" + (" (diverged)" if entry["diverged"] else "")
        loss_axes.plot(epochs, [h["val_loss"] if math.isfinite(h["val_loss"]) else np.nan for h in entry["history"]], marker=".", label=label)
        accuracy_axes.plot(epochs, [h["val_metric"] for h in entry["history"]], marker=".", label=label)
    # Log scale: a rate that saturates the sigmoid reaches losses in the thousands (the
    # validation BCE is computed from logits, unclamped) and flattened the other rates' curves.
    loss_axes.set(xlabel="epoch", ylabel="validation loss (BCE, log scale)", title="(a) convergence", yscale="log")
    accuracy_axes.set(xlabel="epoch", ylabel="validation accuracy", title="(b) accuracy")
    loss_axes.legend()
    return figure
