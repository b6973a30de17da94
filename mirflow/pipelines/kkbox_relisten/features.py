"""KKBOX rows -> model inputs: the joins (consolidate), the report's derived fields, and
the encoders and numeric statistics fitted on training rows only (transform).

The same functions serve the flow, batch scoring and the HTTP endpoint, so a row is
turned into model input one way only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mirflow.core.errors import DataError
from mirflow.stages import scaling

ROW_FIELDS = ("msno", "song_id", "source_system_tab", "source_screen_name", "source_type")  # what a request gives
SIDE_KEYS = {"songs": "song_id", "song_extra_info": "song_id", "members": "msno"}
CATEGORICAL = (
    *ROW_FIELDS, "genre1", "genre2", "artist1", "artist2", "composer1", "lyricist1", "language", "city", "gender",
    "registered_via", "isrc_country",
)
NUMERIC = ("song_length", "isrc_year", "membership_days", "age", "genre_more", "artist_more", "artist_is_composer", "artist_is_lyricist")
MISSING = "-1"  # the report fills absent fields with "-1": a category of its own
UNKNOWN = 0  # code of a category not seen (often enough) in training rows
AGE_RANGE = (10, 80)  # KKBOX's `bd` holds 0 for "not given" and values up to 1051


def join(rows: pd.DataFrame, sides: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``rows`` (train or test layout) left-joined with each side table on its key (one
    row per key: ``relisten.read_sides`` drops repeats); row order is kept."""
    for name, key in SIDE_KEYS.items():
        rows = rows.merge(sides[name], on=key, how="left", validate="many_to_one", suffixes=("", f"_{name}"))
    return rows


def join_coverage(rows: pd.DataFrame, sides: Mapping[str, pd.DataFrame]) -> dict[str, dict]:
    """Per side table: rows whose key it holds, of all rows."""
    coverage = {}
    for name, key in SIDE_KEYS.items():
        matched = int(rows[key].isin(sides[name][key].dropna()).sum())
        coverage[name] = {"matched": matched, "rows": len(rows), "share": matched / max(len(rows), 1)}
    return coverage


def check_coverage(coverage: dict[str, dict], minimum: float, source: str) -> None:
    low = {name: c for name, c in coverage.items() if c["share"] < minimum}
    if low:
        detail = ", ".join(f"{name}.csv {c['matched']}/{c['rows']} ({c['share']:.1%})" for name, c in low.items())
        raise DataError(source, f"train rows joined below --min-join-coverage {minimum:.0%}: {detail}; "
                        "are these tables from the same data set?")


def _arrow(values: pd.Series) -> pa.Array:
    """A column as one Arrow array: zero-copy for an Arrow-backed column, one C-level
    conversion otherwise (e.g. a pandas merge's numpy arrays of parts)."""
    array = pa.array(values, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


@dataclass(frozen=True)
class _Parts:
    """Each row's non-empty parts of a pipe-separated field (the reader splits them; a
    missing field has none), flat: part ``i`` is ``values[i]`` of row ``rows[i]``."""

    rows: np.ndarray
    values: pa.Array
    counts: np.ndarray  # parts per row

    @classmethod
    def of(cls, column: pd.Series) -> _Parts:
        lists = _arrow(column)
        if pa.types.is_null(lists.type):  # no row has the field (e.g. no song joined)
            lists = pa.nulls(len(lists), pa.list_(pa.string()))
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
        rows = np.repeat(np.arange(len(lists)), lengths)
        values = pc.cast(pc.list_flatten(lists), pa.string())
        keep = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)
        rows = rows[keep.to_numpy(zero_copy_only=False)]
        return cls(rows, values.filter(keep), np.bincount(rows, minlength=len(lists)))

    def nth(self, n: int) -> pa.Array:
        """Each row's part ``n`` (0-based), null where it has fewer."""
        starts = np.cumsum(self.counts) - self.counts
        return self.values.take(pa.array(starts + n, mask=self.counts <= n))

    def contains(self, wanted: pa.Array) -> np.ndarray:
        """Per row: whether ``wanted[row]`` (null: never) is one of its parts."""
        equal = pc.fill_null(pc.equal(self.values, wanted.take(pa.array(self.rows, pa.int64()))), False)
        return np.bincount(self.rows[equal.to_numpy(zero_copy_only=False)], minlength=len(self.counts)) > 0


def _category(text: pa.Array) -> pd.Categorical:
    """Strings as a pandas categorical, missing or empty as ``MISSING`` (categories are
    few beside the rows: memory stays small at millions of rows)."""
    text = pc.if_else(pc.fill_null(pc.equal(text, ""), True), MISSING, text)
    encoded = text.dictionary_encode()
    return pd.Categorical.from_codes(encoded.indices.to_numpy(), encoded.dictionary.to_pylist())


def _text(values: pd.Series) -> pd.Categorical:
    """A categorical field as strings; a numeric one (nullable after a missed join) as
    its integer's digits."""
    array = _arrow(values)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        array = pc.cast(array, pa.int64())
    return _category(pc.cast(array, pa.string()))


def _isrc_year(isrc: pa.Array) -> np.ndarray:
    """ISRC characters 6-7 are the reference year, two digits: 00-17 are 20xx (the data
    end in 2017). Parsed once per distinct pair of characters."""
    pairs = pc.utf8_slice_codeunits(isrc, 5, 7).dictionary_encode()
    year = pd.to_numeric(pd.Series(pairs.dictionary.to_pylist(), dtype=object), errors="coerce").astype(float)
    year = year.where(year > 17, year + 100) + 1900
    return pa.array(year.to_numpy(), from_pandas=True).take(pairs.indices).to_numpy(zero_copy_only=False)


def derive(joined: pd.DataFrame) -> pd.DataFrame:
    """The report's fields (its transform.py), one row per joined row: first two genres
    and artists with a "more" flag, artist-is-composer/lyricist, ISRC country and year,
    membership length in days, age with impossible values missing. Categorical columns
    are pandas categoricals of strings (``MISSING`` when absent), numeric ones float64
    (NaN when absent). Column operations only (Arrow kernels): no per-row Python."""
    genres, artists = _Parts.of(joined["genre_ids"]), _Parts.of(joined["artist_name"])
    composers, lyricists = _Parts.of(joined["composer"]), _Parts.of(joined["lyricist"])
    first_artist = artists.nth(0)
    isrc = pc.cast(_arrow(joined["isrc"]), pa.string())
    bd = pd.to_numeric(joined["bd"], errors="coerce").astype(float)
    membership = (pd.to_datetime(joined["expiration_date"]) - pd.to_datetime(joined["registration_init_time"])).dt.days
    out = pd.DataFrame({f: _text(joined[f]) for f in ROW_FIELDS}, index=joined.index)
    out["genre1"], out["genre2"] = _category(genres.nth(0)), _category(genres.nth(1))
    out["artist1"], out["artist2"] = _category(first_artist), _category(artists.nth(1))
    out["composer1"], out["lyricist1"] = _category(composers.nth(0)), _category(lyricists.nth(0))
    for field in ("language", "city", "gender", "registered_via"):
        out[field] = _text(joined[field])
    out["isrc_country"] = _category(pc.utf8_slice_codeunits(isrc, 0, 2))
    out["song_length"] = pd.to_numeric(joined["song_length"], errors="coerce").astype(float)
    out["isrc_year"] = _isrc_year(isrc)
    out["membership_days"] = membership.astype(float).to_numpy()
    out["age"] = bd.where(bd.between(*AGE_RANGE)).to_numpy()
    out["genre_more"] = (genres.counts > 2).astype(float)
    out["artist_more"] = (artists.counts > 2).astype(float)
    out["artist_is_composer"] = composers.contains(first_artist).astype(float)
    out["artist_is_lyricist"] = lyricists.contains(first_artist).astype(float)
    return out


@dataclass(frozen=True)
class Transform:
    """Everything fitted on the training rows: a vocabulary per categorical field (code =
    position + 1; 0 = unknown), the means that fill missing numbers, and the scaler."""

    vocabularies: dict[str, list[str]]
    fill: np.ndarray
    scaler: scaling.FittedScaler

    def to_dict(self) -> dict:
        return {"vocabularies": self.vocabularies, "fill": self.fill.tolist(), "scaler": self.scaler.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Transform:
        return cls(data["vocabularies"], np.asarray(data["fill"], float), scaling.FittedScaler.from_dict(data["scaler"]))

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical field: its vocabulary plus the unknown index."""
        return [len(self.vocabularies[f]) + 1 for f in CATEGORICAL]

    def codes(self, derived: pd.DataFrame) -> np.ndarray:
        """(rows, fields) int64 codes; a value outside the vocabulary is ``UNKNOWN``."""
        codes = np.empty((len(derived), len(CATEGORICAL)), np.int64)
        for i, field in enumerate(CATEGORICAL):
            values = derived[field].astype("category").array  # looked up once per distinct value
            # get_indexer gives -1 for unseen values: + 1 makes that UNKNOWN (as is a missing value's code -1)
            lookup = np.append(pd.Index(self.vocabularies[field]).get_indexer(values.categories.astype(str)) + 1, UNKNOWN)
            codes[:, i] = lookup[values.codes]
        return codes

    def numbers(self, derived: pd.DataFrame) -> np.ndarray:
        """(rows, numeric fields) float32: missing filled with training means, then scaled."""
        values = derived[list(NUMERIC)].to_numpy(np.float64)
        values = np.where(np.isnan(values), self.fill, values)
        return scaling.apply_scaler(self.scaler, values)


def vocabularies(train: pd.DataFrame, min_count: int) -> dict[str, list[str]]:
    """Per categorical field, the values seen at least ``min_count`` times in ``train``, sorted."""
    vocab = {}
    for field in CATEGORICAL:
        counts = train[field].value_counts()
        vocab[field] = sorted(counts.index[counts >= min_count].astype(str))
    return vocab


def fit_transform(derived: pd.DataFrame, split: pd.Series, min_count: int) -> Transform:
    """Encoders, fill means and scaler from the rows ``split`` marks ``train`` only."""
    numeric = derived[list(NUMERIC)]
    filled, means = scaling.fill_missing_with_train_mean(numeric, split)
    scaler = scaling.fit_scaler_on_train(filled, split, columns=list(NUMERIC))
    return Transform(vocabularies(derived[(split == "train").to_numpy()], min_count), means, scaler)


def audit_transform(transform: Transform, derived: pd.DataFrame, split: pd.Series, min_count: int) -> list[str]:
    """Problems found by refitting every encoder and statistic on the training rows and
    comparing with the saved ones (empty list = clean)."""
    problems = []
    train = (split == "train").to_numpy()
    for field, vocab in vocabularies(derived[train], min_count).items():
        saved = transform.vocabularies.get(field)
        if saved != vocab:
            extra = sorted(set(saved or ()) - set(vocab))[:3]
            problems.append(f"encoder of {field} differs from one fitted on training rows "
                            f"({len(saved or ())} vs {len(vocab)} values; not from training: {extra})")
    numeric = derived[list(NUMERIC)]
    filled, means = scaling.fill_missing_with_train_mean(numeric, split)
    for column, saved, actual in zip(NUMERIC, transform.fill, means):
        if not np.isclose(saved, actual, rtol=1e-6, atol=1e-9):
            problems.append(f"fill value of {column} differs: {saved:.6g} saved vs training mean {actual:.6g}")
    return problems + scaling.audit_scaler(transform.scaler, filled, split)
