"""The real `prefect server start` (SQLite, with its UI) that the deployment and UI tests
share, each through ``prefect_stack.borrowed``: one start instead of two (~40 s each on
2 cores). Started only when a heavy test asks for it."""

from __future__ import annotations

import pytest
from prefect_stack import Processes, start_prefect_server


@pytest.fixture(scope="session")
def shared_prefect_server(tmp_path_factory):
    processes = Processes(tmp_path_factory.mktemp("shared_prefect_server"))
    try:
        yield start_prefect_server(processes, processes.folder / "prefect_home")
    finally:
        processes.stop_all()
