"""fetch / fetch_dataset against a local fault-injecting HTTP server and file:// URLs."""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from functools import partial

import pytest
from fault_server import FaultServer, corrupt, drop, status

from mirflow.core.errors import ChecksumError, ConfigError, DataError
from mirflow.datasets.base import RemoteFile
from mirflow.io.download import DownloadError, fetch, fetch_dataset, file_checksum, verify

DATA = bytes(range(256)) * 400  # 102 400 bytes
SHA = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def get(sleeps):
    """fetch that records its waits instead of sleeping, with jitter fixed at its maximum."""
    return partial(fetch, progress=False, sleep=sleeps.append, jitter=lambda: 1.0)


def test_retries_503_then_succeeds_with_exponential_backoff(server, tmp_path, get, sleeps):
    url = server.add("/a.bin", DATA, faults=[status(503), status(503)])
    out = get(url, tmp_path / "a.bin", SHA, backoff=0.5)
    assert out.read_bytes() == DATA
    assert [r.status for r in server.requests] == [503, 503, 200]
    assert sleeps == [0.5, 1.0]
    assert not (tmp_path / "a.bin.part").exists()


def test_retry_after_is_honoured_and_capped(server, tmp_path, get, sleeps):
    url = server.add("/a.bin", DATA, faults=[status(503, retry_after="0"), status(429, retry_after="120")])
    get(url, tmp_path / "a.bin", SHA, max_backoff=7.0)
    assert len(server.requests) == 3
    assert sleeps == [0.0, 7.0]


def test_dropped_connection_resumes_from_bytes_received(server, tmp_path, get, caplog):
    received = 40_000
    url = server.add("/a.bin", DATA, faults=[drop(after=received)])
    with caplog.at_level(logging.INFO, logger="mirflow.io.download"):
        out = get(url, tmp_path / "a.bin", SHA)
    assert out.read_bytes() == DATA
    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={received}-", 206)]
    assert f"resuming {url} from byte {received}" in caplog.text
    assert f"downloaded {url}: {len(DATA)} bytes" in caplog.text


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, get):
    url = server.add("/a.bin", DATA, faults=[drop(after=30_000)], ranges=False)
    out = get(url, tmp_path / "a.bin", SHA)
    assert out.read_bytes() == DATA
    assert [(r.range, r.status) for r in server.requests] == [(None, 200), ("bytes=30000-", 200)]


def test_wrong_bytes_raise_checksum_error_without_retry(server, tmp_path, get):
    url = server.add("/a.bin", DATA, faults=[corrupt()])
    with pytest.raises(ChecksumError) as info:
        get(url, tmp_path / "a.bin", SHA)
    served = bytes(b ^ 0xFF for b in DATA)
    actual = "sha256:" + hashlib.sha256(served).hexdigest()
    assert (info.value.source, info.value.expected, info.value.actual) == (url, SHA, actual)
    assert url in str(info.value) and SHA in str(info.value) and actual in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1


def test_404_is_not_retried(server, tmp_path, get, sleeps):
    url = server.url("/missing.bin")
    with pytest.raises(DownloadError, match=rf"{url}: HTTP 404"):
        get(url, tmp_path / "a.bin", SHA)
    assert len(server.requests) == 1 and sleeps == []


def test_gives_up_after_the_last_retry(server, tmp_path, get):
    url = server.add("/a.bin", DATA, faults=[status(502)] * 5)
    with pytest.raises(DownloadError, match=rf"{url}: gave up after 3 attempts; last error: HTTP 502"):
        get(url, tmp_path / "a.bin", SHA, retries=2)
    assert len(server.requests) == 3


def test_verified_file_is_not_downloaded_again(server, tmp_path, get):
    url = server.add("/a.bin", DATA)
    (tmp_path / "a.bin").write_bytes(DATA)
    assert get(url, tmp_path / "a.bin", SHA) == tmp_path / "a.bin"
    assert server.requests == []


def test_corrupt_existing_file_is_downloaded_again(server, tmp_path, get):
    url = server.add("/a.bin", DATA)
    (tmp_path / "a.bin").write_bytes(DATA[:-1] + b"x")
    assert get(url, tmp_path / "a.bin", SHA).read_bytes() == DATA
    assert [r.range for r in server.requests] == [None]


def test_failed_download_keeps_the_existing_file(server, tmp_path, get):
    mine = b"the user's own file of that name"
    (tmp_path / "a.bin").write_bytes(mine)
    url = server.add("/a.bin", DATA, faults=[corrupt()])
    with pytest.raises(ChecksumError):
        get(url, tmp_path / "a.bin", SHA)
    gone = server.add("/gone.bin", DATA, faults=[status(503)] * 2)
    (tmp_path / "gone.bin").write_bytes(mine)
    with pytest.raises(DownloadError):
        get(gone, tmp_path / "gone.bin", SHA, retries=1)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"a.bin": mine, "gone.bin": mine}


def test_part_file_of_a_killed_run_is_resumed(server, tmp_path, get):
    url = server.add("/a.bin", DATA)
    (tmp_path / "a.bin.part").write_bytes(DATA[:12_345])
    assert get(url, tmp_path / "a.bin", SHA).read_bytes() == DATA
    assert [r.range for r in server.requests] == ["bytes=12345-"]


def test_complete_part_file_is_finished_on_416(server, tmp_path, get):
    url = server.add("/a.bin", DATA)
    (tmp_path / "a.bin.part").write_bytes(DATA)
    assert get(url, tmp_path / "a.bin", SHA).read_bytes() == DATA
    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(DATA)}-", 416)]


def test_part_file_longer_than_remote_is_discarded(server, tmp_path, get):
    url = server.add("/a.bin", DATA)
    (tmp_path / "a.bin.part").write_bytes(DATA + b"junk")
    assert get(url, tmp_path / "a.bin", SHA).read_bytes() == DATA
    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(DATA) + 4}-", 416), (None, 200)]


def test_file_url_through_fsspec_resumes_a_part_file(tmp_path, get):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    dest = tmp_path / "out" / "a.bin"
    dest.parent.mkdir()
    dest.with_name("a.bin.part").write_bytes(DATA[:5000])
    assert get(src.as_uri(), dest, SHA).read_bytes() == DATA


def test_missing_file_url_is_not_retried(tmp_path, get, sleeps):
    url = (tmp_path / "absent.bin").as_uri()
    with pytest.raises(DownloadError, match="absent.bin"):
        get(url, tmp_path / "a.bin", None)
    assert sleeps == []


def test_checksum_helpers(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    assert file_checksum(path, "md5") == md5
    assert verify(path, f"md5:{md5.upper()}") and verify(path, SHA)
    assert not verify(path, "md5:" + "0" * 32)
    with pytest.raises(ConfigError, match="'crc32:1234'"):
        verify(path, "crc32:1234")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_fetch_dataset_downloads_extracts_once(server, tmp_path):
    archive = _zip({"clips/one.txt": b"1", "clips/two.txt": b"2"})
    server.add("/ds/raw/a.bin", DATA)
    server.add("/ds/clips.zip", archive)
    index = [
        RemoteFile("a.bin", "raw/a.bin", len(DATA), SHA),
        RemoteFile("clips.zip", "clips.zip", None, "md5:" + hashlib.md5(archive).hexdigest(), extract=True),
    ]
    options = {"progress": False, "sleep": lambda s: None}
    paths = fetch_dataset(index, tmp_path, server.url("ds/"), **options)
    assert paths == [tmp_path / "a.bin", tmp_path / "clips.zip"]
    assert (tmp_path / "clips" / "two.txt").read_bytes() == b"2"
    assert [r.path for r in server.requests] == ["/ds/raw/a.bin", "/ds/clips.zip"]

    (tmp_path / "clips" / "two.txt").unlink()  # only a new extraction would bring it back
    assert fetch_dataset(index, tmp_path, server.url("ds"), **options) == paths
    assert len(server.requests) == 2
    assert not (tmp_path / "clips" / "two.txt").exists()


def test_fetch_dataset_limits_extraction_by_the_archive_size(server, tmp_path, monkeypatch):
    from mirflow.io import archive as archive_module

    monkeypatch.setattr(archive_module, "MIN_EXTRACT_LIMIT", 0)  # else small archives may unpack to 64 MiB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(2**20))  # deflates to about a kilobyte
    bomb = buf.getvalue()
    server.add("/ds/bomb.zip", bomb)
    index = [RemoteFile("bomb.zip", "bomb.zip", len(bomb), "md5:" + hashlib.md5(bomb).hexdigest(), extract=True)]
    limit = archive_module.MAX_RATIO * len(bomb)
    with pytest.raises(DataError, match=f"bomb.zip: unpacks to more than {limit} bytes"):
        fetch_dataset(index, tmp_path, server.url("ds"), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.zip"]  # verified archive kept, nothing unpacked


def test_fetch_dataset_needs_a_base_url_for_relative_urls(tmp_path):
    with pytest.raises(ConfigError, match="a.bin"):
        fetch_dataset([RemoteFile("a.bin", "raw/a.bin", None, SHA)], tmp_path, None)
