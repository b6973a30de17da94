"""The one place that reads and writes artifacts.

Layout under the store root (a local folder or any fsspec URL):

    artifacts/<stage>/<key[:2]>/<key>/   one folder per stage output, files + _meta.json
    runs/<run_id>/                       one folder per flow run: manifest, report, model
    leases/<run_id>.json                 one per running run: pid, host, start (see below)
    .tmp/<uuid>/                         artifacts being built (local stores)

An artifact exists only once its ``_meta.json`` is written, and that file is written
last: a run killed half-way leaves a folder without it, which ``has`` ignores and the
next write replaces. On a local disk the folder is also built under ``.tmp/`` and
renamed into place, so readers never see partial files at all.

Garbage collection removes artifacts no finished run refers to, and ``.tmp/`` folders
left by killed runs, but never what a live run uses: a run holds a lease from start to
end, and gc keeps every artifact and ``.tmp/`` folder whose time (its ``_meta.json``'s
modification time, set when it is written and, on a local store, again when a run
reuses it from the cache; a ``.tmp/`` folder's own) is at or after the start of the
oldest live lease (its file's modification time). Times are
the file system's own on both sides, so clocks cannot disagree. A lease is stale, and
ignored and removed by gc, when its pid is gone on this host (a killed run) or it is
older than ``LEASE_MAX_AGE_S``: a run killed on another host holds gc back that long,
unless its lease file is deleted by hand. Limits: on a remote store a reused older
artifact is not re-timed, and an artifact a run finds in the cache at the very moment
gc deletes it is lost to that run (there is no lock); machines sharing a store and a
hostname would take each other's leases for dead.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import fsspec

if TYPE_CHECKING:  # pyarrow is imported where Parquet is read or written: `store du` needs none
    import pyarrow as pa

META = "_meta.json"
MODEL = "model.pt"  # a trained model's file in its artifact (here: copying one to a run folder needs no torch)
# A lease this old is taken as left by a run killed on another host (one killed here is
# seen at once by its pid): long enough for any real run, short enough that gc is not
# held back for good. Delete the lease file by hand to release it sooner.
LEASE_MAX_AGE_S = 7 * 24 * 3600
# Fixed writer settings keep the bytes identical for identical input. Snappy, not zstd:
# spectrogram floats barely compress, and training re-reads them every epoch (zstd
# decoded them ~6x slower for ~10 % less space).
PARQUET_SETTINGS = {"compression": "snappy", "write_statistics": True}
STAGING_USAGE = ".tmp (in progress / left by killed runs)"  # disk_usage's line for .tmp/


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


@dataclass
class Garbage:
    """What gc removed (in a dry run: would remove) and what it kept for live runs."""

    artifacts: list[ArtifactRef] = field(default_factory=list)
    staging: int = 0  # .tmp folders left by killed runs
    bytes: int = 0
    in_use: int = 0  # unreferenced artifacts and .tmp folders kept for the live runs
    live_runs: list[str] = field(default_factory=list)
    stale_leases: list[str] = field(default_factory=list)  # run ids whose lease was ignored


@dataclass(frozen=True)
class ArtifactRef:
    """A pointer to a finished artifact: small, picklable, safe to pass between tasks."""

    stage: str
    key: str


class ArtifactStore:
    """Content-addressed artifacts and per-run folders over fsspec."""

    def __init__(self, url: str):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.fs.makedirs(self.root, exist_ok=True)

    def __reduce__(self):  # workers rebuild the filesystem object from the URL
        return (ArtifactStore, (self.url,))

    # -- paths (private: nothing outside this module builds artifact paths) --
    def _dir(self, ref: ArtifactRef) -> str:
        return f"{self.root}/artifacts/{ref.stage}/{ref.key[:2]}/{ref.key}"

    def _run_dir(self, run_id: str) -> str:
        return f"{self.root}/runs/{run_id}"

    def _lease(self, run_id: str) -> str:
        return f"{self.root}/leases/{run_id}.json"

    def _staging(self) -> str:
        return f"{self.root}/.tmp"

    # -- artifacts --
    def has(self, ref: ArtifactRef) -> bool:
        return self.fs.exists(f"{self._dir(ref)}/{META}")

    def reuse(self, ref: ArtifactRef) -> bool:
        """``has``, for a run about to use ``ref`` from the cache: on a local store its
        time is also set to now, so a gc beside the run keeps it (module docstring)."""
        if not self.local:
            return self.has(ref)
        try:
            os.utime(f"{self._dir(ref)}/{META}")
        except FileNotFoundError:
            return False
        except PermissionError:  # another user's artifact in a shared store: used, not re-timed
            pass
        return True

    @contextmanager
    def writing(self, ref: ArtifactRef, meta: dict | None = None) -> Iterator[ArtifactWriter]:
        """Build an artifact; it becomes visible only if the block finishes without error."""
        final = self._dir(ref)
        if self.local:
            staging = f"{self._staging()}/{uuid.uuid4().hex}"
        else:
            staging = final
            if self.fs.exists(final):
                self.fs.rm(final, recursive=True)
        self.fs.makedirs(staging, exist_ok=True)
        writer = ArtifactWriter(self.fs, staging)
        try:
            yield writer
            info = {"stage": ref.stage, "key": ref.key, "created": time.time(), "files": writer.sizes}
            info.update(meta or {})
            writer.write_bytes(META, _json_bytes(info))
            if self.local:
                self.fs.makedirs(os.path.dirname(final), exist_ok=True)
                if os.path.isdir(final):  # a leftover without _meta.json, or a concurrent twin
                    if os.path.exists(f"{final}/{META}"):
                        shutil.rmtree(staging)
                        return
                    shutil.rmtree(final)
                os.replace(staging, final)
        except BaseException:
            if self.fs.exists(staging):
                self.fs.rm(staging, recursive=True)
            raise

    def meta(self, ref: ArtifactRef) -> dict:
        return json.loads(self.read_bytes(ref, META))

    def read_bytes(self, ref: ArtifactRef, name: str) -> bytes:
        with self.fs.open(f"{self._dir(ref)}/{name}", "rb") as f:
            return f.read()

    def read_json(self, ref: ArtifactRef, name: str) -> Any:
        return json.loads(self.read_bytes(ref, name))

    @contextmanager
    def _parquet_source(self, ref: ArtifactRef, name: str) -> Iterator[str | IO[bytes]]:
        """A local file by path (Arrow reads it natively, into its own buffers; through a
        Python file object every read is also copied into a bytes object), else fsspec's."""
        path = f"{self._dir(ref)}/{name}"
        if self.local:
            yield path
        else:
            with self.fs.open(path, "rb") as f:
                yield f

    def read_parquet(self, ref: ArtifactRef, name: str, columns: list[str] | None = None) -> pa.Table:
        """The whole file, or ``columns`` of it, read as one file: through ``pq.read_table``'s
        dataset layer the scalar columns of an audio feature shard (99 columns, 4 row
        groups) took 2.5x as long (the leakage audit reads them on every run); plain tables
        read in the same time either way."""
        import pyarrow.parquet as pq

        with self._parquet_source(ref, name) as source:
            return pq.ParquetFile(source, pre_buffer=True).read(columns=columns)

    def parquet_schema(self, ref: ArtifactRef, name: str) -> pa.Schema:
        import pyarrow.parquet as pq

        with self._parquet_source(ref, name) as source:
            return pq.read_schema(source)

    def iter_parquet_batches(
        self, ref: ArtifactRef, name: str, columns: list[str] | None = None, batch_size: int = 64
    ) -> Iterator[pa.RecordBatch]:
        """Stream a Parquet file in record batches so no stage holds it all in memory.

        ``pre_buffer=False``: with pre-buffering (pyarrow's default) the reader caches each
        row group's bytes as it reads them and never evicts them until the file is closed
        (apache/arrow#39808), so a reader that has read half a file holds half of it."""
        import pyarrow.parquet as pq

        with self._parquet_source(ref, name) as source:
            yield from pq.ParquetFile(source, pre_buffer=False).iter_batches(batch_size=batch_size, columns=columns)

    # -- run folders --
    def write_run_file(self, run_id: str, name: str, data: bytes | str | dict | list) -> None:
        if isinstance(data, (dict, list)):
            data = _json_bytes(data)
        elif isinstance(data, str):
            data = data.encode()
        path = f"{self._run_dir(run_id)}/{name}"
        self.fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, path)

    def read_run_file(self, run_id: str, name: str) -> bytes:
        with self.fs.open(f"{self._run_dir(run_id)}/{name}", "rb") as f:
            return f.read()

    def run_has(self, run_id: str, name: str) -> bool:
        return self.fs.exists(f"{self._run_dir(run_id)}/{name}")

    def run_location(self, run_id: str) -> str:
        """Where a run folder lives, for people to open (printed, never opened by callers)."""
        return self._run_dir(run_id) if self.local else f"{self.url.rstrip('/')}/runs/{run_id}"

    def list_runs(self) -> list[str]:
        base = f"{self.root}/runs"
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))

    # -- leases: what keeps gc off a live run's artifacts (module docstring) --
    def take_lease(self, run_id: str) -> None:
        """Mark ``run_id`` as running until ``release_lease``."""
        holder = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        path = self._lease(run_id)
        self.fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(_json_bytes(holder))
        self.fs.mv(tmp, path)

    def release_lease(self, run_id: str) -> None:
        if self.fs.exists(self._lease(run_id)):
            self.fs.rm(self._lease(run_id))

    def _leases(self) -> tuple[dict[str, float], list[str]]:
        """(live run id -> lease time, run ids of stale leases)."""
        live: dict[str, float] = {}
        stale = []
        for path in self.fs.glob(self._lease("*")):
            run_id = path.rsplit("/", 1)[-1].removesuffix(".json")
            try:
                started, text = self._time(path), self.fs.cat_file(path)
            except FileNotFoundError:  # the run ended meanwhile
                continue
            try:
                holder = json.loads(text)
            except ValueError:  # not ours to judge: live until it is too old
                holder = {}
            if time.time() - started > LEASE_MAX_AGE_S or _dead_here(holder):
                stale.append(run_id)
            else:
                live[run_id] = started
        return live, stale

    def _time(self, path: str) -> float:
        return self.fs.modified(path).timestamp()

    def _staging_folders(self) -> list[str]:
        return self.fs.ls(self._staging(), detail=False) if self.fs.exists(self._staging()) else []

    # -- space --
    def disk_usage(self) -> dict[str, dict[str, int]]:
        """Bytes and artifact count per stage, plus run folders and ``.tmp/`` folders."""
        usage: dict[str, dict[str, int]] = {}
        for ref in self.list_artifacts():
            entry = usage.setdefault(ref.stage, {"artifacts": 0, "bytes": 0})
            entry["artifacts"] += 1
            entry["bytes"] += self.fs.du(self._dir(ref))
        runs = self.list_runs()
        if runs:
            usage["runs"] = {"artifacts": len(runs), "bytes": self.fs.du(f"{self.root}/runs")}
        staging = self._staging_folders()
        if staging:
            usage[STAGING_USAGE] = {"artifacts": len(staging), "bytes": self.fs.du(self._staging())}
        return usage

    def list_artifacts(self) -> list[ArtifactRef]:
        base = f"{self.root}/artifacts"
        if not self.fs.exists(base):
            return []
        refs = []
        for meta in self.fs.glob(f"{base}/*/*/*/{META}"):
            stage, _, key = meta.rstrip("/").split("/")[-4:-1]
            refs.append(ArtifactRef(stage, key))
        return sorted(refs, key=lambda r: (r.stage, r.key))

    def collect_garbage(self, keep: set[ArtifactRef], dry_run: bool = False) -> Garbage:
        """Delete artifacts not in ``keep`` and ``.tmp/`` folders, except what a live run
        may use (module docstring), and stale leases; ``dry_run`` only says what."""
        live, stale = self._leases()
        since = min(live.values(), default=math.inf)  # the start of the oldest live run
        garbage = Garbage(live_runs=sorted(live), stale_leases=stale)
        unreferenced = [(self._dir(ref), ref) for ref in self.list_artifacts() if ref not in keep]
        for path, ref in unreferenced + [(folder, None) for folder in self._staging_folders()]:
            try:
                in_use = self._time(f"{path}/{META}" if ref else path) >= since
            except FileNotFoundError:  # renamed into place, or removed, meanwhile
                continue
            if in_use:
                garbage.in_use += 1
                continue
            garbage.bytes += self.fs.du(path)
            if ref:
                garbage.artifacts.append(ref)
            else:
                garbage.staging += 1
            if not dry_run:
                self.fs.rm(path, recursive=True)
        if not dry_run:
            for run_id in stale:
                self.release_lease(run_id)
        return garbage


def _dead_here(holder: dict) -> bool:
    """Whether the process that took a lease is gone: only knowable on its own host."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class ArtifactWriter:
    """Writes the files of one artifact being built (see ``ArtifactStore.writing``)."""

    def __init__(self, fs, directory: str):
        self.fs, self.directory = fs, directory
        self.sizes: dict[str, int] = {}

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.fs.open(f"{self.directory}/{name}", "wb") as f:
            f.write(data)
        self.sizes[name] = len(data)

    @contextmanager
    def open(self, name: str) -> Iterator[Any]:
        """A file of the artifact to write as a stream, for outputs too large to hold in memory."""
        path = f"{self.directory}/{name}"
        with self.fs.open(path, "wb") as f:
            yield f
        self.sizes[name] = self.fs.size(path)

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, _json_bytes(obj))

    def write_parquet(self, name: str, table: pa.Table, row_group_size: int | None = None) -> None:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, **PARQUET_SETTINGS)
        self.write_bytes(name, buf.getvalue())

    def write_parquet_stream(self, name: str, schema: pa.Schema, row_groups: Iterable[pa.Table]) -> int:
        """Write each table of ``row_groups`` as one row group as soon as it arrives, so
        the producer never holds the whole file; returns the number of rows written."""
        import pyarrow.parquet as pq

        rows = 0
        with self.open(name) as f, pq.ParquetWriter(f, schema, **PARQUET_SETTINGS) as parquet:
            for table in row_groups:
                parquet.write_table(table, row_group_size=max(table.num_rows, 1))
                rows += table.num_rows
        return rows
