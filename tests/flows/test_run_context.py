"""What Prefect does with stage tasks' parameters: the RunContext, every stage task's
parameter, is walked (to record task inputs) while other tasks of the run use it; large
inputs are resolved, not walked."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import flow, get_client
from prefect.exceptions import ObjectNotFound
from prefect.utilities import collections
from prefect.utilities.collections import visit_collection
from pydantic import BaseModel

from mirflow.core.cluster import DaskPool
from mirflow.core.store import ArtifactStore
from tasks.common import task
from tasks.runtime import RunContext


class _Params(BaseModel):
    seed: int = 0


def _first_stage() -> int:
    return 1


def _second_stage() -> int:
    return 2


def test_prefect_walks_the_context_while_another_task_hashes_its_code(tmp_path):
    ctx = RunContext(run_id="run", flow="flow", store=ArtifactStore(str(tmp_path)), pool=DaskPool(None, 1),
                     params=_Params())
    first = ctx.code_hash(_first_stage)

    def another_task_starts(value):
        if value == first:  # the walk is at the hashes: a shard task starting in another thread adds one
            ctx.code_hash(_second_stage)
        return value

    visit_collection(ctx, another_task_starts, return_data=False)  # raised "dictionary changed size during iteration"
    assert ctx.code_hash(_first_stage) == first and ctx.code_hash(_second_stage) != first


@dataclass(frozen=True)
class _Shard:
    files: tuple[str, ...]


def _task_inputs(task_run_id, wait_s: float = 60.0) -> dict:
    """A task run's recorded inputs; the run reaches the server as events a moment after the
    flow returns (on a busy machine, later than the first read: 404)."""
    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_task_run(task_run_id).task_inputs
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_stage_tasks_take_large_inputs_without_prefect_walking_them(prefect_server, monkeypatch):
    """Prefect walks a task's arguments to their last element (twice per task run); stage
    tasks let it resolve and link each value, not walk into it: an unchanged re-run's
    time grew with the number of input files. The UI still shows which task a value came from."""
    visits = []
    walk = collections.visit_collection

    def counted(expr, *args, **kwargs):
        visits.append(1)
        return walk(expr, *args, **kwargs)

    monkeypatch.setattr(collections, "visit_collection", counted)

    @task()
    def plan() -> list[_Shard]:
        return [_Shard(tuple(f"clip{i}.wav" for i in range(j, 3000, 3))) for j in range(3)]

    @task()
    def count_files(shards: list[_Shard], calls: list[tuple[_Shard, int]]) -> int:
        return sum(len(shard.files) for shard in shards) + sum(len(shard.files) * k for shard, k in calls)

    @flow
    def run() -> tuple[int, int, str]:
        shards = plan()
        visits.clear()
        state = count_files(shards, [(shard, 1) for shard in shards], return_state=True)
        return state.result(), len(visits), state.state_details.task_run_id

    total, walked, task_run_id = run()
    assert total == 6000
    assert walked < 100  # walked to the last file name: > 12,000
    inputs = _task_inputs(task_run_id)
    assert [type(source).__name__ for source in inputs["shards"]] == ["TaskRunResult"]


def test_every_flow_records_its_parameters_as_prefects_own_serialiser_would():
    from prefect import Flow

    from flows import FLOWS, load_flow, params_model

    for name in FLOWS:
        model = params_model(name)
        values = {"run": "runs/x", "input_csv": "test.csv", "out": "p.csv"} if name == "kkbox_score" else {}
        parameters = {"params": model(**values), "explain": True}
        assert load_flow(name).serialize_parameters(parameters) == Flow.serialize_parameters(load_flow(name), parameters), name
