"""Million Song Dataset hotness, data side (report 000, project A): song files → Parquet
shards (extract) → cleaned shards (clean), shard by shard (Dask-parallel, memory flat in
the number of files). Only the design stage (``design``) sees all rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import msd
from mirflow.pipelines.msd_hotness import geo
from mirflow.stages.featuresets import FAILURES, TABLE

_TEXT, _FLOAT, _INT = pa.string(), pa.float64(), pa.int64()
# The report's fields, under MSD's own names (see mirflow.datasets.msd).
SONG_FIELDS: dict[str, pa.DataType] = {
    "artist_id": _TEXT, "artist_name": _TEXT, "artist_location": _TEXT, "artist_latitude": _FLOAT,
    "artist_longitude": _FLOAT, "artist_familiarity": _FLOAT, "artist_hotttnesss": _FLOAT,
    "song_hotttnesss": _FLOAT, "title": _TEXT, "year": _INT, "genre": _TEXT, "duration": _FLOAT,
    "end_of_fade_in": _FLOAT, "start_of_fade_out": _FLOAT, "key": _INT, "key_confidence": _FLOAT,
    "mode": _INT, "mode_confidence": _FLOAT, "tempo": _FLOAT, "time_signature": _INT,
    "time_signature_confidence": _FLOAT, "loudness": _FLOAT, "danceability": _FLOAT, "energy": _FLOAT,
    "artist_terms": pa.list_(_TEXT), "artist_terms_freq": pa.list_(_FLOAT), "artist_terms_weight": pa.list_(_FLOAT),
}
# Identity columns of every feature set: row = track id, label = the target, group = the artist.
IDENTITY: dict[str, pa.DataType] = {"row_id": _TEXT, "rel_path": _TEXT, "label": _FLOAT, "group": _TEXT}
_DROPPED_BY_CLEAN = ("artist_latitude", "artist_longitude", "duration", "artist_location", "artist_name")


# -- ETL -------------------------------------------------------------------------------
def song_schema(timbre: bool) -> pa.Schema:
    fields = {**IDENTITY, **SONG_FIELDS, **({name: _FLOAT for name in msd.TIMBRE_COLUMNS} if timbre else {})}
    return pa.schema([pa.field(name, kind) for name, kind in fields.items()])


def read_songs(data_dir: str | Path, rel_paths: Sequence[str], timbre: bool) -> tuple[pa.Table, list[dict]]:
    """The report's fields of these song files (sorted by path), plus unreadable files."""
    rel_paths = sorted(rel_paths)
    paths = [os.path.join(data_dir, rel) for rel in rel_paths]
    songs, failures = msd.read_table(paths, timbre=timbre)
    failed = {failure.path for failure in failures}
    read = [rel for rel, path in zip(rel_paths, paths) if path not in failed]
    stems = pd.Series([Path(rel).stem for rel in read], dtype="string")
    track = songs["track_id"].fillna(stems)
    identity = pd.DataFrame({
        "row_id": track,
        "rel_path": pd.Series(read, dtype="string"),
        "label": songs["song_hotttnesss"],
        "group": songs["artist_id"].fillna(track),  # a song without artist is its own group
    })
    frame = pd.concat([identity, songs], axis=1)
    schema = song_schema(timbre)
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    reasons = [{"path": os.path.relpath(f.path, data_dir), "reason": f.reason} for f in failures]
    return table, reasons


def write_song_shard(writer: ArtifactWriter, data_dir: str, rel_paths: Sequence[str], timbre: bool) -> dict:
    """The extract stage: one shard of song files into one Parquet table (and its failures).
    The bytes depend only on the files, never on workers or the order they came in."""
    table, failures = read_songs(data_dir, rel_paths, timbre)
    writer.write_parquet(TABLE, table)
    writer.write_json(FAILURES, failures)
    return {"rows": table.num_rows, "failures": len(failures)}


# -- clean -----------------------------------------------------------------------------
def clean_schema(etl: pa.Schema) -> pa.Schema:
    kept = [field for field in etl if field.name not in _DROPPED_BY_CLEAN]
    return pa.schema([*kept, pa.field("duration_after_fade_in", _FLOAT), pa.field("continent", _TEXT)])


def clean_songs(songs: pd.DataFrame) -> pd.DataFrame:
    """The report's cleaning: drop songs without hotness (missing, NaN or 0), add the
    continent of the artist's location, shift duration by the fade-in, fill numeric
    gaps with 0 and text gaps with ""."""
    target = songs["label"]
    songs = songs[target.notna() & (target != 0)].copy()
    # Before the fill: a filled (0, 0) would be the Gulf of Guinea, i.e. Africa.
    songs["continent"] = geo.continent_of(songs["artist_latitude"], songs["artist_longitude"])
    songs["duration_after_fade_in"] = songs["duration"] - songs["end_of_fade_in"]
    songs = songs.drop(columns=list(_DROPPED_BY_CLEAN))
    for name, column in songs.items():
        if isinstance(column.dtype, pd.StringDtype) and name not in IDENTITY:
            songs[name] = column.fillna("")
        elif pd.api.types.is_numeric_dtype(column.dtype) and name != "label":
            songs[name] = column.fillna(0)
    return songs


def write_clean_shard(writer: ArtifactWriter, store: ArtifactStore, etl_shard: ArtifactRef) -> dict:
    """The clean stage, for one ETL shard."""
    raw = store.read_parquet(etl_shard, TABLE)
    songs = raw.to_pandas()
    cleaned = clean_songs(songs)
    schema = clean_schema(raw.schema)
    writer.write_parquet(TABLE, pa.Table.from_pandas(cleaned[schema.names], schema=schema, preserve_index=False))
    writer.write_json(FAILURES, [])
    missing = int(songs["label"].isna().sum())
    return {"rows_in": len(songs), "rows": len(cleaned), "no_hotness": missing, "zero_hotness": len(songs) - missing - len(cleaned)}
