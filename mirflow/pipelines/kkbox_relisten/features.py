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
        matched = int(rows[key].isin(set(sides[name][key].dropna())).sum())
        coverage[name] = {"matched": matched, "rows": len(rows), "share": matched / max(len(rows), 1)}
    return coverage


def check_coverage(coverage: dict[str, dict], minimum: float, source: str) -> None:
    low = {name: c for name, c in coverage.items() if c["share"] < minimum}
    if low:
        detail = ", ".join(f"{name}.csv {c['matched']}/{c['rows']} ({c['share']:.1%})" for name, c in low.items())
        raise DataError(source, f"train rows joined below --min-join-coverage {minimum:.0%}: {detail}; "
                        "are these tables from the same data set?")


def _parts(values: pd.Series) -> pd.Series:
    """Each row's list of parts (the reader's split of ``a|b``); a missing field gives []."""
    return pd.Series([[str(p) for p in v if str(p)] if isinstance(v, (list, np.ndarray)) else [] for v in values],
                     index=values.index, dtype=object)


def _nth(parts: pd.Series, n: int) -> pd.Series:
    return parts.map(lambda p: p[n] if len(p) > n else MISSING)


def _text(values: pd.Series) -> pd.Series:
    """A categorical field as strings, missing or empty as ``MISSING``; a numeric field
    (nullable after a missed join) as its integer's digits."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        values = values.astype("Int64")
    text = values.astype("string")
    return text.mask(text.isna() | (text == ""), MISSING).astype(object)


def _isrc_year(isrc: pd.Series) -> pd.Series:
    """ISRC characters 6-7 are the reference year, two digits: 00-17 are 20xx (the data end in 2017)."""
    year = pd.to_numeric(isrc.str.slice(5, 7), errors="coerce")
    return year.where(year > 17, year + 100) + 1900


def derive(joined: pd.DataFrame) -> pd.DataFrame:
    """The report's fields (its transform.py), one row per joined row: first two genres
    and artists with a "more" flag, artist-is-composer/lyricist, ISRC country and year,
    membership length in days, age with impossible values missing. Categorical columns
    are strings (``MISSING`` when absent), numeric ones float64 (NaN when absent)."""
    genres, artists = _parts(joined["genre_ids"]), _parts(joined["artist_name"])
    composers, lyricists = _parts(joined["composer"]), _parts(joined["lyricist"])
    first_artist = artists.map(lambda p: p[0] if p else None)
    isrc = joined["isrc"].astype("string")
    bd = pd.to_numeric(joined["bd"], errors="coerce").astype(float)
    membership = (pd.to_datetime(joined["expiration_date"]) - pd.to_datetime(joined["registration_init_time"])).dt.days
    out = pd.DataFrame({f: _text(joined[f]) for f in ROW_FIELDS}, index=joined.index)
    out["genre1"], out["genre2"] = _nth(genres, 0), _nth(genres, 1)
    out["artist1"], out["artist2"] = _nth(artists, 0), _nth(artists, 1)
    out["composer1"], out["lyricist1"] = _nth(composers, 0), _nth(lyricists, 0)
    for field in ("language", "city", "gender", "registered_via"):
        out[field] = _text(joined[field])
    out["isrc_country"] = _text(isrc.str.slice(0, 2))
    out["song_length"] = pd.to_numeric(joined["song_length"], errors="coerce").astype(float)
    out["isrc_year"] = _isrc_year(isrc).astype(float)
    out["membership_days"] = membership.astype(float)
    out["age"] = bd.where(bd.between(*AGE_RANGE))
    out["genre_more"] = (genres.map(len) > 2).astype(float)
    out["artist_more"] = (artists.map(len) > 2).astype(float)
    out["artist_is_composer"] = [float(a is not None and a in c) for a, c in zip(first_artist, composers)]
    out["artist_is_lyricist"] = [float(a is not None and a in c) for a, c in zip(first_artist, lyricists)]
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
        columns = [
            pd.Index(self.vocabularies[f]).get_indexer(derived[f].to_numpy()) + 1 for f in CATEGORICAL
        ]  # get_indexer gives -1 for unseen values: + 1 makes that UNKNOWN
        return np.stack(columns, axis=1).astype(np.int64) if columns else np.empty((len(derived), 0), np.int64)

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
