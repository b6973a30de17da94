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
  a thread in it watches its parent process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import prefect
from prefect.context import refresh_global_settings_context
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
)

from mirflow.errors import MirflowError

# (Prefect setting, mirflow's default); Prefect's settings compare by value, so no dict
SERVER_DEFAULTS = [(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "120"), (PREFECT_SERVER_ANALYTICS_ENABLED, "false")]

# Runs uvicorn as `python -m uvicorn ARGS` does, after starting a daemon thread that sends
# the server SIGTERM (uvicorn's graceful stop) once its parent is gone: a child whose
# parent dies is adopted by another process, so its parent's pid changes. Portable, and,
# unlike Linux's PR_SET_PDEATHSIG, not tied to the thread that started the child.
WATCH_PARENT = """
import os, signal, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
from uvicorn.main import main
sys.argv[0] = "uvicorn"
main()
"""


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


class GuardedServer(SubprocessASGIServer):
    """Prefect's temporary server, started in a session of its own under a parent watch.

    Constructed with no port, it is the instance Prefect's own ``SubprocessASGIServer()``
    returns from then on (instances are shared per port), so Prefect's clients use it and
    Prefect stops it at exit. The command is Prefect 3.8's ``_run_uvicorn_command``, whose
    Popen takes neither a session of its own nor code to run in the child, hence the copy."""

    def _run_uvicorn_command(self) -> subprocess.Popen:
        uvicorn_args = ["--app-dir", str(prefect.__module_path__.parent), "--factory",
                        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                        "--log-level", "error", "--lifespan", "on"]
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        return subprocess.Popen(
            [sys.executable, "-c", WATCH_PARENT, str(os.getpid()), *uvicorn_args],
            env={**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)},
            start_new_session=True,
        )


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, unless a server is configured (PREFECT_API_URL)
    or the user turned the temporary one off."""
    apply_server_defaults()
    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return
    timeout = settings.server.ephemeral.startup_timeout_seconds
    try:
        GuardedServer().start()
    except RuntimeError as error:
        raise MirflowError(
            f"Prefect's temporary server did not start ({error}). It was given {timeout} s; "
            f"on a busy machine give it longer (export {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.name}=300), "
            "or run `prefect server start` in another terminal and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        ) from error
