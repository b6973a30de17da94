"""Input files planned into content-defined shards: every pipeline's unit of parallel
extraction (one Prefect task and one Dask task per shard)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Shard:
    """A content-defined slice of a pipeline's input files (see ``plan_shards``)."""

    index: int
    files: tuple[dict, ...]  # records with at least rel_path (and fingerprint)


def _name_hash(rel_path: str) -> int:
    return int.from_bytes(hashlib.sha256(rel_path.encode()).digest()[:8], "big")


def plan_shards(files: pd.DataFrame, shard_size: int) -> list[Shard]:
    """Content-defined shards: order files by a hash of their name and cut after each
    file whose name hash is 0 mod ``shard_size``.

    Boundaries depend on names, not positions, so inserting or removing one file
    changes only the shard it falls in; the others keep their members and keys.
    Hash order also mixes labels within every shard (a sorted listing would put one
    genre per shard), which training batches rely on. A cap of 4x the target bounds
    unlucky runs without a boundary.
    """
    records = sorted(files.to_dict("records"), key=lambda r: _name_hash(r["rel_path"]))
    shards: list[list[dict]] = [[]]
    for record in records:
        shards[-1].append(record)
        if (_name_hash(record["rel_path"]) >> 32) % shard_size == 0 or len(shards[-1]) >= 4 * shard_size:
            shards.append([])
    return [Shard(i, tuple(members)) for i, members in enumerate(s for s in shards if s)]
