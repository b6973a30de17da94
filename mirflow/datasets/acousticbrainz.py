"""AcousticBrainz low-level features with the MediaEval 2018 AcousticBrainz Genre ground truth.

Units are Essentia music-extractor JSON documents, one per recording:
``acousticbrainz-mediaeval-<train|validation>/<first 2 hex>/<recordingmbid>.json``. Labels come from
ground-truth TSVs ``acousticbrainz-mediaeval-<source>-<split>.tsv[.bz2]``, one per source (AllMusic,
Discogs, Last.fm, Tagtraum), each with its own overlapping multi-label taxonomy.

Feature layout (``LAYOUT``: 2,676 columns, fixed order, append-only), named by dot-joined JSON path,
built from ``SPEC`` (the "music 1.0" extractor of Essentia 2.1-beta2 that produced the task's files):

- frame statistics of every descriptor (``lowlevel.hfc.mean`` ... ``.dvar2``, see ``STATS``), per-band
  descriptors element-wise (``lowlevel.melbands.mean.00`` ... ``.39``);
- MFCC/GFCC ``mean`` plus the full 13x13 ``cov`` and ``icov`` row-major (``lowlevel.mfcc.cov.03.07``):
  kept although symmetric (676 columns, ~300 redundant) because the baseline's ~2,669 features count
  them so; a model can drop them by name;
- scalars (``rhythm.bpm``, ``rhythm.danceability``, ``rhythm.beats_count`` ...) and
  ``metadata.audio_properties.length``;
- key one-hot for each estimator: ``tonal.key_key=C`` ... ``tonal.key_scale=minor``, same for
  ``tonal.chords_*``; every level kept (none dropped), flats spelled as sharps.

The layout is a superset of the third-party re-implementation of that baseline
(nikuya3/acousticbrainz-mediaeval-baseline, 2,670 columns: it also drops ``beats_count``, the length
and one level per key/scale). Left out: ``rhythm.beats_position`` (frame-level, variable length) and the rest of
``metadata`` (tags, versions, codec: not music). A descriptor a file lacks is NaN, never 0: imputation
belongs after the split, fitted on training rows only. Descriptors outside ``SPEC`` (newer extractors'
``tonal.key_edma`` ...) appear in ``flatten_lowlevel`` but not in tables.
"""

from __future__ import annotations

import bz2
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets.base import Failure, RemoteFile

if TYPE_CHECKING:  # pandas is imported where used: `mirflow data list` needs none
    import pandas as pd

NAME = "acousticbrainz"
LICENCE = (
    "Features CC0 (AcousticBrainz); Discogs, Last.fm and Tagtraum ground truth CC BY-NC-SA 4.0; "
    "AllMusic ground truth non-commercial research only, under a data usage agreement"
)
HOMEPAGE = "https://mtg.github.io/acousticbrainz-genre-dataset/"
BASE_URL = "https://zenodo.org/record/2553414/files/"
SOURCES = ("allmusic", "discogs", "lastfm", "tagtraum")
SPLITS = ("train", "validation")
UNKNOWN_CHECKSUM = ""  # the publisher gives none and none was found elsewhere

# md5s as recorded in mirdata's acousticbrainz_genre loader (REMOTES); sizes are not published.
# The double dash in the train-01 name is mirdata's spelling of the Zenodo file.
_FEATURE_ARCHIVES = {
    "acousticbrainz-mediaeval-features-validation-01234567.tar.bz2": "f21f9c5e398713139cca9790b656faf9",
    "acousticbrainz-mediaeval-features-validation-89abcdef.tar.bz2": "34f47394ac6d8face4399f48e2b98ebe",
    "acousticbrainz-mediaeval-features--train-01.tar.bz2": "db7157b5112022d609652dd21c632090",
    "acousticbrainz-mediaeval-features-train-23.tar.bz2": "79581967a1be5c52e83be21261d1ef6c",
    "acousticbrainz-mediaeval-features-train-45.tar.bz2": "0e48fa319fa48e5cf95eea8118d2e882",
    "acousticbrainz-mediaeval-features-train-67.tar.bz2": "22ca7f1fea8a86459b7fda4530f00070",
    "acousticbrainz-mediaeval-features-train-89.tar.bz2": "c6e4a2ef1b0e8ed535197b868f8c7302",
    "acousticbrainz-mediaeval-features-train-ab.tar.bz2": "513d5f306dd4f3799c137423ee444051",
    "acousticbrainz-mediaeval-features-train-cd.tar.bz2": "422d75d70d583decec0b2761865092a7",
    "acousticbrainz-mediaeval-features-train-ef.tar.bz2": "021ab25a5fd1b020521824e7fce9c775",
}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def groundtruth_name(source: str, split: str) -> str:
    """File name of one source's ground truth for one split (uncompressed)."""
    if source not in SOURCES:
        raise ConfigError(f"unknown ground-truth source {source!r}; expected one of {SOURCES}")
    return f"acousticbrainz-mediaeval-{source}-{_check_split(split)}.tsv"


INDEX: tuple[RemoteFile, ...] = tuple(
    RemoteFile(name, name, None, f"md5:{md5}", extract=True) for name, md5 in _FEATURE_ARCHIVES.items()
) + tuple(
    RemoteFile(f"{groundtruth_name(s, split)}.bz2", f"{groundtruth_name(s, split)}.bz2", None, UNKNOWN_CHECKSUM)
    for s in SOURCES
    if s != "allmusic"
    for split in SPLITS
)
LOGIN_INSTRUCTIONS: str | None = None  # everything in INDEX downloads freely
# AllMusic's ground truth alone needs an agreement, so it is not in INDEX:
ALLMUSIC_INSTRUCTIONS = (
    "The AllMusic ground truth (https://zenodo.org/record/2554044) is shared only under a data usage "
    "agreement with the MediaEval organisers. Once granted, place acousticbrainz-mediaeval-allmusic-train.tsv "
    "and acousticbrainz-mediaeval-allmusic-validation.tsv (or their .bz2) in the data set folder; "
    "everything else downloads from INDEX."
)

STATS = ("mean", "var", "median", "min", "max", "dmean", "dvar", "dmean2", "dvar2")
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = ("major", "minor")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
LENGTH = "metadata.audio_properties.length"
_SECTIONS = ("lowlevel", "rhythm", "tonal")
_FRAME_LEVEL = frozenset({"rhythm.beats_position"})  # one value per beat: no fixed column


def _group(section: str, kind: str, size: int, names: str) -> dict[str, tuple[str, int]]:
    return {f"{section}.{name}": (kind, size) for name in names.split()}


# Descriptor path -> (kind, size). Kinds: "stats" (frame statistics; size 0 = scalar per frame),
# "gauss" (mean vector, cov, icov), "value" (size 0 = one number), "key", "scale" (categories).
SPEC: dict[str, tuple[str, int]] = {
    **_group("lowlevel", "stats", 0, """barkbands_crest barkbands_flatness_db barkbands_kurtosis
        barkbands_skewness barkbands_spread dissonance erbbands_crest erbbands_flatness_db
        erbbands_kurtosis erbbands_skewness erbbands_spread hfc melbands_crest melbands_flatness_db
        melbands_kurtosis melbands_skewness melbands_spread pitch_salience silence_rate_20dB
        silence_rate_30dB silence_rate_60dB spectral_centroid spectral_complexity spectral_decrease
        spectral_energy spectral_energyband_high spectral_energyband_low spectral_energyband_middle_high
        spectral_energyband_middle_low spectral_entropy spectral_flux spectral_kurtosis spectral_rms
        spectral_rolloff spectral_skewness spectral_spread spectral_strongpeak zerocrossingrate"""),
    **_group("lowlevel", "stats", 27, "barkbands"),
    **_group("lowlevel", "stats", 40, "erbbands melbands"),
    **_group("lowlevel", "stats", 6, "spectral_contrast_coeffs spectral_contrast_valleys"),
    **_group("lowlevel", "gauss", 13, "gfcc mfcc"),
    **_group("lowlevel", "value", 0, "average_loudness dynamic_complexity"),
    **_group("rhythm", "stats", 0, """beats_loudness bpm_histogram_first_peak_bpm
        bpm_histogram_first_peak_spread bpm_histogram_first_peak_weight bpm_histogram_second_peak_bpm
        bpm_histogram_second_peak_spread bpm_histogram_second_peak_weight"""),
    **_group("rhythm", "stats", 6, "beats_loudness_band_ratio"),
    **_group("rhythm", "value", 0, "beats_count bpm danceability onset_rate"),
    **_group("tonal", "stats", 0, "chords_strength hpcp_entropy"),
    **_group("tonal", "stats", 36, "hpcp"),
    **_group("tonal", "value", 0, """chords_changes_rate chords_number_rate key_strength
        tuning_diatonic_strength tuning_equal_tempered_deviation tuning_frequency
        tuning_nontempered_energy_ratio"""),
    **_group("tonal", "value", 24, "chords_histogram"),
    **_group("tonal", "value", 36, "thpcp"),
    **_group("tonal", "key", 0, "chords_key key_key"),
    **_group("tonal", "scale", 0, "chords_scale key_scale"),
    LENGTH: ("value", 0),
}


def _elements(prefix: str, size: int) -> list[str]:
    return [prefix] if size == 0 else [f"{prefix}.{i:02d}" for i in range(size)]


def _columns(path: str, kind: str, size: int) -> list[str]:
    if kind == "stats":
        return [c for stat in STATS for c in _elements(f"{path}.{stat}", size)]
    if kind == "gauss":
        cells = [f"{i:02d}.{j:02d}" for i in range(size) for j in range(size)]
        return _elements(f"{path}.mean", size) + [f"{path}.{m}.{cell}" for m in ("cov", "icov") for cell in cells]
    if kind == "value":
        return _elements(path, size)
    return [f"{path}={level}" for level in (KEYS if kind == "key" else SCALES)]


LAYOUT: tuple[str, ...] = tuple(c for path, (kind, size) in SPEC.items() for c in _columns(path, kind, size))
_COLUMN = {name: i for i, name in enumerate(LAYOUT)}


def flatten_lowlevel(doc: dict) -> dict[str, float]:
    """Every numeric descriptor of one document, named by JSON path; raises ValueError if malformed.

    Keys are the document's own (a file lacking a descriptor lacks its names); ``to_vector`` maps
    them onto ``LAYOUT``.
    """
    if not isinstance(doc, dict) or not all(isinstance(doc.get(s), dict) for s in _SECTIONS):
        raise ValueError(f"not an Essentia low-level document: needs objects {', '.join(_SECTIONS)}")
    flat: dict[str, float] = {}
    for section in _SECTIONS:
        _flatten_into(flat, section, doc[section])
    length = _lookup(doc, LENGTH)
    if length is not None:
        flat[LENGTH] = _number(length, LENGTH)
    return flat


def feature_layout(doc: dict) -> list[str]:
    """The columns one document yields, in document order (compare with ``LAYOUT``)."""
    return list(flatten_lowlevel(doc))


def to_vector(flat: dict[str, float]) -> np.ndarray:
    """``flatten_lowlevel`` output as float64 in ``LAYOUT`` order; absent columns NaN, extra ignored."""
    vector = np.full(len(LAYOUT), np.nan)
    for name, value in flat.items():
        i = _COLUMN.get(name)
        if i is not None:
            vector[i] = value
    return vector


def _flatten_into(flat: dict[str, float], path: str, value: object) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _flatten_into(flat, f"{path}.{key}", child)
    elif isinstance(value, list):
        if path not in _FRAME_LEVEL:
            for i, item in enumerate(value):
                _flatten_into(flat, f"{path}.{i:02d}", item)
    elif isinstance(value, str):
        levels = _levels(path)
        if levels:
            level = _FLATS.get(value, value)
            if level not in levels:
                raise ValueError(f"{path}: unknown value {value!r}; expected one of {levels}")
            flat.update({f"{path}={x}": float(x == level) for x in levels})
        elif path in _COLUMN:  # other strings (chord sequences of newer extractors) are not features
            raise ValueError(f"{path}: expected a number, got str")
    elif value is not None:  # null: the descriptor is missing
        flat[path] = _number(value, path)


def _levels(path: str) -> tuple[str, ...]:
    """The categories of a tonal key or scale estimate (``key_key``, ``chords_scale``, ``key_edma.key``)."""
    if path.startswith("tonal.") and path.endswith("key"):
        return KEYS
    if path.startswith("tonal.") and path.endswith("scale"):
        return SCALES
    return ()


def _number(value: object, path: str) -> float:
    if not isinstance(value, (int, float)):
        raise ValueError(f"{path}: expected a number, got {type(value).__name__}")
    return float(value)


def _lookup(doc: object, path: str) -> object:
    for key in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _recording_mbid(path: Path, doc: dict) -> str:
    """The filename's MBID (the task's id; tags may hold a pre-redirect one), else the tag, else the stem."""
    match = _UUID.match(path.stem.lower())
    if match:
        return match.group(0)
    tagged = _lookup(doc, "metadata.tags.musicbrainz_recordingid")
    if isinstance(tagged, list) and tagged and isinstance(tagged[0], str):
        return tagged[0]
    return path.stem


def feature_dir(split: str) -> str:
    """Folder (under the data set's folder) holding one split's JSON documents."""
    return f"acousticbrainz-mediaeval-{_check_split(split)}"


def list_files(data_dir: str | Path, split: str | None = None) -> list[Path]:
    """JSON documents of one split (or both) in the task's layout, sorted."""
    splits = SPLITS if split is None else (_check_split(split),)
    return sorted(p for s in splits for p in (Path(data_dir) / feature_dir(s)).glob("*/*.json"))


def require_files(data_dir: str | Path) -> list[Path]:
    """``list_files(data_dir)``; ``ConfigError`` when there are none."""
    paths = list_files(data_dir)
    if not paths:
        raise ConfigError(f"no AcousticBrainz JSON files under {data_dir} (expected {feature_dir('train')}/*/*.json)")
    return paths


def read_file(path: str | Path) -> dict:
    """One document: ``recordingmbid``, ``length`` (s), ``synthetic``, ``features`` (LAYOUT vector)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes())
        flat = flatten_lowlevel(doc)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(path, f"not a usable AcousticBrainz low-level JSON document: {err}") from err
    return {
        "recordingmbid": _recording_mbid(path, doc),
        "length": flat.get(LENGTH, np.nan),
        "synthetic": _lookup(doc, "metadata.tags.synthetic") == ["1"],
        "features": to_vector(flat),
    }


def read_table(paths: Iterable[str | Path], dtype: type = np.float32) -> tuple[pd.DataFrame, list[Failure]]:
    """``recordingmbid`` plus the ``LAYOUT`` columns (``dtype``, float32 halves memory), one row per
    readable file; unreadable ones come back as failures."""
    import pandas as pd

    paths = [Path(p) for p in paths]
    matrix = np.empty((len(paths), len(LAYOUT)), dtype=dtype)
    mbids: list[str] = []
    failures: list[Failure] = []
    for path in paths:
        try:
            unit = read_file(path)
        except DataError as err:
            failures.append(Failure(err.path, err.reason))
            continue
        matrix[len(mbids)] = unit["features"]
        mbids.append(unit["recordingmbid"])
    table = pd.DataFrame(matrix[: len(mbids)], columns=list(LAYOUT))
    table.insert(0, "recordingmbid", pd.Series(mbids, dtype="str"))
    return table, failures


def iter_tables(
    paths: Iterable[str | Path], batch_size: int = 10_000, dtype: type = np.float32
) -> Iterator[tuple[pd.DataFrame, list[Failure]]]:
    """``read_table`` over consecutive batches, so a million files never sit in memory at once."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    remaining = iter(paths)
    while batch := list(itertools.islice(remaining, batch_size)):
        yield read_table(batch, dtype)


def read_groundtruth(tsv_path: str | Path) -> pd.DataFrame:
    """One ground-truth TSV (plain or .bz2): ``recordingmbid``, ``releasegroupmbid``, ``genres``.

    ``genres`` lists a row's labels in file order, subgenres (``rock---alternative``) included;
    the tab padding of ragged rows is dropped.
    """
    import pandas as pd

    path = Path(tsv_path)
    opener = bz2.open if path.suffix == ".bz2" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as lines:
            header = lines.readline().rstrip("\r\n").split("\t")
            if header[:2] != ["recordingmbid", "releasegroupmbid"]:
                raise DataError(path, f"header must start with recordingmbid, releasegroupmbid; got {header[:2]}")
            rows = [_groundtruth_row(path, n, line) for n, line in enumerate(lines, start=2) if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read ground truth: {err}") from err
    table = pd.DataFrame(rows, columns=["recordingmbid", "releasegroupmbid", "genres"])
    return table.astype({"recordingmbid": "str", "releasegroupmbid": "str"})


def _groundtruth_row(path: Path, line_number: int, line: str) -> tuple[str, str, list[str]]:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise DataError(path, f"line {line_number}: needs a recordingmbid and a releasegroupmbid")
    return fields[0], fields[1], [genre for genre in fields[2:] if genre]


def groundtruth_files(data_dir: str | Path) -> dict[tuple[str, str], Path]:
    """Ground-truth files present in ``data_dir``, keyed by (source, split); ``.tsv`` preferred to ``.tsv.bz2``."""
    found = {}
    for source in SOURCES:
        for split in SPLITS:
            name = groundtruth_name(source, split)
            for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.bz2"):
                if candidate.is_file():
                    found[(source, split)] = candidate
                    break
    return found


def require_groundtruth(data_dir: str | Path) -> dict[tuple[str, str], Path]:
    """``groundtruth_files(data_dir)``; ``ConfigError`` when there are none."""
    found = groundtruth_files(data_dir)
    if not found:
        raise ConfigError(f"no ground-truth TSVs in {data_dir} (expected {groundtruth_name('discogs', 'train')} …)")
    return found


# --- synthetic copy -------------------------------------------------------------------------------

_LATENT = ("rock", "electronic", "jazz", "classical", "hiphop")
# How each source names the latent genres (same order): (genre label, two subgenre names). Names
# overlap across sources ("rock", "jazz") but not fully ("pop/rock", "electronica", "hip hop", "rap").
_TAXONOMIES: dict[str, tuple[tuple[str, tuple[str, str]], ...]] = {
    "allmusic": (
        ("pop/rock", ("alternative/indie rock", "hard rock")),
        ("electronic", ("techno", "house")),
        ("jazz", ("bebop", "vocal jazz")),
        ("classical", ("chamber music", "symphony")),
        ("rap", ("gangsta rap", "underground rap")),
    ),
    "discogs": (
        ("rock", ("prog rock", "punk")),
        ("electronic", ("techno", "ambient")),
        ("jazz", ("hard bop", "swing")),
        ("classical", ("baroque", "romantic")),
        ("hip hop", ("boom bap", "conscious")),
    ),
    "lastfm": (
        ("rock", ("alternative", "hardrock")),
        ("electronic", ("techno", "idm")),
        ("jazz", ("smoothjazz", "bebop")),
        ("classical", ("baroque", "opera")),
        ("hiphop", ("rap", "undergroundhiphop")),
    ),
    "tagtraum": (
        ("rock", ("alternativerock", "classicrock")),
        ("electronica", ("techno", "house")),
        ("jazz", ("jazzvocals", "bigband")),
        ("classical", ("baroque", "modernclassical")),
        ("rap", ("gangstarap", "hiphop")),
    ),
}
# Descriptors whose level depends on the recording's latent genres: the learnable signal.
_SIGNAL = ("lowlevel.mfcc", "lowlevel.melbands", "lowlevel.spectral_centroid", "rhythm.bpm",
           "rhythm.danceability", "tonal.hpcp")
_SCALE = {"lowlevel.spectral_centroid": 1500.0, "lowlevel.spectral_rolloff": 2000.0, "rhythm.bpm": 120.0,
          "tonal.tuning_frequency": 440.0}
# Some real files lack descriptors (the baseline report names beats_loudness.median): (path, probability).
_DROPPED = (("rhythm.beats_loudness.median", 0.2), ("tonal.chords_strength", 0.1))


def synthesize(out_dir: str | Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic JSON documents in the task's layout plus the eight ground-truth TSVs.

    Documents carry ``metadata.tags.synthetic == ["1"]``. Recordings come in release groups of 1-4
    that share a split and a latent genre (every 4th group from the 2nd on is validation); a quarter
    carry a second genre. Each recording appears in a random subset of the sources, labelled in that
    source's taxonomy, subgenres included. Latent genres shift the level of the ``_SIGNAL``
    descriptors; ``_DROPPED`` descriptors are missing from some files. Returns the JSON paths
    (sorted), then the TSVs.
    """
    if n < 2:
        raise ConfigError(f"n must be >= 2 (a train and a validation recording), got {n}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    effects = {path: rng.normal(size=(len(_LATENT), *_shape(SPEC[path][1]))) for path in _SIGNAL}
    rows: dict[tuple[str, str], list] = {(source, split): [] for source in SOURCES for split in SPLITS}
    documents = []
    group = 0
    while len(documents) < n:
        releasegroup, split = _uuid(rng), "validation" if group % 4 == 1 else "train"
        primary = int(rng.integers(len(_LATENT)))
        for _ in range(min(int(rng.integers(1, 5)), n - len(documents))):
            genres = [primary]
            if rng.random() < 0.25:
                genres.append((primary + int(rng.integers(1, len(_LATENT)))) % len(_LATENT))
            mbid = _uuid(rng)
            path = out_dir / feature_dir(split) / mbid[:2] / f"{mbid}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_synthetic_doc(rng, genres, effects, mbid, releasegroup)))
            documents.append(path)
            for source in [s for s in SOURCES if rng.random() < 0.6] or [SOURCES[int(rng.integers(4))]]:
                rows[(source, split)].append((mbid, releasegroup, _labels(rng, source, genres)))
        group += 1
    tables = [_write_groundtruth(out_dir / groundtruth_name(*key), key_rows) for key, key_rows in rows.items()]
    return sorted(documents) + tables


def _shape(size: int) -> tuple[int, ...]:
    return () if size == 0 else (size,)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _synthetic_doc(
    rng: np.random.Generator, genres: list[int], effects: dict, mbid: str, releasegroup: str
) -> dict:
    doc: dict = {}
    for path, (kind, size) in SPEC.items():
        if path != LENGTH:
            shift = np.mean([effects[path][g] for g in genres], axis=0) if path in effects else 0.0
            level = _SCALE.get(path, 1.0) * np.exp(0.6 * shift)
            _put(doc, path, _synthetic_descriptor(rng, kind, size, level))
    length = float(rng.uniform(60, 400))
    beats = np.arange(30 / doc["rhythm"]["bpm"], length, 60 / doc["rhythm"]["bpm"])
    doc["rhythm"].update(beats_position=beats.round(3).tolist(), beats_count=len(beats))
    doc["metadata"] = {
        "audio_properties": {"analysis_sample_rate": 44100, "bit_rate": 320000, "codec": "mp3",
                             "downmix": "mix", "equal_loudness": 0, "length": length, "lossless": False,
                             "md5_encoded": rng.bytes(16).hex(), "replay_gain": -8.0, "sample_rate": 44100},
        "tags": {"file_name": f"{mbid}.mp3", "musicbrainz_recordingid": [mbid],
                 "musicbrainz_releasegroupid": [releasegroup], "synthetic": ["1"]},
        "version": {"essentia": "2.1-beta2", "essentia_git_sha": "v2.1_beta2", "extractor": "music 1.0"},
    }
    for path, probability in _DROPPED:
        if rng.random() < probability:
            parent, key = path.rsplit(".", 1)
            del _lookup(doc, parent)[key]
    return doc


def _synthetic_descriptor(rng: np.random.Generator, kind: str, size: int, level: np.ndarray | float) -> object:
    if kind == "key":
        return str(rng.choice(KEYS))
    if kind == "scale":
        return str(rng.choice(SCALES))
    mean = level * np.exp(0.3 * rng.normal(size=_shape(size)))
    if kind == "value":
        return mean.tolist()
    if kind == "gauss":
        a = rng.normal(size=(size, size))
        cov = a @ a.T + size * np.eye(size)
        return {"mean": mean.tolist(), "cov": cov.tolist(), "icov": np.linalg.inv(cov).tolist()}
    spread = 0.3 * mean
    stats = {"mean": mean, "var": spread**2, "median": mean * (1 + 0.05 * rng.normal(size=_shape(size))),
             "min": mean - 2 * spread, "max": mean + 3 * spread, "dmean": 0.2 * spread,
             "dvar": (0.2 * spread) ** 2, "dmean2": 0.3 * spread, "dvar2": (0.3 * spread) ** 2}
    return {stat: np.asarray(value).tolist() for stat, value in stats.items()}


def _put(doc: dict, path: str, value: object) -> None:
    *parents, key = path.split(".")
    for parent in parents:
        doc = doc.setdefault(parent, {})
    doc[key] = value


def _labels(rng: np.random.Generator, source: str, genres: list[int]) -> list[str]:
    labels = set()
    for g in genres:
        genre, subgenres = _TAXONOMIES[source][g]
        labels.add(genre)
        if rng.random() < 0.6:
            labels.add(f"{genre}---{subgenres[int(rng.integers(2))]}")
    return sorted(labels)  # the real files list labels alphabetically


def _write_groundtruth(path: Path, rows: list[tuple[str, str, list[str]]]) -> Path:
    """The real format: header sized to the longest row, shorter rows padded with tabs."""
    width = max((len(labels) for *_, labels in rows), default=0)
    header = ["recordingmbid", "releasegroupmbid", *(f"genre{i}" for i in range(1, width + 1))]
    lines = ["\t".join(header)] + [
        "\t".join([mbid, group, *labels, *[""] * (width - len(labels))]) for mbid, group, labels in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
