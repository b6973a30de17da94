"""What the benchmarks share: result folders, machine and load information, timing,
cached generated GTZAN data sets, and running the gtzan flow.

The machine has 2 cores and may be shared, so every figure waits for a quiet machine
and carries the CPU other processes used while it was taken (``timed``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"
DATA = RESULTS / "data"
STORES = RESULTS / "stores"

# Flow settings every flow benchmark shares: the MLP only keeps runs short; training
# stays a real one (early stopping within 30 epochs).
FLOW_SETTINGS = {"n_workers": 2, "models": ["mlp"], "max_epochs": 30, "patience": 10, "seed": 0}


# -- machine and load ------------------------------------------------------------------
def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_info() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    packages = ("numpy", "librosa", "dask", "distributed", "prefect", "torch", "pyarrow", "joblib")
    code = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    return {
        "code": code or "unknown",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: metadata.version(name) for name in packages},
    }


def _system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds since boot from /proc/stat: busy = every non-idle field
    but steal; steal = time the hypervisor ran something else on our virtual CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _process_kind(process: psutil.Process) -> str:
    if process.pid == os.getpid():
        return "this process"
    command = " ".join(process.cmdline())
    if "prefect" in command and ("uvicorn" in command or "server" in command):
        return "Prefect server"
    if "spawn_main" in command or "loky" in command:
        return "worker processes"
    return "other children"


class _TreeCpu(threading.Thread):
    """CPU seconds of this process and all its descendants, sampled every 0.2 s so that
    children that exit mid-measurement (Dask workers, loky workers) still count; a
    process's last 0.2 s before it exits is missed (and counted as another's)."""

    def __init__(self):
        super().__init__(daemon=True)
        self._seen: dict[tuple[int, float], tuple[str, float]] = {}
        self._start = self._by_kind(self._sample())
        self._done = threading.Event()

    def _sample(self) -> dict[tuple[int, float], tuple[str, float]]:
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                key = process.pid, process.create_time()
                kind = self._seen[key][0] if key in self._seen else _process_kind(process)
                times = process.cpu_times()
                self._seen[key] = kind, times.user + times.system
            except psutil.Error:  # exited between listing and reading
                pass
        return self._seen

    @staticmethod
    def _by_kind(seen: dict[tuple[int, float], tuple[str, float]]) -> dict[str, float]:
        totals: dict[str, float] = {}
        for kind, seconds in seen.values():
            totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def run(self) -> None:
        while not self._done.wait(0.2):
            self._sample()

    def used_by_kind(self) -> dict[str, float]:
        """CPU seconds since the start, by kind of process (this one, workers, server…)."""
        self._done.set()
        if self.is_alive():
            self.join()
        end = self._by_kind(self._sample())
        return {kind: round(end[kind] - self._start.get(kind, 0.0), 2) for kind in sorted(end)}

    def used(self) -> float:
        return sum(self.used_by_kind().values())


def wait_for_quiet(max_wait_s: float) -> dict:
    """Wait (up to ``max_wait_s``) until other processes use < 0.25 core for a second:
    the machine is shared, and a figure taken beside someone's test run measures them."""
    started = time.perf_counter()
    while True:
        (before, _), tree = _system_cpu_seconds(), _TreeCpu()
        time.sleep(1.0)
        busy = _system_cpu_seconds()[0] - before - tree.used()
        waited = time.perf_counter() - started
        if busy < 0.25 or waited >= max_wait_s:
            return {"waited_s": round(waited, 1), "others_cores_at_start": round(max(busy, 0.0), 2)}
        time.sleep(2.0)


# How long ``timed`` waits for a quiet machine; run_all lowers it for --quick.
quiet_wait_s = 20.0


@contextmanager
def timed(wait: bool = True) -> Iterator[dict]:
    """Wall seconds of the block, the CPU seconds of this process tree in it, and the CPU
    that *other* processes used meanwhile and the hypervisor stole (in cores; > ~0.2
    means a contended figure), plus the 1-minute load average before and after (which
    includes our own work)."""
    record = wait_for_quiet(quiet_wait_s) if wait else {}
    record["load_before"] = load_average()
    (busy, steal), tree = _system_cpu_seconds(), _TreeCpu()
    tree.start()
    start = time.perf_counter()
    yield record
    seconds = time.perf_counter() - start
    by_kind = tree.used_by_kind()
    ours = sum(by_kind.values())
    busy_after, steal_after = _system_cpu_seconds()
    record["seconds"] = round(seconds, 3)
    record["cpu_seconds"] = round(ours, 2)
    record["cpu_seconds_by_process"] = by_kind
    record["others_cores"] = round(max(busy_after - busy - ours, 0.0) / seconds, 2)
    record["steal_cores"] = round((steal_after - steal) / seconds, 2)
    record["load_after"] = load_average()


def load_note(record: dict) -> str:
    return (f"other processes {record['others_cores']:.2f} cores, steal {record['steal_cores']:.2f}, "
            f"load {record['load_before']:.2f}→{record['load_after']:.2f}")


# -- generated data sets -----------------------------------------------------------------
def _synthesize_genres(out_dir: str, n_per_genre: int, duration_s: float, genres: tuple[str, ...]) -> None:
    from mirflow.datasets import gtzan

    gtzan.synthesize(out_dir, n_per_genre=n_per_genre, duration_s=duration_s, genres=genres)


def _master(n_per_genre: int, duration_s: float) -> Path:
    """The cached full set for this clip length, regenerated (two processes) when too small."""
    from mirflow.datasets.gtzan import GENRES

    folder = DATA / f"gtzan-{duration_s:g}s"
    marker = folder / "bench-data.json"  # written last: its presence means a complete set
    if marker.is_file() and json.loads(marker.read_text())["n_per_genre"] >= n_per_genre:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    # Clips are keyed by (seed, genre, index), so two halves of the genres make the same set.
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        jobs = [pool.submit(_synthesize_genres, str(folder), n_per_genre, duration_s, GENRES[i::2]) for i in (0, 1)]
        for job in jobs:
            job.result()
    marker.write_text(json.dumps({"n_per_genre": n_per_genre, "duration_s": duration_s}))
    return folder


def gtzan_clips(n_clips: int, duration_s: float = 30.0) -> Path:
    """A GTZAN-layout folder of ``n_clips`` generated clips (a multiple of 10), hard links
    into one cached set per clip length, so subsets share files (and stat fingerprints)."""
    from mirflow.datasets.gtzan import GENRES

    if n_clips % len(GENRES):
        raise ValueError(f"n_clips={n_clips} must be a multiple of {len(GENRES)} (clips per genre)")
    per_genre = n_clips // len(GENRES)
    master = _master(per_genre, duration_s)
    folder = DATA / f"gtzan-{duration_s:g}s-n{n_clips}"
    marker = folder / "bench-subset.json"
    if marker.is_file() and json.loads(marker.read_text())["master"] == master.joinpath("bench-data.json").read_text():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for genre in GENRES:
        (folder / "genres" / genre).mkdir(parents=True)
        for index in range(per_genre):
            name = f"genres/{genre}/{genre}.{index:05d}.wav"
            os.link(master / name, folder / name)
    marker.write_text(json.dumps({"master": master.joinpath("bench-data.json").read_text()}))
    return folder


def prepare_data(quick: bool, names: list[str]) -> None:
    """Generate (or reuse) each clip length's cached set at the largest size any of these
    benchmarks asks for (``data_sets(quick)`` in each module), so none is regenerated."""
    largest: dict[float, int] = {}
    for name in names:
        for n_clips, duration_s in importlib.import_module(f"bench.{name}").data_sets(quick):
            largest[duration_s] = max(largest.get(duration_s, 0), n_clips)
    for duration_s, n_clips in largest.items():
        with timed(wait=False) as record:
            gtzan_clips(n_clips, duration_s)
        print(f"  data: {n_clips} clips of {duration_s:g} s ready in {record['seconds']:.0f} s", flush=True)


def clip_paths(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("genres/*/*.wav"))


def warm_page_cache(data_dir: Path) -> None:
    """Read every clip once, so no compared run pays for cold disk reads."""
    for path in clip_paths(data_dir):
        path.read_bytes()


def clip_records(data_dir: Path) -> list[dict]:
    """The records ``extract_shard`` takes, for every clip of a generated set."""
    return [
        {
            "clip_id": path.stem,
            "path": str(path),
            "rel_path": os.path.relpath(path, data_dir),
            "label": path.parent.name,
            "group": path.stem,
        }
        for path in clip_paths(data_dir)
    ]


def fresh_store(name: str) -> Path:
    store = STORES / name
    shutil.rmtree(store, ignore_errors=True)
    return store


# -- the flow ----------------------------------------------------------------------------
@contextmanager
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server and database (PREFECT_HOME must already point at a
    scratch folder); ``prefect_api_url`` gives its address to subprocesses."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def prefect_api_url() -> str:
    import prefect.settings

    return prefect.settings.PREFECT_API_URL.value()


def run_flow(data_dir: Path, store: Path, **overrides) -> dict:
    """One gtzan flow run in this process: wall time, load, and what each stage did."""
    from flows.gtzan import gtzan
    from mirflow.pipelines.gtzan.params import GtzanParams
    from mirflow.runs import Run

    params = GtzanParams(data_dir=str(data_dir), store=str(store), **{**FLOW_SETTINGS, **overrides})
    with timed() as record:
        result = gtzan(params=params)
    manifest = Run.open(str(store), result["run_id"]).manifest
    test = [row for row in result.get("rows", []) if row.get("split") == "test"]
    return {
        **record,
        "run_id": result["run_id"],
        "statuses": sorted({stage["status"] for stage in manifest["stages"]}),
        "stages": [
            {key: stage.get(key) for key in ("label", "status", "seconds", "peak_rss_bytes")}
            for stage in manifest["stages"]
        ],
        "test_accuracy": test[0].get("accuracy") if test else None,
    }


@cache
def cold_flow_run(n_clips: int, duration_s: float = 30.0) -> dict:
    """The first run of the flow on ``n_clips`` into a fresh store; cached, so benchmarks
    sharing one (flow overhead, re-run, memory) pay for it once."""
    data_dir = gtzan_clips(n_clips, duration_s)
    warm_page_cache(data_dir)
    store = fresh_store(f"flow-{duration_s:g}s-n{n_clips}")
    return {**run_flow(data_dir, store), "data_dir": str(data_dir), "store": str(store)}


def stage_seconds(run: dict) -> dict[str, float]:
    """Summed stage seconds by stage name (extract shards are summed over workers)."""
    totals: dict[str, float] = {}
    for stage in run["stages"]:
        name = stage["label"].split("[", 1)[0]
        totals[name] = round(totals.get(name, 0.0) + (stage["seconds"] or 0.0), 3)
    return totals


# -- output ------------------------------------------------------------------------------
def markdown_table(columns: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render(result: dict) -> str:
    """A benchmark result as a Markdown section."""
    parts = [f"## {result['title']}", "", result["setup"], ""]
    for table in result["tables"]:
        parts += [markdown_table(table["columns"], table["rows"]), ""]
    for target in result["targets"]:
        verdict = {True: "met", False: "**missed**", None: "n/a"}[target["met"]]
        parts.append(f"- Target {target['what']}: {target['value']} ({verdict})")
    parts += [f"- {note}" for note in result.get("notes", [])]
    parts += ["", f"_{'Quick run' if result['quick'] else 'Full run'} on code {result['machine']['code']}, "
                  f"finished {result['finished']}; "
                  f"benchmark wall time {result['seconds']:.0f} s; over the whole benchmark: {load_note(result)}._", ""]
    return "\n".join(parts)


def write_result(result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{result['name']}.json").write_text(json.dumps(result, indent=2, default=str))
    path = RESULTS / f"{result['name']}.md"
    path.write_text(render(result))
    return path
