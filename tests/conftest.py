"""Shared fixtures: real-data samples (skipped when ../shared is absent) and an
isolated Prefect home so no test writes to the user's home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Root of the real samples in ../shared/realdata; skips the test when absent."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent (a user's clone): real-data test skipped")
    return REALDATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_homes(tmp_path_factory):
    """Keep Prefect and mirflow state out of the user's home for the whole session."""
    home = tmp_path_factory.mktemp("prefect_home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("MIRFLOW_DATA", str(tmp_path_factory.mktemp("mirflow_data")))
    yield
