"""librosa's numba cache, built by processes that start using librosa at the same time.

Two processes that compile librosa's ``cache=True`` gufuncs for the first time at once can
leave a kernel saved by one and its wrapper by the other, numbered differently, and every
later process calling it segfaults (numba takes no lock); mirflow lets one process compile
(mirflow.core.numba_cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mirflow
from mirflow.core import numba_cache

MIRFLOW_ROOT = Path(mirflow.__file__).resolve().parents[1]  # the mirflow under test, in the children too

# What a Dask worker does on its first shard (decode a clip, extract it), once released.
RACER = """
import sys, time
from pathlib import Path
from mirflow.io.audio import load_audio
from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip
clip, ready, go = map(Path, sys.argv[1:])
ready.touch()
while not go.exists():
    time.sleep(0.005)
extract_clip(load_audio(clip), FeatureSettings())
"""

# Plain librosa in a new process, on the cache the racers left: the two calls, then
# calls into librosa's other cached gufuncs (a racer that lags behind loads what the other
# compiled and catches up, so the pair of files left mismatched can be any gufunc's).
CHECK = """
import numpy as np, librosa
y = np.random.default_rng(0).standard_normal(110250).astype("float32")
librosa.estimate_tuning(y=y, sr=22050)
librosa.feature.chroma_stft(y=y, sr=22050)
librosa.feature.zero_crossing_rate(y)
librosa.beat.beat_track(y=y, sr=22050)
librosa.onset.onset_detect(y=y, sr=22050)
librosa.util.localmin(y)
"""


def _env(cache: Path) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(MIRFLOW_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": python_path}


def _wait_for(condition, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "a racer did not get there in time"
        time.sleep(0.005)


# After the warm-up, a worker's whole first extraction (both feature paths, both dtypes).
EXTRACT = """
import numpy as np
from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip, extract_clip_naive
y = np.random.default_rng(1).normal(0.0, 0.1, 3 * 22050)
for x in (y.astype(np.float32), y):
    extract_clip(x, FeatureSettings())
    extract_clip_naive(x, FeatureSettings())
"""


@dataclass
class RacedCache:
    env: dict[str, str]  # NUMBA_CACHE_DIR: the cache
    extraction: subprocess.CompletedProcess
    compiled_after_warm_up: list[str]  # cache files written after mirflow's warm-up marker, before CHECK


@pytest.fixture(scope="module")
def raced_cache(tmp_path_factory) -> RacedCache:
    """A fresh numba cache that two extracting processes, released at once, compiled into
    first; then a third process's whole extraction on it. One first compile (~1 CPU-minute,
    1.5-4.5 min here) serves both tests below."""
    folder = tmp_path_factory.mktemp("numba_race")
    clip = folder / "clip.wav"
    sf.write(clip, np.random.default_rng(1).normal(0, 0.1, 44100).astype(np.float32), 44100)  # resampled, as real audio
    cache = folder / "numba"
    env = _env(cache)
    readies, gos = ([folder / f"{name}{i}" for i in range(2)] for name in ("ready", "go"))
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(clip), str(ready), str(go)], env=env,
                               stderr=subprocess.PIPE, text=True) for ready, go in zip(readies, gos)]
    _wait_for(lambda: all(ready.exists() for ready in readies))
    # Racers in exact step compile identical code and leave a sound cache. The second
    # starts once the first has cached its first function, as workers start a little
    # apart: it loads that one, catches up, and from there both compile the same
    # functions at once, numbered differently (the mismatch the old code left).
    gos[0].touch()
    _wait_for(lambda: any(cache.rglob("*.nbi")))
    gos[1].touch()
    for racer in racers:
        _, stderr = racer.communicate(timeout=900)
        assert racer.returncode == 0, stderr[-2000:]
    extraction = subprocess.run([sys.executable, "-c", EXTRACT], env=env, capture_output=True, text=True, timeout=900)
    # The marker is written once the warm-up's child has saved everything: a file written
    # later was compiled later, by a racer or the extraction (a compile takes far longer
    # than a timestamp's resolution).
    markers = list(cache.rglob(numba_cache._MARKER_PREFIX + "*"))
    warmed_up = max((marker.stat().st_mtime_ns for marker in markers), default=None)
    later = [str(p.relative_to(cache)) for p in cache.rglob("*.nb[ic]")
             if warmed_up is None or p.stat().st_mtime_ns > warmed_up]
    return RacedCache(env, extraction, sorted(later) if len(markers) == 1 else [f"{len(markers)} warm-up markers"])


@pytest.mark.heavy  # the race's first compile (see raced_cache)
def test_workers_extracting_first_at_once_leave_a_cache_later_processes_can_load(raced_cache):
    check = subprocess.run([sys.executable, "-c", CHECK], env=raced_cache.env, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, f"exit code {check.returncode} (-11: segfault): {check.stderr[-2000:]}"


@pytest.mark.heavy  # the race's first compile (see raced_cache)
def test_the_warm_up_compiles_everything_an_extraction_reaches(raced_cache):
    """The warm-up calls librosa directly (core imports no pipeline): the racers'
    extractions and a whole extraction afterwards (both paths, both dtypes) must find
    every numba function they use already in the cache."""
    extraction = raced_cache.extraction
    assert extraction.returncode == 0, f"exit code {extraction.returncode}: {extraction.stderr[-2000:]}"
    assert raced_cache.compiled_after_warm_up == [], "compiled after the warm-up"


def test_the_first_call_clears_librosa_entries_and_compiles_once(tmp_path, monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))  # what NUMBA_CACHE_DIR sets
    compiles = []
    monkeypatch.setattr(numba_cache, "_compile_in_child", compiles.append)
    stale = numba_cache._cache_dir(numba_cache._librosa_dir() / "core") / "pitch._pi_wrapper-430.py311.1.nbc"
    stale.write_bytes(b"left by an unguarded run")

    for _ in range(2):  # two processes, one after the other
        monkeypatch.setattr(numba_cache, "_ready", False)
        numba_cache.ensure_compiled()

    top_cache = numba_cache._cache_dir(numba_cache._librosa_dir())
    assert compiles == [top_cache] and not stale.exists()
    assert len(list(top_cache.glob("mirflow-numba-compiled-*"))) == 1
