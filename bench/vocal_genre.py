"""vocal_genre's separation stage (issue 17), three figures:

1. Throughput of each separator through the stage function (`write_separated_song`,
   every stem of the separator as 3-s log-mel slices): generated 30-s songs (GTZAN's clip
   length), songs per CPU-second of this process (all its threads). Demucs runs
   htdemucs's full architecture with random weights (no weights are reachable here; the
   cost does not depend on their values), on torch's default threads.
2. The speed-up of the default log-mel (from the masked STFT the separator has) over
   `--resynthesize` (inverse STFT, then STFT again): the log-mel step alone, per stem,
   and the whole REPET-SIM stage per song.
3. A flow re-run that adds 10 % new songs: the separation stage (`run_shard_tasks` over
   every song: the stored ones settled in one task run, the new ones separated on Dask)
   against its cold time, both timed around that call in the flow. Both runs use one
   local Dask cluster started beforehand (2 workers, 1 thread each), so the cluster's
   start-up and its workers' imports count in neither. Training re-runs (1 epoch of the
   zoo's `cnn`, 2 folds). Target: <= 0.2x.

    python -m bench.run_all --only vocal_genre [--quick]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import DATA, fresh_store, load_average, load_note, timed

TARGET_RERUN = 0.2
GENRES = ("blues", "classical", "country", "disco", "jazz", "metal")


def _songs(n_per_genre: int, seconds: float) -> Path:
    """A cached generated set (songs are keyed by seed, genre and index: a larger set
    holds the smaller one's songs, byte for byte)."""
    from mirflow.pipelines.vocal_genre import demo

    folder = DATA / f"vocal_genre-{seconds:g}s-n{n_per_genre}"
    if not (folder / "SYNTHETIC.md").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        demo.synthesize(folder, n_per_genre, seed=0, seconds=seconds, genres=GENRES)
    return folder


def _cpu_per_song(separator: str | None, paths: list[Path], resynthesize: bool = False, weights: str | None = None) -> float:
    """CPU seconds of this process per song, the stage function writing into a scratch store."""
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.vocal_genre.separation import SliceSettings, write_separated_song

    with tempfile.TemporaryDirectory(prefix="mirflow-bench-separate-") as folder:
        store = ArtifactStore(folder)
        started = time.process_time()
        for i, path in enumerate(paths):
            materialize(store, ArtifactRef("separate", f"song{i}"), {}, write_separated_song,
                        (str(path), separator, SliceSettings(), resynthesize, weights))
        return (time.process_time() - started) / len(paths)


def throughput(n_songs: int, seconds: float) -> dict:
    from mirflow.pipelines.vocal_genre import demucs_backend

    paths = sorted(_songs(1, seconds).glob("*/*.wav"))[:n_songs]  # one per genre
    _cpu_per_song("repet_sim", paths[:1])  # warm-up: librosa's first calls
    rows = {"REPET-SIM": _cpu_per_song("repet_sim", paths), "HPSS": _cpu_per_song("hpss", paths),
            "REPET-SIM, --resynthesize": _cpu_per_song("repet_sim", paths, resynthesize=True)}
    with tempfile.TemporaryDirectory(prefix="mirflow-bench-demucs-") as folder:
        weights = str(demucs_backend.write_random_checkpoint(Path(folder) / "htdemucs-random.th"))
        # warm-up on a 2-s song: torch's first calls, and the model loaded once (as on a worker)
        _cpu_per_song("demucs", sorted(_songs(1, 2.0).glob("*/*.wav"))[:1], weights=weights)
        rows["Demucs (htdemucs architecture, random weights)"] = _cpu_per_song("demucs", paths[:1], weights=weights)
        parameters = sum(p.numel() for p in demucs_backend.load_model(weights).parameters())
    return {"seconds_per_song": seconds, "songs": len(paths), "cpu_s_per_song": rows, "demucs_parameters": parameters}


def log_mel_step(seconds: float, repeats: int) -> dict:
    """CPU seconds of one stem's log-mel from its masked STFT, and with --resynthesize."""
    import librosa

    from mirflow.io.audio import load_audio
    from mirflow.pipelines.vocal_genre.separation import SliceSettings, _log_mel, repet_sim

    settings = SliceSettings()
    y = load_audio(sorted(_songs(1, seconds).glob("*/*.wav"))[0], settings.sr)
    vocals = repet_sim(librosa.stft(y, n_fft=settings.n_fft, hop_length=settings.hop_length), settings)["vocals"]
    cpu = {}
    for resynthesize in (False, True, False, True):  # interleaved: drift in load hits both
        started = time.process_time()
        for _ in range(repeats):
            _log_mel(vocals, len(y), settings, resynthesize)
        cpu.setdefault(resynthesize, []).append((time.process_time() - started) / repeats)
    return {"masked_s": min(cpu[False]), "resynthesized_s": min(cpu[True])}


def _link_songs(source: Path, target: Path, per_genre: dict[str, int]) -> None:
    """Hard links (same stat fingerprints) to the first songs of each genre of ``source``."""
    for genre, n in per_genre.items():
        (target / genre).mkdir(parents=True, exist_ok=True)
        for index in range(n):
            name = f"{genre}/{genre}.{index:05d}.wav"
            if not (target / name).exists():
                os.link(source / name, target / name)


def _warm_worker() -> None:
    """A worker's one-off start-up (imports, librosa's compiled functions), paid before
    either timed run: the cold run would pay it and the re-run, on the same workers, not."""
    from mirflow.core.numba_cache import ensure_compiled
    from mirflow.pipelines.vocal_genre import separation  # noqa: F401

    ensure_compiled()


def rerun(per_genre: int, seconds: float) -> dict:
    """Cold flow run, then a run with 10 % more songs (``per_genre`` <= 10: one new song in
    each of the first genres): the separation stage's wall time in each."""
    import flows.vocal_genre as flow_module
    from mirflow.core.cluster import DaskPool
    from mirflow.pipelines.vocal_genre.params import VocalGenreParams
    from mirflow.runs import Run

    n_new = len(GENRES) * per_genre // 10
    master = _songs(per_genre + 1, seconds)
    data = DATA / f"vocal_genre-rerun-{seconds:g}s-n{per_genre}"
    shutil.rmtree(data, ignore_errors=True)
    _link_songs(master, data, dict.fromkeys(GENRES, per_genre))
    store = fresh_store("vocal_genre")
    spans: list[float] = []
    separate = flow_module.run_shard_tasks

    def timed_separation(*args):
        started = time.perf_counter()
        refs = separate(*args)
        spans.append(time.perf_counter() - started)
        return refs

    runs, pool = [], DaskPool(None, 2)  # the local cluster a flow starts, here started once for both runs
    try:
        pool.client().run(_warm_worker)
        params = VocalGenreParams(data_dir=str(data), store=str(store), dask_address=pool.client().scheduler.address,
                                  models=["cnn"], folds=2, max_epochs=1, seed=0)
        flow_module.run_shard_tasks = timed_separation
        for added in (0, n_new):
            _link_songs(master, data, {genre: per_genre + 1 for genre in GENRES[:added]})
            with timed() as record:
                result = flow_module.vocal_genre(params)
            stages = Run.open(str(store), result["run_id"]).manifest["stages"]
            separations = [s for s in stages if s["stage"] == "separate"]
            runs.append({**record, "separation_s": spans[-1], "songs": len(separations),
                         "computed": sum(s["status"] == "computed" for s in separations),
                         "computed_stage_s": sum(s["seconds"] or 0.0 for s in separations)})
    finally:
        flow_module.run_shard_tasks = separate
        pool.close()
    return {"seconds_per_song": seconds, "cold": runs[0], "rerun": runs[1], "ratio": runs[1]["separation_s"] / runs[0]["separation_s"]}


def run(quick: bool) -> dict:
    """The run_all entry: ``quick`` takes shorter and fewer songs."""
    song_s, n_songs, per_genre, rerun_song_s = (10.0, 2, 5, 5.0) if quick else (30.0, 2, 10, 5.0)
    load = {"load_at_start": load_average()}
    speed = throughput(n_songs, song_s)
    mel = log_mel_step(song_s, 3)
    again = rerun(per_genre, rerun_song_s)
    cpu = speed["cpu_s_per_song"]
    cold, warm = again["cold"], again["rerun"]
    return {
        "name": "vocal_genre",
        "title": "vocal_genre separation (issue 17)",
        "setup": (f"Generated {song_s:g}-s songs (`vocal_genre.demo`), the stage function `write_separated_song` "
                  f"(every stem of the separator as 128x128 log-mel slices) on {speed['songs']} songs per separator "
                  "(Demucs: 1), CPU seconds of this process over all its threads; Demucs: htdemucs's architecture "
                  f"(`HTDemucs` defaults, {speed['demucs_parameters'] / 1e6:.1f} M parameters) with random weights, torch's default threads. "
                  f"Re-run: {len(GENRES) * per_genre} songs of {rerun_song_s:g} s, then 10 % more, REPET-SIM, one "
                  "local Dask cluster (2 workers x 1 thread) shared by both runs, the separation stage timed around "
                  "its call in the flow."),
        "figures": {**load, "throughput": speed, "log_mel": mel, "rerun": again},
        "tables": [
            {"columns": ["separator", "CPU s per song", f"songs per CPU-second ({song_s:g}-s songs)"],
             "rows": [[name, round(seconds, 2), round(1 / seconds, 3)] for name, seconds in cpu.items()]},
            {"columns": ["run", "songs", "separated", "separation stage s (wall)", "separation work s (sum)", "flow s",
                         "load"],
             "rows": [[name, r["songs"], r["computed"], round(r["separation_s"], 2), round(r["computed_stage_s"], 2),
                       round(r["seconds"], 1), load_note(r)] for name, r in (("cold", cold), ("+10 % songs", warm))]},
        ],
        "targets": [
            {"what": f"a re-run adding 10 % songs separates only those, its separation stage ≤ {TARGET_RERUN}× the cold one",
             "value": f"{again['ratio']:.3f}× ({warm['computed']} of {warm['songs']} separated)",
             "met": again["ratio"] <= TARGET_RERUN and warm["computed"] == warm["songs"] - cold["songs"]},
        ],
        "notes": [
            f"one stem's log-mel from the masked STFT: {mel['masked_s'] * 1000:.1f} ms CPU, with --resynthesize "
            f"{mel['resynthesized_s'] * 1000:.1f} ms: {mel['resynthesized_s'] / mel['masked_s']:.1f}× faster "
            f"without resynthesis ({song_s:g}-s song, best of 2 interleaved rounds of 3)",
            f"the whole REPET-SIM stage per song: {cpu['REPET-SIM']:.2f} CPU s, with --resynthesize "
            f"{cpu['REPET-SIM, --resynthesize']:.2f} ({cpu['REPET-SIM, --resynthesize'] / cpu['REPET-SIM']:.2f}×): "
            "the nearest-neighbour filter dominates",
        ],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return []  # generates its own songs (vocal_genre.demo)
