"""Download a data set's index files as a Prefect task, retried like every stage."""

from __future__ import annotations

from pathlib import Path

from mirflow.io.download import download
from tasks.common import STAGE_DEFAULTS, task


@task(name="download-dataset", **STAGE_DEFAULTS)
def download_dataset(name: str, to: str | Path | None = None, base_url: str | None = None) -> list[Path]:
    """``mirflow.io.download.download``: the files of data set ``name`` in ``to`` (default
    ``$MIRFLOW_DATA/<name>``), verified and extracted. ``fetch`` already retries transient
    HTTP trouble; the task retries what escapes it (I/O errors), never a checksum or login error."""
    return download(name, to, base_url)
