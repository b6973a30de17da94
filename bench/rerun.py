"""Benchmark 4: an unchanged re-run of the gtzan flow vs its cold run, at growing clip
counts. Re-runs are timed in this process (the flow alone) and through the CLI in a
fresh process (what a user waits for: interpreter, imports, the flow). At the largest
size also: `--explain` (keys only, no Prefect server), the import time of the flow,
and the CLI re-run without a running server, whose extra time is the temporary
Prefect server's start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from statistics import median

from bench.common import FLOW_SETTINGS, cold_flow_run, load_note, prefect_api_url, run_flow, timed
from mirflow.runs import Run

TARGET_SPEEDUP = 10.0
TARGET_CLI_S = 5.0  # from the command's start, against a running server; and for --explain
TARGET_FLAT = 1.5  # largest re-run / smallest re-run; "flat" with some slack for per-file stat calls
IN_PROCESS_RERUNS = 5


def _sizes(quick: bool) -> tuple[int, ...]:
    return (50, 100, 200) if quick else (250, 500, 1000)


def _cli_rerun(data_dir: str, store: str, *options: str, server: bool = True) -> dict:
    """``mirflow run gtzan`` with the cold run's parameters, in a new process; against
    the benchmark's Prefect server, or (``server=False``) starting its temporary one."""
    command = [sys.executable, "-m", "mirflow.cli", "run", "gtzan", "--data-dir", data_dir, "--store", store,
               "--n-workers", str(FLOW_SETTINGS["n_workers"]), "--models", *FLOW_SETTINGS["models"],
               "--max-epochs", str(FLOW_SETTINGS["max_epochs"]), "--patience", str(FLOW_SETTINGS["patience"]),
               "--seed", str(FLOW_SETTINGS["seed"]), *options]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if server:
        env["PREFECT_API_URL"] = prefect_api_url()
    with timed() as record:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"CLI re-run failed ({done.returncode}): {done.stderr[-2000:]}")
    if "--explain" in options:
        lines = done.stdout.splitlines()
        return {**record, "statuses": sorted({"cached" if ": cached" in line else "would re-run" for line in lines})}
    newest = sorted(p.name for p in Path(store, "runs").iterdir())[-1]
    statuses = sorted({stage["status"] for stage in Run.open(store, newest).manifest["stages"]})
    return {**record, "statuses": statuses}


def import_seconds(module: str = "flows.gtzan", repeats: int = 3) -> float:
    """Median time to import ``module`` in a new interpreter (the interpreter's own start excluded)."""
    code = f"import time; started = time.perf_counter(); import {module}; print(time.perf_counter() - started)"
    times = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
        times.append(float(done.stdout.split()[-1]))
    return median(times)


def run(quick: bool) -> dict:
    rows, figures = [], []
    for n_clips in _sizes(quick):
        cold = cold_flow_run(n_clips)
        reruns = [run_flow(Path(cold["data_dir"]), Path(cold["store"])) for _ in range(IN_PROCESS_RERUNS)]
        cli = _cli_rerun(cold["data_dir"], cold["store"])
        rerun_s = median(r["seconds"] for r in reruns)
        statuses = sorted({s for r in reruns for s in r["statuses"]} | set(cli["statuses"]))
        figures.append({"clips": n_clips, "cold": cold, "reruns": reruns, "cli": cli, "rerun_median_s": rerun_s})
        rows.append([n_clips, cold["seconds"], rerun_s, min(r["seconds"] for r in reruns),
                     round(cold["seconds"] / rerun_s, 1), cli["seconds"],
                     round(cold["seconds"] / cli["seconds"], 1), ", ".join(statuses),
                     max([cold["others_cores"], cli["others_cores"]] + [r["others_cores"] for r in reruns])])
    largest, smallest = figures[-1], figures[0]
    data_dir, store = largest["cold"]["data_dir"], largest["cold"]["store"]
    explain = _cli_rerun(data_dir, store, "--explain", server=False)
    no_server = _cli_rerun(data_dir, store, server=False)
    flow_import_s = import_seconds()
    speedup = largest["cold"]["seconds"] / largest["rerun_median_s"]
    cli_speedup = largest["cold"]["seconds"] / largest["cli"]["seconds"]
    growth = largest["rerun_median_s"] / smallest["rerun_median_s"]
    cli_growth = largest["cli"]["seconds"] / smallest["cli"]["seconds"]
    return {
        "name": "rerun",
        "title": "4. Unchanged re-run vs cold run",
        "setup": (
            f"Generated 30 s clips at {', '.join(map(str, _sizes(quick)))} clips"
            f"{' (--quick sizes)' if quick else ''}; flow parameters {FLOW_SETTINGS}. Cold = first run into a fresh "
            f"store; re-run in process = median of {IN_PROCESS_RERUNS} unchanged runs of the flow function; "
            "CLI re-run = `python -m mirflow.cli run gtzan …` in a new process against the same Prefect server "
            "(includes interpreter start and imports)."
        ),
        "figures": {"sizes": figures, "speedup": speedup, "cli_speedup": cli_speedup, "growth": growth,
                    "cli_growth": cli_growth, "explain": explain, "cli_without_server": no_server,
                    "flow_import_s": flow_import_s},
        "tables": [{"columns": ["clips", "cold s", "re-run s (in process, median)", "fastest", "speed-up", "re-run s (CLI)",
                                "speed-up (CLI)", "stage statuses of re-runs", "max others' cores"],
                    "rows": rows}],
        "targets": [
            {"what": f"re-run ≥ {TARGET_SPEEDUP:g}× faster at {largest['clips']} clips (in process)",
             "value": f"{speedup:.1f}× (CLI: {cli_speedup:.1f}×)", "met": speedup >= TARGET_SPEEDUP},
            {"what": f"re-run flat as clips grow ({largest['clips']} vs {smallest['clips']} clips ≤ {TARGET_FLAT}×)",
             "value": f"{growth:.2f}× (CLI: {cli_growth:.2f}×)", "met": growth <= TARGET_FLAT},
            {"what": f"CLI re-run against a running server ≤ {TARGET_CLI_S:g} s at {largest['clips']} clips",
             "value": f"{largest['cli']['seconds']:.2f} s", "met": largest["cli"]["seconds"] <= TARGET_CLI_S},
            {"what": f"`--explain` (no server) ≤ {TARGET_CLI_S:g} s at {largest['clips']} clips",
             "value": f"{explain['seconds']:.2f} s ({', '.join(explain['statuses'])}; {load_note(explain)})",
             "met": explain["seconds"] <= TARGET_CLI_S},
        ],
        "notes": [
            f"`import flows.gtzan` in a new interpreter: {flow_import_s:.2f} s (median of 3).",
            f"Temporary Prefect server start-up: {no_server['seconds'] - largest['cli']['seconds']:.1f} s "
            f"(CLI re-run without a running server {no_server['seconds']:.2f} s, minus the same against one).",
        ],
    }


def data_sets(quick: bool) -> list[tuple[int, float]]:
    return [(max(_sizes(quick)), 30.0)]
