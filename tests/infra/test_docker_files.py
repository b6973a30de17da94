"""docker/Dockerfile and docker/compose.yaml, checked without a Docker engine: the compose
file is consistent (services, volumes, addresses) and runs real CLI commands; the image
installs from the same pinned files as the README, torch first."""

from __future__ import annotations

import functools
import importlib.metadata
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "docker" / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def readme_install() -> tuple[str, str]:
    """The torch pin and the constraints file of the README's install commands."""
    readme = (REPO / "README.md").read_text()
    torch = re.search(r"pip install torch==([\w.]+)", readme).group(1)
    constraints = re.search(r"pip install -c (\S+) -e ", readme).group(1)
    return torch, constraints


def commands(service: dict) -> list[list[str]]:
    """A service's command as argv lists (`sh -c 'a && b'` gives two)."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def _prefect_help(words: list[str]) -> str:
    """What `prefect WORDS --help` prints, from the app its console script runs, in this process
    (a `prefect` subprocess costs 3-4 CPU-s of imports): cyclopts finds the deepest command."""
    from prefect.cli._app import _app
    from rich.console import Console

    text = io.StringIO()
    _app.help_print(words, console=Console(file=text, width=250))
    return text.getvalue()


def _dask_help(words: list[str]) -> str:
    """What `dask WORDS --help` prints: `dask` runs the click commands of the `dask_cli` entry
    points (`scheduler`, `worker`), or its own group for the top level."""
    import click
    from dask.cli import cli

    commands = {entry.name: entry for entry in importlib.metadata.entry_points(group="dask_cli")}
    command = commands[words[0]].load() if words and words[0] in commands else cli
    return command.get_help(click.Context(command, info_name=" ".join(["dask", *words[:1]]), terminal_width=250))


HELP = {"prefect": _prefect_help, "dask": _dask_help}


@functools.cache
def cli_help(argv: tuple[str, ...]) -> str:
    """The help of the deepest subcommand of a `prefect`/`dask` argv, read in this
    process from the objects the installed console script runs."""
    assert (BIN / argv[0]).is_file(), f"{argv[0]} is not installed in {BIN}"
    return HELP[argv[0]]([w for w in argv[1:] if not w.startswith("-")])


def test_compose_references_only_what_it_defines():
    declared_volumes = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for target in service.get("depends_on", {}):
            assert target in SERVICES, f"{name} depends on unknown service {target}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
        image = service["image"]
        if "build" in service:
            assert (REPO / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            assert image.startswith("mirflow:")
        else:
            assert image.split(":")[0] == "postgres", f"{name} uses an image nothing here builds: {image}"


def test_addresses_name_services_and_their_ports():
    server_port = commands(SERVICES["prefect-server"])[0][-1]
    scheduler_argv = commands(SERVICES["dask-scheduler"])[0]
    scheduler_port = scheduler_argv[scheduler_argv.index("--port") + 1]
    for name, service in SERVICES.items():
        api_url = service.get("environment", {}).get("PREFECT_API_URL")
        if api_url:
            assert api_url == f"http://prefect-server:{server_port}/api", name
    assert commands(SERVICES["dask-worker"])[0][2] == f"tcp://dask-scheduler:{scheduler_port}"
    database_url = SERVICES["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    postgres = SERVICES["postgres"]["environment"]
    assert database_url == (f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
                            f"@postgres:5432/{postgres['POSTGRES_DB']}")


def test_flows_run_on_the_compose_dask_cluster_and_share_one_artifact_volume():
    deploy = commands(SERVICES["deploy"])
    sed = next(argv for argv in deploy if argv[0] == "sed")
    _, old, new, _ = sed[1].split("|")
    text = (REPO / "deployments" / "prefect.yaml").read_text()
    assert text.count(old) == 1
    deployments = yaml.safe_load(text.replace(old, new))["deployments"]
    # Batch scoring (kkbox_score/manual) takes its run and files in the UI and uses no Dask.
    assert all("schedules" not in d for d in deployments if "params" not in d["parameters"])
    deployments = [d for d in deployments if "params" in d["parameters"]]
    scheduler = commands(SERVICES["dask-worker"])[0][2]
    assert {d["parameters"]["params"]["dask_address"] for d in deployments} == {scheduler}
    workdir = next(args for op, args in dockerfile_instructions() if op == "WORKDIR")
    stores = {d["parameters"]["params"]["store"] for d in deployments}
    assert stores == {"./mirflow_store"}
    store_mount = f"artifacts:{workdir}/mirflow_store"
    assert store_mount in SERVICES["worker"]["volumes"] and store_mount in SERVICES["dask-worker"]["volumes"]
    assert "data:/data" in SERVICES["dask-worker"]["volumes"]  # Dask workers read the audio


@pytest.mark.parametrize("service", [s for s in SERVICES if commands(SERVICES[s])])
def test_service_commands_are_real_cli_commands_and_options(service):
    for argv in commands(SERVICES[service]):
        if argv[0] == "sed":
            continue
        assert argv[0] in HELP, argv
        help_text = cli_help(tuple(argv))
        for option in (w for w in argv if w.startswith("--")):
            assert option in help_text or option in cli_help(tuple(argv[:1])), f"{option} is not an option of {argv}"


def test_dockerfile_installs_torch_first_then_the_project_from_the_readmes_pinned_files():
    torch, constraints = readme_install()
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG")
    assert args["TORCH_VERSION"] == torch and args["TORCH_VARIANT"] == "cpu"
    assert f"torch=={torch}" in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    runs = [a for op, a in steps if op == "RUN"]
    torch_step = next(i for i, a in enumerate(runs) if "torch==${TORCH_VERSION}" in a)
    assert "cpu)" in runs[torch_step] and "cuda)" in runs[torch_step] and "download.pytorch.org/whl/cpu" in runs[torch_step]
    project_step = next(i for i, a in enumerate(runs) if f"pip install -c {constraints} -e ." in a)
    assert torch_step < project_step
    warm_step = next(i for i, a in enumerate(runs) if "mirflow.core.numba_cache" in a)
    assert project_step < warm_step
    warm_up = shlex.split(runs[warm_step])
    assert warm_up[0] == "python"
    subprocess.run([sys.executable, *warm_up[1:]], check=True, timeout=300)  # the numba warm-up really runs
