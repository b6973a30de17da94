"""safe_extract: good archives extract, and one unsafe member rejects the whole archive."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from mirflow.core.errors import DataError
from mirflow.io.archive import UnsafeArchiveError, safe_extract

GOOD = {"top.txt": b"top", "sub/inner.bin": bytes(range(256))}

Member = tuple[tarfile.TarInfo, bytes]
COMPRESSION = {".gz": "gz", ".tgz": "gz", ".bz2": "bz2", ".xz": "xz"}


def _tar(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:" + COMPRESSION.get(path.suffix, "")) as tar:
        for member, data in members:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def _file(name: str, data: bytes = b"x") -> Member:
    return tarfile.TarInfo(name), data


def _entry(name: str, kind: bytes, linkname: str = "") -> Member:
    """A link, device or fifo member."""
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, linkname
    return member, b""


def _link(name: str, target: str) -> Member:
    return _entry(name, tarfile.SYMTYPE, target)


def _dir(name: str) -> Member:
    member = tarfile.TarInfo(name)
    member.type, member.mode = tarfile.DIRTYPE, 0o755
    return member, b""


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"])
def test_good_tar_extracts(tmp_path, suffix):
    members = [_dir("sub"), *(_file(n, d) for n, d in GOOD.items()), _link("sub/alias", "../top.txt")]
    archive = _tar(tmp_path / f"good{suffix}", members)
    dest = tmp_path / "dest"
    paths = safe_extract(archive, dest)
    assert paths == [dest / "sub", dest / "top.txt", dest / "sub" / "inner.bin", dest / "sub" / "alias"]
    assert {p: (dest / p).read_bytes() for p in GOOD} == GOOD
    assert (dest / "sub" / "alias").is_symlink() and (dest / "sub" / "alias").read_bytes() == b"top"


def test_good_zip_extracts_beside_existing_files(tmp_path):
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "kept.txt").write_bytes(b"kept")
    (dest / "top.txt").write_bytes(b"old")
    archive = _zip(dest / "good.zip", GOOD)
    assert safe_extract(archive, dest) == [dest / name for name in GOOD]
    assert {p: (dest / p).read_bytes() for p in GOOD} == GOOD
    assert (dest / "sub" / "kept.txt").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]  # no staging folder left


def _assert_nothing_written(tmp_path: Path, archive: Path) -> None:
    assert sorted(tmp_path.rglob("*")) == [archive]


@pytest.mark.parametrize(
    ("members", "bad", "reason"),
    [
        ([_file("ok.txt"), _file("../evil")], "../evil", "leaves the destination"),
        ([_file("ok.txt"), _file("sub/../../evil")], "sub/../../evil", "leaves the destination"),
        ([_file("/tmp/evil")], "/tmp/evil", "absolute path"),
        ([_file("ok.txt"), _link("out", "../../outside")], "out", "symlink to '../../outside'"),
        ([_link("etc", "/etc")], "etc", "symlink to '/etc'"),
        ([_entry("hard", tarfile.LNKTYPE, "../outside")], "hard", "hardlink to '../outside'"),
        # each link is harmless where it sits; together they would reach the parent of dest
        ([_link("a/b/c", "../.."), _link("a/b/c/up", "../..")], "a/b/c/up", "passes through the symlink 'a/b/c'"),
        ([_link("d", "sub"), _file("d/evil")], "d/evil", "passes through the symlink 'd'"),
        ([_entry("fifo", tarfile.FIFOTYPE)], "fifo", "device, fifo"),
        ([_entry("dev", tarfile.CHRTYPE)], "dev", "device, fifo"),
    ],
)
def test_unsafe_tar_is_rejected_whole(tmp_path, members, bad, reason):
    archive = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        safe_extract(archive, tmp_path / "dest")
    assert (info.value.archive, info.value.member) == (str(archive), bad)
    assert str(archive) in str(info.value) and repr(bad) in str(info.value)
    _assert_nothing_written(tmp_path, archive)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("/abs/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("..\\evil.txt", "leaves the destination"),
    ],
)
def test_unsafe_zip_is_rejected_whole(tmp_path, bad, reason):
    archive = _zip(tmp_path / "bad.zip", {"ok.txt": b"ok", bad: b"evil"})
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        safe_extract(archive, tmp_path / "dest")
    assert info.value.member == bad
    _assert_nothing_written(tmp_path, archive)


def test_truncated_archive_leaves_nothing(tmp_path):
    whole = _tar(tmp_path / "whole.tar.bz2", [_file(f"f{i}", bytes(range(256)) * 2000) for i in range(4)])
    archive = tmp_path / "cut.tar.bz2"
    archive.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    with pytest.raises(DataError, match="cut.tar.bz2: cannot be read as an archive"):
        safe_extract(archive, tmp_path / "dest")
    _assert_nothing_written(tmp_path, archive)


def test_unknown_suffix_is_refused(tmp_path):
    archive = tmp_path / "a.rar"
    archive.write_bytes(b"Rar!")
    with pytest.raises(DataError, match="a.rar: unknown archive type"):
        safe_extract(archive, tmp_path / "dest")
