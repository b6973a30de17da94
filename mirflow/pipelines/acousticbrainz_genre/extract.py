"""AcousticBrainz ETL: low-level JSON documents -> Parquet feature shards, and the
report on their layout (constant and missing columns).

A shard table has the identity columns ``ID_COLUMNS`` and then ``acousticbrainz.LAYOUT``
(2,676 float32 columns named by JSON path; NaN where a file lacks the descriptor).
``row_id`` is the file's path under the data folder, unique even where two files carry
one MBID; targets join on ``recordingmbid``. Shards are written batch by batch, so a
worker's memory is bounded by ``READ_BATCH`` files, not by the shard or the data set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mirflow.core.fingerprint import file_fingerprint
from mirflow.core.store import ArtifactWriter
from mirflow.datasets import acousticbrainz as ab
from mirflow.stages.featuresets import FAILURES, TABLE, FeatureSet

ID_COLUMNS = ("row_id", "recordingmbid", "official_split")
FEATURES = list(ab.LAYOUT)
READ_BATCH = 1000  # files parsed, converted and written at a time (one Parquet row group)
COLUMN_STATS = "column_stats.json"


def feature_files(data_dir: str | Path, mode: str = "stat") -> pd.DataFrame:
    """Every low-level JSON document of the task layout: ``path``, ``rel_path``,
    ``fingerprint`` and ``official_split`` (the folder it lies in)."""
    paths = ab.require_files(data_dir)
    split_of = {ab.feature_dir(split): split for split in ab.SPLITS}
    records = []
    for path in paths:
        rel_path, fingerprint = file_fingerprint(path, data_dir, mode)
        records.append({"path": str(path), "rel_path": Path(rel_path).as_posix(), "fingerprint": fingerprint,
                        "official_split": split_of[path.parent.parent.name]})
    return pd.DataFrame(records)


def groundtruth_inputs(data_dir: str | Path, mode: str = "stat") -> dict[str, dict[str, dict]]:
    """Ground-truth TSVs present, by source and split: path and fingerprint (for the cache key)."""
    found: dict[str, dict[str, dict]] = {}
    for (source, split), path in sorted(ab.require_groundtruth(data_dir).items()):
        rel_path, fingerprint = file_fingerprint(path, data_dir, mode)
        found.setdefault(source, {})[split] = {"path": str(path), "rel_path": rel_path, "fingerprint": fingerprint}
    return found


# -- the extract stage ---------------------------------------------------------------
def shard_schema() -> pa.Schema:
    return pa.schema([pa.field(name, pa.string()) for name in ID_COLUMNS] + [pa.field(c, pa.float32()) for c in FEATURES])


def write_ab_shard(writer: ArtifactWriter, files: Sequence[dict]) -> dict:
    """One shard of JSON documents -> ``table.parquet`` (streamed), ``failures.json`` and
    per-column count/min/max (``column_stats.json``, for the constant-column report)."""
    stats = _ColumnStats(len(FEATURES))
    failures: list[dict] = []
    batches = [files[start : start + READ_BATCH] for start in range(0, len(files), READ_BATCH)]
    tables = ab.iter_tables([f["path"] for f in files], batch_size=READ_BATCH)

    def arrow_batches() -> Iterator[pa.Table]:
        for batch, (table, failed) in zip(batches, tables):  # iter_tables cuts the same consecutive batches
            reasons = {failure.path: failure.reason for failure in failed}
            failures.extend({"path": f["rel_path"], "reason": reasons[f["path"]]} for f in batch if f["path"] in reasons)
            kept = [f for f in batch if f["path"] not in reasons]
            values = np.asfortranarray(table[FEATURES].to_numpy(np.float32))  # contiguous columns for Arrow
            stats.add(values)
            identity = [[f["rel_path"] for f in kept], table["recordingmbid"].tolist(), [f["official_split"] for f in kept]]
            yield pa.Table.from_arrays([pa.array(v, pa.string()) for v in identity] + list(values.T), schema=shard_schema())

    write_parquet_stream(writer, TABLE, shard_schema(), arrow_batches())
    writer.write_json(FAILURES, failures)
    writer.write_json(COLUMN_STATS, stats.to_dict())
    return {"rows": stats.rows, "failures": len(failures)}


def write_parquet_stream(writer: ArtifactWriter, name: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """``tables`` into one Parquet file of the artifact, one row group each, streamed to the
    store (never whole in memory), with fixed writer settings so the same input gives the
    same bytes. Snappy, no dictionaries, no statistics: training re-reads the 2,676 float
    columns every epoch, and each of those costs time per column (together about half)."""
    settings = {"compression": "snappy", "use_dictionary": False, "write_statistics": False}
    with writer.open(name) as sink, pq.ParquetWriter(sink, schema, **settings) as out:
        for table in tables:
            out.write_table(table)


class _ColumnStats:
    """Non-missing count, min and max per column, accumulated batch by batch."""

    def __init__(self, width: int):
        self.rows = 0
        self.count = np.zeros(width, dtype=np.int64)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)

    def add(self, values: np.ndarray) -> None:
        present = ~np.isnan(values)
        self.rows += len(values)
        self.count += present.sum(axis=0)
        self.low = np.fmin(self.low, np.where(present, values, np.inf).min(axis=0, initial=np.inf))
        self.high = np.fmax(self.high, np.where(present, values, -np.inf).max(axis=0, initial=-np.inf))

    def to_dict(self) -> dict:
        low, high = _finite_or_none(self.low), _finite_or_none(self.high)
        return {"rows": self.rows, "count": self.count.tolist(), "min": low, "max": high}


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def layout_report(features: FeatureSet) -> dict:
    """The feature layout over all shards: per column its JSON path, missing count and
    whether it is constant (one value, or none at all) across the data."""
    rows, count = 0, np.zeros(len(FEATURES), dtype=np.int64)
    low, high = np.full(len(FEATURES), np.inf), np.full(len(FEATURES), -np.inf)
    for ref in features.shards:
        stats = features.store.read_json(ref, COLUMN_STATS)
        rows += stats["rows"]
        count += np.asarray(stats["count"], dtype=np.int64)
        low = np.fmin(low, np.array([np.inf if v is None else v for v in stats["min"]]))
        high = np.fmax(high, np.array([-np.inf if v is None else v for v in stats["max"]]))
    constant = ~(low < high)
    columns = [{"index": i, "column": name, "missing": int(rows - count[i]), "constant": bool(constant[i])}
               for i, name in enumerate(FEATURES)]
    return {
        "rows": rows,
        "width": len(FEATURES),
        "source": "mirflow.datasets.acousticbrainz.LAYOUT",
        "naming": "dot-joined JSON path; list elements .00, .01 …; key and scale estimates one-hot as path=level",
        "constant_columns": [c["column"] for c in columns if c["constant"]],
        "columns_with_missing": {c["column"]: c["missing"] for c in columns if c["missing"]},
        "columns": columns,
    }


def layout_note(layout: dict, file_name: str) -> str:
    """One report paragraph on the layout: width, where it is listed, constant and missing columns."""
    constant, missing = layout["constant_columns"], layout["columns_with_missing"]
    shown = ", ".join(f"`{c}`" for c in constant[:20]) + (" …" if len(constant) > 20 else "")
    return (
        f"Features: {layout['width']} columns in the fixed order of `{layout['source']}`, each named by its "
        f"{layout['naming']}; listed with missing counts in [{file_name}]({file_name}). "
        f"Constant columns: {len(constant)}{': ' + shown if constant else ''}. "
        f"Columns with missing values: {len(missing)} (left missing by the ETL, filled with the training split's "
        "mean after the split)."
    )
