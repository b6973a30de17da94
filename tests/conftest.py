"""Shared fixtures: real-data samples (skipped when ../shared is absent), an isolated
Prefect home so no test writes to the user's home, and a temporary Prefect server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

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


@pytest.fixture(scope="module")
def prefect_server():
    """A temporary Prefect server (and database) for one test module's flow runs; yields
    its API URL."""
    with prefect_test_harness(server_startup_timeout=120):
        yield os.environ.get("PREFECT_API_URL")


@pytest.fixture
def scaler_fitted_on_all_rows(monkeypatch):
    """Injects the leak every pipeline's audit must catch: the scaler fitted on all rows."""
    from mirflow.stages import scaling

    real_fit = scaling.fit_scaler_on_train
    monkeypatch.setattr(scaling, "fit_scaler_on_train",
                        lambda X, split, **kwargs: real_fit(X, split.map(lambda _: "train"), **kwargs))
