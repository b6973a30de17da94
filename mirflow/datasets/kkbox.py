"""KKBOX WSDM Cup 2018 music recommendation data: five CSV tables.

``train.csv`` (user, song, where it was played, ``target`` = re-listened within a
month) and ``test.csv`` (same without target, with ``id``) reference ``songs.csv``,
``song_extra_info.csv`` (by ``song_id``) and ``members.csv`` (by ``msno``).

Reading choices: ids are ``string``; low-cardinality fields ``category``; dates
``datetime64[ms]`` (Parquet keeps ms, so tables round-trip); the pipe-separated
fields ``genre_ids``, ``artist_name``, ``composer``, ``lyricist`` become 1-D arrays of
str with whitespace around each ``|`` dropped (the raw string is not kept: it is
``"|".join`` of the parts up to that whitespace). Rows whose fields are all empty
are dropped (the sample ``test.csv`` ends in 35,000 of them), and so is an
unterminated last line, taken as truncated: the published files end with a newline.

Synthetic copies are marked by song names starting ``"SYNTHETIC"`` in
``song_extra_info.csv`` and by ISRCs with the unassigned country code ``ZZ``.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets.base import Failure, RemoteFile

if TYPE_CHECKING:  # pandas and pyarrow are imported where used: `mirflow data list` needs neither
    import pandas as pd
    import pyarrow as pa

NAME = "kkbox"
LICENCE = "Kaggle competition data: use limited by the competition rules (non-commercial research)."
HOMEPAGE = "https://www.kaggle.com/competitions/kkbox-music-recommendation-challenge"
BASE_URL = "https://www.kaggle.com/api/v1/competitions/data/download/kkbox-music-recommendation-challenge/"
# Kaggle publishes neither sizes nor checksums for these archives (checksum left
# empty: unknown); they need a login, so the urls are informative only.
INDEX = tuple(
    RemoteFile(name=f"{table}.csv.7z", url=f"{table}.csv.7z", size=None, checksum="")
    for table in ("train", "test", "songs", "members", "song_extra_info", "sample_submission")
)
LOGIN_INSTRUCTIONS = (
    "The KKBOX data sit behind a Kaggle login. Sign in at kaggle.com, accept the rules of "
    "the competition 'WSDM - KKBox's Music Recommendation Challenge' "
    "(https://www.kaggle.com/competitions/kkbox-music-recommendation-challenge), then "
    "download its data (the 'Data' tab, or `kaggle competitions download -c "
    "kkbox-music-recommendation-challenge`). Unpack the 7-Zip archives train.csv.7z, "
    "test.csv.7z, songs.csv.7z, members.csv.7z, song_extra_info.csv.7z and "
    "sample_submission.csv.7z (e.g. `7z x train.csv.7z`) and put the CSVs, names "
    "unchanged, in $MIRFLOW_DATA/kkbox/: train.csv, test.csv, songs.csv, members.csv, "
    "song_extra_info.csv (sample_submission.csv is optional; mirflow does not read it)."
)

SYNTHETIC_MARKER = "SYNTHETIC"

_SOURCE = {"source_system_tab": "category", "source_screen_name": "category", "source_type": "category"}
# table -> column -> kind, in output order.
SCHEMAS: dict[str, dict[str, str]] = {
    "train": {"msno": "id", "song_id": "id", **_SOURCE, "target": "int8"},
    "test": {"id": "int64", "msno": "id", "song_id": "id", **_SOURCE},
    "songs": {
        "song_id": "id", "song_length": "int64", "genre_ids": "list", "artist_name": "list",
        "composer": "list", "lyricist": "list", "language": "Int64",
    },
    "members": {
        "msno": "id", "city": "int64", "bd": "int64", "gender": "category",
        "registered_via": "int64", "registration_init_time": "date", "expiration_date": "date",
    },
    "song_extra_info": {"song_id": "id", "name": "text", "isrc": "text"},
}


@functools.cache
def _arrow_types() -> dict:
    """Arrow read type per column kind (a function: pyarrow is imported only when reading)."""
    import pyarrow as pa

    return {
        "id": pa.string(), "text": pa.string(), "list": pa.string(),
        "category": pa.dictionary(pa.int32(), pa.string()),
        "int8": pa.int8(), "int64": pa.int64(),
        "Int64": pa.float64(),  # via float: a missing value must not fail the read
        "date": pa.timestamp("ms"),
    }


_FREE_TEXT = {"songs", "song_extra_info"}  # quoted fields there may hold newlines
_LIST_COLUMNS = [c for c, kind in SCHEMAS["songs"].items() if kind == "list"]


def list_files(data_dir: str | Path) -> list[Path]:
    """The KKBOX tables present in ``data_dir`` (``train.csv`` ... ), sorted."""
    return sorted(p for p in (Path(data_dir) / f"{name}.csv" for name in SCHEMAS) if p.is_file())


def _table_name(path: Path) -> str:
    if path.suffix != ".csv" or path.stem not in SCHEMAS:
        raise DataError(path, f"not a KKBOX table; expected one of {[f'{n}.csv' for n in SCHEMAS]}")
    return path.stem


def _check_header(path: Path, columns: list[str]) -> None:
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(io.StringIO(f.readline())), [])
    for column in columns:
        if column not in header:
            raise DataError(path, f"missing column {column!r} (header: {header})")


def _complete_lines(path: Path) -> str | pa.BufferReader:
    """The file, or, when its last line is unterminated (truncated), all lines before it."""
    import pyarrow as pa

    with open(path, "rb") as f:
        f.seek(-1, io.SEEK_END)
        if f.read(1) == b"\n":
            return str(path)
        f.seek(0)
        data = f.read()
    return pa.BufferReader(data[: data.rfind(b"\n") + 1])


def _to_pandas(table: pa.Table, name: str, path: str | Path) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {}
    for column, kind in SCHEMAS[name].items():
        values = table[column]
        if kind in ("int8", "int64") and values.null_count:
            raise DataError(path, f"column {column!r} has {values.null_count} empty values")
        if kind == "list":
            values = pc.split_pattern_regex(pc.utf8_trim_whitespace(values), r"\s*\|\s*")
        series = values.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
        if kind == "Int64":
            try:
                series = series.astype("Int64")
            except (TypeError, ValueError) as exc:
                raise DataError(path, f"column {column!r} is not integral: {exc}") from exc
        columns[column] = series
    return pd.DataFrame(columns)


def read_file(path: str | Path) -> pd.DataFrame:
    """One KKBOX table, typed by its file name (see ``SCHEMAS``); extra columns are ignored."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    path = Path(path)
    name = _table_name(path)
    schema = SCHEMAS[name]
    try:
        _check_header(path, list(schema))
        table = pcsv.read_csv(
            _complete_lines(path),
            parse_options=pcsv.ParseOptions(newlines_in_values=name in _FREE_TEXT),
            convert_options=pcsv.ConvertOptions(
                column_types={c: _arrow_types()[kind] for c, kind in schema.items()},
                include_columns=list(schema),
                null_values=[""],
                strings_can_be_null=True,
                timestamp_parsers=["%Y%m%d"],
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable CSV: {exc}") from exc
    blank = functools.reduce(pc.and_kleene, [pc.is_null(c) for c in table.columns])
    return _to_pandas(table.filter(pc.invert(blank)), name, path)


def _empty(name: str) -> pd.DataFrame:
    import pyarrow as pa

    schema = pa.schema([(c, _arrow_types()[kind]) for c, kind in SCHEMAS[name].items()])
    return _to_pandas(schema.empty_table(), name, f"{name}.csv")


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate rows; categorical columns get the union of categories (not object)."""
    import pandas as pd

    for column in frames[0].select_dtypes("category"):
        categories = sorted(set().union(*(f[column].cat.categories for f in frames)))
        frames = [f.assign(**{column: f[column].cat.set_categories(categories)}) for f in frames]
    return pd.concat(frames, ignore_index=True)


def join_training_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Train then test rows, each joined with its song, song extra info and member.

    ``target`` is ``Int8``, NA on test rows; ``id`` (``Int64``) is NA on train rows.
    Absent tables contribute all-NA columns; rows without a matching song or member
    get NA there. Integer side columns become nullable so a miss keeps their type.
    If a side table repeats a key, its first row is used.
    """
    import pandas as pd

    train = tables.get("train", _empty("train"))
    test = tables.get("test", _empty("test"))
    rows = _stack([
        train.assign(target=train["target"].astype("Int8"), id=pd.Series(pd.NA, train.index, "Int64")),
        test.assign(target=pd.Series(pd.NA, test.index, "Int8")),
    ])
    for side, key in (("songs", "song_id"), ("song_extra_info", "song_id"), ("members", "msno")):
        frame = tables.get(side, _empty(side)).drop_duplicates(key)
        # "int64" -> "Int64": pandas' nullable twin of each numpy integer column.
        frame = frame.astype({c: str(t).capitalize() for c, t in frame.dtypes.items() if t.kind == "i"})
        rows = rows.merge(frame, on=key, how="left")
    for column in _LIST_COLUMNS:  # a miss leaves NaN; None is what a Parquet copy reads back
        rows[column] = rows[column].where(rows[column].notna(), None)
    return rows


def read_table(paths: list[str | Path]) -> tuple[pd.DataFrame, list[Failure]]:
    """The given KKBOX CSVs as one training table (``join_training_table``), plus failures."""

    tables: dict[str, pd.DataFrame] = {}
    failures = []
    for path in paths:
        try:
            name = _table_name(Path(path))
            if name in tables:
                raise DataError(path, f"a second {name} table")
            tables[name] = read_file(path)
        except DataError as exc:
            failures.append(Failure(exc.path, exc.reason))
    return join_training_table(tables), failures


# --------------------------------------------------------------------------- synthesis

# source_system_tab -> ((source_screen_name, source_type), ...), effect on re-listen log-odds
_SOURCES = {
    "my library": ((("Local playlist more", "local-library"), ("Local playlist more", "local-playlist"),
                    ("My library", "local-library")), 1.0),
    "discover": ((("Discover Feature", "online-playlist"), ("Online playlist more", "online-playlist"),
                  ("Discover Chart", "song-based-playlist")), -0.4),
    "search": ((("Search", "song"),), 0.3),
    "radio": ((("Radio", "radio"),), -1.2),
    "explore": ((("Explore", "online-playlist"),), -0.2),
    "listen with": ((("Others profile more", "listen-with"),), -0.6),
}
_SOURCE_WEIGHTS = (0.55, 0.2, 0.07, 0.08, 0.06, 0.04)
_GENRES = ("465", "958", "1609", "2022", "444", "1259", "921", "1152", "359", "139")
_LANGUAGES = (3, 52, -1, 17, 31, 10, 24)


def _kkbox_id(rng: np.random.Generator) -> str:
    """A 44-character base64 id like KKBOX's hashed ``msno`` / ``song_id``."""
    return base64.b64encode(rng.bytes(32)).decode()


def _yyyymmdd(days: np.ndarray) -> np.ndarray:
    dates = np.datetime64("1970-01-01") + days.astype("timedelta64[D]")
    return np.array([d.astype(str).replace("-", "") for d in dates])


def _names(prefix: str, picks: np.ndarray, sep: str = "|  ") -> list[str]:
    return [sep.join(f"{prefix} {k}" for k in row) for row in picks]


def _members(rng: np.random.Generator, n_users: int) -> pd.DataFrame:
    import pandas as pd

    start = rng.integers(12418, 17197, n_users)  # 2004-01-01 .. 2017-01-31
    known_age = rng.random(n_users) < 0.45
    return pd.DataFrame({
        "msno": [_kkbox_id(rng) for _ in range(n_users)],
        "city": rng.choice([1, 13, 5, 4, 15, 22, 6], n_users),
        "bd": np.where(known_age, rng.integers(15, 55, n_users), 0),
        "gender": rng.choice(["", "male", "female"], n_users, p=[0.55, 0.23, 0.22]),
        "registered_via": rng.choice([3, 4, 7, 9, 13], n_users),
        "registration_init_time": _yyyymmdd(start),
        "expiration_date": _yyyymmdd(start + rng.integers(30, 4000, n_users)),
    })


def _songs(rng: np.random.Generator, n_songs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    genre = rng.choice(len(_GENRES), n_songs, p=np.linspace(2, 0.2, len(_GENRES)) / 11)
    second = rng.choice(len(_GENRES), n_songs)
    genre_ids = [
        "" if r < 0.03 else _GENRES[g] + (f"|{_GENRES[s]}" if r > 0.9 and s != g else "")
        for g, s, r in zip(genre, second, rng.random(n_songs))
    ]
    artists = rng.integers(0, max(2, n_songs // 4), (n_songs, 1))
    composers = [[] if r < 0.4 else rng.integers(0, 50, 1 + int(r > 0.85)) for r in rng.random(n_songs)]
    songs = pd.DataFrame({
        "song_id": [_kkbox_id(rng) for _ in range(n_songs)],
        "song_length": rng.integers(30_000, 420_000, n_songs),
        "genre_ids": genre_ids,
        "artist_name": [a if i % 7 else f"{a}, The" for i, a in enumerate(_names("Artist", artists))],
        "composer": _names("Composer", composers),
        "lyricist": ["" if r < 0.7 else f"Lyricist {int(r * 100)}" for r in rng.random(n_songs)],
        "language": rng.choice(_LANGUAGES, n_songs),
    })
    extra = pd.DataFrame({
        "song_id": songs["song_id"],
        "name": [f"{SYNTHETIC_MARKER} song {k}" + (' "live"' if k % 5 == 0 else "") for k in range(n_songs)],
        "isrc": [
            "" if r < 0.13 else f"ZZSYN{17 - k % 10:02d}{k % 100_000:05d}"
            for k, r in enumerate(rng.random(n_songs))
        ],
    })
    return songs, extra


def _listens(rng: np.random.Generator, n: int, users: pd.DataFrame, songs: pd.DataFrame,
             taste: np.ndarray, bias: np.ndarray) -> pd.DataFrame:
    """``n`` listening events; ``target`` drawn from the learnable re-listen model."""
    import pandas as pd

    user = rng.integers(0, len(users), n)
    song = rng.integers(0, len(songs), n)
    first_genre = songs["genre_ids"].str.split("|").str[0].to_numpy()
    by_genre = {g: np.flatnonzero(first_genre == g) for g in set(taste)}
    for i in np.flatnonzero(rng.random(n) < 0.4):  # users favour their genre, as listeners do
        favourites = by_genre[taste[user[i]]]
        if len(favourites):
            song[i] = rng.choice(favourites)
    tabs = list(_SOURCES)
    tab = rng.choice(len(tabs), n, p=_SOURCE_WEIGHTS)
    variant = rng.integers(0, 3, n)
    screens, types, effects = [], [], np.empty(n)
    for i, t in enumerate(tab):
        options, effects[i] = _SOURCES[tabs[t]]
        screen, source_type = options[variant[i] % len(options)]
        screens.append(screen)
        types.append(source_type)
    likes = first_genre[song] == taste[user]
    logit = -0.7 + effects + bias[user] + 1.5 * likes + rng.normal(0, 0.3, n)
    blank = rng.random(n) < 0.01  # real files leave a few source fields empty
    return pd.DataFrame({
        "msno": users["msno"].to_numpy()[user],
        "song_id": songs["song_id"].to_numpy()[song],
        "source_system_tab": np.where(blank, "", np.array(tabs)[tab]),
        "source_screen_name": np.where(blank, "", screens),
        "source_type": np.where(blank, "", types),
        "target": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })


def synthesize(out_dir: str | Path, n: int, seed: int = 0) -> list[Path]:
    """Write the five KKBOX CSVs with ``n`` train rows (and ``n // 4`` test rows).

    Re-listening depends on the source tab, a per-user bias and whether the song's
    first genre is the user's favourite, plus noise.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    members = _members(rng, max(3, n // 100))
    songs, extra = _songs(rng, max(10, n // 10))
    taste = rng.choice(_GENRES[:5], len(members))
    bias = rng.normal(0, 0.5, len(members))
    train = _listens(rng, n, members, songs, taste, bias)
    test = _listens(rng, max(1, n // 4), members, songs, taste, bias).drop(columns="target")
    test.insert(0, "id", np.arange(len(test)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"train": train, "test": test, "songs": songs, "members": members, "song_extra_info": extra}
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
    return list_files(out)
