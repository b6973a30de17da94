"""What Prefect does with stage tasks' parameters: the RunContext, every stage task's
parameter, is walked (to record task inputs) while other tasks of the run use it; large
inputs are resolved, not walked."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from prefect import flow, get_client, tags
from prefect.exceptions import ObjectNotFound
from prefect.utilities import collections
from prefect.utilities.collections import visit_collection
from pydantic import BaseModel

from mirflow.core.cluster import DaskPool
from mirflow.core.store import ArtifactStore
from tasks.common import UNCACHED, task
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
    time grew with the number of input files (and with a split's list of clip ids, a
    plain dict). The UI still shows which task a value came from."""
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
    def count_files(shards: list[_Shard], calls: list[tuple[_Shard, int]], listed: dict[str, str]) -> int:
        return sum(len(shard.files) for shard in shards) + sum(len(shard.files) * k for shard, k in calls) + len(listed)

    @flow
    def run() -> tuple[int, int, str]:
        shards = plan()
        visits.clear()
        listed = {f"clip{i}": "train" for i in range(3000)}
        state = count_files(shards, [(shard, 1) for shard in shards], listed=listed, return_state=True)
        return state.result(), len(visits), state.state_details.task_run_id

    total, walked, task_run_id = run()
    assert total == 9000
    assert walked < 100  # walked to the last file name: > 12,000; to the last clip id: > 6,000
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


def test_a_pipeline_flow_beats_itself_and_ends_without_waiting_for_prefects_heartbeat(prefect_server, monkeypatch):
    """Prefect's heartbeat thread sleeps in whole seconds and its flow engine joins it when the
    flow ends, so every run waited for the next whole second from its start (0.8 s of a 1.2 s
    unchanged re-run). A mirflow flow's run turns that thread off and sends the same event
    from its own, which has stopped when the call returns."""
    from prefect import flow_engine
    from prefect.context import FlowRunContext

    import tasks.heartbeat
    from flows.common import pipeline_flow

    prefect_intervals, beats = [], []
    prefect_heartbeats = flow_engine._send_heartbeats

    def spied(engine, *args, **kwargs):
        prefect_intervals.append(engine.heartbeat_seconds)
        return prefect_heartbeats(engine, *args, **kwargs)

    monkeypatch.setattr(flow_engine, "_send_heartbeats", spied)
    monkeypatch.setattr(tasks.heartbeat, "emit_event", lambda **event: beats.append(event))

    @task(**UNCACHED)
    def first_stage() -> str:
        return str(FlowRunContext.get().flow_run.id)

    @pipeline_flow("heartbeat_probe")
    def probe() -> str:
        return first_stage()

    with tags("nightly"):
        run_id = probe()
    assert prefect_intervals == [None]  # Prefect's own: 180 (its default)
    assert [beat["event"] for beat in beats] == ["prefect.flow-run.heartbeat"]
    assert beats[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
    assert [r["prefect.resource.role"] for r in beats[0]["related"]] == ["flow", "tag"]
    assert beats[0]["related"][1]["prefect.resource.id"] == "prefect.tag.nightly"
    assert "mirflow-flow-run-heartbeat" not in [thread.name for thread in threading.enumerate()]
