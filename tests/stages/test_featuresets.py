"""Reading a feature set holds what the caller keeps, not the record batches it came from."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.stages.featuresets import TABLE, FeatureSet

ROWS_PER_GROUP, ROW_GROUPS, VALUES = 8, 32, 8192  # 32 KiB of float32 a row, 256 KiB a row group, 8 MiB in all


def _wide_shard(tmp_path) -> FeatureSet:
    """One shard of 256 rows, each with a 32 KiB list column (a spectrogram's size class)."""
    store = ArtifactStore(str(tmp_path / "store"))
    rows = ROWS_PER_GROUP * ROW_GROUPS
    values = np.random.default_rng(0).normal(size=rows * VALUES).astype(np.float32)
    table = pa.table({"row_id": [f"r{i:03d}" for i in range(rows)],
                      "logmel": pa.ListArray.from_arrays(np.arange(0, rows * VALUES + 1, VALUES, dtype=np.int32), values)})
    ref = ArtifactRef("extract", "a" * 64)
    with store.writing(ref) as writer:
        writer.write_parquet(TABLE, table, row_group_size=ROWS_PER_GROUP)
    return FeatureSet(store, (ref,))


def test_reading_a_shard_holds_one_row_group_not_those_read_before(tmp_path):
    """Old code: pyarrow's pre-buffer cache kept every row group read so far, here all of
    them at once (14 MiB); now Arrow holds a row group and its decoding buffers (1.4 MiB)."""
    features = _wide_shard(tmp_path)
    gc.collect()
    start, held = pa.total_allocated_bytes(), []
    for batch in features.store.iter_parquet_batches(features.shards[0], TABLE, ["row_id", "logmel"], batch_size=ROWS_PER_GROUP):
        del batch
        held.append(pa.total_allocated_bytes() - start)
    assert len(held) == ROW_GROUPS
    shard_bytes = ROW_GROUPS * ROWS_PER_GROUP * VALUES * 4
    assert max(held) < shard_bytes / 4, [round(h / shard_bytes, 2) for h in held]


def test_selected_rows_do_not_keep_their_whole_record_batch(tmp_path):
    """One row of each batch kept (as validation rows wait in a batch buffer) holds one
    row's spectrogram each; old code held every batch it came from (8× as much)."""
    features = _wide_shard(tmp_path)
    wanted = {f"r{i:03d}" for i in range(0, ROWS_PER_GROUP * ROW_GROUPS, ROWS_PER_GROUP)}
    gc.collect()
    start = pa.total_allocated_bytes()
    frames = list(features.shard_frames(0, ["row_id", "logmel"], wanted, ROWS_PER_GROUP))
    kept = pa.total_allocated_bytes() - start
    assert sorted(row for frame in frames for row in frame["row_id"]) == sorted(wanted)
    assert all(len(values) == VALUES for frame in frames for values in frame["logmel"])
    selected_bytes = len(wanted) * VALUES * 4
    assert kept < 2 * selected_bytes, kept / selected_bytes
