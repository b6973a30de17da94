"""Stage tasks retry transient I/O failures with backoff, and never retry bad data."""

from __future__ import annotations

import pytest
from prefect import flow, task

from mirflow.core.errors import DataError
from tasks.common import STAGE_DEFAULTS

pytestmark = pytest.mark.usefixtures("prefect_server")


def _stage_task(fn):
    return task(**{**STAGE_DEFAULTS, "retry_delay_seconds": 0, "retry_jitter_factor": None})(fn)


def test_transient_io_error_is_retried_until_it_succeeds():
    calls = []

    @_stage_task
    def flaky_read():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("NFS hiccup")
        return "ok"

    @flow
    def run():
        return flaky_read()

    assert run() == "ok" and len(calls) == 3


def test_bad_data_fails_at_once():
    calls = []

    @_stage_task
    def corrupt_read():
        calls.append(1)
        raise DataError("x.wav", "not audio")

    @flow
    def run():
        return corrupt_read()

    with pytest.raises(DataError):
        run()
    assert len(calls) == 1


def test_backoff_grows_exponentially_with_jitter():
    delays = STAGE_DEFAULTS["retry_delay_seconds"](3)
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert STAGE_DEFAULTS["retry_jitter_factor"] > 0
