"""The `mirflow` command. Flow options are generated from the flow's pydantic
parameter model, so `--shard-size` is always the field `shard_size`. Flows come from
the registry `flows.FLOWS` and are imported (with Prefect) only when one runs."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import types
import typing
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from flows import FLOWS, load_flow, params_model
from mirflow.cli.data import add_data_parser, cmd_data
from mirflow.core.errors import MirflowError


def add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field: name, help, default and list-ness come from the model."""
    for name, field in model.model_fields.items():
        option = "--" + name.replace("_", "-")
        annotation = field.annotation
        origin = typing.get_origin(annotation)
        if origin in (types.UnionType, typing.Union):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            origin = typing.get_origin(annotation)
        default = field.default if field.default_factory is None else field.default_factory()
        help_text = f"{field.description or ''} (default: {default})"
        if origin in (list, tuple):
            parser.add_argument(option, dest=name, nargs="+", default=None, help=help_text)
        elif annotation is bool:
            parser.add_argument(option, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(option, dest=name, default=None, help=help_text)


def params_from_args(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    names = [*model.model_fields, *getattr(model, "RENAMED_FIELDS", {})]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return model.model_validate(given)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="./mirflow_store", help="Artifact store folder or fsspec URL.")


class Parser(argparse.ArgumentParser):
    """An argument parser that takes options only by their full names: argparse's
    default prefix matching read `--split filtered` as `--split-file filtered`.
    Subparsers are made of the parent's class, so every level gets this."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mirflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run a pipeline flow.")
    pipelines = run.add_subparsers(dest="pipeline", required=True)
    for name in FLOWS:
        model = params_model(name)
        sub = pipelines.add_parser(name, help=(model.__doc__ or "").strip().splitlines()[0])
        add_model_options(sub, model)
        for old, new in getattr(model, "RENAMED_FIELDS", {}).items():
            sub.add_argument("--" + old.replace("_", "-"), dest=old, default=None, help=f"Deprecated: use --{new.replace('_', '-')}.")
        sub.add_argument("--explain", action="store_true", help="Say which stages would re-run and why; run nothing.")

    predict = commands.add_parser("predict", help="Label audio with a finished run's model.")
    predict.add_argument("run_dir", help="A run folder (…/runs/<run_id>) or a run id with --store.")
    predict.add_argument("inputs", nargs="+", help="Audio files or folders (searched recursively).")
    predict.add_argument("--model", default=None, help="mlp or cnn (default: the run's best by validation macro-F1).")
    predict.add_argument("--out", default=None, help="CSV file to write (default: stdout).")
    _store_option(predict)

    score = commands.add_parser("score", help="Score a KKBOX test.csv with a finished kkbox_relisten run (id,target).")
    score.add_argument("run_dir", help="A run folder (…/runs/<run_id>) or a run id with --store.")
    score.add_argument("input_csv", help="KKBOX test layout: id,msno,song_id,source_system_tab,source_screen_name,source_type.")
    score.add_argument("--out", default="predictions.csv", help="CSV to write (default: predictions.csv).")
    score.add_argument("--tables", default=None, help="Folder with songs.csv, song_extra_info.csv, members.csv (default: the input's folder).")
    score.add_argument("--model", default=None, choices=["network", "lightgbm"], help="Default: the run's best.")
    score.add_argument("--chunk-rows", type=int, default=100_000, help="Rows read and scored at a time.")
    _store_option(score)

    serve_model = commands.add_parser("serve-model", help="Serve a kkbox_relisten run's model over HTTP (POST /predict).")
    serve_model.add_argument("run_dir", help="A run folder (…/runs/<run_id>) or a run id with --store.")
    serve_model.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: 127.0.0.1, this machine only).")
    serve_model.add_argument("--port", type=int, default=8000)
    serve_model.add_argument("--tables", default=None, help="Folder with songs.csv, song_extra_info.csv, members.csv (default: the run's data folder).")
    serve_model.add_argument("--model", default=None, choices=["network", "lightgbm"], help="Default: the run's best.")
    serve_model.add_argument("--max-rows", type=int, default=10_000, help="Most rows per request (more: 413).")
    serve_model.add_argument("--max-body-bytes", type=int, default=10_000_000, help="Largest request body (larger: 413).")
    _store_option(serve_model)

    runs_cmd = commands.add_parser("runs", help="List, show and compare runs.")
    runs_sub = runs_cmd.add_subparsers(dest="action", required=True)
    for action, nargs in (("list", 0), ("show", 1), ("compare", 2)):
        sub = runs_sub.add_parser(action)
        if nargs:
            sub.add_argument("run_ids", nargs=nargs)
        _store_option(sub)

    store_cmd = commands.add_parser("store", help="Show and reclaim artifact-store space.")
    store_sub = store_cmd.add_subparsers(dest="action", required=True)
    _store_option(store_sub.add_parser("du", help="Bytes per stage."))
    gc = store_sub.add_parser("gc", help="Delete artifacts no run folder refers to (never a live run's).")
    _store_option(gc)
    gc.add_argument("--dry-run", action="store_true", help="Only say what gc would remove.")
    serve = commands.add_parser(
        "serve", help="Serve every flow's deployments and schedules from this process (no work pool needed)."
    )
    serve.add_argument("--prefect-file", default=None, help="Deployments file (default: deployments/prefect.yaml).")
    serve.add_argument("--limit", type=int, default=None, help="At most this many flow runs at once.")
    add_data_parser(commands)
    return parser


@contextmanager
def collector_paused(freeze: bool) -> Iterator[None]:
    """No garbage collection while a command imports what it needs, then resumed.

    Imports (pydantic models, Prefect, pandas, the flow's modules) make hundreds of
    thousands of objects that live as long as the process, and no garbage; the collector's
    repeated passes over them were ~0.5 s of an unchanged re-run's start. With ``freeze``
    (the command's own process, which ends with it) the objects made so far are then
    frozen, so the run's own collections no longer scan them; in a caller's process
    (``main(argv)`` from Python or a test) they stay the collector's."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """The command; ``argv`` None: this process's own command line, which ends with it."""
    own_process = argv is None
    try:
        with collector_paused(freeze=own_process):
            args = build_parser().parse_args(argv)
        args.own_process = own_process
        return _run_command(args)
    finally:
        if own_process:
            # The interpreter's final garbage collections walk every object Prefect, pydantic
            # and pandas made: seconds after a re-run had printed its result, on a busy
            # machine. Frozen objects are skipped; nothing left needs the collector to close
            # it (files and the Dask pool are closed, Prefect flushes its logs at exit).
            gc.freeze()


def _run_command(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except ValidationError as error:
        print(f"mirflow: error: {validation_message(error)}", file=sys.stderr)
        return 2
    except MirflowError as error:
        print(f"mirflow: error: {error}", file=sys.stderr)
        return 2


def validation_message(error: ValidationError) -> str:
    """Pydantic's errors on one line, each naming its option (``--fractions: …``); a
    rule across fields names them in its message."""
    parts = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        option = "--" + "-".join(map(str, item["loc"])).replace("_", "-") + ": " if item["loc"] else ""
        parts.append(option + message)
    return "; ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    with collector_paused(freeze=args.own_process):
        with warnings.catch_warnings(record=True, action="always", category=FutureWarning) as renamed:  # old names
            params = params_from_args(params_model(args.pipeline), args)
        for warning in renamed:
            print(f"mirflow: warning: {warning.message}", file=sys.stderr)
        # Before Prefect is imported, let alone a server or cluster started.
        params.check_inputs()
        flow = load_flow(args.pipeline)
    if args.explain:
        # Keys only: the flow's own body and tasks as plain calls, so explain computes
        # exactly the keys a run would, without a Prefect server.
        from tasks.common import plain_calls

        with plain_calls():
            result = flow.fn(params=params, explain=True)
        print(result["explain"])
        return 0
    from flows.temporary_server import start_temporary_server

    start_temporary_server()
    result = flow(params=params)
    if "report_path" not in result:  # a flow that trains nothing (kkbox_score): its summary
        print(json.dumps(result, default=str))
        return 0
    print(f"run {result['run_id']}: report at {result['report_path']}")
    for row in result["rows"]:
        if row["split"] != "train":
            headline = [f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)][:4]
            print(f"  {row['model']:>12} {row['split']:<10} " + "  ".join(headline))
    print(f"  best model: {result['best_model']}; quarantined files: {result['failures']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mirflow.pipelines.gtzan.predict import predict_files
    from mirflow.runs import check_writable, resolve_run

    run = resolve_run(args.run_dir, args.store)
    if args.out:
        check_writable(args.out)
    table, errors = predict_files(run, args.inputs, args.model)
    text = table.to_csv(index=False, float_format="%.6f")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    for path, reason in errors:
        print(f"mirflow: cannot read {path}: {reason}", file=sys.stderr)
    return 1 if errors else 0


def cmd_score(args: argparse.Namespace) -> int:
    from mirflow.pipelines.kkbox_relisten.scoring import Scorer, score_csv
    from mirflow.runs import check_writable, resolve_run

    check_writable(args.out)
    scorer = Scorer(resolve_run(args.run_dir, args.store), args.tables or Path(args.input_csv).parent, args.model)
    summary = score_csv(scorer, args.input_csv, args.out, args.chunk_rows)
    print(f"scored {summary['rows']} rows with {summary['model']} of run {summary['run_id']} -> {summary['out']} "
          f"(unknown users {summary['unknown_msno']}, unknown songs {summary['unknown_song_id']})")
    return 0


def cmd_serve_model(args: argparse.Namespace) -> int:
    from mirflow.pipelines.kkbox_relisten.serve import Limits, run_server
    from mirflow.runs import resolve_run

    run_server(resolve_run(args.run_dir, args.store), args.host, args.port, args.tables, args.model,
               Limits(args.max_rows, args.max_body_bytes))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from mirflow import runs
    from mirflow.core.store import ArtifactStore

    store = ArtifactStore(args.store)
    if args.action == "list":
        rows = runs.list_runs(store)
        print(text_table(rows) if rows else "no runs yet")
    elif args.action == "show":
        run = runs.Run.open(store, args.run_ids[0])
        print(run.report)
        print(json.dumps({k: run.manifest[k] for k in ("code", "packages", "data_fingerprint", "seeds")}, indent=2))
    else:
        print(json.dumps(runs.compare_runs(store, *args.run_ids), indent=2, default=str))
    return 0


def text_table(rows: list[dict]) -> str:
    """Rows as aligned plain-text columns (every key of any row; blank where absent)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [columns] + [["" if row.get(c) is None else f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])
                          for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


def cmd_store(args: argparse.Namespace) -> int:
    from mirflow.core.store import ArtifactStore

    store = ArtifactStore(args.store)
    if args.action == "du":
        usage = store.disk_usage()
        width = max([12, *map(len, usage)])
        for stage, entry in sorted(usage.items()):
            print(f"{stage:<{width}} {entry['artifacts']:>6} items {entry['bytes'] / 2**20:>10.1f} MiB")
        print(f"{'total':<{width}} {sum(e['bytes'] for e in usage.values()) / 2**20:>23.1f} MiB")
        return 0
    from mirflow import runs

    garbage = store.collect_garbage(runs.referenced_artifacts(store), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(garbage.artifacts)} artifacts not referenced by any run and {garbage.staging} "
          f".tmp folders left by killed runs: {garbage.bytes / 2**20:.1f} MiB")
    if garbage.in_use:
        print(f"kept {garbage.in_use} unreferenced items made or reused since the oldest live run started "
              f"(live runs: {', '.join(garbage.live_runs)})")
    if garbage.stale_leases:
        print(f"{'would release' if args.dry_run else 'released'} the stale leases of killed runs: "
              + ", ".join(garbage.stale_leases))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import (  # Prefect: imported only for this command
        PREFECT_FILE,
        serve,
    )

    serve(args.prefect_file or PREFECT_FILE, limit=args.limit)
    return 0


COMMANDS = {
    "run": cmd_run, "predict": cmd_predict, "score": cmd_score, "serve-model": cmd_serve_model, "runs": cmd_runs, "store": cmd_store, "data": cmd_data, "serve": cmd_serve
}
