"""Benchmark: ``mirflow score`` memory as the input grows, 100,000 -> 2,500,000 rows
(test.csv layout, users and songs of the run's data plus unknown ones; generated
column-wise). Each size runs the CLI in a fresh process; its peak resident memory is
its own ``VmHWM`` at exit. Target: the largest input's peak <= 1.2x the smallest's
(scoring streams the input in chunks of 100,000 rows).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from bench.common import DATA, timed
from bench.kkbox_data import raw_rows, trained_run

TARGET_FLAT = 1.2
_CLI = ("import sys; from mirflow.cli import main; from mirflow.core.memory import peak_rss_bytes; "
        "code = main(sys.argv[1:]); print('PEAK', peak_rss_bytes()); sys.exit(code)")


def data_sets(quick: bool) -> list:
    return []


def _sizes(quick: bool) -> tuple[int, ...]:
    return (100_000, 500_000) if quick else (100_000, 2_500_000)  # the smallest: one whole chunk


def _input(tables: Path, rows: int) -> Path:
    path = DATA / f"kkbox-score-{rows}" / "test.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pcsv.write_csv(pa.table(raw_rows(tables, rows, seed=rows)), path)
    return path


def _score(run_dir: str, tables: str, input_csv: Path) -> dict:
    out = input_csv.with_name("predictions.csv")
    with timed() as record:
        done = subprocess.run([sys.executable, "-c", _CLI, "score", run_dir, str(input_csv), "--out", str(out), "--tables", tables,
                               "--model", "network"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise RuntimeError(f"mirflow score failed:\n{done.stderr[-3000:]}")
    peak = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK")))
    scored = sum(1 for _ in open(out)) - 1
    return {"peak_rss_mib": peak / 2**20, "rows_scored": scored, **record}


def run(quick: bool) -> dict:
    trained = trained_run()
    tables = trained["tables"]
    sizes = _sizes(quick)
    results = {n: _score(trained["run_dir"], tables, _input(Path(tables), n)) for n in sizes}
    small, large = results[sizes[0]], results[sizes[-1]]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    rows = [[f"{n:,}", r["rows_scored"], r["peak_rss_mib"], r["seconds"], r["cpu_seconds"], f"{r['others_cores']:.2f}"] for n, r in results.items()]
    return {
        "name": "kkbox_scoring",
        "title": "KKBOX batch scoring memory (mirflow score)",
        "setup": ("`mirflow score RUN test.csv --model network` (chunks of 100,000 rows) in a fresh process per input size; the run "
                  "and its side tables are the generated demo set's (20,000 train rows)."),
        "tables": [{"columns": ["input rows", "rows written", "peak RSS MiB", "wall s", "CPU s", "others' cores"], "rows": rows}],
        "targets": [{"what": f"peak RSS at {sizes[-1]:,} rows <= {TARGET_FLAT:g}x at {sizes[0]:,}", "value": f"{ratio:.2f}x",
                     "met": ratio <= TARGET_FLAT and all(r["rows_scored"] == n for n, r in results.items())}],
        "results": {str(n): r for n, r in results.items()},
    }
