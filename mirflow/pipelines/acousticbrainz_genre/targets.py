"""AcousticBrainz genre's targets stage: every source's genre sets from the ground-truth
TSVs, each source's taxonomy, and their lookup as a recordings x labels matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import acousticbrainz as ab

TARGETS = "targets.parquet"
TAXONOMIES = "taxonomies.json"


def write_targets(writer: ArtifactWriter, groundtruth: dict[str, dict[str, str]]) -> dict:
    """The targets stage: every (source, recording) genre set from the ground-truth TSVs
    (``groundtruth[source][split]`` = path), and each source's taxonomy: the labels
    (genres and subgenres) of its official training rows."""
    frames = [
        ab.read_groundtruth(path).assign(source=source, official_split=split)
        for source, by_split in sorted(groundtruth.items())
        for split, path in sorted(by_split.items())
    ]
    table = pd.concat(frames, ignore_index=True)
    repeated = table.duplicated(["source", "recordingmbid"])
    table = table[~repeated]
    taxonomies = {}
    for source, part in table.groupby("source"):
        labelled = part[part["official_split"] == "train"] if (part["official_split"] == "train").any() else part
        taxonomies[source] = sorted({genre for genres in labelled["genres"] for genre in genres})
    columns = ["source", "recordingmbid", "releasegroupmbid", "official_split", "genres"]
    schema = pa.schema([pa.field(c, pa.string()) for c in columns[:-1]] + [pa.field("genres", pa.list_(pa.string()))])
    writer.write_parquet(TARGETS, pa.Table.from_pandas(table[columns], schema=schema, preserve_index=False))
    writer.write_json(TAXONOMIES, taxonomies)
    return {
        "recordings": {s: int(n) for s, n in table["source"].value_counts().sort_index().items()},
        "labels": {s: len(names) for s, names in taxonomies.items()},
        "repeated_rows_dropped": int(repeated.sum()),
    }


def read_targets(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    return store.read_parquet(ref, TARGETS).to_pandas()


@dataclass(frozen=True)
class Labels:
    """One source's genre sets as a recordings x labels 0/1 matrix, looked up by MBID."""

    source: str
    names: tuple[str, ...]
    index: pd.Index  # recordingmbid
    matrix: sp.csr_matrix

    def rows(self, mbids: Sequence[str]) -> np.ndarray:
        positions = self.index.get_indexer(list(mbids))
        if (positions < 0).any():
            raise ConfigError(f"{self.source}: no genres for recording {list(mbids)[int(np.argmin(positions))]!r}")
        return self.matrix[positions].toarray()


def read_labels(store: ArtifactStore, ref: ArtifactRef, source: str) -> Labels:
    targets = read_targets(store, ref)
    part = targets[targets["source"] == source]
    names = store.read_json(ref, TAXONOMIES).get(source)
    if names is None:
        raise ConfigError(f"source {source!r} has no ground truth; present: {sorted(store.read_json(ref, TAXONOMIES))}")
    column = {name: j for j, name in enumerate(names)}
    cells = [(i, column[g]) for i, genres in enumerate(part["genres"]) for g in set(genres) if g in column]
    rows, cols = (np.array(v, dtype=np.int64) for v in zip(*cells)) if cells else (np.zeros(0, int), np.zeros(0, int))
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(part), len(names)))
    return Labels(source, tuple(names), pd.Index(part["recordingmbid"]), matrix)
