"""The split stage's artifact, shared by every pipeline that splits a feature set by
group: writing the split of its rows and reading it back."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from mirflow.stages import splits
from mirflow.stages.featuresets import FeatureSet
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter

SPLIT = "split.parquet"


def write_split(
    writer: ArtifactWriter,
    features: FeatureSet,
    fractions: Sequence[float],
    seed: int,
    split_file: str | None,
    k_folds: int | None,
    stratify: bool = True,
) -> dict:
    """Group-exclusive train/validation/test split of the rows, stratified by ``label``
    (a continuous target, ``stratify=False``, is not), or a predefined one, plus k folds.

    A predefined split names clips when the rows have a ``clip_id`` (every segment
    follows its clip), rows otherwise; rows it leaves out are left out of every split.
    """
    id_column = "clip_id" if "clip_id" in features.schema().names else "row_id"
    rows = features.read(list(dict.fromkeys(["row_id", id_column, *(["label"] if stratify else []), "group"])))
    if split_file:
        assigned = splits.load_split_file(split_file, rows[id_column].drop_duplicates().tolist())
        split = rows[id_column].map(assigned)
        rows = rows[split.notna()].assign(split=split[split.notna()].astype(str).to_numpy()).reset_index(drop=True)
    else:
        by_row = rows.set_index("row_id")
        labels = by_row["label"] if stratify else None
        rows["split"] = splits.split_train_val_test(labels, by_row["group"], fractions=tuple(fractions), seed=seed).astype(str).to_numpy()
    if k_folds:
        train = rows[rows["split"] == "train"].set_index("row_id")
        folds = splits.kfold_assignments(train["label"] if stratify else None, train["group"], k=k_folds, seed=seed)
        rows["fold"] = rows["row_id"].map(folds).fillna(-1).astype("int32")
    writer.write_parquet(SPLIT, pa.Table.from_pandas(rows, preserve_index=False))
    in_split = {name: rows[rows["split"] == name] for name in splits.SPLITS}
    summary = {"rows": {name: len(part) for name, part in in_split.items()},
               "groups": {name: int(part["group"].nunique()) for name, part in in_split.items()}}
    return {**summary, "classes": sorted(rows["label"].unique())} if stratify else summary


def read_split(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    return store.read_parquet(ref, SPLIT).to_pandas()
