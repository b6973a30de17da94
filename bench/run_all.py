"""Run the benchmarks: ``python -m bench.run_all [--quick] [--only NAME ...]``.

Writes ``bench/results/<name>.json`` and ``.md`` per benchmark and
``bench/results/summary.md`` (machine, load, every section). ``--quick`` uses fewer and
shorter inputs (a smoke run, a few minutes); figures it gives are labelled as such.

Dask starts its workers by spawning this module afresh, so nothing here runs (or is
imported) at import time beyond the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import tempfile
import time
import warnings

BENCHMARKS = ("features", "workers", "overhead", "rerun", "memory", "msd_etl", "acousticbrainz_etl", "kkbox_scale", "kkbox_serving",
              "kkbox_scoring", "cnn_benchmark", "vocal_genre")


def _quiet() -> None:
    """Scratch Prefect home and no chatter: the figures, not the logs, are the output."""
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="mirflow-bench-prefect-")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="Smaller inputs: a smoke run of a few minutes.")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="Run only these.")
    args = parser.parse_args(argv)
    _quiet()

    from bench import common

    if args.quick:
        common.quiet_wait_s = 5.0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    machine = common.machine_info()
    print(f"mirflow benchmarks ({'quick' if args.quick else 'full'}), load {common.load_average()}", flush=True)
    common.prepare_data(args.quick, args.only)
    sections = {}
    modules = {name: importlib.import_module(f"bench.{name}") for name in args.only}
    # Only flow runs need a Prefect server, and an idle one takes ~2 % of a core, which the
    # other benchmarks' busiest phases (2 workers on 2 cores) would share: the benchmarks
    # that need none run first, with no server up; the summary keeps the listed order.
    without_server = [name for name, module in modules.items() if not getattr(module, "NEEDS_PREFECT", True)]
    with_server = [name for name in modules if name not in without_server]
    for names, server in ((without_server, contextlib.nullcontext), (with_server, common.prefect_server)):
        if not names:
            continue
        with server():
            for name in names:
                print(f"- {name} …", flush=True)
                with common.timed(wait=False) as record:
                    result = modules[name].run(args.quick)
                result.update(record, quick=args.quick, machine=machine, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
                path = common.write_result(result)
                sections[name] = path.read_text()
                print(sections[name], flush=True)
    header = [
        f"# mirflow benchmarks ({'quick run: smaller inputs' if args.quick else 'full run'})",
        "",
        f"Started {started} on code {machine['code']}; machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; "
        f"Python {machine['python']}; " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()) + ".",
        "Load averages are the 1-minute figure before→after each measurement (2 cores: above 2 means contention).",
        "",
    ]
    (common.RESULTS / "summary.md").write_text("\n".join(header + [sections[name] for name in modules]))
    print(f"wrote {common.RESULTS / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
