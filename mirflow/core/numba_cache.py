"""librosa's numba functions, compiled into numba's on-disk cache by one process at a time.

librosa declares its numba functions ``cache=True``: the first process to use one
compiles it (seconds) and saves it in numba's cache, where later processes load it.
numba takes no lock there, so two processes compiling for the first time at once (a
cluster's workers on their first shard) can leave entries written by different
processes that do not fit together; every process loading them later segfaults
(``librosa.estimate_tuning``, in ``core/pitch._pi_wrapper``). ``ensure_compiled`` has one
process compile everything mirflow reaches, under an exclusive lock beside the cache,
and leaves a marker; from then on processes only load, which is safe concurrently.

mirflow calls it before its own first librosa call in every process (``mirflow.io.audio``,
``mirflow.pipelines.gtzan.features``); ``make install`` and the Docker build run it ahead
(``python -m mirflow.core.numba_cache``). Once the marker is there it costs one ``stat``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

_MARKER_PREFIX = "mirflow-numba-compiled-"
_ready = False  # this process found the marker, or is the one compiling


def ensure_compiled() -> None:
    """Make sure librosa's numba cache holds what mirflow uses, compiled by one process.

    The first caller for a cache (per librosa/numba/Python version and CPU) clears
    librosa's entries there, which earlier unguarded runs may have corrupted, and
    compiles them afresh in a child process (a function this process has loaded already
    would not be written again); concurrent callers wait on the lock, then load.
    """
    global _ready
    if _ready:
        return
    top_cache = _cache_dir(_librosa_dir())
    key = _cache_key()
    marker = top_cache / (_MARKER_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16])
    if not marker.exists():
        with _exclusive(top_cache / "mirflow-numba.lock"):
            if not marker.exists():
                _clear_librosa_cache(top_cache)
                _compile_in_child(top_cache)
                marker.write_text(f"compiled by mirflow for {key}\n")
    _ready = True


def compile_in_this_process() -> None:
    """What the child compiles: every librosa numba function that mirflow's audio and
    feature code reaches (``mirflow.pipelines.gtzan.features`` calls these, and
    ``tests/core/test_numba_cache.py`` checks a real extraction compiles nothing more),
    for float32 (decoded audio) and float64 waveforms. Unguarded: only ``ensure_compiled``
    runs it, under its lock. librosa is called directly, not through a pipeline: core code
    imports no pipeline."""
    global _ready
    _ready = True
    import librosa
    import numpy as np

    sr = 22050
    noise = np.random.default_rng(0).normal(0.0, 0.1, sr)
    for y in (noise.astype(np.float32), noise):
        S = np.abs(librosa.stft(y)) ** 2
        librosa.feature.chroma_stft(y=y, sr=sr)
        librosa.feature.chroma_stft(S=S, sr=sr)
        librosa.estimate_tuning(y=y, sr=sr)
        librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        librosa.power_to_db(librosa.feature.melspectrogram(S=S, sr=sr))
        for feature in (librosa.feature.spectral_centroid, librosa.feature.spectral_bandwidth,
                        librosa.feature.spectral_rolloff, librosa.feature.spectral_contrast):
            feature(y=y, sr=sr)
        librosa.feature.zero_crossing_rate(y)
        librosa.feature.rms(y=y)
        onset = librosa.onset.onset_strength(y=y, sr=sr)
        librosa.feature.tempo(onset_envelope=onset, sr=sr)
        librosa.beat.beat_track(onset_envelope=onset, sr=sr)
        librosa.util.localmax(S)


def _librosa_dir() -> Path:
    spec = importlib.util.find_spec("librosa")  # found, not imported: importing it compiles nothing yet
    return Path(spec.origin).parent


def _cache_dir(package_dir: Path) -> Path:
    """Where numba caches the functions of a package folder, by numba's own choice of
    locator: NUMBA_CACHE_DIR, else the folder's __pycache__ when writable, else the
    user-wide cache."""
    from numba.core.caching import CacheImpl

    for locator_class in CacheImpl._locator_classes:
        locator = locator_class.from_function(_cache_dir, str(package_dir / "__init__.py"))
        if locator is not None:
            return Path(locator.get_cache_path())
    raise RuntimeError(f"numba finds no writable cache folder for {package_dir}")


def _cache_key() -> str:
    """What numba's cached code depends on besides librosa's source."""
    import librosa  # lazily loaded: this imports none of its numba code
    import numba
    from numba.core.registry import cpu_target

    # numba keys cached code by CPU too (triple, name, features): an image built on one
    # machine and run on another compiles again there. (Its target context, set up
    # here, is what loading any cached function sets up anyway.)
    triple, cpu_name, cpu_features = cpu_target.target_context.codegen().magic_tuple()
    features = hashlib.sha256(cpu_features.encode()).hexdigest()[:12]
    return (f"librosa {librosa.__version__}, numba {numba.__version__}, python {sys.version.split()[0]}, "
            f"{triple} {cpu_name} (CPU features {features})")


@contextmanager
def _exclusive(lock_path: Path):
    # Read-only is enough for flock, so a lock file owned by another user still works.
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _clear_librosa_cache(top_cache: Path) -> None:
    """Remove numba's cached code for every librosa package folder, and old markers."""
    for package_init in _librosa_dir().rglob("__init__.py"):
        for entry in _cache_dir(package_init.parent).glob("*.nb[ic]"):
            entry.unlink(missing_ok=True)
    for old_marker in top_cache.glob(_MARKER_PREFIX + "*"):
        old_marker.unlink()


def _compile_in_child(top_cache: Path) -> None:
    # The child imports this same mirflow, wherever it was imported from here.
    mirflow_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [mirflow_root, os.environ.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-c", "from mirflow.core import numba_cache; numba_cache.compile_in_this_process()"],
        env={**os.environ, "PYTHONPATH": python_path}, capture_output=True, text=True,
    )
    if child.returncode != 0:
        last_line = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"compiling librosa's numba functions into {top_cache} failed "
                           f"(exit code {child.returncode}): {last_line}")


if __name__ == "__main__":
    started = time.perf_counter()
    ensure_compiled()
    print(f"librosa's numba functions are compiled in {_cache_dir(_librosa_dir())} "
          f"({time.perf_counter() - started:.1f} s)")
