"""Million Song Dataset: one HDF5 file per song, ``data/<A>/<B>/<C>/<TRACKID>.h5``.

Each file holds three one-row compound tables (``metadata/songs``,
``analysis/songs``, ``musicbrainz/songs``) plus per-song arrays (artist terms,
segment features). Columns keep MSD's own field names. Missing values stay
missing: NaN floats (``song_hotttnesss`` is NaN for about half the songs), ``None``
for empty strings and for ``year == 0`` (MSD's "unknown year").

Synthetic copies are marked by ``genre == "SYNTHETIC"`` in ``metadata/songs``
(the field is empty in every real MSD file).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets.base import Failure, RemoteFile

if TYPE_CHECKING:  # h5py and pandas are imported where used: `mirflow data list` needs neither
    import h5py
    import pandas as pd

NAME = "msd"
LICENCE = (
    "Research use: freely available from LabROSA (Columbia) and The Echo Nest, "
    "no explicit open-data licence (millionsongdataset.com)."
)
HOMEPAGE = "http://millionsongdataset.com/"
BASE_URL = "http://labrosa.ee.columbia.edu/~dpwe/tmp/"
# The 10,000-song subset (~1.8 GB). The MSD site publishes neither an exact size
# nor a checksum for it, so none is recorded (checksum left empty: unknown).
INDEX = (
    RemoteFile(
        name="millionsongsubset.tar.gz",
        url="millionsongsubset.tar.gz",
        size=None,
        checksum="",
        extract=True,
    ),
)
# The subset downloads without a login; the full data set is not a download at all.
LOGIN_INSTRUCTIONS = None
FULL_DATASET_INSTRUCTIONS = (
    "The full Million Song Dataset (~280 GB, 1,000,000 song files) is distributed only "
    "as an AWS public-data EBS snapshot (snap-5178cf30, region us-east-1). Create a "
    "volume from it, attach it to an EC2 instance in us-east-1, and copy (or mount) its "
    "data/ tree to $MIRFLOW_DATA/msd/data/ so that files lie at "
    "data/<A>/<B>/<C>/<TRACKID>.h5."
)

SYNTHETIC_MARKER = "SYNTHETIC"

# Output columns, in order: name -> (songs table, kind). ``idx_*`` fields are left
# out: they index into multi-song aggregate files and are always 0 in song files.
_FIELDS: dict[str, tuple[str, str]] = {
    "track_id": ("analysis", "text"),
    "song_id": ("metadata", "text"),
    "title": ("metadata", "text"),
    "release": ("metadata", "text"),
    "artist_id": ("metadata", "text"),
    "artist_name": ("metadata", "text"),
    "artist_mbid": ("metadata", "text"),
    "artist_location": ("metadata", "text"),
    "artist_latitude": ("metadata", "float"),
    "artist_longitude": ("metadata", "float"),
    "artist_familiarity": ("metadata", "float"),
    "artist_hotttnesss": ("metadata", "float"),
    "song_hotttnesss": ("metadata", "float"),
    "year": ("musicbrainz", "year"),
    "duration": ("analysis", "float"),
    "end_of_fade_in": ("analysis", "float"),
    "start_of_fade_out": ("analysis", "float"),
    "key": ("analysis", "int"),
    "key_confidence": ("analysis", "float"),
    "mode": ("analysis", "int"),
    "mode_confidence": ("analysis", "float"),
    "tempo": ("analysis", "float"),
    "time_signature": ("analysis", "int"),
    "time_signature_confidence": ("analysis", "float"),
    "loudness": ("analysis", "float"),
    "danceability": ("analysis", "float"),
    "energy": ("analysis", "float"),
    "analysis_sample_rate": ("analysis", "int"),
    "audio_md5": ("analysis", "text"),
    "genre": ("metadata", "text"),
    "analyzer_version": ("metadata", "text"),
    "artist_7digitalid": ("metadata", "int"),
    "artist_playmeid": ("metadata", "int"),
    "release_7digitalid": ("metadata", "int"),
    "track_7digitalid": ("metadata", "int"),
}
_TERMS = ("artist_terms", "artist_terms_freq", "artist_terms_weight")
TIMBRE_COLUMNS = tuple(f"timbre{d:02d}_{stat}" for stat in ("mean", "var") for d in range(1, 13))
_DTYPES = {"text": "string", "float": "float64", "int": "int64", "year": "Int64"}

# The three song tables exactly as in real MSD files (PyTables 2.0 layout).
_S = "S1024"
SONG_TABLE_DTYPES: dict[str, np.dtype] = {
    "metadata": np.dtype([
        ("analyzer_version", "S32"), ("artist_7digitalid", "<i4"),
        ("artist_familiarity", "<f8"), ("artist_hotttnesss", "<f8"), ("artist_id", "S32"),
        ("artist_latitude", "<f8"), ("artist_location", _S), ("artist_longitude", "<f8"),
        ("artist_mbid", "S40"), ("artist_name", _S), ("artist_playmeid", "<i4"),
        ("genre", _S), ("idx_artist_terms", "<i4"), ("idx_similar_artists", "<i4"),
        ("release", _S), ("release_7digitalid", "<i4"), ("song_hotttnesss", "<f8"),
        ("song_id", "S32"), ("title", _S), ("track_7digitalid", "<i4"),
    ]),
    "analysis": np.dtype([
        ("analysis_sample_rate", "<i4"), ("audio_md5", "S32"), ("danceability", "<f8"),
        ("duration", "<f8"), ("end_of_fade_in", "<f8"), ("energy", "<f8"),
        *((f"idx_{name}", "<i4") for name in (
            "bars_confidence", "bars_start", "beats_confidence", "beats_start",
            "sections_confidence", "sections_start", "segments_confidence",
            "segments_loudness_max", "segments_loudness_max_time", "segments_loudness_start",
            "segments_pitches", "segments_start", "segments_timbre", "tatums_confidence",
            "tatums_start",
        )),
        ("key", "<i4"), ("key_confidence", "<f8"), ("loudness", "<f8"), ("mode", "<i4"),
        ("mode_confidence", "<f8"), ("start_of_fade_out", "<f8"), ("tempo", "<f8"),
        ("time_signature", "<i4"), ("time_signature_confidence", "<f8"), ("track_id", "S32"),
    ]),
    "musicbrainz": np.dtype([("idx_artist_mbtags", "<i4"), ("year", "<i4")]),
}


def list_files(data_dir: str | Path) -> list[Path]:
    """Every ``*.h5`` below ``data_dir``, sorted."""
    return sorted(Path(data_dir).rglob("*.h5"))


def require_files(data_dir: str | Path) -> list[Path]:
    """``list_files(data_dir)``; ``ConfigError`` when there are none."""
    paths = list_files(data_dir)
    if not paths:
        raise ConfigError(f"data_dir {data_dir}: no MSD song files (*.h5) below it")
    return paths


def _read(dataset: h5py.Dataset) -> np.ndarray:
    """The whole dataset, read in the file's own type where the layout allows.

    MSD strings are NULLTERM, numpy's are NULLPAD: reading through h5py's default
    memory type makes HDF5 convert field by field, about 30 % of the read time.
    """
    import h5py

    file_type = dataset.id.get_type()
    out = np.empty(dataset.id.shape, dtype=_numpy_dtype(dataset, file_type))
    if out.size:
        same_layout = not out.dtype.hasobject and file_type.get_size() == out.dtype.itemsize
        dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=file_type if same_layout else None)
    return out


_DTYPES_SEEN: list[tuple[h5py.h5t.TypeID, np.dtype]] = []


def _numpy_dtype(dataset: h5py.Dataset, file_type: h5py.h5t.TypeID) -> np.dtype:
    """``dataset.dtype``, remembered by HDF5 type: h5py rebuilds a compound dtype on every
    access (about a quarter of a song file's read time), and MSD files share a few types."""
    for known, dtype in _DTYPES_SEEN:
        if known == file_type:  # H5Tequal: same members, offsets and string padding
            return dtype
    dtype = dataset.dtype
    if len(_DTYPES_SEEN) < 64:
        _DTYPES_SEEN.append((file_type, dtype))
    return dtype


def _text(raw: bytes) -> str | None:
    return raw.decode("utf-8", errors="replace") if raw else None


def _convert(value: Any, kind: str) -> Any:
    if kind == "text":
        return _text(value)
    if kind == "year":
        return int(value) or None
    return float(value) if kind == "float" else int(value)


def _timbre_stats(timbre: np.ndarray) -> dict[str, float]:
    if timbre.ndim != 2 or timbre.shape[1] != 12:
        raise ValueError(f"analysis/segments_timbre has shape {timbre.shape}, expected (n, 12)")
    if len(timbre) == 0:
        stats = np.full(24, np.nan)
    else:
        stats = np.concatenate([timbre.mean(axis=0), timbre.var(axis=0)])
    return dict(zip(TIMBRE_COLUMNS, stats.tolist()))


def read_file(path: str | Path, *, timbre: bool = False) -> dict[str, Any]:
    """One song file as a flat dict of MSD fields (see ``_FIELDS``) plus artist terms.

    ``artist_terms`` is a list of str, ``artist_terms_freq``/``_weight`` lists of
    float. With ``timbre=True`` adds ``timbre01_mean``..``timbre12_var``: per-dimension
    mean and population variance over the song's segments (NaN without segments).
    """
    import h5py

    try:
        # No HDF5 file locking: song files are only read, often from read-only or
        # network mounts (the AWS snapshot) where locking fails.
        with h5py.File(path, "r", locking=False) as h5:
            records = {}
            for group in SONG_TABLE_DTYPES:
                table = _read(h5[f"{group}/songs"])
                if len(table) != 1:
                    raise ValueError(f"{group}/songs has {len(table)} rows; a song file has 1")
                records[group] = dict(zip(table.dtype.names, table[0].item()))
            song = {name: _convert(records[group][name], kind) for name, (group, kind) in _FIELDS.items()}
            song["artist_terms"] = [_text(t) for t in _read(h5["metadata/artist_terms"])]
            song["artist_terms_freq"] = _read(h5["metadata/artist_terms_freq"]).tolist()
            song["artist_terms_weight"] = _read(h5["metadata/artist_terms_weight"]).tolist()
            if timbre:
                song.update(_timbre_stats(_read(h5["analysis/segments_timbre"])))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(path, f"not a readable MSD song file: {exc}") from exc
    return song


def read_table(paths: list[str | Path], *, timbre: bool = False) -> tuple[pd.DataFrame, list[Failure]]:
    """Song files into one typed table (one row per song), plus the files that failed.

    Text columns are ``string``, ``year`` is ``Int64`` (NA when unknown), other ints
    ``int64``, floats ``float64``. Term columns hold 1-D numpy arrays (object and
    float64), which is what pyarrow gives back, so the table survives a Parquet
    round trip unchanged.
    """
    import pandas as pd

    songs, failures = [], []
    for path in paths:
        try:
            songs.append(read_file(path, timbre=timbre))
        except DataError as exc:
            failures.append(Failure(exc.path, exc.reason))
    columns = {
        name: pd.array([song[name] for song in songs], dtype=_DTYPES[kind])
        for name, (_, kind) in _FIELDS.items()
    }
    for name in _TERMS:
        element = object if name == "artist_terms" else np.float64
        cells = [np.array(song[name], dtype=element) for song in songs]
        columns[name] = pd.Series(cells, dtype=object, index=range(len(cells)))
    for name in TIMBRE_COLUMNS if timbre else ():
        columns[name] = pd.array([song[name] for song in songs], dtype="float64")
    return pd.DataFrame(columns), failures


# --------------------------------------------------------------------------- synthesis

_TERM_EFFECTS = {  # artist term -> shift of song_hotttnesss, weighted by the term's weight
    "hip hop": 0.10, "pop": 0.07, "rock": 0.03, "electronic": 0.02, "indie": 0.0,
    "jazz": -0.03, "country": -0.02, "blues": -0.04, "folk": -0.05, "gospel": -0.07,
    "polka": -0.12, "easy listening": -0.08,
}
_GENRE_FREE_TERMS = ("male vocalist", "female vocalist", "90s", "80s", "american", "british", "live")


def _echo_nest_id(rng: np.random.Generator, prefix: str, used: set[str]) -> str:
    """An 18-character Echo Nest-style id (``TRBDAID128F92E88C6``), unique within ``used``."""
    while True:
        letters = "".join(rng.choice(list(string.ascii_uppercase), 5))
        tail = "".join(rng.choice(list("0123456789ABCDEF"), 9))
        ident = f"{prefix}{letters}12{tail}"
        if ident not in used:
            used.add(ident)
            return ident


def _artist(rng: np.random.Generator, used: set[str], index: int) -> dict[str, Any]:
    familiarity = float(rng.beta(5, 4))
    genres = rng.choice(list(_TERM_EFFECTS), size=int(rng.integers(1, 4)), replace=False)
    extra = rng.choice(_GENRE_FREE_TERMS, size=int(rng.integers(0, 4)), replace=False)
    terms = [*genres, *extra]
    located = rng.random() < 0.5
    return {
        "artist_id": _echo_nest_id(rng, "AR", used),
        "artist_name": f"Synthetic Artist {index}",
        "artist_familiarity": familiarity,
        "artist_hotttnesss": float(np.clip(0.1 + 0.55 * familiarity + rng.normal(0, 0.05), 0, 1.1)),
        "artist_latitude": float(rng.uniform(-40, 60)) if located else np.nan,
        "artist_longitude": float(rng.uniform(-125, 150)) if located else np.nan,
        "artist_location": f"Synthetic City {index}" if located else "",
        "terms": terms,
        "terms_freq": np.sort(rng.uniform(0.3, 1.0, len(terms)))[::-1],
        "terms_weight": np.sort(rng.uniform(0.2, 1.0, len(terms)))[::-1],
    }


def _hotttnesss(rng: np.random.Generator, artist: dict[str, Any], loudness: float) -> float:
    """The learnable target: artist fame, loudness and a few terms, plus noise.

    As in real MSD, about 30 % of songs have no value (NaN) and 8 % exactly 0.
    """
    draw = rng.random()
    if draw < 0.30:
        return np.nan
    if draw < 0.38:
        return 0.0
    term_shift = sum(
        _TERM_EFFECTS.get(term, 0.0) * weight
        for term, weight in zip(artist["terms"], artist["terms_weight"])
    )
    value = (
        0.05 + 0.30 * artist["artist_familiarity"] + 0.45 * artist["artist_hotttnesss"]
        + 0.01 * (loudness + 10) + term_shift + rng.normal(0, 0.05)
    )
    return float(np.clip(value, 0.01, 1.0))


def _song_arrays(
    rng: np.random.Generator, artist: dict[str, Any], track_id: str, used: set[str], index: int
) -> dict[str, np.ndarray]:
    """Every dataset of one synthetic song file, keyed by its path in the file."""
    duration = float(rng.gamma(9, 26))
    loudness = float(np.clip(rng.normal(-10, 5), -40, -1))
    tempo = float(np.clip(rng.normal(122, 30), 40, 230))
    time_signature = int(rng.choice([1, 3, 4, 5, 7], p=[0.1, 0.15, 0.65, 0.05, 0.05]))
    meta = np.zeros(1, SONG_TABLE_DTYPES["metadata"])
    analysis = np.zeros(1, SONG_TABLE_DTYPES["analysis"])
    brainz = np.zeros(1, SONG_TABLE_DTYPES["musicbrainz"])
    for name in ("artist_familiarity", "artist_hotttnesss", "artist_latitude", "artist_longitude"):
        meta[name] = artist[name]
    for name in ("artist_id", "artist_name", "artist_location"):
        meta[name] = artist[name].encode()
    meta["artist_mbid"] = f"{int(rng.integers(1 << 31)):08x}-0000-4000-8000-{index:012d}".encode()
    meta["artist_7digitalid"] = rng.integers(200, 700_000)
    meta["artist_playmeid"] = -1 if rng.random() < 0.4 else rng.integers(1, 200_000)
    meta["genre"] = SYNTHETIC_MARKER.encode()
    meta["release"] = f"Synthetic Release {index // 10}".encode()
    meta["release_7digitalid"] = rng.integers(700, 900_000)
    meta["song_hotttnesss"] = _hotttnesss(rng, artist, loudness)
    meta["song_id"] = _echo_nest_id(rng, "SO", used)
    meta["title"] = f"Synthetic Song {index}".encode()
    meta["track_7digitalid"] = rng.integers(6000, 9_100_000)
    analysis["analysis_sample_rate"] = 22050
    analysis["audio_md5"] = "".join(rng.choice(list("0123456789abcdef"), 32)).encode()
    analysis["duration"] = duration
    analysis["end_of_fade_in"] = float(rng.exponential(0.4))
    analysis["start_of_fade_out"] = duration - float(rng.exponential(8))
    analysis["key"] = rng.integers(0, 12)
    analysis["key_confidence"] = rng.random()
    analysis["loudness"] = loudness
    analysis["mode"] = int(rng.random() < 0.67)
    analysis["mode_confidence"] = rng.random()
    analysis["tempo"] = tempo
    analysis["time_signature"] = time_signature
    analysis["time_signature_confidence"] = rng.random()
    analysis["track_id"] = track_id.encode()
    brainz["year"] = 0 if rng.random() < 0.45 else rng.integers(1955, 2011)

    n_segments = max(1, int(duration * rng.uniform(2.5, 4.5)))
    segments_start = np.sort(rng.uniform(0, duration, n_segments))
    segments_start[0] = 0.0
    timbre = rng.normal(0, 30, (n_segments, 12))
    timbre[:, 0] = rng.normal(52 + 1.2 * loudness, 4, n_segments)  # dim 1 tracks loudness
    beats_start = np.arange(float(rng.uniform(0, 1)), duration, 60 / tempo)
    bars_start = beats_start[::time_signature]
    sections_start = np.concatenate([[0.0], np.sort(rng.uniform(0, duration, int(duration // 30)))])
    arrays = {
        "analysis/songs": analysis,
        "analysis/bars_start": bars_start,
        "analysis/bars_confidence": rng.random(len(bars_start)),
        "analysis/beats_start": beats_start,
        "analysis/beats_confidence": rng.random(len(beats_start)),
        "analysis/sections_start": sections_start,
        "analysis/sections_confidence": rng.random(len(sections_start)),
        "analysis/segments_start": segments_start,
        "analysis/segments_confidence": rng.random(n_segments),
        "analysis/segments_loudness_start": loudness - rng.exponential(8, n_segments),
        "analysis/segments_loudness_max": loudness + rng.normal(2, 3, n_segments),
        "analysis/segments_loudness_max_time": rng.uniform(0, 0.3, n_segments),
        "analysis/segments_pitches": rng.random((n_segments, 12)),
        "analysis/segments_timbre": timbre,
        "analysis/tatums_start": beats_start,
        "analysis/tatums_confidence": rng.random(len(beats_start)),
        "metadata/songs": meta,
        "metadata/artist_terms": np.array([t.encode() for t in artist["terms"]], dtype="S256"),
        "metadata/artist_terms_freq": artist["terms_freq"],
        "metadata/artist_terms_weight": artist["terms_weight"],
        "metadata/similar_artists": np.array(
            [_echo_nest_id(rng, "AR", used) for _ in range(int(rng.integers(0, 6)))], dtype="S20"
        ),
        "musicbrainz/songs": brainz,
        "musicbrainz/artist_mbtags": np.array([], dtype="S256"),
        "musicbrainz/artist_mbtags_count": np.array([], dtype="<i4"),
    }
    return arrays


def _write_song(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        for name, data in arrays.items():
            # Extendable, chunked, gzip + shuffle: how PyTables wrote the real files.
            h5.create_dataset(
                name, data=data, maxshape=(None, *data.shape[1:]),
                chunks=(max(1, min(len(data), 1024)), *data.shape[1:]),
                compression="gzip", compression_opts=1, shuffle=True,
            )


def synthesize(out_dir: str | Path, n: int, seed: int = 0) -> list[Path]:
    """Write ``n`` synthetic song files under ``out_dir/data/A/B/C/``; return their paths.

    Same groups, datasets, compound field names and dtypes as real MSD files;
    ``metadata/songs.genre`` is ``"SYNTHETIC"``. ``song_hotttnesss`` is learnable from
    artist familiarity/hotttnesss, loudness and artist terms; danceability and energy
    are all 0, as in real MSD.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    artists = [_artist(rng, used, i) for i in range(max(1, n // 3))]
    paths = []
    for index in range(n):
        track_id = _echo_nest_id(rng, "TR", used)
        artist = artists[int(rng.integers(len(artists)))]
        path = Path(out_dir, "data", *track_id[2:5], f"{track_id}.h5")
        _write_song(path, _song_arrays(rng, artist, track_id, used, index))
        paths.append(path)
    return sorted(paths)
