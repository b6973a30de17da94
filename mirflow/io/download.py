"""Fault-tolerant downloads: resume a dropped transfer, verify, retry what is transient.

A file is streamed to ``<dest>.part`` and renamed to ``dest`` only once its checksum
matches, so ``dest`` existing means a complete, verified file, and a download that fails
or does not verify never touches an existing ``dest``; a ``.part`` left by a killed run
is resumed with a Range request, never taken as present.

Hand-written on purpose: ``pooch`` (the usual data-download library, installed here)
verifies hashes and retries, but every attempt starts again from byte 0; over the
multi-gigabyte archives of these data sets a dropped connection must cost only what
is left. fsspec/httpx do the transfers; this module adds the resume, the checksum
gate and the retry policy.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import fsspec
import httpx

from mirflow.core.errors import ChecksumError, ConfigError, MirflowError
from mirflow.datasets import get_dataset
from mirflow.datasets.base import RemoteFile, data_root
from mirflow.io.archive import safe_extract

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ALGORITHMS = ("md5", "sha256")

# (first byte of the body, total size if known, body chunks)
Body = tuple[int, int | None, Iterator[bytes]]


class DownloadError(MirflowError):
    """A file could not be downloaded: a permanent error, or retries exhausted."""


class _Transient(Exception):
    """A failure worth retrying; ``discard_part`` when the part file cannot be resumed."""

    def __init__(self, reason: str, retry_after: float | None = None, discard_part: bool = False):
        super().__init__(reason)
        self.retry_after, self.discard_part = retry_after, discard_part


def file_checksum(path: Path, algo: str) -> str:
    """Hex digest of ``path`` with ``algo`` ("md5" or "sha256"), read in 1 MiB chunks."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"checksum algorithm {algo!r}: expected one of {ALGORITHMS}")
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(partial(f.read, CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, checksum: str) -> bool:
    """Whether ``path`` matches ``checksum`` ("md5:<hex>" or "sha256:<hex>")."""
    algo, expected = _parse_checksum(checksum)
    return file_checksum(path, algo) == expected


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algo, _, digest = checksum.partition(":")
    if algo not in ALGORITHMS or not digest:
        raise ConfigError(f"checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    return algo, digest.lower()


def fetch(
    url: str,
    dest: Path,
    checksum: str | None,
    *,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    timeout: float = 30.0,
    progress: bool = True,
    chunk_size: int = CHUNK,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> Path:
    """Download ``url`` (HTTP(S) or any fsspec URL) to ``dest`` and verify it; returns ``dest``.

    Nothing is requested when ``dest`` already exists and verifies. Transient failures
    (connection errors, timeouts, short reads, HTTP 429/5xx) are retried ``retries``
    times, waiting ``jitter() * min(max_backoff, backoff * 2**attempt)`` seconds, or the
    server's Retry-After capped at ``max_backoff``; ``sleep`` and ``jitter`` (uniform in
    [0, 1)) are parameters so tests need not wait. ``timeout`` applies to HTTP(S);
    ``chunk_size`` is the write buffer (and the read size for fsspec URLs). Without a
    checksum an existing ``dest`` counts as present. Raises ``ChecksumError`` (no
    retry), ``DownloadError``, or ``ConfigError`` for a malformed checksum.
    """
    dest = Path(dest)
    if retries < 0:
        raise ConfigError(f"retries={retries}: must be 0 or more")
    if checksum is not None:
        _parse_checksum(checksum)  # a malformed checksum fails before any request
    if dest.exists():
        if checksum is None or verify(dest, checksum):
            return dest
        # kept until the new download verifies: a failed one must not cost the user a file
        log.warning("%s does not match %s; downloading it again, to replace it once verified", dest, checksum)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("downloading %s -> %s", url, dest)
    for attempt in range(retries + 1):
        try:
            _attempt(url, part, timeout, chunk_size, progress)
            break
        except _Transient as exc:
            if exc.discard_part:
                part.unlink(missing_ok=True)
            if attempt == retries:
                raise DownloadError(f"{url}: gave up after {attempt + 1} attempts; last error: {exc}") from exc
            cap = min(max_backoff, backoff * 2**attempt)
            delay = jitter() * cap if exc.retry_after is None else min(exc.retry_after, max_backoff)
            log.warning("%s: %s; retry %d of %d in %.1f s", url, exc, attempt + 1, retries, delay)
            sleep(delay)
    if checksum is not None:
        algo, expected = _parse_checksum(checksum)
        actual = file_checksum(part, algo)
        if actual != expected:
            part.unlink()
            raise ChecksumError(url, checksum, f"{algo}:{actual}")
    os.replace(part, dest)
    log.info("downloaded %s: %d bytes in %.1f s", url, dest.stat().st_size, time.monotonic() - started)
    return dest


def _attempt(url: str, part: Path, timeout: float, chunk_size: int, progress: bool) -> None:
    """One request: append to ``part`` from where it ends (or restart), raising ``_Transient``."""
    offset = part.stat().st_size if part.exists() else 0
    scheme = urlsplit(url).scheme
    body: AbstractContextManager[Body] = (
        _open_http(url, offset, timeout)
        if scheme in ("http", "https")
        else _open_fsspec(url, offset, chunk_size)
    )
    with body as (start, total, chunks):
        if start:
            log.info("resuming %s from byte %d", url, start)
        elif offset:
            log.info("%s: server ignored the Range request; restarting from byte 0", url)
        # chunk_size buffers the writes; closing flushes them, even when the transfer drops
        out = open(part, "ab" if start else "wb", buffering=chunk_size)
        with out, _progress_bar(part.stem, start, total, progress) as advance:
            for chunk in chunks:
                out.write(chunk)
                advance(len(chunk))
    written = part.stat().st_size
    if total is not None and written < total:
        raise _Transient(f"incomplete read: {written} of {total} bytes")


@contextmanager
def _open_http(url: str, offset: int, timeout: float) -> Iterator[Body]:
    # identity encoding: byte offsets must count the file's bytes, not compressed ones
    headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={offset}-"} if offset else {})
    with ExitStack() as stack:
        with _translated_errors(url):
            response = stack.enter_context(
                httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True)
            )
        yield _http_body(url, response, offset)


def _http_body(url: str, response: httpx.Response, offset: int) -> Body:
    code = response.status_code
    if code == 416 and offset:
        size = _range_total(response.headers.get("Content-Range"))
        if size is not None and size != offset:
            raise _Transient(f"HTTP 416: part file has {offset} bytes, remote has {size}", discard_part=True)
        return offset, offset, iter(())  # the part file already holds the whole file
    if code == 429 or code >= 500:
        raise _Transient(f"HTTP {code}", retry_after=_retry_after(response.headers.get("Retry-After")))
    if code >= 400:
        raise DownloadError(f"{url}: HTTP {code} {response.reason_phrase}")
    length = response.headers.get("Content-Length")
    # iter_raw without a size: a sized iterator holds bytes back, and a drop would lose them
    chunks = _translated_chunks(url, response.iter_raw())
    if code == 206:
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {offset}-"):
            raise _Transient(f"asked for bytes {offset}- but got {content_range!r}", discard_part=True)
        return offset, _range_total(content_range), chunks
    return 0, int(length) if length else None, chunks


def _range_total(content_range: str | None) -> int | None:
    """The total size in a ``Content-Range: bytes a-b/N`` (or ``*/N``) header."""
    total = (content_range or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@contextmanager
def _open_fsspec(url: str, offset: int, chunk_size: int) -> Iterator[Body]:
    with ExitStack() as stack:
        with _translated_errors(url):
            fs, path = fsspec.core.url_to_fs(url)
            size = fs.size(path)
            if size is not None and offset > size:
                raise _Transient(f"part file has {offset} bytes, remote has {size}", discard_part=True)
            src = stack.enter_context(fs.open(path, "rb"))
            src.seek(offset)
        yield offset, size, _translated_chunks(url, iter(partial(src.read, chunk_size), b""))


def _translated_chunks(url: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    # A generator: only errors raised while reading are translated, never the caller's write errors.
    with _translated_errors(url):
        yield from chunks


@contextmanager
def _translated_errors(url: str) -> Iterator[None]:
    """Map transport errors to ``_Transient`` and missing or forbidden files to ``DownloadError``."""
    try:
        yield
    except httpx.TransportError as exc:  # connect/read errors, timeouts, short bodies
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc
    except OSError as exc:  # fsspec filesystems report network trouble as OSError
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


@contextmanager
def _progress_bar(name: str, start: int, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """An ``advance(n_bytes)`` callback: a rich bar on an interactive stderr, else a no-op."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(name, total=total, completed=start)
        yield lambda n: bar.advance(task, n)


def fetch_dataset(
    files: Sequence[RemoteFile], dest_dir: Path, base_url: str | None, **fetch_options: Any
) -> list[Path]:
    """Download and verify each file of a data set's index into ``dest_dir``; returns their paths.

    Relative URLs are joined to ``base_url``. Files marked ``extract`` are unpacked into
    ``dest_dir`` once: a marker beside the archive records the checksum it was unpacked
    at. ``fetch_options`` go to ``fetch``.
    """
    dest_dir = Path(dest_dir)
    paths = []
    for remote in files:
        path = fetch(_join(base_url, remote), dest_dir / remote.name, remote.checksum or None, **fetch_options)
        if remote.extract:
            marker = path.with_name(f".{path.name}.extracted")
            if not (marker.exists() and marker.read_text() == remote.checksum):
                safe_extract(path, dest_dir)
                marker.write_text(remote.checksum)
        paths.append(path)
    return paths


def _join(base_url: str | None, remote: RemoteFile) -> str:
    if urlsplit(remote.url).scheme:
        return remote.url
    if base_url is None:
        raise ConfigError(f"{remote.name}: url {remote.url!r} is relative and no base_url was given")
    # plain joining: urllib's urljoin ignores schemes it does not know (s3://, memory://)
    return f"{base_url.rstrip('/')}/{remote.url.lstrip('/')}"


# -- a data set by name -----------------------------------------------------------------
def local_dir(name: str, given: str | Path | None = None) -> Path:
    """``given``, else ``$MIRFLOW_DATA/<name>``."""
    return Path(given).expanduser() if given else data_root() / name


def resolve_base_url(dataset: ModuleType, given: str | None = None) -> str:
    """``given``, else ``$MIRFLOW_<NAME>_BASE_URL``, else the data set's ``BASE_URL``."""
    return given or os.environ.get(f"MIRFLOW_{dataset.NAME.upper()}_BASE_URL") or dataset.BASE_URL


def download(name: str, to: str | Path | None = None, base_url: str | None = None, **fetch_options: Any) -> list[Path]:
    """Download, verify and extract data set ``name``'s index files into ``to`` (default
    ``$MIRFLOW_DATA/<name>``); files already there and verified are not requested again.
    Raises ``ConfigError`` with the login instructions for data behind a login."""
    dataset, dest = get_dataset(name), local_dir(name, to)
    if dataset.LOGIN_INSTRUCTIONS is not None:
        raise ConfigError(
            f"{name} sits behind a login, so nothing was downloaded.\n{dataset.LOGIN_INSTRUCTIONS}\n"
            f"Place the files in {dest}."
        )
    return fetch_dataset(dataset.INDEX, dest, resolve_base_url(dataset, base_url), **fetch_options)
