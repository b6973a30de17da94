"""The one place that reads and writes artifacts.

Layout under the store root (a local folder or any fsspec URL):

    artifacts/<stage>/<key[:2]>/<key>/   one folder per stage output, files + _meta.json
    runs/<run_id>/                       one folder per flow run: manifest, report, model

An artifact exists only once its ``_meta.json`` is written, and that file is written
last: a run killed half-way leaves a folder without it, which ``has`` ignores and the
next write replaces. On a local disk the folder is also built under ``.tmp/`` and
renamed into place, so readers never see partial files at all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

META = "_meta.json"
# Fixed writer settings keep the bytes identical for identical input. Snappy, not zstd:
# spectrogram floats barely compress, and training re-reads them every epoch (zstd
# decoded them ~6x slower for ~10 % less space).
PARQUET_SETTINGS = {"compression": "snappy", "write_statistics": True}


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


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

    # -- artifacts --
    def has(self, ref: ArtifactRef) -> bool:
        return self.fs.exists(f"{self._dir(ref)}/{META}")

    @contextmanager
    def writing(self, ref: ArtifactRef, meta: dict | None = None) -> Iterator[ArtifactWriter]:
        """Build an artifact; it becomes visible only if the block finishes without error."""
        final = self._dir(ref)
        if self.local:
            staging = f"{self.root}/.tmp/{uuid.uuid4().hex}"
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
        with self._parquet_source(ref, name) as source:
            return pq.read_table(source, columns=columns)

    def parquet_schema(self, ref: ArtifactRef, name: str) -> pa.Schema:
        with self._parquet_source(ref, name) as source:
            return pq.read_schema(source)

    def iter_parquet_batches(
        self, ref: ArtifactRef, name: str, columns: list[str] | None = None, batch_size: int = 64
    ) -> Iterator[pa.RecordBatch]:
        """Stream a Parquet file in record batches so no stage holds it all in memory."""
        with self._parquet_source(ref, name) as source:
            yield from pq.ParquetFile(source).iter_batches(batch_size=batch_size, columns=columns)

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

    # -- space --
    def disk_usage(self) -> dict[str, dict[str, int]]:
        """Bytes and artifact count per stage, plus run folders."""
        usage: dict[str, dict[str, int]] = {}
        for ref in self.list_artifacts():
            entry = usage.setdefault(ref.stage, {"artifacts": 0, "bytes": 0})
            entry["artifacts"] += 1
            entry["bytes"] += self.fs.du(self._dir(ref))
        runs = self.list_runs()
        if runs:
            usage["runs"] = {"artifacts": len(runs), "bytes": self.fs.du(f"{self.root}/runs")}
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

    def remove(self, ref: ArtifactRef) -> int:
        """Delete one artifact; returns the bytes freed."""
        path = self._dir(ref)
        size = self.fs.du(path)
        self.fs.rm(path, recursive=True)
        return size

    def collect_garbage(self, keep: set[ArtifactRef]) -> tuple[list[ArtifactRef], int]:
        """Delete artifacts not in ``keep`` and abandoned staging folders; returns (removed, bytes)."""
        removed, freed = [], 0
        for ref in self.list_artifacts():
            if ref not in keep:
                freed += self.remove(ref)
                removed.append(ref)
        tmp = f"{self.root}/.tmp"
        if self.fs.exists(tmp):
            freed += self.fs.du(tmp)
            self.fs.rm(tmp, recursive=True)
        return removed, freed


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
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, **PARQUET_SETTINGS)
        self.write_bytes(name, buf.getvalue())

    def write_parquet_stream(self, name: str, schema: pa.Schema, row_groups: Iterable[pa.Table]) -> int:
        """Write each table of ``row_groups`` as one row group as soon as it arrives, so
        the producer never holds the whole file; returns the number of rows written."""
        rows = 0
        with self.open(name) as f, pq.ParquetWriter(f, schema, **PARQUET_SETTINGS) as parquet:
            for table in row_groups:
                parquet.write_table(table, row_group_size=max(table.num_rows, 1))
                rows += table.num_rows
        return rows
