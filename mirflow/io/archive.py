"""Extract tar and zip archives without letting any member escape the destination.

Every member is checked before anything is written; one bad member rejects the
whole archive. Members are extracted into a temporary sibling of the destination
and moved into place only once the whole archive has been extracted.
"""

from __future__ import annotations

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
_DRIVE = re.compile(r"^[A-Za-z]:")
# Python >= 3.11.4 ships tarfile's own "data" filter: applied on top of our checks where present.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class UnsafeArchiveError(MirflowError):
    """An archive member would land outside the destination, or is a device or fifo."""

    def __init__(self, archive: str | Path, member: str, reason: str):
        self.archive, self.member, self.reason = str(archive), member, reason
        super().__init__(f"{self.archive}: member {member!r} {reason}; nothing was extracted")


def safe_extract(archive: Path, dest: Path) -> list[Path]:
    """Extract ``archive`` (tar, tar.gz/tgz, tar.bz2, tar.xz, zip) into ``dest``.

    Returns the extracted paths (files, folders, links) in archive order. Raises
    ``UnsafeArchiveError`` before writing anything if any member is unsafe, and
    ``DataError`` for an unreadable archive or an unknown suffix.
    """
    archive, dest = Path(archive), Path(dest)
    lower = archive.name.lower()
    if lower.endswith(ZIP_SUFFIXES):
        extract: Callable[[Path, Path], list[str]] = _extract_zip
    elif lower.endswith(TAR_SUFFIXES):
        extract = _extract_tar
    else:
        expected = ", ".join(TAR_SUFFIXES + ZIP_SUFFIXES)
        raise DataError(archive, f"unknown archive type; expected a name ending in {expected}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        try:
            names = extract(archive, staging)
        except (tarfile.ReadError, tarfile.CompressionError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(archive, f"cannot be read as an archive: {exc}") from exc
        dest.mkdir(exist_ok=True)
        _move_into(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / name for name in names]


def _extract_tar(archive: Path, staging: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        symlinks = {posixpath.normpath(m.name) for m in members if m.issym()}
        for member in members:
            reason = _member_problem(member, symlinks)
            if reason:
                raise UnsafeArchiveError(archive, member.name, reason)
        try:
            tar.extractall(staging, members=members, **_TAR_FILTER)
        except tarfile.TarError as exc:
            if hasattr(exc, "tarinfo"):  # tarfile.FilterError: the stdlib filter caught what we did not
                raise UnsafeArchiveError(archive, exc.tarinfo.name, str(exc)) from exc
            raise
    return _normalised([m.name for m in members])


def _member_problem(member: tarfile.TarInfo, symlinks: Collection[str]) -> str | None:
    """Why extracting ``member`` would be unsafe; None when it is safe."""
    problem = _escape(member.name, symlinks)
    if problem:
        return problem
    if member.issym():  # a symlink's target is relative to the link's own folder
        problem = _escape(posixpath.join(posixpath.dirname(member.name), member.linkname), symlinks)
        return problem and f"is a symlink to {member.linkname!r}, which {problem}"
    if member.islnk():  # a hardlink's target is relative to the archive root
        problem = _escape(member.linkname, symlinks)
        return problem and f"is a hardlink to {member.linkname!r}, which {problem}"
    if not (member.isfile() or member.isdir()):
        return "is a device, fifo or other special file"
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


def _extract_zip(archive: Path, staging: Path) -> list[str]:
    # zipfile writes symlink and device entries as plain files, so names are all to check.
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            reason = _escape(info.filename, ())
            if reason:
                raise UnsafeArchiveError(archive, info.filename, reason)
        zf.extractall(staging, members=infos)
    return _normalised([info.filename for info in infos])


def _normalised(names: list[str]) -> list[str]:
    """Member names as relative paths, in archive order, without duplicates or '.'."""
    unique = dict.fromkeys(posixpath.normpath(name) for name in names)
    unique.pop(".", None)
    return list(unique)


def _move_into(src: Path, dst: Path) -> None:
    """Merge ``src`` into ``dst``: folders are merged, anything else replaces what is there."""
    for entry in src.iterdir():
        target = dst / entry.name
        if _is_real_dir(entry) and _is_real_dir(target):
            _move_into(entry, target)
            continue
        if _is_real_dir(target):
            shutil.rmtree(target)
        elif target.is_symlink() or target.exists():  # never write through an existing link
            target.unlink()
        os.replace(entry, target)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
