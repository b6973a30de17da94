"""Prefect's temporary server, which `mirflow run` and `mirflow serve` use when no
PREFECT_API_URL is set.

Prefect would start it itself on first use; mirflow starts it first, from the main thread,
with three changes:

- defaults for two of Prefect's own settings, applied only where the user set neither (in
  the environment, a profile or prefect.toml): 120 s to start instead of 20 (a server
  started on a busy laptop took 34 s), and no telemetry heartbeat from the temporary
  server (its first write raced the server's start-up on SQLite and logged an ERROR
  with a traceback: "database is locked");
- the server runs in a session of its own, so a Ctrl-C in the terminal reaches only
  mirflow, which shuts down through the still running server (``mirflow serve`` pauses
  its schedules there) and then stops it as Prefect does, at exit;
- the server exits when mirflow dies without stopping it (``kill -9``, the OOM killer):
  a thread in it watches its parent process (flows/guarded_server.py).
"""

from __future__ import annotations

import os

from prefect.context import refresh_global_settings_context
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
)

from mirflow.core.errors import MirflowError

# (Prefect setting, mirflow's default); Prefect's settings compare by value, so no dict
SERVER_DEFAULTS = [(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "120"), (PREFECT_SERVER_ANALYTICS_ENABLED, "false")]


def user_set(setting) -> bool:
    """Whether the environment, a profile or a settings file gives ``setting`` a value."""
    *path, field = setting.accessor.split(".")
    section = get_current_settings()
    for part in path:
        section = getattr(section, part)
    return field in section.model_fields_set


def apply_server_defaults() -> None:
    """Set mirflow's defaults for the temporary server where the user set nothing."""
    missing = {setting.name: value for setting, value in SERVER_DEFAULTS if not user_set(setting)}
    if missing:
        os.environ.update(missing)
        refresh_global_settings_context()  # Prefect read its settings when imported


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, unless a server is configured (PREFECT_API_URL)
    or the user turned the temporary one off."""
    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return
    apply_server_defaults()  # the temporary server's settings only: against a running server, nothing to refresh
    settings = get_current_settings()
    from flows.guarded_server import GuardedServer  # Prefect's server code: imported only when needed (~5 s)

    timeout = settings.server.ephemeral.startup_timeout_seconds
    try:
        GuardedServer().start()
    except RuntimeError as error:
        raise MirflowError(
            f"Prefect's temporary server did not start ({error}). It was given {timeout} s; "
            f"on a busy machine give it longer (export {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.name}=300), "
            "or run `prefect server start` in another terminal and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        ) from error
