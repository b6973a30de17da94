"""GTZAN Genre Collection: discovery, reading, checksums and a synthetic stand-in.

Layout: ``genres/<genre>/<genre>.000NN.<ext>`` (marsyas ``.au`` or the common ``.wav``
conversion); ``data_dir`` may be the folder holding ``genres/`` or ``genres/`` itself.
Users' own collections use the same shape, ``<genre>/<clip>.{wav,au,flac,mp3,ogg}``,
with the folder name as the label.

``INDEX`` and the per-clip checksums come from mirdata's published gtzan_genre index
(its loader pins the archive md5; its index JSON lists an md5 for each ``.wav`` clip).
mirdata gives no archive size. Public copies (e.g. Kaggle's ``genres_original``) ship
``jazz.00054.wav`` unreadable; mirdata lists it like any other clip.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from mirflow.core.errors import ConfigError
from mirflow.datasets.base import Failure, RemoteFile

if TYPE_CHECKING:  # pandas and soundfile are imported where used: `mirflow data list` needs neither
    import pandas as pd

NAME = "gtzan"
LICENCE = "Research use only; audio gathered without copyright permission (Tzanetakis & Cook 2002); no redistribution."
HOMEPAGE = "http://marsyas.info/downloads/datasets.html"
BASE_URL = "http://opihi.cs.uvic.ca/sound"
INDEX = (
    RemoteFile(
        name="genres.tar.gz",
        url="genres.tar.gz",
        size=None,  # mirdata publishes no size for this archive
        checksum="md5:5b3d6dddb579ab49814ab86dba69e7c7",
        extract=True,
    ),
)
LOGIN_INSTRUCTIONS = None

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SAMPLE_RATE = 22050
AUDIO_SUFFIXES = (".au", ".wav", ".flac", ".mp3", ".ogg")
KNOWN_UNREADABLE = ("jazz.00054",)  # undecodable in widely shared public copies
SYNTHETIC_MARKER = "SYNTHETIC.md"
CHECKSUM_INDEX = Path(__file__).with_name("indexes") / "gtzan_genre.json"
FILTERED_SPLIT_INDEX = Path(__file__).with_name("indexes") / "gtzan_filtered_split.json"

_GTZAN_NAME = re.compile(r"^([A-Za-z]+)\.\d+$")
_COLUMNS = ["clip_id", "path", "genre", "group"]


# --- discovery -------------------------------------------------------------------------


def _genres_root(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise ConfigError(
            f"gtzan data_dir {data_dir} does not exist or is not a folder: "
            "point it at the folder holding genres/ (or at genres/ itself)"
        )
    root = data_dir / "genres"
    return (root if root.is_dir() else data_dir).resolve()


def _audio_files(root: Path) -> list[tuple[str, str]]:
    """(folder, file name) of the audio files under ``root``, skipping hidden files and
    folders (``._*`` AppleDouble forks included) and macOS ``__MACOSX`` folders. Strings,
    not Paths: every run lists the folder, and Path objects took most of its time."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        found += [(folder, f) for f in files if not f.startswith(".") and f.lower().endswith(AUDIO_SUFFIXES)]
    return found


def _examples(items: list[str], limit: int = 5) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def discover(data_dir: str | Path) -> pd.DataFrame:
    """Clips of a local copy: columns clip_id, path (absolute), genre, group; sorted by clip_id.

    Raises ``ConfigError`` saying what to fix when the layout cannot be used: no such
    folder, no audio files, audio files outside ``<genre>/`` folders, a GTZAN-named file
    in another genre's folder, a clip id used twice, or fewer than two genres.
    """
    import pandas as pd

    root = _genres_root(data_dir)
    files = _audio_files(root)
    if not files:
        raise ConfigError(f"no audio files ({' '.join(AUDIO_SUFFIXES)}) under {root}: is data_dir the GTZAN folder?")
    misplaced = [os.path.join(folder, name) for folder, name in files if os.path.dirname(folder) != str(root)]
    if misplaced:
        raise ConfigError(
            f"audio files must sit directly inside a genre folder, {root}/<genre>/<clip>; "
            f"found {_examples(misplaced)}. Move them, or point data_dir at the folder holding the genre folders"
        )
    rows = sorted((os.path.splitext(name)[0], os.path.join(folder, name), os.path.basename(folder)) for folder, name in files)
    _check_names(rows)
    genres = {genre for _, _, genre in rows}
    if len(genres) < 2:
        raise ConfigError(
            f"only one genre folder ({_examples(sorted(genres))}) under {root}: "
            "classification needs at least two, one folder per genre"
        )
    frame = pd.DataFrame(rows, columns=["clip_id", "path", "genre"])
    frame["group"] = frame["clip_id"].map(_duplicate_groups()).fillna(frame["clip_id"])
    return frame[_COLUMNS]


def _duplicate_groups() -> dict[str, str]:
    """Clip ids of byte-identical GTZAN clips (same published md5, e.g. metal.00040 =
    metal.00061, rock.00016 = metal.00058) mapped to one group, so no split ever holds
    the same recording twice; every other clip is its own song."""
    first: dict[str, str] = {}
    groups = {}
    for clip_id, md5 in sorted(checksum_index().items()):
        groups[clip_id] = first.setdefault(md5, clip_id)
    return {clip: group for clip, group in groups.items() if group != clip}


def _check_names(rows: list[tuple[str, str, str]]) -> None:
    twice = sorted({f"{a[1]} and {b[1]}" for a, b in zip(rows, rows[1:]) if a[0] == b[0]})
    if twice:
        raise ConfigError(f"clip ids must be unique, but these files share a name: {_examples(twice)}; keep one")
    # a GTZAN name (<genre>.000NN) in another genre's folder is a mislabelled clip
    labels = set(GENRES) | {genre for _, _, genre in rows}
    wrong = [
        f"{path} (named {m[1]})"
        for (clip_id, path, genre) in rows
        if (m := _GTZAN_NAME.match(clip_id)) and m[1] in labels and m[1] != genre
    ]
    if wrong:
        raise ConfigError(f"files named for another genre than their folder: {_examples(wrong)}; move or rename them")


def list_files(data_dir: str | Path) -> list[Path]:
    """Clip files of a local copy, sorted by clip id (see ``discover``)."""
    return [Path(p) for p in discover(data_dir)["path"]]


# --- reading ---------------------------------------------------------------------------


def read_file(path: str | Path, sr: int = SAMPLE_RATE) -> dict:
    """One clip decoded to float32 mono at ``sr``: clip_id, genre, path, waveform, sr.

    Raises ``mirflow.core.errors.AudioDecodeError`` (a ``DataError``) naming the file when it
    cannot be decoded.
    """
    from mirflow.io.audio import load_audio  # decoding lives in mirflow.io.audio; discovery never needs it

    path = Path(path)
    waveform = load_audio(path, sr)
    return {"clip_id": path.stem, "genre": path.parent.name, "path": str(path), "waveform": waveform, "sr": sr}


def read_table(paths: list[str | Path]) -> tuple[pd.DataFrame, list[Failure]]:
    """Header metadata of many clips without decoding them: clip_id, genre, duration_s,
    sample_rate, channels. Files whose header cannot be read become failures."""
    import pandas as pd
    import soundfile as sf

    rows, failures = [], []
    for path in map(Path, paths):
        try:
            info = sf.info(str(path))
        except (RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
            known = " (known to be unreadable in public GTZAN copies)" if path.stem in KNOWN_UNREADABLE else ""
            failures.append(Failure(str(path), f"unreadable audio header: {err}{known}"))
            continue
        rows.append((path.stem, path.parent.name, info.frames / info.samplerate, info.samplerate, info.channels))
    table = pd.DataFrame(rows, columns=["clip_id", "genre", "duration_s", "sample_rate", "channels"])
    return table.astype({"duration_s": "float64", "sample_rate": "int64", "channels": "int64"}), failures


# --- checksums -------------------------------------------------------------------------


@cache
def checksum_index() -> Mapping[str, str]:
    """clip_id -> md5 of ``genres/<genre>/<clip_id>.wav`` in the mirdata release (read-only)."""
    return MappingProxyType(json.loads(CHECKSUM_INDEX.read_text())["md5"])


def check_checksums(data_dir: str | Path) -> pd.DataFrame:
    """Compare a local copy with the published per-clip md5s.

    Columns clip_id, path, expected, actual, status; status is ``ok``, ``mismatch``,
    ``missing`` (indexed, not on disk) or ``unindexed`` (on disk, but not a ``.wav`` clip
    of the index: ``.au`` originals, users' own files). Sorted by clip_id.
    """
    import pandas as pd

    from mirflow.io.download import file_checksum

    index = checksum_index()
    clips = discover(data_dir)
    rows = []
    for clip_id, path in zip(clips["clip_id"], clips["path"]):
        expected = index.get(clip_id) if Path(path).suffix.lower() == ".wav" else None
        actual = file_checksum(Path(path), "md5") if expected else None
        status = "unindexed" if expected is None else ("ok" if actual == expected else "mismatch")
        rows.append((clip_id, path, expected, actual, status))
    present = set(clips["clip_id"])
    rows += [(clip_id, None, md5, None, "missing") for clip_id, md5 in index.items() if clip_id not in present]
    return pd.DataFrame(rows, columns=["clip_id", "path", "expected", "actual", "status"]).sort_values(
        "clip_id", ignore_index=True
    )


# --- the artist-filtered split -----------------------------------------------------------


@cache
def filtered_split() -> Mapping[str, str]:
    """clip_id -> ``train``/``validation``/``test`` of the artist-filtered split (Kereliuk,
    Sturm & Larsen 2015; 443/197/290 clips, as torchaudio's ``gtzan.py`` carries it): no
    artist in two splits; the 70 clips it leaves out (repeats, distortions) are in none."""
    lists = json.loads(FILTERED_SPLIT_INDEX.read_text())
    return MappingProxyType({clip: split for split in ("train", "validation", "test") for clip in lists[split]})


def is_standard_copy(clips: pd.DataFrame, verify_checksums: bool = False) -> bool:
    """Whether ``clips`` (from ``discover``) are the 1,000 clips of the published GTZAN:
    the index's clip ids, each in its genre's folder, and, with ``verify_checksums``,
    every file a ``.wav`` with the index's md5 (reads every file)."""
    index = checksum_index()
    if len(clips) != len(index) or set(clips["clip_id"]) != index.keys():
        return False
    if not verify_checksums:
        return True
    from mirflow.io.download import file_checksum

    return all(
        Path(path).suffix.lower() == ".wav" and file_checksum(Path(path), "md5") == index[clip_id]
        for clip_id, path in zip(clips["clip_id"], clips["path"])
    )


# --- synthetic copy --------------------------------------------------------------------

# Chord qualities as semitones above the chord root.
_CHORDS = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10), "power": (0, 7, 12),
}  # fmt: skip


@dataclass(frozen=True)
class _Style:
    """How one genre sounds. Rhythms are 16-step bars ("x" = hit); each clip draws a key,
    a progression and jittered values around these, so genres overlap somewhat."""

    bpm: float
    keys: tuple[int, ...]  # pitch classes a clip's tonic is drawn from
    progressions: tuple[tuple[tuple[int, str], ...], ...]  # bars of (semitones above tonic, chord)
    register: int  # MIDI note of the chord tonic's octave
    comp: str  # when chords (or, with arpeggio, single chord tones) sound
    bass: str
    kick: str
    snare: str
    hat: str
    swing: float = 0.0  # 0 straight .. 1 triplet feel
    arpeggio: bool = False
    partials: int = 8  # timbre: harmonics per note, amplitude h**-rolloff
    rolloff: float = 1.2
    attack: float = 0.01  # s
    decay: float = 2.0  # 1/s, exponential
    drive: float = 0.0  # tanh distortion of the chords
    vibrato: float = 0.0  # relative depth
    drums: float = 0.8
    noise: float = 0.01


_BACKBEAT, _EIGHTS, _NONE = "....x.......x...", "x.x.x.x.x.x.x.x.", "................"
_STYLES = {
    "blues": _Style(92, (4, 9, 7, 0), (((0, "dom7"), (5, "dom7"), (0, "dom7"), (7, "dom7")),), 52,
                    comp=_EIGHTS, bass="x...x...x...x...", kick="x.......x.......", snare=_BACKBEAT, hat=_EIGHTS,
                    swing=1.0, partials=8, rolloff=1.2, decay=3.0, drive=0.6, drums=0.6, noise=0.02),
    "classical": _Style(72, (2, 5, 7, 10, 0), (((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
                                               ((0, "min"), (8, "maj"), (3, "maj"), (7, "maj"))), 55,
                        comp=_EIGHTS, bass="x.......x.......", kick=_NONE, snare=_NONE, hat=_NONE, arpeggio=True,
                        partials=6, rolloff=1.6, attack=0.08, decay=0.4, vibrato=0.006, drums=0.0, noise=0.004),
    "country": _Style(112, (7, 2, 9, 0, 4), (((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),), 55,
                      comp=_EIGHTS, bass="x...x...x...x...", kick="x.......x.......", snare=_BACKBEAT, hat=_EIGHTS,
                      arpeggio=True, partials=14, rolloff=0.9, attack=0.002, decay=6.0, drums=0.6, noise=0.01),
    "disco": _Style(120, (9, 2, 4, 7), (((0, "min7"), (5, "min7")),
                                        ((0, "min7"), (10, "maj"), (8, "maj"), (7, "min"))), 55,
                    comp="..x...x...x...x.", bass=_EIGHTS, kick="x...x...x...x...", snare=_BACKBEAT,
                    hat="..x...x...x...x.", partials=12, rolloff=1.0, attack=0.005, decay=4.0, drive=0.2, drums=1.0),
    "hiphop": _Style(88, (0, 2, 5, 7), (((0, "min7"), (8, "maj7")),
                                        ((0, "min"), (3, "maj"), (10, "maj"), (5, "min"))), 48,
                     comp="x...............", bass="x......x..x.....", kick="x......x..x.....", snare=_BACKBEAT,
                     hat=_EIGHTS, swing=0.6, partials=4, rolloff=2.0, attack=0.03, decay=0.5, drums=1.0, noise=0.015),
    "jazz": _Style(132, (5, 10, 3, 0), (((2, "min7"), (7, "dom7"), (0, "maj7"), (0, "maj7")),
                                        ((0, "maj7"), (9, "min7"), (2, "min7"), (7, "dom7"))), 55,
                   comp="x.....x...x.....", bass="x...x...x...x...", kick="x...............", snare=_NONE,
                   hat="x...x.x.x...x.x.", swing=1.0, partials=5, rolloff=1.8, decay=2.5, drums=0.45, noise=0.006),
    "metal": _Style(165, (4, 2, 0), (((0, "power"), (3, "power"), (5, "power"), (3, "power")),
                                     ((0, "power"), (1, "power"), (0, "power"), (7, "power"))), 40,
                    comp="xxxxxxxxxxxxxxxx", bass=_EIGHTS, kick=_EIGHTS, snare=_BACKBEAT, hat=_EIGHTS,
                    partials=16, rolloff=0.7, attack=0.002, decay=3.0, drive=6.0, drums=1.0, noise=0.04),
    "pop": _Style(116, (0, 7, 2, 5, 9), (((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
                                         ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj"))), 55,
                  comp="x.......x.......", bass="x.......x.x.....", kick="x.......x.x.....", snare=_BACKBEAT,
                  hat=_EIGHTS, partials=10, rolloff=1.3, decay=1.0, drive=0.1, drums=0.9, noise=0.008),
    "reggae": _Style(76, (9, 7, 2, 4), (((0, "min"), (5, "min")), ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj"))), 55,
                     comp="..x...x...x...x.", bass="x..x....x.x.....", kick="........x.......",
                     snare="........x.......", hat=_EIGHTS, swing=0.3, partials=9, rolloff=1.1, attack=0.003,
                     decay=9.0, drums=0.8),
    "rock": _Style(126, (4, 9, 2, 7), (((0, "power"), (5, "power"), (7, "power"), (5, "power")),
                                       ((0, "power"), (10, "power"), (5, "power"), (0, "power"))), 40,
                   comp=_EIGHTS, bass=_EIGHTS, kick="x.......x.x.....", snare=_BACKBEAT, hat=_EIGHTS,
                   partials=12, rolloff=0.9, attack=0.003, decay=2.0, drive=2.5, drums=1.0, noise=0.025),
}  # fmt: skip


# What a clip may borrow from another genre, aspect by aspect (``synthesize(crossover=...)``).
_ASPECTS = (
    ("bpm", "comp", "bass", "kick", "snare", "hat", "swing"),  # rhythm
    ("keys", "progressions", "register", "arpeggio"),  # harmony
    ("partials", "rolloff", "attack", "decay", "drive", "vibrato"),  # timbre
    ("drums", "noise"),  # mix
)


def _crossed(genre: str, crossover: float, rng: np.random.Generator) -> _Style:
    """``genre``'s style with each aspect taken, with probability ``crossover``, from a
    random other genre: clips that sound partly like another genre, as real ones do."""
    style = _STYLES[genre]
    if not crossover:
        return style  # draws nothing: clips made without crossover stay as they were
    others = [g for g in _STYLES if g != genre]
    for fields in _ASPECTS:
        if rng.random() < crossover:
            donor = _STYLES[others[rng.integers(len(others))]]
            style = replace(style, **{name: getattr(donor, name) for name in fields})
    return style


def _jittered(style: _Style, rng: np.random.Generator) -> _Style:
    """Within-genre variation: tempo, brightness, distortion, noise and swing per clip."""
    return replace(
        style,
        bpm=style.bpm * rng.uniform(0.93, 1.07),
        rolloff=style.rolloff * rng.uniform(0.8, 1.25),
        decay=style.decay * rng.uniform(0.7, 1.4),
        drive=style.drive * rng.uniform(0.6, 1.4),
        noise=style.noise * rng.uniform(0.5, 1.6),
        swing=min(1.0, style.swing * rng.uniform(0.7, 1.2)),
        drums=style.drums * rng.uniform(0.7, 1.2),
    )


def _hits(pattern: str, style: _Style, offset: int, n_steps: int, rng: np.random.Generator):
    """(time s, bar, seconds to the next hit) of each hit of a 16-step ``pattern``, from step
    ``offset`` of the first bar on."""
    step = 60.0 / style.bpm / 4
    swing_delay = np.array([0.0, 1 / 12, 1 / 6, 1 / 12]) * style.swing * 4 * step  # pushes the off-beats late
    on = [k for k, c in enumerate(pattern) if c == "x"]
    for absolute in range(-offset, n_steps):
        k = (absolute + offset) % 16
        if k in on:
            nxt = on[(on.index(k) + 1) % len(on)]
            gap = (nxt - k) % 16 or 16
            t = absolute * step + swing_delay[k % 4] + rng.normal(0, 0.004)
            if t >= 0:
                yield t, (absolute + offset) // 16, gap * step


def _tone(midi: np.ndarray, seconds: float, style: _Style, sr: int, phases: tuple[float, ...]) -> np.ndarray:
    """Harmonic notes (summed) with attack/decay envelope and optional vibrato.

    Each note reads a one-period wavetable of its partials (those below Nyquist), so a
    note costs a table lookup per sample however many partials it has.
    """
    t = np.arange(int(seconds * sr), dtype=np.float32) / sr  # float32: ample for < 10 s notes
    warp = t - style.vibrato * np.cos(2 * np.pi * 5.5 * t) / (2 * np.pi * 5.5) if style.vibrato else t
    y = np.zeros(t.size, np.float32)
    for f0 in 440.0 * 2.0 ** ((np.asarray(midi) - 69) / 12):
        y += _wavetable(f0, style.partials, style.rolloff, sr, phases)[((f0 * warp) % 1 * _TABLE).astype(np.intp)]
    return y * (1 - np.exp(-t / style.attack)) * np.exp(-style.decay * t)


_TABLE = 1024


@lru_cache(maxsize=256)
def _wavetable(f0: float, partials: int, rolloff: float, sr: int, phases: tuple[float, ...]) -> np.ndarray:
    h = np.arange(1, partials + 1)
    gains = np.where(f0 * h < sr / 2, h**-rolloff, 0.0)
    x = np.arange(_TABLE) / _TABLE
    partial_waves = np.sin(2 * np.pi * h[:, None] * x + np.array(phases[:partials])[:, None])
    return (gains[:, None] * partial_waves).sum(axis=0).astype(np.float32)  # no BLAS: no thread start-up


def _drum_kit(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(int(0.3 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t * 30)) / sr) * np.exp(-t * 12)
    snare = (rng.normal(0, 0.5, t.size) + 0.4 * np.sin(2 * np.pi * 180 * t)) * np.exp(-t * 25)
    hat = np.diff(rng.normal(0, 0.3, t.size + 1)) * np.exp(-t * 60)
    return {"kick": kick, "snare": snare, "hat": hat}


def _add(buffer: np.ndarray, start_s: float, sound: np.ndarray, sr: int) -> None:
    start = int(start_s * sr)
    end = min(buffer.size, start + sound.size)
    if start < end:
        buffer[start:end] += sound[: end - start]


def _render(style: _Style, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of ``style``: chords, bass, drums and noise, peak-normalised with a random gain."""
    style = _jittered(style, rng)
    tonic = style.register + int(rng.choice(style.keys))
    progression = style.progressions[rng.integers(len(style.progressions))]
    offset = int(rng.integers(16))  # start anywhere in the bar
    n_steps = int(np.ceil(seconds * style.bpm / 60 * 4)) + 1
    chords, bass, drums = (np.zeros(int(seconds * sr), np.float32) for _ in range(3))
    phases = tuple(rng.uniform(0, 2 * np.pi, 32))  # of the partials: the clip's timbre

    for i, (t, bar, length) in enumerate(_hits(style.comp, style, offset, n_steps, rng)):
        root, quality = progression[bar % len(progression)]
        notes = tonic + root + np.array(_CHORDS[quality])
        notes = notes[[i % notes.size]] if style.arpeggio else notes
        _add(chords, t, rng.uniform(0.7, 1.0) * _tone(notes, length * 1.5, style, sr, phases), sr)
    bass_style = replace(style, partials=3, rolloff=1.5, drive=0.0, vibrato=0.0, attack=0.005)
    for t, bar, length in _hits(style.bass, style, offset, n_steps, rng):
        root = 28 + (tonic + progression[bar % len(progression)][0] - 28) % 12  # E1..D#2
        _add(bass, t, _tone(np.array([root]), length, bass_style, sr, phases), sr)
    kit = _drum_kit(sr, rng)
    for voice in ("kick", "snare", "hat"):
        for t, _, _ in _hits(getattr(style, voice), style, offset, n_steps, rng):
            _add(drums, t, rng.uniform(0.75, 1.0) * kit[voice], sr)

    if style.drive:
        chords = np.tanh(style.drive * chords / (np.abs(chords).max() + 1e-9)) / np.tanh(style.drive)
    mix = _unit(chords) + 0.7 * _unit(bass) + style.drums * _unit(drums)
    mix = _unit(mix) * rng.uniform(0.35, 0.9)
    mix += style.noise * rng.normal(0, 1, mix.size)
    return np.clip(mix, -1, 1).astype(np.float32)


def _unit(y: np.ndarray) -> np.ndarray:
    peak = np.abs(y).max()
    return y / peak if peak > 0 else y


def _clip_rng(seed: int, genre: str, index: int) -> np.random.Generator:
    # keyed by genre name and clip number: a clip is the same however many are made
    return np.random.default_rng([seed, zlib.crc32(genre.encode()), index])


def _counts(n: int | None, n_per_genre: int | None, genres: tuple[str, ...]) -> list[int]:
    if n is not None and n_per_genre is not None:
        raise ConfigError("synthesize: give n (total clips) or n_per_genre, not both")
    if n_per_genre is not None:
        n = n_per_genre * len(genres)
    n = 10 * len(genres) if n is None else n
    if n < len(genres):
        raise ConfigError(f"synthesize: n={n} is fewer than one clip per genre ({len(genres)} genres)")
    return [n // len(genres) + (i < n % len(genres)) for i in range(len(genres))]


def synthesize(
    out_dir: str | Path,
    n: int | None = None,
    seed: int = 0,
    *,
    n_per_genre: int | None = None,
    duration_s: float = 6.0,
    sr: int = SAMPLE_RATE,
    genres: tuple[str, ...] = GENRES,
    corrupt: int = 0,
    crossover: float = 0.0,
) -> list[Path]:
    """Write a synthetic GTZAN-shaped copy: ``<out_dir>/genres/<genre>/<genre>.000NN.wav``
    (16-bit PCM mono) plus ``<out_dir>/SYNTHETIC.md``; each WAV's INFO comment says it
    is synthetic and its genre tag holds the label.

    ``n`` clips in all, spread evenly over ``genres`` (or ``n_per_genre`` each; default
    10 each). Genres differ in tempo, rhythm, harmony, timbre and noise, with random
    key, tempo and mix per clip, so they are learnable but not trivially separable.
    Deterministic for ``seed``. ``corrupt`` extra files with valid clip names hold
    undecodable bytes, for testing quarantine. ``crossover`` (0..1) is the chance that
    each aspect of a clip (rhythm, harmony, timbre, mix) comes from another genre: the
    higher, the harder the set. ``SYNTHETIC.md`` is written last, so its
    presence (``is_synthetic``) means a complete set. Returns the clip paths, good clips
    sorted by clip id, then the corrupt ones.
    """
    import soundfile as sf

    genres = tuple(genres)
    unknown = [g for g in genres if g not in _STYLES]
    if unknown or len(set(genres)) != len(genres) or len(genres) < 2:
        raise ConfigError(f"synthesize: genres must be at least two distinct names from {GENRES}; got {genres}")
    if duration_s <= 0 or sr <= 0 or corrupt < 0 or not 0 <= crossover <= 1:
        raise ConfigError(f"synthesize: duration_s ({duration_s}) and sr ({sr}) must be > 0, corrupt ({corrupt}) >= 0, "
                          f"crossover ({crossover}) in [0, 1]")
    counts = _counts(n, n_per_genre, genres)
    root = Path(out_dir) / "genres"
    paths = []
    for genre, count in zip(genres, counts):
        (root / genre).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            path = root / genre / f"{genre}.{index:05d}.wav"
            rng = _clip_rng(seed, genre, index)
            y = _render(_crossed(genre, crossover, rng), duration_s, sr, rng)
            with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16", format="WAV") as f:
                f.comment = f"SYNTHETIC mirflow GTZAN stand-in (seed {seed}), not real music"
                f.genre = genre
                f.write(y)
            paths.append(path)
    broken = []
    for i in range(corrupt):  # numbered after the good clips, round-robin over genres
        genre, number = genres[i % len(genres)], counts[i % len(genres)] + i // len(genres)
        broken.append(write_corrupt_clip(root / genre / f"{genre}.{number:05d}.wav", seed + i))
    _write_note(Path(out_dir), seed, genres, counts, duration_s, sr, broken, crossover)
    return sorted(paths) + broken


def write_corrupt_clip(path: str | Path, seed: int = 0) -> Path:
    """Write bytes no audio decoder accepts under ``path`` (a RIFF header cut inside its
    format chunk, then random bytes), so the clip must be quarantined."""
    header = b"RIFF\xff\xff\x00\x00WAVEfmt \x10\x00"
    Path(path).write_bytes(header + np.random.default_rng(seed).bytes(64))
    return Path(path)


def _write_note(out_dir, seed, genres, counts, duration_s, sr, broken, crossover) -> None:
    clips = ", ".join(f"{g} {c}" for g, c in zip(genres, counts))
    corrupt = ", ".join(p.stem for p in broken) or "none"
    (out_dir / SYNTHETIC_MARKER).write_text(
        "# SYNTHETIC data: not GTZAN\n\n"
        "Generated by `mirflow.datasets.gtzan.synthesize` as a stand-in with the GTZAN layout.\n"
        "Genres differ by tempo, drum pattern, harmony, timbre and noise; it is not music.\n\n"
        f"- seed: {seed}\n- clips per genre: {clips}\n- duration: {duration_s} s at {sr} Hz, 16-bit PCM mono\n"
        f"- deliberately corrupt clips: {corrupt}\n- crossover (chance of each aspect from another genre): {crossover}\n"
    )


def is_synthetic(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` (or the parent of a ``genres/`` data_dir) was written by ``synthesize``."""
    data_dir = Path(data_dir).expanduser()
    folders = [data_dir, data_dir.parent] if data_dir.name == "genres" else [data_dir]
    return any((folder / SYNTHETIC_MARKER).is_file() for folder in folders)
