"""The HTTP endpoint's batching, in process (the real uvicorn process is tested with the
flow, tests/flows/test_kkbox_relisten.py): requests that arrive while a batch is scored
are scored together, each gets its own rows' predictions in order, and one request's
failure is not its neighbours'."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd

from mirflow.pipelines.kkbox_relisten.serve import create_app


class BlockingScorer:
    """Scores user ``u<k>`` as k / 100; its first call waits for ``release``; a batch
    holding user ``boom`` fails."""

    model_name, tables = "network", "tables"
    run = SimpleNamespace(run_id="run", metrics={"models": {}})

    def __init__(self):
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def score(self, rows: pd.DataFrame) -> tuple[np.ndarray, dict]:
        self.calls.append(list(rows["msno"]))
        assert self.release.wait(10)
        if (rows["msno"] == "boom").any():
            raise ValueError("boom")
        return rows["msno"].str.removeprefix("u").astype(float).to_numpy() / 100, {}


def post_concurrently(scorer: BlockingScorer, first: list[str], then: list[list[str]]) -> list[httpx.Response]:
    """``first`` is posted and starts scoring; ``then`` are posted while it blocks; then
    the scorer is released."""
    app = create_app(scorer)

    async def post(client: httpx.AsyncClient, users: list[str]) -> httpx.Response:
        return await client.post("/predict", json={"rows": [{"msno": user, "song_id": "s"} for user in users]})

    async def until(condition) -> None:
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://mirflow") as client:
            started = asyncio.create_task(post(client, first))
            await until(lambda: scorer.calls)
            queued = [asyncio.create_task(post(client, users)) for users in then]
            await until(lambda: len(app.state.scoring.waiting) == len(then))
            scorer.release.set()
            return await asyncio.gather(started, *queued)

    return asyncio.run(main())


def test_requests_queued_during_a_batch_are_scored_together_each_getting_its_own_rows():
    scorer = BlockingScorer()
    then = [[f"u{k}", f"u{k + 50}"] for k in range(1, 9)]
    first, *answers = post_concurrently(scorer, ["u0"], then)
    assert scorer.calls == [["u0"], [user for users in then for user in users]]  # two calls for nine requests
    assert first.json() == {"predictions": [0.0]}
    for users, answer in zip(then, answers):
        assert answer.status_code == 200 and answer.json()["predictions"] == [int(u[1:]) / 100 for u in users]


def test_a_failing_request_fails_alone():
    scorer = BlockingScorer()
    first, ok, failing, other = post_concurrently(scorer, ["u0"], [["u1"], ["boom"], ["u3"]])
    assert [first.status_code, ok.status_code, failing.status_code, other.status_code] == [200, 200, 500, 200]
    assert ok.json()["predictions"] == [0.01] and other.json()["predictions"] == [0.03]
    assert scorer.calls[1] == ["u1", "boom", "u3"] and scorer.calls[2:] == [["u1"], ["boom"], ["u3"]]
