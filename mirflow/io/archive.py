"""Extract tar and zip archives without letting a member escape the destination, grow
past a size limit, or destroy anything the destination already holds.

Who checks what, and why our own checks are still there:

- tar: tarfile's own ``data`` filter (PEP 706) runs on every member: it refuses devices
  and fifos, absolute links and links leading outside, and drops setuid bits and owners.
  On top of it we check names and link targets lexically, before anything is written:
  the filter resolves paths on disk, and chains of symlinks or hard links have led it
  out of the destination (CVE-2025-4517, python/cpython#135034, fixed in 3.11.13 while
  this project runs on 3.11.7; #151558 and #157190 are later ones). A path that never
  passes through one of the archive's own symlinks cannot be led anywhere. We also
  refuse an absolute name rather than let the filter strip its leading "/".
- zip: zipfile has no filter; it quietly rewrites bad names (drops "..", drive letters
  and leading slashes), so names are checked to refuse such an archive, not scatter it.
  Symlink and device entries come out as plain files, so names are all there is to check.
- size: neither library limits it, but both write at most each member's declared size
  (tar header, zip central directory), so the declared total is checked while the
  headers are read, before any member is written: over the limit, nothing is extracted.
- what the destination holds: members are extracted into a temporary sibling and merged
  only when nothing there conflicts: a member whose path exists as another kind (file,
  folder, symlink) is always refused, one whose file exists with other content is
  refused unless ``overwrite``; identical files are left as they are. One conflict
  refuses the whole archive, and nothing in the destination is removed or changed.
"""

from __future__ import annotations

import filecmp
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path

from mirflow.core.errors import DataError, MirflowError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
ZIP_SUFFIXES = (".zip",)
# Without a limit given, an archive may unpack to this many times its own size: audio
# and HDF5 barely compress (~1-3x), JSON and CSV text reach ~10-20x, while a zip bomb
# needs far more (zeros deflate ~1000x, bz2 much more). Small archives may always
# unpack to MIN_EXTRACT_LIMIT, so compressible toy data is never refused.
MAX_RATIO = 100
MIN_EXTRACT_LIMIT = 64 * 2**20
_DRIVE = re.compile(r"^[A-Za-z]:")

Extractor = Callable[[Path, Path, int], list[str]]  # (archive, staging, max bytes) -> member names


class UnsafeArchiveError(MirflowError):
    """An archive member would land outside the destination, or is a device or fifo."""

    def __init__(self, archive: str | Path, member: str, reason: str):
        self.archive, self.member, self.reason = str(archive), member, reason
        super().__init__(f"{self.archive}: member {member!r} {reason}; nothing was extracted")


class ExtractConflictError(MirflowError):
    """A member would replace something the destination already holds."""

    def __init__(self, archive: str | Path, member: str, existing: Path, reason: str):
        self.archive, self.member, self.existing = str(archive), member, existing
        super().__init__(f"{self.archive}: member {member!r} {reason}; nothing was extracted")


def extract_limit(archive: Path) -> int:
    """The default most bytes ``archive`` may unpack to (see ``MAX_RATIO``)."""
    return max(MAX_RATIO * Path(archive).stat().st_size, MIN_EXTRACT_LIMIT)


def safe_extract(archive: Path, dest: Path, max_bytes: int | None = None, overwrite: bool = False) -> list[Path]:
    """Extract ``archive`` (tar, tar.gz/tgz, tar.bz2, tar.xz, zip) into ``dest``.

    Returns the extracted paths (files, folders, links) in archive order. Raises, leaving
    ``dest`` as it was: ``UnsafeArchiveError`` for a member that could escape ``dest``;
    ``DataError`` for an unreadable archive, an unknown suffix, or members declaring more
    than ``max_bytes`` (default ``extract_limit(archive)``); ``ExtractConflictError`` for
    a member that would replace a different existing file (unless ``overwrite``) or an
    existing path of another kind (always).
    """
    archive, dest = Path(archive), Path(dest)
    lower = archive.name.lower()
    if lower.endswith(ZIP_SUFFIXES):
        extract: Extractor = _extract_zip
    elif lower.endswith(TAR_SUFFIXES):
        extract = _extract_tar
    else:
        expected = ", ".join(TAR_SUFFIXES + ZIP_SUFFIXES)
        raise DataError(archive, f"unknown archive type; expected a name ending in {expected}")
    limit = extract_limit(archive) if max_bytes is None else max_bytes
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        try:
            names = extract(archive, staging, limit)
        except (tarfile.ReadError, tarfile.CompressionError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(archive, f"cannot be read as an archive: {exc}") from exc
        dest.mkdir(exist_ok=True)
        for entry, target in _merge_plan(archive, staging, dest, overwrite):
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / name for name in names]


def _extract_tar(archive: Path, staging: Path, limit: int) -> list[str]:
    with tarfile.open(archive, "r:*") as tar:
        members, declared = [], 0
        for member in tar:  # headers one by one: a bomb is refused before its data is unpacked
            declared += member.size if member.isreg() else 0
            _check_size(archive, member.name, declared, limit)
            members.append(member)
        symlinks = {posixpath.normpath(m.name) for m in members if m.issym()}
        for member in members:
            reason = _member_problem(member, symlinks)
            if reason:
                raise UnsafeArchiveError(archive, member.name, reason)
        try:
            tar.extractall(staging, members=members, filter="data")
        except tarfile.FilterError as exc:  # what the stdlib filter catches on its own: devices, fifos
            raise UnsafeArchiveError(archive, exc.tarinfo.name, str(exc)) from exc
    return _normalised([m.name for m in members])


def _check_size(archive: Path, member: str, declared: int, limit: int) -> None:
    if declared > limit:
        raise DataError(
            archive,
            f"unpacks to more than {limit} bytes, the limit (reached at member {member!r}); nothing was extracted "
            "(for an archive you trust: `mirflow data fetch --max-extract-bytes`)",
        )


def _member_problem(member: tarfile.TarInfo, symlinks: Collection[str]) -> str | None:
    """Why ``member``'s name or link target could lead outside the destination; None when
    neither can (devices and fifos are left to tarfile's filter)."""
    problem = _escape(member.name, symlinks)
    if problem:
        return problem
    if member.issym():  # a symlink's target is relative to the link's own folder
        problem = _escape(posixpath.join(posixpath.dirname(member.name), member.linkname), symlinks)
        return problem and f"is a symlink to {member.linkname!r}, which {problem}"
    if member.islnk():  # a hardlink's target is relative to the archive root
        problem = _escape(member.linkname, symlinks)
        return problem and f"is a hardlink to {member.linkname!r}, which {problem}"
    return None


def _escape(path: str, symlinks: Collection[str]) -> str | None:
    """Why ``path`` (relative to the destination) could resolve outside it; None when it cannot.

    A path through one of the archive's own symlinks is refused outright: a link that is
    safe from where it sits can still lead a later ``..`` out of the destination.
    """
    path = path.replace("\\", "/")  # Windows separators count, so "..\\x" is caught too
    if path.startswith("/") or _DRIVE.match(path):
        return "is an absolute path"
    inside: list[str] = []
    for part in path.split("/"):
        if inside and "/".join(inside) in symlinks:
            return f"passes through the symlink {'/'.join(inside)!r}"
        if part == "..":
            if not inside:
                return "leaves the destination"
            inside.pop()
        elif part not in ("", "."):
            inside.append(part)
    return None


def _extract_zip(archive: Path, staging: Path, limit: int) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos, declared = zf.infolist(), 0
        for info in infos:
            reason = _escape(info.filename, ())
            if reason:
                raise UnsafeArchiveError(archive, info.filename, reason)
            declared += info.file_size
            _check_size(archive, info.filename, declared, limit)
        zf.extractall(staging, members=infos)
    return _normalised([info.filename for info in infos])


def _normalised(names: list[str]) -> list[str]:
    """Member names as relative paths, in archive order, without duplicates or '.'."""
    unique = dict.fromkeys(posixpath.normpath(name) for name in names)
    unique.pop(".", None)
    return list(unique)


def _merge_plan(archive: Path, src: Path, dst: Path, overwrite: bool, prefix: str = "") -> list[tuple[Path, Path]]:
    """(extracted entry, its place in ``dst``) for everything ``dst`` does not already hold
    identically; raises ``ExtractConflictError`` at the first member that would replace
    something. Folders present on both sides are merged, never replaced."""
    moves = []
    for entry in sorted(src.iterdir()):
        target, member = dst / entry.name, prefix + entry.name
        new, old = _kind(entry), _kind(target)
        if old is None:
            moves.append((entry, target))
        elif new == old == "folder":
            moves += _merge_plan(archive, entry, target, overwrite, member + "/")
        elif new != old:
            raise ExtractConflictError(archive, member, target, f"is a {new}, but {target} is a {old}")
        elif not _same(entry, target):
            if not overwrite:
                raise ExtractConflictError(
                    archive, member, target, f"differs from the existing {target} (`--overwrite` replaces files)"
                )
            moves.append((entry, target))
    return moves


def _kind(path: Path) -> str | None:
    if path.is_symlink():  # first: never look through a link, the destination's or the archive's
        return "symlink"
    if path.is_dir():
        return "folder"
    return "file" if path.exists() else None


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink():
        return os.readlink(a) == os.readlink(b)
    return filecmp.cmp(a, b, shallow=False)
