"""`mirflow data`: list, get, synth, fetch, check and table the data sets.

Data sets live in ``$MIRFLOW_DATA/<name>`` (default ``~/mirflow_data/<name>``) unless a
folder is given.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from mirflow.io.archive import MAX_RATIO, MIN_EXTRACT_LIMIT
from mirflow.core.errors import ConfigError, MirflowError
from mirflow.datasets import NAMES, get_dataset
from mirflow.datasets.base import RemoteFile, data_root

# what `synth --n` counts
UNITS = {"gtzan": "clips", "msd": "songs", "acousticbrainz": "recordings", "kkbox": "train rows", "cifar100": "images"}
PROBLEMS = ("missing", "corrupt", "unexpected")
# A local file named like an indexed archive minus one of these was unpacked from it.
_PACKED = (".bz2", ".gz", ".xz", ".7z", ".zip")
# gtzan.check_checksums statuses in `data check` words
_CLIP_STATUS = {"ok": "ok", "mismatch": "corrupt", "missing": "missing", "unindexed": "unexpected"}

Row = tuple[str, str, str]  # status, file, detail


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def add_data_parser(commands: Any) -> None:
    """Add `data` and its actions to the `mirflow` sub-parsers ``commands``."""
    data = commands.add_parser("data", help="List, download, synthesize, check and tabulate data sets.")
    actions = data.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Data sets: size, login, local copy, licence.")

    get = actions.add_parser("get", help="Download, verify and extract a data set.")
    get.add_argument("name", choices=NAMES)
    get.add_argument("--to", default=None, help="Folder (default: $MIRFLOW_DATA/NAME).")
    get.add_argument("--base-url", default=None, help="Mirror (default: $MIRFLOW_<NAME>_BASE_URL, else the publisher).")

    synth = actions.add_parser("synth", help="Write a small synthetic copy in the original format.")
    synth.add_argument("name", choices=NAMES)
    synth.add_argument("--out", required=True, help="Folder to write.")
    synth.add_argument("--n", type=_positive, default=100, help=f"How many {', '.join(UNITS.values())} (default: 100).")
    synth.add_argument("--seed", type=int, default=0)

    fetch = actions.add_parser("fetch", help="Download and verify any file (for your own data sets).")
    fetch.add_argument("url", help="HTTP(S) or fsspec URL.")
    fetch.add_argument("--checksum", required=True, help="sha256:HEX or md5:HEX.")
    fetch.add_argument("--to", default=".", help="Folder (default: here).")
    fetch.add_argument("--extract", action="store_true", help="Unpack the archive into the folder.")
    fetch.add_argument(
        "--max-extract-bytes", type=_positive, default=None,
        help=f"Refuse an archive unpacking to more (default: {MAX_RATIO}x its size, at least {MIN_EXTRACT_LIMIT >> 20} MiB).",
    )
    fetch.add_argument(
        "--overwrite", action="store_true",
        help="Let members replace existing files with other content (never folders; default: refuse).",
    )

    check = actions.add_parser("check", help="Compare a local copy with the index; exit 1 when anything is wrong.")
    check.add_argument("name", choices=NAMES)
    check.add_argument("dir", nargs="?", default=None, help="Local copy (default: $MIRFLOW_DATA/NAME).")

    table = actions.add_parser("table", help="Read a local copy into one typed Parquet table, Dask-parallel.")
    table.add_argument("name", choices=NAMES)
    table.add_argument("dir", nargs="?", default=None, help="Local copy (default: $MIRFLOW_DATA/NAME).")
    table.add_argument("--out", required=True, help="Parquet file to write.")
    table.add_argument("--shard-size", type=_positive, default=256, help="Files per Dask task (default: 256).")
    table.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help="Local worker processes.")
    table.add_argument("--dask-address", default=None, help="Use this scheduler; its workers must see DIR.")


def cmd_data(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)


def cmd_list(args: argparse.Namespace) -> int:
    root = data_root()
    print(f"{'name':<15} {'size':>12} {'login':<6} {'local':<11} licence")
    for name in NAMES:
        dataset = get_dataset(name)
        login = "no" if dataset.LOGIN_INSTRUCTIONS is None else "yes"
        local = _local_state(dataset, root / name)
        print(f"{name:<15} {_size(dataset.INDEX):>12} {login:<6} {local:<11} {dataset.LICENCE}")
    print(f"local copies under {root} (set MIRFLOW_DATA to move them)")
    return 0


def _size(files: tuple[RemoteFile, ...]) -> str:
    sizes = [f.size for f in files]
    return "?" if None in sizes else f"{sum(sizes) / 2**20:.1f} MiB"


def _local_state(dataset: ModuleType, folder: Path) -> str:
    """absent (no folder), present (the reader finds files) or incomplete."""
    if not folder.is_dir():
        return "absent"
    try:
        found = any(p.is_file() for p in dataset.list_files(folder))
    except MirflowError:  # e.g. a layout the reader rejects
        found = False
    return "present" if found else "incomplete"


def cmd_get(args: argparse.Namespace) -> int:
    from mirflow.io.download import download, local_dir

    dataset = get_dataset(args.name)
    dest = local_dir(args.name, args.to)
    paths = download(args.name, dest, args.base_url)
    for remote, path in zip(dataset.INDEX, paths):
        state = "verified" if remote.checksum else "unverified (no published checksum)"
        print(f"{path}: {state}" + (f", extracted into {dest}" if remote.extract else ""))
    print(f"{args.name}: {len(paths)} files in {dest}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    paths = get_dataset(args.name).synthesize(Path(args.out), args.n, args.seed)
    what = f"{args.n} {UNITS[args.name]} of {args.name} (seed {args.seed})"
    print(f"synthesized {what}: {len(paths)} files under {args.out}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from mirflow.io.archive import safe_extract
    from mirflow.io.download import fetch

    name = Path(urlsplit(args.url).path).name
    if not name:
        raise ConfigError(f"{args.url}: the URL names no file")
    to = Path(args.to).expanduser()
    path = fetch(args.url, to / name, args.checksum)
    print(f"{path}: verified")
    if args.extract:
        entries = safe_extract(path, to, args.max_extract_bytes, args.overwrite)
        print(f"{path}: extracted {len(entries)} entries into {to}")
    return 0


def check_copy(dataset: ModuleType, data_dir: Path) -> list[Row]:
    """(status, file, detail) rows: ``ok``, ``unverified`` or one of ``PROBLEMS``.

    A data set with a per-file checksum index (``check_checksums``, gtzan) is checked file
    by file. Otherwise the ``INDEX`` files are (size and checksum), or, for data behind a
    login, whose index is informative only, what the reader finds; top-level files that
    are neither indexed, nor unpacked from an indexed archive, nor read by the reader,
    nor named in the login instructions are unexpected.
    """
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a folder")
    if hasattr(dataset, "check_checksums"):
        return [_clip_row(*row) for row in dataset.check_checksums(data_dir).itertuples(index=False)]
    units = [p for p in dataset.list_files(data_dir) if p.is_file()]
    login = dataset.LOGIN_INSTRUCTIONS
    if login is None:
        rows = [_remote_row(data_dir / remote.name, remote) for remote in dataset.INDEX]
    else:
        rows = [("unverified", str(p), "no published checksum") for p in units] or [
            ("missing", str(data_dir), f"no {dataset.NAME} files; see `mirflow data get {dataset.NAME}`")
        ]
    indexed = {remote.name for remote in dataset.INDEX}
    read = {p.name for p in units if p.parent == data_dir}
    for entry in sorted(data_dir.iterdir()):
        name = entry.name
        packed = {name, *(name + suffix for suffix in _PACKED)}
        if entry.is_dir() or name.startswith(".") or packed & indexed or name in read or (login and name in login):
            continue
        interrupted = name.endswith(".part") and name.removesuffix(".part") in indexed
        rows.append(("unexpected", str(entry), "interrupted download" if interrupted else "not in the index"))
    return rows


def _clip_row(clip_id: str, path: str | None, expected: str | None, actual: str | None, status: str) -> Row:
    if status == "missing":  # not on disk: there is no path, only the clip id
        return "missing", clip_id, f"in the index (md5 {expected})"
    detail = {"ok": "", "mismatch": f"md5 {actual}, expected {expected}", "unindexed": "not in the published index"}
    return _CLIP_STATUS[status], str(path), detail[status]


def _remote_row(path: Path, remote: RemoteFile) -> Row:
    from mirflow.io.download import file_checksum

    if not path.is_file():
        return "missing", str(path), "in the index"
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return "corrupt", str(path), f"{size} bytes, expected {remote.size}"
    if not remote.checksum:
        return "unverified", str(path), "no published checksum"
    algo, _, expected = remote.checksum.partition(":")
    actual = file_checksum(path, algo)
    if actual != expected.lower():
        return "corrupt", str(path), f"{algo} {actual}, expected {expected}"
    return "ok", str(path), ""


def cmd_check(args: argparse.Namespace) -> int:
    from mirflow.io.download import local_dir

    data_dir = local_dir(args.name, args.dir)
    rows = check_copy(get_dataset(args.name), data_dir)
    for status, path, detail in rows:
        if status in PROBLEMS:  # ok and unverified files are only counted: there may be millions
            print(f"{status:<11} {path}" + (f"  {detail}" if detail else ""))
    counts = Counter(status for status, _, _ in rows)
    print(f"{args.name} at {data_dir}: " + ", ".join(f"{counts[s]} {s}" for s in ("ok", "unverified", *PROBLEMS)))
    return 1 if any(counts[s] for s in PROBLEMS) else 0


def cmd_table(args: argparse.Namespace) -> int:
    from mirflow.core.cluster import DaskPool
    from mirflow.io.download import local_dir
    from mirflow.io.tables import convert_to_parquet

    pool = DaskPool(args.dask_address, args.workers)
    try:
        summary = convert_to_parquet(
            get_dataset(args.name), local_dir(args.name, args.dir), Path(args.out), args.shard_size, pool
        )
    finally:
        pool.close()
    for failure in summary.failures:
        print(f"unreadable  {failure.path}  {failure.reason}")
    print(
        f"wrote {summary.rows} rows from {summary.files} files ({summary.shards} shards) to {summary.out}; "
        f"{len(summary.failures)} unreadable, listed in {summary.failures_csv}"
    )
    return 0


ACTIONS = {
    "list": cmd_list, "get": cmd_get, "synth": cmd_synth, "fetch": cmd_fetch, "check": cmd_check, "table": cmd_table,
}  # fmt: skip
