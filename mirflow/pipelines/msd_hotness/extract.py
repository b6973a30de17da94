"""Million Song Dataset hotness, data side (report 000, project A): song files → Parquet
shards (ETL) → cleaned shards → sparse design matrices (one-hot/bag-of-words or hashed).

ETL and clean work shard by shard (Dask-parallel, memory flat in the number of files);
only the design matrix sees all rows, and it fits everything it learns (constant columns,
vocabularies, category levels, hash-bucket names, scaling) on training rows only.

The encodings are scikit-learn's: ``OneHotEncoder(handle_unknown="ignore")`` for the
categorical columns, ``CountVectorizer(min_df=…)`` for title words and for the
vocabulary of artist terms, ``DictVectorizer`` for the terms' weights (a term's value is
its weight, which a count vectorizer cannot carry) and a signed ``FeatureHasher`` for the
hashed variant. What is learned is kept in ``Design`` as plain lists (``design.json``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder

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
    """What a design matrix is built from, all fitted on training rows (``design.json``)."""

    variant: str  # "onehot": bags of title words and artist terms; "hashed": (artist, title, terms) hashed
    numeric: tuple[str, ...]  # dense columns, min-max scaled
    categories: dict[str, list[str]]  # one-hot encoded column -> its training levels
    title_words: tuple[str, ...]  # onehot variant: words in >= min_df training titles
    terms: tuple[str, ...]  # onehot variant: artist terms of >= min_df training songs
    hash_buckets: int  # 0 for the one-hot variant
    constant: tuple[str, ...]  # columns dropped for being constant in the training rows

    @property
    def vocabulary(self) -> list[str]:
        """Names of the one-hot and bag columns, in matrix order: "key=5", "title:love", "term:hip hop"."""
        levels = [f"{column}={level}" for column, names in self.categories.items() for level in names]
        return [*levels, *(f"title:{w}" for w in self.title_words), *(f"term:{t}" for t in self.terms)]


def _title_bag(**options):
    """Words of a title as the report split them: lower-cased runs of \\w characters."""
    return CountVectorizer(token_pattern=r"\w+", **options)


def _terms_bag(**options):
    """An artist's terms, each one token (the list is the document, analysed as is)."""
    return CountVectorizer(analyzer=list, **options)


def _frequent(vectorizer, documents: pd.Series) -> tuple[str, ...]:
    """The vectorizer's vocabulary of these documents (its ``min_df`` applied), sorted."""
    try:
        return tuple(str(token) for token in vectorizer.fit(documents).get_feature_names_out())
    except ValueError:  # sklearn refuses to learn an empty vocabulary: this bag gets no columns
        return ()


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
    categorical = [c for c in CATEGORICAL if c not in constant]
    levels = OneHotEncoder().fit(_as_text(train, categorical)).categories_ if categorical else []
    onehot = variant == "onehot"
    return Design(
        variant,
        tuple(c for c in numeric if c not in constant),
        {column: [str(level) for level in names] for column, names in zip(categorical, levels)},
        _frequent(_title_bag(min_df=min_df), train["title"]) if onehot else (),
        _frequent(_terms_bag(min_df=min_df), train["artist_terms"]) if onehot else (),
        0 if onehot else hash_buckets,
        tuple(constant),
    )


def _as_text(songs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return songs[list(columns)].astype(str)


def _hasher(n_buckets: int):
    """sklearn's signed hashing: a token adds ±its value to bucket |murmur3(token)| mod n,
    the sign from the hash, so tokens sharing a bucket add noise of mean zero to each
    other's columns instead of a bias (unsigned hashing only ever adds them up)."""
    return FeatureHasher(n_features=n_buckets, input_type="pair", alternate_sign=True)


def _hashed_tokens(songs: pd.DataFrame) -> list[list[tuple[str, float]]]:
    """Per song, (token, value) for the report's hashed tuple: ``artist_id=ID`` (1), each
    ``title:word`` occurrence (1) and each ``term:name`` (the term's weight)."""
    words = _title_bag().build_analyzer()
    return [
        [(f"artist_id={artist}", 1.0), *((f"title:{w}", 1.0) for w in words(title)),
         *((f"term:{t}", float(v)) for t, v in zip(terms, weights))]
        for artist, title, terms, weights in zip(songs["artist_id"], songs["title"], songs["artist_terms"], songs["artist_terms_weight"])
    ]


def design_blocks(songs: pd.DataFrame, design: Design) -> tuple[np.ndarray, sp.csr_matrix]:
    """(dense numeric block, sparse block) for these rows. Tokens outside the vocabulary
    and category levels unseen in training are left out (an all-zero encoding)."""
    numeric = songs[list(design.numeric)].to_numpy(np.float64)
    blocks = [sp.csr_matrix((len(songs), 0))]  # so that a design without sparse columns stacks too
    if design.categories:  # the levels are given: fitting only checks the columns, it learns nothing
        encoder = OneHotEncoder(categories=list(design.categories.values()), handle_unknown="ignore")
        blocks.append(encoder.fit(_as_text(songs, design.categories)).transform(_as_text(songs, design.categories)))
    if design.title_words:
        blocks.append(_title_bag(vocabulary=design.title_words).transform(songs["title"]))
    if design.terms:  # a term's value is its weight, not a count: sklearn's dict encoding, fixed to the vocabulary
        term_weights = DictVectorizer().fit([dict.fromkeys(design.terms, 1.0)])
        songs_terms = zip(songs["artist_terms"], songs["artist_terms_weight"])
        blocks.append(term_weights.transform(dict(zip(terms, weights)) for terms, weights in songs_terms))
    if design.hash_buckets:
        blocks.append(_hasher(design.hash_buckets).transform(_hashed_tokens(songs)))
    return numeric, sp.hstack(blocks, format="csr", dtype=np.float64)


def sparse_names(train: pd.DataFrame, design: Design, top: int = 3) -> list[str]:
    """Names of the sparse columns. A hash bucket is named by its most frequent training
    tokens, a minus sign marking those hashed with sign -1 (their weight counts negated)."""
    if not design.hash_buckets:
        return design.vocabulary
    occurrences, unique = pd.factorize(pd.Series([token for pairs in _hashed_tokens(train) for token, _ in pairs], dtype=object))
    hashed = _hasher(design.hash_buckets).transform([[(token, 1.0)] for token in unique])  # one entry per row
    signed = np.where(hashed.data < 0, "-", "") + unique.astype(str)
    counts = pd.DataFrame({"bucket": hashed.indices, "token": signed}).iloc[occurrences].value_counts()
    counts = counts.reset_index(name="n").sort_values(["bucket", "n", "token"], ascending=[True, False, True])
    by_bucket = counts.groupby("bucket")["token"]
    ranked, sizes = by_bucket.agg(lambda t: list(t[:top])), by_bucket.size()
    names = design.vocabulary
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
