"""What every dataset module declares (the mirdata habit).

A dataset module (``mirflow/datasets/<name>.py``) defines, at module level:

- ``NAME: str`` -- the CLI name (``gtzan``, ``msd``, ``acousticbrainz``, ``kkbox``, ``cifar100``).
- ``LICENCE: str`` -- the data set's terms in one line.
- ``HOMEPAGE: str``
- ``BASE_URL: str`` -- where ``INDEX`` entries' relative URLs live; overridable
  (``MIRFLOW_<NAME>_BASE_URL`` or an argument) so tests point it at a local server.
- ``INDEX: tuple[RemoteFile, ...]`` -- the remote files, with size and checksum
  recorded from the data set's own published index.
- ``LOGIN_INSTRUCTIONS: str | None`` -- for data behind a login: which files to
  place where (then ``INDEX`` urls are informative only).
- ``list_files(data_dir) -> list[Path]`` -- the original-format units under a local
  copy (clips, song files, JSON documents, CSV tables), sorted, relative order stable.
- ``read_file(path) -> dict`` -- one unit parsed into typed fields (raises
  ``mirflow.core.errors.DataError`` naming the file when it cannot be parsed).
- ``read_table(paths) -> (pandas.DataFrame, list[Failure])`` -- many units into one
  typed table; unreadable units are returned as failures, never fatal.
- ``synthesize(out_dir, n, seed=0) -> list[Path]`` -- a small synthetic copy in the
  original format with learnable signal, marked as synthetic in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set's published index."""

    name: str  # path under the data set's local folder, e.g. "genres.tar.gz"
    url: str  # absolute, or relative to the module's BASE_URL
    size: int | None  # bytes, None when the publisher gives none
    checksum: str  # "md5:<hex>" or "sha256:<hex>"; "" when the publisher gives none
    extract: bool = False  # unpack the archive into the data set's folder after download


@dataclass(frozen=True)
class Failure:
    """A unit that could not be read: kept and reported, never silently dropped."""

    path: str
    reason: str


def data_root() -> Path:
    """Where data sets live: ``$MIRFLOW_DATA`` or ``~/mirflow_data``."""
    import os

    return Path(os.environ.get("MIRFLOW_DATA", Path.home() / "mirflow_data")).expanduser()
