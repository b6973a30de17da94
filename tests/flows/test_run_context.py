"""The RunContext is every stage task's parameter: Prefect walks it (to record task
inputs) while other tasks of the run use it."""

from __future__ import annotations

from prefect.utilities.collections import visit_collection
from pydantic import BaseModel

from mirflow.core.cluster import DaskPool
from mirflow.core.store import ArtifactStore
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
