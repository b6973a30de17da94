"""Prefect's temporary server in a session of its own, exiting when its parent dies (see
flows/temporary_server.py for why)."""

from __future__ import annotations

import os
import subprocess
import sys

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings

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
