"""What flows share: Prefect flow options."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner



def flow_options() -> dict:
    # Tasks run on threads in the flow process (~5 ms each); their heavy compute goes
    # to Dask workers as plain functions (see mirflow.cluster).
    return {"task_runner": ThreadPoolTaskRunner(max_workers=16), "validate_parameters": True, "log_prints": True}
