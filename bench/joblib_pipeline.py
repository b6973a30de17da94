"""The baseline of benchmark 3: the GTZAN pipeline as a plain script, calling the same
``mirflow`` functions the flow's stages call, parallelised with joblib (2 processes)
instead of Prefect + Dask, with no store, no caching and no audit.

discover → the flow's shards → ``extract_shard`` per shard (joblib) → one Parquet file
→ group split → scaler fitted on train → MLP (same TrainConfig) → test accuracy.

``python -m bench.joblib_pipeline DATA_DIR OUT_DIR`` runs it on its own.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from joblib import Parallel, delayed

from mirflow.datasets import gtzan
from mirflow.models import build_model
from mirflow.pipelines.gtzan.extract import extract_shard
from mirflow.pipelines.gtzan.features import FeatureSettings, feature_names
from mirflow.stages import metrics, scaling, splits, training
from mirflow.stages.shards import plan_shards


def run(data_dir: Path, out_dir: Path, *, n_jobs: int = 2, shard_size: int = 64, seed: int = 0,
        hidden: tuple[int, ...] = (90, 70, 50), max_epochs: int = 30, patience: int = 10) -> dict:
    """Run the pipeline; returns seconds per phase, row counts and test accuracy."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] = round(now - clock, 3)
        clock = now

    out_dir.mkdir(parents=True, exist_ok=True)
    clips = gtzan.discover(data_dir).rename(columns={"genre": "label"})
    clips["rel_path"] = [os.path.relpath(path, data_dir) for path in clips["path"]]
    settings = FeatureSettings()
    shards = plan_shards(clips, shard_size)
    lap("discover")
    results = Parallel(n_jobs=n_jobs)(delayed(extract_shard)(shard.files, settings, None) for shard in shards)
    table = pa.concat_tables([shard_table for shard_table, _ in results])
    pq.write_table(table, out_dir / "features.parquet", compression="zstd")
    lap("extract")

    columns = feature_names(settings)
    frame = table.select(["row_id", "label", "group", *columns]).to_pandas().set_index("row_id")
    split = splits.split_train_val_test(frame["label"], frame["group"], fractions=(0.7, 0.15, 0.15), seed=seed)
    scaler = scaling.fit_scaler_on_train(frame[columns].to_numpy(np.float64), split, kind="standard", columns=columns)
    X = scaling.apply_scaler(scaler, frame[columns].to_numpy(np.float64))
    classes = sorted(frame["label"].unique())
    y = frame["label"].map({name: i for i, name in enumerate(classes)}).to_numpy(np.int64)
    part = {name: (split == name).to_numpy() for name in ("train", "validation", "test")}
    lap("split+scale")

    model = build_model({"name": "mlp", "n_in": len(columns), "hidden": list(hidden), "n_out": len(classes)}, seed=seed)
    config = training.TrainConfig(max_epochs=max_epochs, patience=patience, seed=seed, task="multiclass")
    training.train_model(
        model,
        training.ArrayBatchSource(X[part["train"]], y[part["train"]], config.batch_size, shuffle=True, seed=seed),
        training.ArrayBatchSource(X[part["validation"]], y[part["validation"]], config.batch_size),
        config,
    )
    training.save_model(model, out_dir / "mlp.pt")
    lap("train")

    probabilities = training.predict(model, training.ArrayBatchSource(X[part["test"]], batch_size=256), "multiclass")
    report = metrics.classification_report(
        y[part["test"]], probabilities.argmax(1), labels=list(range(len(classes)))
    )
    lap("evaluate")
    return {
        "seconds_by_phase": seconds,
        "rows": table.num_rows,
        "failures": sum(len(failures) for _, failures in results),
        "shards": len(shards),
        "test_accuracy": round(float(report["accuracy"]), 4),
    }


if __name__ == "__main__":
    print(run(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))
