"""A folder of a data set's original files -> one typed Parquet table, read in parallel.

The files are cut into shards; each shard is read by the data set's ``read_table`` on a
Dask worker, and the shard tables are written in shard order as they arrive, with few
shards in flight, so memory stays bounded however many files there are.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mirflow.core.cluster import DaskPool
from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets.base import Failure

ShardResult = tuple[pd.DataFrame, list[Failure]]


@dataclass(frozen=True)
class TableSummary:
    out: Path
    rows: int
    files: int
    shards: int
    failures: list[Failure]
    failures_csv: Path  # ``<out>.failures.csv``: path, reason (header only when none failed)


def convert_to_parquet(
    dataset: ModuleType, data_dir: str | Path, out: str | Path, shard_size: int, pool: DaskPool
) -> TableSummary:
    """Read every file ``dataset.list_files(data_dir)`` finds into ``out`` (Parquet).

    Every shard is cast to the schema of the first shard with rows; a shard that cannot
    be raises ``DataError`` naming its first file. Unreadable files are not fatal: they
    are returned and written to ``<out>.failures.csv``. ``out`` appears only once complete.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size={shard_size}: must be 1 or more")
    paths = dataset.list_files(data_dir)
    if not paths:
        raise ConfigError(f"no {dataset.NAME} files under {data_dir}")
    shards = [paths[i : i + shard_size] for i in range(0, len(paths), shard_size)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    try:
        rows, failures = _write_shards(_read_shards(dataset.read_table, shards, pool), shards, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    failures_csv = out.with_name(out.name + ".failures.csv")
    pd.DataFrame(failures, columns=["path", "reason"]).to_csv(failures_csv, index=False)
    return TableSummary(out, rows, len(paths), len(shards), failures, failures_csv)


def _write_shards(results: Iterator[ShardResult], shards: list[list[Path]], path: Path) -> tuple[int, list[Failure]]:
    """Write each shard's rows to ``path`` in order; returns (rows, failures)."""
    failures: list[Failure] = []
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for shard, (frame, shard_failures) in zip(shards, results):
            failures += shard_failures
            table = pa.Table.from_pandas(frame, preserve_index=False)
            # an all-failed shard's empty columns may have no type yet (object -> null)
            if writer is None and table.num_rows == 0 and shard is not shards[-1]:
                continue
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(_conform(table, writer.schema, shard[0]))
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, failures


def _read_shards(
    read_table: Callable[[Sequence[Path]], ShardResult], shards: list[list[Path]], pool: DaskPool
) -> Iterator[ShardResult]:
    """``read_table`` of each shard on the pool's workers, yielded in shard order; at most
    two shards per worker thread are in flight, so finished tables never pile up."""
    client = pool.client()
    limit = max(2, 2 * sum(client.nthreads().values()))
    pending: deque = deque()
    for shard in shards:
        pending.append(client.submit(read_table, shard, pure=False))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _conform(table: pa.Table, schema: pa.Schema, first_file: Path) -> pa.Table:
    if table.schema.equals(schema, check_metadata=False):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise DataError(first_file, f"the shard starting here does not fit the first shard's table: {err}") from err
