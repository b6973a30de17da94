"""`mirflow serve`: every flow's deployments and schedules from one process.

The laptop alternative to `prefect deploy` + `prefect worker start`: the deployments of
deployments/prefect.yaml (names, parameters, schedules) are served by this process,
which runs their flow runs as subprocesses; no work pool is needed. Flows are taken
from the registry `flows.FLOWS`, so a new pipeline is served as soon as it is registered; one
the file has no deployment for is served unscheduled as `FLOW/manual`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import serve as prefect_serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, RRule, Schedule

from flows import FLOWS, entrypoint, load_flow
from flows.temporary_server import start_temporary_server
from mirflow.core.errors import ConfigError

PREFECT_FILE = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"
SCHEDULE_KINDS = {"cron": Cron, "interval": Interval, "rrule": RRule}


def read_deployments(prefect_file: Path = PREFECT_FILE) -> list[dict]:
    """The ``deployments`` entries of a prefect.yaml."""
    try:
        config = yaml.safe_load(Path(prefect_file).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{prefect_file}: cannot read the deployments file ({error})") from error
    entries = (config or {}).get("deployments") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
        raise ConfigError(f"{prefect_file}: `deployments` must be a list of mappings, each with a name")
    return entries


def schedule(config: dict, prefect_file: Path = PREFECT_FILE) -> Schedule:
    """A prefect.yaml schedule entry (``cron:``/``interval:``/``rrule:`` plus options)."""
    kind = next((k for k in SCHEDULE_KINDS if k in config), None)
    if kind is None:
        raise ConfigError(f"{prefect_file}: schedule {config} needs one of {', '.join(SCHEDULE_KINDS)}")
    options = {k: v for k, v in config.items() if k != kind}
    try:
        return SCHEDULE_KINDS[kind](config[kind], **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefect_file}: schedule {config}: {error}") from error


def deployments(prefect_file: Path = PREFECT_FILE) -> list[RunnerDeployment]:
    """Every registered flow's deployments as declared in ``prefect_file``."""
    entries = read_deployments(prefect_file)
    served = []
    for name in FLOWS:
        flow = load_flow(name)
        mine = [e for e in entries if e.get("entrypoint") == entrypoint(name)] or [{"name": "manual"}]
        served += [
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters=entry.get("parameters"),
                schedules=[schedule(s, prefect_file) for s in entry.get("schedules") or []],
            )
            for entry in mine
        ]
    return served


def serve(prefect_file: Path = PREFECT_FILE, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted (Ctrl-C)."""
    served = deployments(prefect_file)  # a bad file is reported before the server starts
    start_temporary_server()
    prefect_serve(*served, limit=limit)
