"""The demo songs: genre carried by a "vocal" layer over a genre-neutral accompaniment.

Each song is ``<genre>/<genre>.000NN.wav`` (the GTZAN layout, so ``datasets.gtzan.discover``
reads it). The vocal is a melody of pitched harmonic tones with vibrato whose register,
vibrato rate and depth, brightness and note length depend on the genre; the
accompaniment (a repeating one-bar loop of drums and a chord pad, louder than the vocal)
is drawn from one distribution for every genre. So the label is only in the part that
does not repeat, which REPET-SIM separates as ``vocals``: separating first should help.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirflow.core.errors import ConfigError
from mirflow.datasets import gtzan


@dataclass(frozen=True)
class Voice:
    """A genre's singing: register (MIDI), vibrato (Hz, semitones), harmonics' roll-off, note length (s)."""

    register: float
    vibrato_rate: float
    vibrato_depth: float
    rolloff: float
    note_seconds: float


VOICES = {
    "blues": Voice(55, 5.0, 0.6, 0.5, 0.50),
    "classical": Voice(72, 6.5, 0.3, 0.25, 0.80),
    "country": Voice(62, 3.5, 0.12, 0.8, 0.35),
    "disco": Voice(67, 8.0, 0.9, 0.6, 0.22),
    "jazz": Voice(59, 2.5, 0.4, 0.35, 0.60),
    "metal": Voice(50, 7.0, 0.15, 0.9, 0.30),
}
DEFAULT_GENRES = ("blues", "classical", "country", "disco")
VOCAL_LEVEL = 0.5  # the vocal's RMS relative to the accompaniment's: it sits under the loop


def _tones(midi: np.ndarray, voice: Voice, sr: int, rolloff: float, rng: np.random.Generator) -> np.ndarray:
    """A sung line: per-sample pitch ``midi`` with vibrato, 6 harmonics decaying by ``rolloff``."""
    t = np.arange(len(midi)) / sr
    vibrato = voice.vibrato_depth * np.sin(2 * np.pi * voice.vibrato_rate * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(440.0 * 2 ** ((midi + vibrato - 69) / 12)) / sr
    return sum(rolloff ** (k - 1) * np.sin(k * phase) for k in range(1, 7))


def _vocal(voice: Voice, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    note = int(voice.note_seconds * rng.uniform(0.85, 1.15) * sr)
    steps = rng.choice([-3, -2, -1, 0, 1, 2, 3], size=n // note + 1)
    pitches = voice.register + rng.uniform(-2, 2) + np.clip(np.cumsum(steps), -7, 7)
    midi = np.repeat(pitches, note)[:n]
    envelope = np.tile(np.minimum(1, np.minimum(np.arange(note), note - np.arange(note)) / (0.03 * sr)), n // note + 1)[:n]
    return _tones(midi, voice, sr, voice.rolloff, rng) * envelope


def _accompaniment(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One bar of drums and a chord pad, repeated: the same distribution for every genre."""
    bar = int(rng.uniform(1.6, 2.4) * sr)
    loop = np.zeros(bar)
    for start in np.linspace(0, bar, int(rng.integers(4, 9)), endpoint=False).astype(int):
        length = min(int(0.12 * sr), bar - start)
        loop[start:start + length] += rng.normal(0, 1, length) * np.exp(-np.arange(length) / (0.02 * sr))
    chord = rng.uniform(45, 70) + np.array([0, 4, 7, 11])[: int(rng.integers(2, 5))]
    still = Voice(0, 0.0, 0.0, 0.5, 1.0)
    loop += 0.5 * sum(_tones(np.full(bar, pitch), still, sr, 0.5, rng) for pitch in chord) / len(chord)
    return np.tile(loop, int(seconds * sr) // bar + 1)[: int(seconds * sr)]


def _song_rng(seed: int, genre: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(genre.encode()), index])


def synthesize(out_dir: str | Path, n_per_genre: int = 12, seed: int = 0, *, seconds: float = 6.5,
               sr: int = 22050, genres: tuple[str, ...] = DEFAULT_GENRES) -> list[Path]:
    """Write ``n_per_genre`` songs of ``seconds`` per genre (16-bit PCM mono) and the
    ``SYNTHETIC.md`` marker of generated sets (last: its presence means a complete set)."""
    import soundfile as sf

    unknown = sorted(set(genres) - set(VOICES))
    if unknown or len(set(genres)) < 2 or n_per_genre < 1 or seconds <= 0:
        raise ConfigError(f"vocal_genre demo: genres must be two or more of {sorted(VOICES)} (unknown: {unknown}), "
                          f"n_per_genre ({n_per_genre}) >= 1 and seconds ({seconds}) > 0")
    paths = []
    for genre in genres:
        (Path(out_dir) / genre).mkdir(parents=True, exist_ok=True)
        for index in range(n_per_genre):
            rng = _song_rng(seed, genre, index)
            accompaniment, vocal = _accompaniment(seconds, sr, rng), _vocal(VOICES[genre], seconds, sr, rng)
            vocal *= VOCAL_LEVEL * np.sqrt(np.mean(accompaniment**2) / max(np.mean(vocal**2), 1e-12))
            mix = accompaniment + vocal
            path = Path(out_dir) / genre / f"{genre}.{index:05d}.wav"
            sf.write(path, (0.9 * mix / np.abs(mix).max()).astype(np.float32), sr, subtype="PCM_16")
            paths.append(path)
    (Path(out_dir) / gtzan.SYNTHETIC_MARKER).write_text(
        "# SYNTHETIC data: not music\n\nGenerated by `mirflow.pipelines.vocal_genre.demo.synthesize`: the genre is "
        f"in a vocal-like layer over a genre-neutral repeating accompaniment.\n\n- seed: {seed}\n- songs per genre: "
        f"{n_per_genre}\n- genres: {', '.join(genres)}\n- duration: {seconds} s at {sr} Hz\n")
    return paths
