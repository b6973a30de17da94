"""AcousticBrainz genre's split stage: one split of the recordings for every source, by
release group (groups linked through any source are merged), the official validation
set as test, and group k-fold numbers on the training rows for cross-fitting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactWriter
from mirflow.pipelines.acousticbrainz_genre import extract as ab_etl
from mirflow.pipelines.acousticbrainz_genre.targets import read_targets
from mirflow.stages import splits
from mirflow.stages.featuresets import FeatureSet
from mirflow.stages.splits import SPLIT


def release_group_components(targets: pd.DataFrame) -> pd.Series:
    """Group per recording: release groups linked by a recording (in any source) are one
    group, named by its smallest release-group MBID."""
    pairs = targets[["recordingmbid", "releasegroupmbid"]].drop_duplicates()
    recording, recordings = pd.factorize(pairs["recordingmbid"])
    release, releases = pd.factorize(pairs["releasegroupmbid"])
    n = len(recordings) + len(releases)
    links = sp.coo_matrix((np.ones(len(pairs)), (recording, len(recordings) + release)), shape=(n, n))
    _, component = connected_components(links, directed=False)
    name = pd.Series(np.asarray(releases)).groupby(component[len(recordings):]).min()
    return pd.Series(name.reindex(component[: len(recordings)]).to_numpy(), index=pd.Index(recordings), name="group")


def _strata(targets: pd.DataFrame) -> pd.Series:
    """``source:genre`` (top-level genres) per recording: what the split stratifies on."""
    exploded = targets[["recordingmbid", "source", "genres"]].explode("genres").dropna(subset=["genres"])
    top = exploded[~exploded["genres"].str.contains("---", regex=False)]
    keys = top["source"] + ":" + top["genres"]
    return keys.groupby(top["recordingmbid"]).agg(lambda v: sorted(set(v)))



def write_recording_split(
    writer: ArtifactWriter,
    features: FeatureSet,
    targets_ref: ArtifactRef,
    validation_fraction: float,
    test_fraction: float,
    folds: int,
    seed: int,
) -> dict:
    """The split stage: one split of the recordings that have features and genres, for
    every source, by release group. Test = the official validation set when the data has
    one (official training recordings of a group with test recordings are dropped), else
    ``test_fraction``; validation = ``validation_fraction`` of the rest. Training rows
    also get ``folds`` group k-fold numbers (others -1), for cross-fitting."""
    targets = read_targets(features.store, targets_ref)
    rows = features.read(list(ab_etl.ID_COLUMNS))
    rows = rows[rows["recordingmbid"].isin(targets["recordingmbid"])].set_index("row_id", drop=False)
    rows["group"] = rows["recordingmbid"].map(release_group_components(targets))
    strata = _strata(targets)
    labels = pd.Series([strata.get(m, []) for m in rows["recordingmbid"]], index=rows.index, dtype=object)
    test = rows["official_split"] == "validation"
    dropped = 0
    if test.any():
        leaking = ~test & rows["group"].isin(set(rows.loc[test, "group"]))
        dropped = int(leaking.sum())
        rows, labels, test = rows[~leaking], labels[~leaking], test[~leaking]
        rest = ~test
        fractions = (1 - validation_fraction, validation_fraction, 0.0)
        assigned = splits.split_train_val_test(labels[rest], rows.loc[rest, "group"], fractions=fractions, seed=seed)
        rows["split"] = "test"
        rows.loc[rest, "split"] = assigned.astype(str).to_numpy()
    else:
        fractions = (1 - validation_fraction - test_fraction, validation_fraction, test_fraction)
        rows["split"] = splits.split_train_val_test(labels, rows["group"], fractions=fractions, seed=seed).astype(str).to_numpy()
    _require_validation_per_source(targets, rows, validation_fraction)
    train = rows["split"] == "train"
    fold = splits.kfold_assignments(labels[train], rows.loc[train, "group"], k=folds, seed=seed)
    rows["fold"] = -1
    rows.loc[train, "fold"] = fold.to_numpy()
    table = rows[["row_id", "recordingmbid", "group", "split", "fold"]].reset_index(drop=True).astype({"fold": "int32"})
    writer.write_parquet(SPLIT, pa.Table.from_pandas(table, preserve_index=False))
    return {
        "rows": {name: int((table["split"] == name).sum()) for name in splits.SPLITS},
        "groups": int(table["group"].nunique()),
        "dropped_for_test_group_overlap": dropped,
        "test_is_official_validation": bool(test.any()),
    }


def _require_validation_per_source(targets: pd.DataFrame, rows: pd.DataFrame, validation_fraction: float) -> None:
    """Every source with training recordings has validation ones: its networks stop early
    on them (never on training rows instead)."""
    by_split = rows.groupby("split")["recordingmbid"].agg(set)
    for source, part in targets.groupby("source"):
        mbids = set(part["recordingmbid"])
        if mbids & by_split.get("train", set()) and not mbids & by_split.get("validation", set()):
            raise ConfigError(f"validation_fraction={validation_fraction} leaves no {source} recording in the validation "
                              "split, which early stopping needs; raise it or add data")


def split_series(split: pd.DataFrame) -> pd.Series:
    return pd.Series(split["split"].to_numpy(), index=pd.Index(split["row_id"]), name="split")
