"""safe_extract: good archives extract; one unsafe member, one member over the size limit or one
that would replace what the destination holds rejects the whole archive, leaving it as it was."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from mirflow.core.errors import DataError
from mirflow.io import archive as archive_module
from mirflow.io.archive import ExtractConflictError, UnsafeArchiveError, extract_limit, safe_extract

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
    (dest / "top.txt").write_bytes(b"top")  # already there, identical: fine
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
        # left to tarfile's data filter
        ([_entry("fifo", tarfile.FIFOTYPE)], "fifo", "is a special file"),
        ([_entry("dev", tarfile.CHRTYPE)], "dev", "is a special file"),
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


def _snapshot(folder: Path) -> dict[str, bytes | str | None]:
    """Every path under ``folder``: a file's bytes, a link's target, None for a folder."""
    def state(p: Path):
        return str(p.readlink()) if p.is_symlink() else None if p.is_dir() else p.read_bytes()
    return {str(p.relative_to(folder)): state(p) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def holding(tmp_path) -> Path:
    """A destination already holding a folder with a file, a file and a symlink."""
    dest = tmp_path / "dest"
    (dest / "results").mkdir(parents=True)
    (dest / "results" / "thesis.tex").write_bytes(b"two years of work")
    (dest / "notes.txt").write_bytes(b"mine")
    (dest / "elsewhere").symlink_to(tmp_path)
    return dest


@pytest.mark.parametrize(
    ("members", "member", "existing", "reason"),
    [
        ([_file("ok.txt"), _file("results")], "results", "results", "is a file, but .* is a folder"),
        ([_dir("notes.txt"), _file("notes.txt/x")], "notes.txt", "notes.txt", "is a folder, but .* is a file"),
        ([_file("elsewhere/x")], "elsewhere", "elsewhere", "is a folder, but .* is a symlink"),
        ([_file("notes.txt", b"theirs")], "notes.txt", "notes.txt", "differs from the existing"),
        ([_file("results/thesis.tex", b"")], "results/thesis.tex", "results/thesis.tex", "differs from the existing"),
    ],
)
def test_member_replacing_what_dest_holds_is_refused(tmp_path, holding, members, member, existing, reason):
    before = _snapshot(holding)
    archive = _tar(tmp_path / "a.tar", members)
    with pytest.raises(ExtractConflictError, match=reason) as info:
        safe_extract(archive, holding)
    assert (info.value.member, info.value.existing) == (member, holding / existing)
    assert str(holding / existing) in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(holding) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "dest"]  # no staging folder left


def test_overwrite_replaces_files_but_never_a_folder(tmp_path, holding):
    archive = _zip(tmp_path / "a.zip", {"notes.txt": b"theirs", "new.txt": b"new"})
    safe_extract(archive, holding, overwrite=True)
    assert (holding / "notes.txt").read_bytes() == b"theirs" and (holding / "new.txt").read_bytes() == b"new"
    before = _snapshot(holding)
    with pytest.raises(ExtractConflictError, match="is a file, but"):
        safe_extract(_zip(tmp_path / "b.zip", {"results": b"x"}), holding, overwrite=True)
    assert _snapshot(holding) == before


ZEROS = 2**20  # bytes of zeros in the bomb: compressed, about a kilobyte


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_archive_unpacking_past_the_limit_is_refused_whole(tmp_path, suffix):
    if suffix == ".zip":
        with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("small.txt", b"ok")
            zf.writestr("zeros.bin", bytes(ZEROS))
        archive = tmp_path / "bomb.zip"
    else:
        archive = _tar(tmp_path / "bomb.tar.gz", [_file("small.txt", b"ok"), _file("zeros.bin", bytes(ZEROS))])
    assert archive.stat().st_size < ZEROS // 100
    with pytest.raises(DataError, match=r"unpacks to more than 65536 bytes, the limit \(reached at member 'zeros.bin'\)"):
        safe_extract(archive, tmp_path / "dest", max_bytes=2**16)
    _assert_nothing_written(tmp_path, archive)
    assert safe_extract(archive, tmp_path / "dest", max_bytes=ZEROS + 2)[-1].stat().st_size == ZEROS


def test_default_limit_is_a_multiple_of_the_archive_size(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "bomb.tar.gz", [_file("zeros.bin", bytes(ZEROS))])
    assert extract_limit(archive) == archive_module.MIN_EXTRACT_LIMIT  # a small archive: the floor
    monkeypatch.setattr(archive_module, "MIN_EXTRACT_LIMIT", 0)
    assert extract_limit(archive) == archive_module.MAX_RATIO * archive.stat().st_size < ZEROS
    with pytest.raises(DataError, match="unpacks to more than"):
        safe_extract(archive, tmp_path / "dest")
    _assert_nothing_written(tmp_path, archive)
