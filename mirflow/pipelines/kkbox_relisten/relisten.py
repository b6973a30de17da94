"""The stages of the KKBOX re-listen flow: consolidate, split, transform, audit, train
(network per learning rate, LightGBM) and evaluate. Each ``write_*`` fills one artifact
and returns a small JSON summary; none imports Prefect."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import kkbox
from mirflow.pipelines.kkbox_relisten import features as kf
from mirflow.stages import leakage
from mirflow.stages.featuresets import TABLE, FeatureBatchSource, FeatureSet
from mirflow.stages.splits import SPLIT_DTYPE, SPLITS, split_train_val_test, validate_split

JOINED = "joined.parquet"
SPLIT = "split.parquet"
TRANSFORM = "transform.json"
HISTORY = "history.json"
LGBM_MODEL = "model.txt"
ROW_GROUP = 65_536  # rows per Parquet row group: what training streams at a time
CODE_COLUMNS = [f"code_{f}" for f in kf.CATEGORICAL]
NUMBER_COLUMNS = [f"num_{f}" for f in kf.NUMERIC]


# -- consolidate -------------------------------------------------------------------
def read_sides(folder: str | Path) -> dict[str, pd.DataFrame]:
    """songs, song_extra_info and members, each keeping the first row of a repeated key;
    list columns Arrow-backed, so a join takes them without a Python object per row."""
    sides = {name: kkbox.read_file(Path(folder) / f"{name}.csv").drop_duplicates(key) for name, key in kf.SIDE_KEYS.items()}
    for name, frame in sides.items():
        for column in frame.columns[frame.dtypes == object]:
            lists = pa.array(frame[column], type=pa.list_(pa.string()), from_pandas=True)
            frame[column] = pd.Series(pd.arrays.ArrowExtensionArray(lists), index=frame.index)
    return sides


def write_consolidated(writer: ArtifactWriter, data_dir: str, min_join_coverage: float) -> dict:
    """train.csv left-joined with songs, song_extra_info and members; fails when a side
    table covers fewer than ``min_join_coverage`` of the rows."""
    train = kkbox.read_file(Path(data_dir) / "train.csv")
    sides = read_sides(data_dir)
    coverage = kf.join_coverage(train, sides)
    kf.check_coverage(coverage, min_join_coverage, data_dir)
    joined = kf.join(train.assign(row_id=np.arange(len(train), dtype=np.int64)), sides)
    # Without pandas' metadata: it names the Arrow-backed list columns' dtype in a form
    # pyarrow cannot read back; the Arrow types alone give the same columns.
    table = pa.Table.from_pandas(joined, preserve_index=False).replace_schema_metadata()
    writer.write_parquet(JOINED, table, row_group_size=ROW_GROUP)
    return {"rows": len(joined), "coverage": coverage, "positive_rate": float(train["target"].mean()) if len(train) else None}


# -- split ---------------------------------------------------------------------------
def write_split(writer: ArtifactWriter, store: ArtifactStore, joined: ArtifactRef, strategy: str,
                fractions: Sequence[float], seed: int) -> dict:
    """chronological: train.csv is in time order, so validation and test are its latest
    rows (as the competition's test set was); random: seeded, stratified by target.
    Marks validation/test rows whose user or song no training row has (cold start)."""
    rows = store.read_parquet(joined, JOINED, columns=["row_id", "msno", "song_id", "target"]).to_pandas()
    if strategy == "chronological":
        cuts = np.floor(np.cumsum(fractions)[:2] * len(rows)).astype(int)
        codes = np.searchsorted(cuts, np.arange(len(rows)), side="right")
        split = pd.Series(pd.Categorical.from_codes(codes, categories=list(SPLITS)), index=rows["row_id"])
    else:
        split = split_train_val_test(rows.set_index("row_id")["target"], None, fractions=tuple(fractions), seed=seed)
    split = validate_split(split)
    train = (split == "train").to_numpy()
    table = pd.DataFrame({
        "row_id": rows["row_id"].to_numpy(), "split": split.astype(str).to_numpy(),
        "new_user": ~rows["msno"].isin(rows["msno"][train].unique()).to_numpy(),
        "new_song": ~rows["song_id"].isin(rows["song_id"][train].unique()).to_numpy(),
    })
    writer.write_parquet(SPLIT, pa.Table.from_pandas(table, preserve_index=False))
    summary = {"strategy": strategy, "rows": {s: int((table["split"] == s).sum()) for s in SPLITS}}
    for s in ("validation", "test"):
        part = table[table["split"] == s]
        n = max(len(part), 1)
        summary[f"cold_start_{s}"] = {
            "new_user": float(part["new_user"].sum() / n), "new_song": float(part["new_song"].sum() / n),
            "either": float((part["new_user"] | part["new_song"]).sum() / n),
        }
    return summary


def read_split(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    """row_id, split (categorical: checking millions of rows needs no per-row look-up), new_user, new_song."""
    table = store.read_parquet(ref, SPLIT).to_pandas()
    return table.assign(split=table["split"].astype(SPLIT_DTYPE))


# -- transform -------------------------------------------------------------------------
def _arrow_lists(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """List columns stay Arrow-backed (not a numpy array per row)."""
    return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) else None


def _derived_with_split(store: ArtifactStore, joined: ArtifactRef, split_ref: ArtifactRef) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    table = store.read_parquet(joined, JOINED).to_pandas(types_mapper=_arrow_lists)
    split = read_split(store, split_ref).set_index("row_id")["split"].reindex(table["row_id"])
    derived = kf.derive(table)
    derived.index = table["row_id"].to_numpy()
    split.index = derived.index
    return derived, validate_split(split), table[["row_id", "target"]]  # the joined columns are no longer needed


def encode(transform: kf.Transform, derived: pd.DataFrame) -> pd.DataFrame:
    """Model inputs as columns: one int32 code per categorical field, one float32 per number."""
    codes, numbers = transform.codes(derived), transform.numbers(derived)
    columns = {c: codes[:, i].astype(np.int32) for i, c in enumerate(CODE_COLUMNS)}
    columns.update({c: numbers[:, i] for i, c in enumerate(NUMBER_COLUMNS)})
    return pd.DataFrame(columns, index=derived.index)


def write_transform(writer: ArtifactWriter, store: ArtifactStore, joined: ArtifactRef, split_ref: ArtifactRef,
                    min_count: int) -> dict:
    """Fit encoders, fill means and scaler on training rows only; write every row's model inputs."""
    derived, split, table = _derived_with_split(store, joined, split_ref)
    transform = kf.fit_transform(derived, split, min_count)
    writer.write_json(TRANSFORM, transform.to_dict())
    encoded = encode(transform, derived)
    encoded.insert(0, "target", table["target"].to_numpy(np.float32))
    encoded.insert(0, "row_id", table["row_id"].to_numpy())
    writer.write_parquet(TABLE, pa.Table.from_pandas(encoded, preserve_index=False), row_group_size=ROW_GROUP)
    unknown = {f: float((encoded[c] == kf.UNKNOWN).mean()) for f, c in zip(kf.CATEGORICAL, CODE_COLUMNS)}
    return {"fitted_rows": int((split == "train").sum()), "vocabulary": {f: len(v) for f, v in transform.vocabularies.items()},
            "unknown_share": unknown}


def read_transform(store: ArtifactStore, ref: ArtifactRef) -> kf.Transform:
    return kf.Transform.from_dict(store.read_json(ref, TRANSFORM))


def audit_leakage(store: ArtifactStore, joined: ArtifactRef, split_ref: ArtifactRef, transform_ref: ArtifactRef,
                  min_count: int) -> dict:
    """Refit every encoder, fill mean and scaler statistic on the saved split's training
    rows and compare with the saved transform; rows are their own groups (users and
    songs recur on purpose: cold start is reported, not prevented)."""
    derived, split, _ = _derived_with_split(store, joined, split_ref)
    problems = kf.audit_transform(read_transform(store, transform_ref), derived, split, min_count)
    return leakage.verdict(problems, groups_checked=len(split), scaler_rows=int((split == "train").sum()), subject=" (kkbox transform)")


# -- train -----------------------------------------------------------------------------
def to_xy(frame: pd.DataFrame) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    return (frame[CODE_COLUMNS].to_numpy(np.int64, copy=True), frame[NUMBER_COLUMNS].to_numpy(np.float32, copy=True)), frame["target"].to_numpy(np.float32, copy=True)


def batches(store: ArtifactStore, encoded: ArtifactRef, row_ids, batch_size: int, shuffle: bool = False, seed: int = 0) -> FeatureBatchSource:
    """Batches of the given rows streamed from the transform's table (never all of it at once)."""
    return FeatureBatchSource(FeatureSet(store, (encoded,)), ["target", *CODE_COLUMNS, *NUMBER_COLUMNS], row_ids, to_xy,
                              batch_size, shuffle=shuffle, seed=seed, read_rows=max(batch_size, 8192))


def _split_ids(store: ArtifactStore, split_ref: ArtifactRef) -> dict[str, np.ndarray]:
    split = read_split(store, split_ref)
    return {s: split["row_id"][split["split"] == s].to_numpy() for s in SPLITS}


def write_network(writer: ArtifactWriter, store: ArtifactStore, encoded: ArtifactRef, split_ref: ArtifactRef,
                  config: dict) -> dict:
    """Train the embedding network at one learning rate; a diverging rate is recorded
    (its history up to the divergence), not raised: the grid shows it."""
    from mirflow.core import progress
    from mirflow.models import build_model
    from mirflow.stages import training

    ids = _split_ids(store, split_ref)
    transform = read_transform(store, encoded)
    spec = {"name": "embedding", "cardinalities": transform.cardinalities, "n_numeric": len(kf.NUMERIC),
            "embedding_dim": config["embedding_dim"], "hidden": list(config["hidden"])}
    model = build_model(spec, seed=config["seed"])
    settings = training.TrainConfig(
        lr=config["lr"], weight_decay=0.0, batch_size=config["batch_size"], max_epochs=config["max_epochs"],
        patience=config["patience"], min_delta=config["min_delta"], scheduler="plateau",
        plateau_factor=config["plateau_factor"], plateau_patience=config["plateau_patience"],
        seed=config["seed"], task="binary", device="cpu", binary_loss=config["loss"],
    )
    label = f"train[network lr={config['lr']:g}]"
    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        history.append(record)
        progress.report(label, record["epoch"], settings.max_epochs)

    train = batches(store, encoded, ids["train"], settings.batch_size, shuffle=True, seed=config["seed"])
    validation = batches(store, encoded, ids["validation"], 8192)
    try:
        result = training.train_model(model, train, validation, settings, on_epoch=on_epoch)
    except training.TrainingDiverged as error:
        writer.write_json(HISTORY, history)
        return {"lr": config["lr"], "diverged": True, "reason": str(error), "epochs_run": len(history)}
    writer.write_bytes(training.MODEL, training.model_bytes(model, spec))
    writer.write_json(HISTORY, result.history)
    return {"lr": config["lr"], "diverged": False, "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
            "epochs_run": result.epochs_run, "train_seconds": result.train_seconds, "n_parameters": result.n_parameters}


def lgbm_inputs(table: pd.DataFrame, cardinalities: Sequence[int]) -> pd.DataFrame:
    """LightGBM's inputs: codes as pandas categoricals over their full range (its native
    categorical splits; the same categories for any subset of rows, e.g. a scoring chunk)."""
    frame = table[CODE_COLUMNS + NUMBER_COLUMNS].copy()
    for column, n in zip(CODE_COLUMNS, cardinalities):
        frame[column] = pd.Categorical(frame[column], categories=range(n))
    return frame


def write_lightgbm(writer: ArtifactWriter, store: ArtifactStore, encoded: ArtifactRef, split_ref: ArtifactRef,
                   config: dict) -> dict:
    """Gradient-boosted trees on the same inputs, codes as native categorical features,
    early stopping on validation log loss (trees need their rows in memory)."""
    import lightgbm as lgb

    split = read_split(store, split_ref).set_index("row_id")["split"]
    table = store.read_parquet(encoded, TABLE).to_pandas().set_index("row_id")
    where = split.reindex(table.index).to_numpy()
    inputs = lgbm_inputs(table, read_transform(store, encoded).cardinalities)
    train = lgb.Dataset(inputs[where == "train"], table["target"][where == "train"])
    validation = lgb.Dataset(inputs[where == "validation"], table["target"][where == "validation"], reference=train)
    booster = lgb.train(
        {"objective": "binary", "metric": "binary_logloss", "num_leaves": config["leaves"], "learning_rate": 0.1,
         "seed": config["seed"], "num_threads": 1, "deterministic": True, "verbose": -1, "min_data_per_group": 20,
         "cat_smooth": 10},
        train, num_boost_round=config["rounds"], valid_sets=[validation],
        callbacks=[lgb.early_stopping(20, verbose=False)],
    )
    writer.write_bytes(LGBM_MODEL, booster.model_to_string().encode())
    return {"best_iteration": booster.best_iteration, "trees": booster.num_trees()}
