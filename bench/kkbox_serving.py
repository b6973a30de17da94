"""Benchmark: ``mirflow serve-model`` (a real uvicorn process) under load: requests/s
and p50/p99 latency at concurrency 1, 8 and 32 for batches of 1 and 1,000 rows, every
answer checked (status 200, one prediction per row); beside it, the same 1,000 raw rows
through the same transform and model in this process (``Scorer.score``).

Targets: zero errors; for 1,000-row batches, rows/s through HTTP >= 0.8x in process at
every concurrency. The client shares the 2 cores with the server (its bodies are encoded
once, before timing). The 1,000-row cells run in rounds, each right after its own
in-process baseline, and a ratio is the median over the rounds: on this shared host the
same 4-s cell's rows/s varied by 60 % from one run to the next (16,248-26,021 at
concurrency 1, in three runs), more than the target's margin.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

from bench.common import timed
from bench.kkbox_data import raw_rows, trained_run

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 1000)
MIN_ROWS_RATIO = 0.8
ROUNDS = 3  # of the 1,000-row cells, each beside its in-process baseline (1 in --quick)


def data_sets(quick: bool) -> list:
    return []


def _server(run_dir: str, tables: str) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "mirflow.cli", "serve-model", run_dir, "--port", str(port), "--model", "network",
                                "--tables", tables], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("serve-model did not answer /health within 180 s")


async def _load(url: str, body: bytes, rows: int, concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients posting ``body`` back to back for ``seconds``."""
    import httpx

    latencies, errors = [], 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while True:  # at least one request each, then until ``seconds`` are up
                start = time.perf_counter()
                answer = await client.post("/predict", content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - start)
                if answer.status_code != 200 or len(answer.json()["predictions"]) != rows:
                    errors += 1
                if time.perf_counter() >= end:
                    return

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "requests_per_s": len(latencies) / elapsed,
            "rows_per_s": len(latencies) * rows / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _in_process(scorer, frame, seconds: float) -> float:
    """Rows/s of ``Scorer.score`` on the same rows, repeated for ``seconds``."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scorer.score(frame)
        count += 1
    return count * len(frame) / (time.perf_counter() - start)


def _cell(url: str, body: bytes, rows: int, concurrency: int, seconds: float) -> dict:
    with timed(wait=False) as record:
        cell = asyncio.run(_load(url, body, rows, concurrency, seconds))
    return {**cell, "others_cores": record["others_cores"]}


def run(quick: bool) -> dict:
    import pandas as pd

    from mirflow.pipelines.kkbox_relisten.scoring import Scorer
    from mirflow.runs import resolve_run

    seconds, rounds = (1.5, 1) if quick else (4.0, ROUNDS)
    trained = trained_run()
    run_dir, tables = trained["run_dir"], trained["tables"]
    rows = raw_rows(Path(tables), max(BATCHES))
    fields = [f for f in rows if f != "id"]
    frame = pd.DataFrame({f: rows[f] for f in fields})
    bodies = {n: json.dumps({"rows": frame.head(n).to_dict("records")}).encode() for n in BATCHES}
    scorer = Scorer(resolve_run(run_dir, str(Path(run_dir).parents[1])), tables, "network")
    scorer.score(frame)  # warm-up, as the server's first request is
    process, url = _server(run_dir, tables)
    cells, in_process = {}, []
    try:
        for batch in BATCHES:  # warm-up: the first requests import and allocate what the rest reuse
            asyncio.run(_load(url, bodies[batch], batch, 1, 0.0))
        for concurrency in CONCURRENCY:
            cells[(1, concurrency, 1)] = _cell(url, bodies[1], 1, concurrency, seconds)
        for round_ in range(1, rounds + 1):
            with timed(wait=False) as local:
                rate = _in_process(scorer, frame, seconds)
            in_process.append({"rows_per_s": rate, "others_cores": local["others_cores"]})
            for concurrency in CONCURRENCY:
                cells[(1000, concurrency, round_)] = _cell(url, bodies[1000], 1000, concurrency, seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
    errors = sum(c["errors"] for c in cells.values())
    ratios = {c: median(cells[(1000, c, r)]["rows_per_s"] / in_process[r - 1]["rows_per_s"] for r in range(1, rounds + 1))
              for c in CONCURRENCY}
    table = [[b, c, r if b == 1000 else "", cell["requests"], cell["errors"], cell["requests_per_s"], cell["rows_per_s"],
              f"{cell['rows_per_s'] / in_process[r - 1]['rows_per_s']:.2f}x" if b == 1000 else "", cell["p50_ms"], cell["p99_ms"],
              f"{cell['others_cores']:.2f}"] for (b, c, r), cell in cells.items()]
    baseline = ", ".join(f"{p['rows_per_s']:,.0f}" for p in in_process)
    return {
        "name": "kkbox_serving",
        "title": "KKBOX model endpoint (mirflow serve-model)",
        "setup": (f"A kkbox_relisten run on the generated demo set (20,000 rows; network, lr 1e-2) served by `mirflow serve-model` "
                  f"(one uvicorn process); an httpx AsyncClient in this process posts the same body back to back for {seconds:g} s "
                  f"per cell. The 1,000-row cells run in {rounds} round(s), each after its in-process baseline: `Scorer.score` on "
                  f"the same 1,000 raw rows (join, transform, network) in this process, {baseline} rows/s (other processes "
                  f"{max(p['others_cores'] for p in in_process):.2f} cores at most); a target's ratio is the median over the rounds."),
        "tables": [{"columns": ["rows/request", "concurrency", "round", "requests", "errors", "requests/s", "rows/s",
                                "vs in process", "p50 ms", "p99 ms", "others' cores"], "rows": table}],
        "targets": [
            {"what": "zero errors", "value": f"{errors} errors in {sum(c['requests'] for c in cells.values())} requests", "met": errors == 0},
            *({"what": f"1,000-row batches at concurrency {c}: rows/s >= {MIN_ROWS_RATIO:g}x in process (median of {rounds})",
               "value": f"{r:.2f}x", "met": r >= MIN_ROWS_RATIO} for c, r in ratios.items()),
        ],
        "results": {"in_process": in_process, "cells": {f"{b}x{c}" + (f"-round{r}" if b == 1000 else ""): cell
                                                        for (b, c, r), cell in cells.items()}},
    }
