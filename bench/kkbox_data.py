"""KKBOX-layout data sets of any size for the kkbox benchmarks, generated column-wise
(numpy and Arrow: 7.38 M rows in about a minute), cached under ``bench/results/data``.

The real set's proportions: 7.38 M train rows, 2.3 M songs (songs.csv and
song_extra_info.csv), 34 k members; a test.csv of the competition's layout. Songs are
drawn with a long tail (a few songs most played), as listens are.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from bench.common import DATA, fresh_store

REAL = {"train": 7_377_418, "songs": 2_296_320, "members": 34_403}
_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)
_TABS = np.array(["my library", "discover", "search", "radio", "explore", "listen with", ""])
_SCREENS = np.array(["Local playlist more", "Online playlist more", "Search", "Radio", "Explore", "Others profile more", ""])
_TYPES = np.array(["local-library", "online-playlist", "song", "radio", "album", "listen-with", ""])
_GENRES = np.array(["465", "958", "1609", "2022", "444", "1259", "921", "1152", "359", "139", "2122", "786"])


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` 44-character base64-looking ids (KKBOX's hashed msno / song_id)."""
    chars = np.full((n, 44), ord("="), np.uint8)
    chars[:, :43] = _ALPHABET[rng.integers(0, 64, (n, 43))]
    return chars.view("S44").ravel().astype(str)


def _names(prefix: str, numbers: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, numbers.astype(str))


def _joined(first: np.ndarray, second: np.ndarray, has_second: np.ndarray) -> np.ndarray:
    return np.where(has_second, np.char.add(np.char.add(first, "|"), second), first)


def _dates(days: np.ndarray) -> np.ndarray:
    return np.char.replace((np.datetime64("1970-01-01") + days.astype("timedelta64[D]")).astype(str), "-", "")


def _write(folder: Path, name: str, columns: dict) -> None:
    pcsv.write_csv(pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()}), folder / f"{name}.csv")


def _source(rng: np.random.Generator, n: int) -> dict:
    pick = rng.choice(len(_TABS), n, p=[0.5, 0.2, 0.09, 0.1, 0.06, 0.04, 0.01])
    return {"source_system_tab": _TABS[pick], "source_screen_name": _SCREENS[pick], "source_type": _TYPES[pick]}


def generate(folder: Path, scale: float, seed: int = 0) -> dict:
    """Write train, test, songs, song_extra_info and members at ``scale`` × the real sizes."""
    rng = np.random.default_rng(seed)
    n = {k: max(10, int(v * scale)) for k, v in REAL.items()}
    folder.mkdir(parents=True, exist_ok=True)
    songs, members = _ids(rng, n["songs"]), _ids(rng, n["members"])
    k = n["songs"]
    genre1, genre2 = _GENRES[rng.integers(0, len(_GENRES), k)], _GENRES[rng.integers(0, len(_GENRES), k)]
    artist = rng.integers(0, max(2, k // 5), (k, 3))
    n_artists = rng.choice([1, 2, 3], k, p=[0.85, 0.1, 0.05])
    artists = _joined(_joined(_names("Artist ", artist[:, 0]), _names("Artist ", artist[:, 1]), n_artists > 1),
                      _names("Artist ", artist[:, 2]), n_artists > 2)
    composer = np.where(rng.random(k) < 0.3, _names("Artist ", artist[:, 0]), _names("Composer ", rng.integers(0, k // 4 + 1, k)))
    _write(folder, "songs", {
        "song_id": songs, "song_length": rng.integers(30_000, 420_000, k),
        "genre_ids": np.where(rng.random(k) < 0.02, None, _joined(genre1, genre2, rng.random(k) < 0.1)),
        "artist_name": artists, "composer": np.where(rng.random(k) < 0.2, None, composer),
        "lyricist": np.where(rng.random(k) < 0.6, None, _names("Lyricist ", rng.integers(0, k // 8 + 1, k))),
        "language": rng.choice([3, 52, -1, 17, 31, 10, 24], k),
    })
    isrc = np.char.add(np.char.add(np.array(["TW", "US", "GB", "JP", "KR"])[rng.integers(0, 5, k)], "A53"),
                       np.char.zfill(rng.integers(0, 10_000_000, k).astype(str), 7))
    _write(folder, "song_extra_info", {"song_id": songs, "name": _names("Song ", np.arange(k)),
                                       "isrc": np.where(rng.random(k) < 0.1, None, isrc)})
    m = n["members"]
    start = rng.integers(12418, 17197, m)
    _write(folder, "members", {
        "msno": members, "city": rng.choice([1, 13, 5, 4, 15, 22, 6], m),
        "bd": np.where(rng.random(m) < 0.45, rng.integers(15, 55, m), 0), "gender": rng.choice(["", "male", "female"], m),
        "registered_via": rng.choice([3, 4, 7, 9, 13], m), "registration_init_time": _dates(start),
        "expiration_date": _dates(start + rng.integers(30, 4000, m)),
    })
    popular = np.minimum((rng.pareto(1.2, n["train"]) * k / 200).astype(np.int64), k - 1)  # long tail of plays
    user = rng.integers(0, m, n["train"])
    source = _source(rng, n["train"])
    logit = np.where(source["source_system_tab"] == "my library", 0.8, -0.4) + (popular % 7 == 0) - 0.2
    _write(folder, "train", {"msno": members[user], "song_id": songs[popular], **source,
                             "target": (rng.random(n["train"]) < 1 / (1 + np.exp(-logit))).astype(np.int8)})
    n_test = n["train"] // 3
    test_songs = songs[np.minimum((rng.pareto(1.2, n_test) * k / 200).astype(np.int64), k - 1)]
    _write(folder, "test", {"id": np.arange(n_test), "msno": members[rng.integers(0, m, n_test)], "song_id": test_songs,
                            **_source(rng, n_test)})
    return {**n, "test": n_test}


def kkbox_data(scale: float) -> Path:
    """The cached generated set at ``scale`` (regenerated when absent or incomplete)."""
    folder = DATA / f"kkbox-x{scale:g}"
    marker = folder / "bench-data.json"  # written last: a complete set
    if marker.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sizes = generate(folder, scale)
    marker.write_text(json.dumps({"scale": scale, "rows": sizes}))
    return folder


@functools.cache
def trained_run() -> dict:
    """A kkbox_relisten run on the generated demo set (20,000 train rows, the flow's
    default), the network at lr 1e-2 only: what the serving and scoring benchmarks load.
    Cached per process; needs a Prefect server (run_all starts one)."""
    from flows.kkbox_relisten import kkbox_relisten
    from mirflow.datasets import kkbox
    from mirflow.pipelines.kkbox_relisten.params import KkboxRelistenParams

    folder = DATA / "kkbox-demo"
    if not (folder / "test.csv").is_file():
        kkbox.synthesize(folder, 20_000, seed=0)
    params = KkboxRelistenParams(data_dir=str(folder), store=str(fresh_store("kkbox-run")), n_workers=1, models=["network"],
                                 lrs=[1e-2], max_epochs=10)
    return {**kkbox_relisten(params=params), "tables": str(folder)}


def raw_rows(tables: Path, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` rows of the test layout (``id`` + the request fields) drawn from the set's
    own test.csv (users and songs it knows, some it does not), column-wise."""
    test = pcsv.read_csv(tables / "test.csv", convert_options=pcsv.ConvertOptions(strings_can_be_null=False)).to_pandas()
    pick = np.random.default_rng(seed).integers(0, len(test), n)
    fields = ("msno", "song_id", "source_system_tab", "source_screen_name", "source_type")
    return {"id": np.arange(n), **{f: test[f].astype(str).to_numpy()[pick] for f in fields}}
