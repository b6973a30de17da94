"""Million Song Dataset hotness, data side (report 000, project A): song files → Parquet
shards (ETL) → cleaned shards → sparse design matrices (one-hot/bag-of-words or hashed).

ETL and clean work shard by shard (Dask-parallel, memory flat in the number of files);
only the design matrix sees all rows, and it fits everything it learns (constant columns,
vocabularies, category levels, hash-bucket names, min-max scaling) on training rows only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

from mirflow.core.errors import ConfigError
from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.datasets import msd
from mirflow.pipelines.msd_hotness import geo, regression
from mirflow.stages.featuresets import FAILURES, TABLE, FeatureSet
from mirflow.stages.splits import read_split

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
CATEGORICAL = ("continent", "key", "mode", "time_signature", "genre")
_DROPPED_BY_CLEAN = ("artist_latitude", "artist_longitude", "duration", "artist_location", "artist_name")
_NOT_FEATURES = {"label", "song_hotttnesss", *CATEGORICAL}  # the target, and what is one-hot encoded
VARIANTS = ("onehot", "hashed")
HASHED_SOURCES = ("artist_id", "title", "terms")  # the tuple the report hashes
_WORD = re.compile(r"\w+")


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
    """The ETL stage: one shard of song files into one Parquet table (and its failures).
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


# -- design matrix ---------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """What a design matrix is built from, all fitted on training rows."""

    variant: str  # "onehot": bags of title words and artist terms; "hashed": (artist, title, terms) hashed
    numeric: tuple[str, ...]  # dense columns, min-max scaled
    categorical: tuple[str, ...]  # one-hot encoded
    vocabulary: tuple[str, ...]  # one sparse column each: "key=5", "title:love", "term:hip hop"
    hash_buckets: int  # 0 for the one-hot variant
    constant: tuple[str, ...]  # columns dropped for being constant in the training rows


def _flatten(cells: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(row index, element) for every element of every list-like cell."""
    lengths = np.fromiter((len(cell) for cell in cells), dtype=np.int64, count=len(cells))
    elements = np.concatenate([np.asarray(cell, dtype=object) for cell in cells]) if lengths.sum() else np.empty(0, object)
    return np.repeat(np.arange(len(cells)), lengths), elements


def _tokens(songs: pd.DataFrame, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, token, value) arrays over every token of every row: ``column=value`` for a
    categorical column (value 1), ``title:word`` (1 per occurrence), ``term:name`` (the
    term's weight) and ``artist_id=ID`` (1)."""
    parts = [(np.empty(0, np.int64), np.empty(0, object), np.empty(0))]
    for source in sources:
        if source == "title":
            rows, words = _flatten(songs["title"].str.lower().map(_WORD.findall).tolist())
            parts.append((rows, "title:" + words, np.ones(len(rows))))
        elif source == "terms":
            rows, terms = _flatten(songs["artist_terms"].tolist())
            weights = _flatten(songs["artist_terms_weight"].tolist())[1].astype(np.float64)
            parts.append((rows, "term:" + terms, weights))
        else:
            values = np.asarray(f"{source}=" + songs[source].astype(str), dtype=object)
            parts.append((np.arange(len(songs)), values, np.ones(len(songs))))
    rows, tokens, values = zip(*parts)
    return np.concatenate(rows), np.concatenate(tokens), np.concatenate(values)


def _frequent(songs: pd.DataFrame, sources: Sequence[str], min_df: int) -> list[str]:
    """Tokens of these sources found in at least ``min_df`` rows, sorted."""
    rows, tokens, _ = _tokens(songs, sources)
    counts = pd.DataFrame({"row": rows, "token": tokens}).drop_duplicates()["token"].value_counts()
    return sorted(counts.index[counts >= min_df])


def fit_design(train: pd.DataFrame, variant: str, hash_buckets: int, min_df: int) -> Design:
    """Columns, category levels and vocabularies of the training rows."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r}: must be one of {VARIANTS}")
    if hash_buckets < 1 or min_df < 1:
        raise ConfigError(f"hash_buckets={hash_buckets} and min_df={min_df} must be >= 1")
    if train.empty:
        raise ConfigError("the training split is empty: nothing to fit the design on")
    numeric = [c for c, kind in train.dtypes.items() if pd.api.types.is_numeric_dtype(kind) and c not in _NOT_FEATURES]
    constant = [c for c in (*numeric, *CATEGORICAL) if train[c].nunique(dropna=False) <= 1]
    categorical = tuple(c for c in CATEGORICAL if c not in constant)
    vocabulary = _frequent(train, categorical, 1)
    if variant == "onehot":
        vocabulary += _frequent(train, ["title"], min_df) + _frequent(train, ["terms"], min_df)
    return Design(
        variant,
        tuple(c for c in numeric if c not in constant),
        categorical,
        tuple(vocabulary),
        hash_buckets if variant == "hashed" else 0,
        tuple(constant),
    )


def _bucket(tokens: np.ndarray, n_buckets: int) -> np.ndarray:
    unique, inverse = np.unique(tokens.astype(str), return_inverse=True)
    buckets = np.array([murmurhash3_32(str(t), seed=0, positive=True) % n_buckets for t in unique], dtype=np.int64)
    return buckets[inverse.ravel()]


def design_blocks(songs: pd.DataFrame, design: Design) -> tuple[np.ndarray, sp.csr_matrix]:
    """(dense numeric block, sparse block) for these rows. Tokens outside the vocabulary
    and category levels unseen in training are left out (an all-zero encoding)."""
    numeric = songs[list(design.numeric)].to_numpy(np.float64)
    sources = [*design.categorical, *(["title", "terms"] if design.variant == "onehot" else [])]
    rows, tokens, values = _tokens(songs, sources)
    codes = pd.Categorical(tokens, categories=design.vocabulary).codes.astype(np.int64)
    known = codes >= 0
    rows, codes, values = rows[known], codes[known], values[known]
    if design.hash_buckets:
        hashed_rows, hashed, hashed_values = _tokens(songs, HASHED_SOURCES)
        rows = np.concatenate([rows, hashed_rows])
        codes = np.concatenate([codes, len(design.vocabulary) + _bucket(hashed, design.hash_buckets)])
        values = np.concatenate([values, hashed_values])
    shape = (len(songs), len(design.vocabulary) + design.hash_buckets)
    sparse = sp.csr_matrix((values, (rows, codes)), shape=shape)  # repeated (row, column) pairs add up
    sparse.sum_duplicates()
    return numeric, sparse


def sparse_names(train: pd.DataFrame, design: Design, top: int = 3) -> list[str]:
    """Names of the sparse columns; a hash bucket is named by its most frequent training tokens."""
    if not design.hash_buckets:
        return list(design.vocabulary)
    _, tokens, _ = _tokens(train, HASHED_SOURCES)
    counts = pd.DataFrame({"bucket": _bucket(tokens, design.hash_buckets), "token": tokens}).value_counts()
    counts = counts.reset_index(name="n").sort_values(["bucket", "n", "token"], ascending=[True, False, True])
    by_bucket = counts.groupby("bucket")["token"]
    ranked, sizes = by_bucket.agg(lambda t: list(t[:top])), by_bucket.size()
    names = list(design.vocabulary)
    for bucket in range(design.hash_buckets):
        tokens_here = ranked.get(bucket, [])
        more = ", …" if sizes.get(bucket, 0) > top else ""
        names.append(f"hash[{bucket}] ({', '.join(tokens_here)}{more})" if tokens_here else f"hash[{bucket}] (empty)")
    return names


def write_design(
    writer: ArtifactWriter, clean: FeatureSet, split_ref: ArtifactRef, variant: str, hash_buckets: int, min_df: int
) -> dict:
    """The features stage: one variant's design matrix over all split rows, with its
    column names and min-max scalers, everything fitted on the training rows."""
    split = read_split(clean.store, split_ref)
    columns = [f.name for f in clean.schema() if f.name not in ("rel_path", "artist_terms_freq")]
    songs = clean.read(columns).set_index("row_id").loc[split["row_id"]].reset_index()
    train = songs[(split["split"] == "train").to_numpy()]
    design = fit_design(train, variant, hash_buckets, min_df)
    numeric, sparse = design_blocks(songs, design)
    rows = split[["row_id", "group", "split"]].assign(y=songs["label"].to_numpy())
    writer.write_json("design.json", asdict(design))
    summary = regression.save_design(writer, numeric, sparse, rows, list(design.numeric), sparse_names(train, design))
    return {**summary, "variant": variant, "constant_columns_dropped": list(design.constant)}
