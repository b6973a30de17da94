"""A feature set: rows spread over shard artifacts, each one Parquet table.

Every pipeline's extraction/ETL stage produces shards with the same identity columns
(``row_id``, ``label``, ``group``); split, scale, train and evaluate work on any such
set. Readers stream shard by shard so memory stays flat as the data grows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore

TABLE = "table.parquet"
FAILURES = "failures.json"


@dataclass(frozen=True)
class FeatureSet:
    store: ArtifactStore
    shards: tuple[ArtifactRef, ...]

    def schema(self) -> pa.Schema:
        return self.store.parquet_schema(self.shards[0], TABLE)

    def read(self, columns: Sequence[str]) -> pd.DataFrame:
        """Selected columns of every row, in shard order (for narrow columns only)."""
        tables = [self.store.read_parquet(ref, TABLE, columns=list(columns)) for ref in self.shards]
        return pa.concat_tables(tables).to_pandas()

    def failures(self) -> list[dict]:
        return [f for ref in self.shards for f in self.store.read_json(ref, FAILURES)]

    def iter_batches(
        self,
        columns: Sequence[str],
        row_ids: set[str] | None = None,
        batch_size: int = 64,
        shard_order: Sequence[int] | None = None,
        read_shard: Callable[[int], Iterable[pd.DataFrame]] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Stream rows (optionally only ``row_ids``) shard by shard, ``batch_size`` at a time.
        ``read_shard(index)``, when given, stands for `shard_frames` of the same arguments."""
        wanted = list(dict.fromkeys(["row_id", *columns]))
        order = range(len(self.shards)) if shard_order is None else shard_order
        read = read_shard or (lambda index: self.shard_frames(index, wanted, row_ids, batch_size))
        pending: list[pd.DataFrame] = []
        pending_rows = 0
        for index in order:
            for frame in read(index):
                pending.append(frame)
                pending_rows += len(frame)
                while pending_rows >= batch_size:
                    merged = pd.concat(pending, ignore_index=True)
                    yield merged.iloc[:batch_size]
                    pending = [merged.iloc[batch_size:]]
                    pending_rows = len(pending[0])
        if pending_rows:
            yield pd.concat(pending, ignore_index=True)

    def shard_frames(self, index: int, columns: list[str], row_ids: set[str] | None, read_rows: int) -> Iterator[pd.DataFrame]:
        """The non-empty frames of one shard's rows (only ``row_ids`` if given), ``read_rows`` read at a time.

        Rows are selected in Arrow, before ``to_pandas``: a list column (a spectrogram a
        row) becomes NumPy views into its record batch's buffer, so one selected row of an
        unfiltered batch would keep the whole decoded batch alive while it waits in a
        caller's buffer. Validation rows (a sixth of each batch) gathered into full
        batches pinned up to a batch's worth of decoded record batches that way."""
        for batch in self.store.iter_parquet_batches(self.shards[index], TABLE, columns, batch_size=read_rows):
            if row_ids is not None:
                wanted = batch.column("row_id").to_pandas().isin(row_ids).to_numpy()
                if not wanted.all():
                    batch = batch.filter(pa.array(wanted))  # a compact copy of the selected rows
            if batch.num_rows:
                yield batch.to_pandas()


class FeatureBatchSource:
    """Training batches from a feature set: rows of one split, transformed batch by batch.

    Shuffling permutes shard order per epoch and rows within a window of
    ``SHUFFLE_WINDOW`` batches, so an epoch never needs all rows (or all spectrograms)
    in memory at once. The window holds model inputs (``to_xy`` is applied as rows are
    read: a spectrogram's crop, not the stored spectrogram), so its memory depends on the
    model's input, not on clip length. Shards hold a hash-ordered mix of labels
    (``plan_shards``), so a window is already well mixed.

    A source read a second time (the next epoch, or the next validation pass) keeps the
    rows it reads in memory, shard by shard, while they stay under ``KEEP_BYTES``, and
    reads the shards it kept from there afterwards: a small table (the AcousticBrainz
    demo's 2,676 columns) is decoded from Parquet twice per training, not every epoch;
    a large one streams as before, and a source read once keeps nothing.
    """

    SHUFFLE_WINDOW = 16
    KEEP_BYTES = 64 * 2**20

    def __init__(
        self,
        features: FeatureSet,
        columns: Sequence[str],
        row_ids: Sequence[str],
        to_xy: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        read_rows: int | None = None,
    ):
        self.features, self.columns, self.to_xy = features, list(columns), to_xy
        self.row_ids = set(row_ids)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        # Rows read from the store at a time (default: one batch). Reading a Parquet
        # batch costs time per column, so wide tables read many rows at once.
        self.read_rows = read_rows or batch_size
        self._epoch = 0
        self._passes = 0
        self._kept: dict[int, list[pd.DataFrame]] | None = {}  # None: over KEEP_BYTES, stream
        self._kept_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        """The training loop calls this, so an epoch's order depends only on (seed, epoch)."""
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self.row_ids)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self._passes += 1
        if not self.shuffle:
            for frame in self._frames():
                for start in range(0, len(frame), self.batch_size):
                    yield self.to_xy(frame.iloc[start : start + self.batch_size])
            return
        rng = np.random.default_rng((self.seed, self._epoch))
        order = rng.permutation(len(self.features.shards))
        window = _ShuffleWindow()
        for frame in self._frames(order):
            window.add(*self.to_xy(frame))
            if len(window) >= self.batch_size * self.SHUFFLE_WINDOW:
                yield from window.drain(rng, self.batch_size, final=False)
        yield from window.drain(rng, self.batch_size, final=True)

    def _frames(self, order: Sequence[int] | None = None) -> Iterator[pd.DataFrame]:
        return self.features.iter_batches(self.columns, self.row_ids, self.read_rows, order, self._read_shard)

    def _read_shard(self, index: int) -> Iterator[pd.DataFrame]:
        if self._kept is not None and index in self._kept:
            yield from self._kept[index]
            return
        wanted = list(dict.fromkeys(["row_id", *self.columns]))
        keep = self._kept is not None and self._passes > 1
        frames, size = [], 0
        for frame in self.features.shard_frames(index, wanted, self.row_ids, self.read_rows):
            if keep:
                frames.append(frame)
                size += _nbytes(frame)
                keep = self._kept_bytes + size <= self.KEEP_BYTES
            yield frame
        if keep and self._kept is not None:
            self._kept[index] = frames
            self._kept_bytes += size
        elif self._passes > 1:
            self._kept = None  # a shard did not fit: stream every shard from now on


def _nbytes(frame: pd.DataFrame) -> int:
    """Memory of a frame's values, counting what object cells hold (a spectrogram array a row)."""
    size = int(frame.memory_usage(index=False).sum())
    for column in frame.columns[frame.dtypes == object]:
        size += sum(v.nbytes if isinstance(v, np.ndarray) else sys.getsizeof(v) for v in frame[column])
    return size


class _ShuffleWindow:
    """Model inputs (an array, or a tuple of arrays for several inputs) and targets of up
    to a window of rows; ``drain`` yields them permuted, in whole batches but for the last."""

    def __init__(self):
        self._inputs: list[tuple[np.ndarray, ...]] = []
        self._targets: list[np.ndarray] = []
        self._multi_input = False

    def __len__(self) -> int:
        return sum(len(y) for y in self._targets)

    def add(self, x, y: np.ndarray) -> None:
        self._multi_input = isinstance(x, tuple)
        self._inputs.append(x if self._multi_input else (x,))
        self._targets.append(y)

    def drain(self, rng: np.random.Generator, batch_size: int, final: bool) -> Iterator[tuple]:
        if not self._targets:
            return
        inputs = tuple(np.concatenate(parts) for parts in zip(*self._inputs))
        targets = np.concatenate(self._targets)
        self._inputs, self._targets = [], []  # drop the pieces now, not after the window
        order = rng.permutation(len(targets))
        end = len(order) if final else len(order) // batch_size * batch_size
        for start in range(0, end, batch_size):
            rows = order[start : start + batch_size]
            x = tuple(part[rows] for part in inputs)
            yield (x if self._multi_input else x[0]), targets[rows]
        rest = order[end:]  # fewer than a batch: carried into the next window
        self._inputs = [tuple(part[rest] for part in inputs)]
        self._targets = [targets[rest]]
