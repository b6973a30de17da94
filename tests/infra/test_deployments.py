"""Deployments the way Prefect users run them: `prefect server start`, `prefect deploy
--all --prefect-file deployments/prefect.yaml` from the repo root, a process worker, a
run triggered with parameters from the CLI; the cron schedule's upcoming runs; bad
parameters refused naming the field.
"""

from __future__ import annotations

import pytest
from prefect_stack import (
    PREFECT_FILE,
    REPO,
    Processes,
    assert_run_outputs,
    assert_upcoming_runs,
    deploy_and_start_worker,
    deployment_names,
    read_deployment,
    run_deployment,
    run_logs,
    tiny_params,
    wait_for_final_state,
)

from flows import FLOWS, entrypoint, load_flow, params_model, serve, training_flows


def test_every_flow_has_a_scheduled_deployment_with_valid_parameters():
    entries = serve.read_deployments(PREFECT_FILE)
    for name in training_flows():
        mine = [e for e in entries if e.get("entrypoint") == entrypoint(name)]
        assert mine, f"deployments/prefect.yaml has no deployment for flow {name!r}"
        for entry in mine:
            assert (REPO / entry["entrypoint"].split(":")[0]).is_file()
            assert entry["schedules"] and entry["work_pool"]["name"]
            model = params_model(name)
            assert model.model_validate(entry["parameters"]["params"]).data_dir is None  # runs on a fresh worker


def test_serve_builds_each_flows_deployments_with_their_schedules():
    served = {(d.flow_name, d.name): d for d in serve.deployments()}
    for name in training_flows():
        for full_name in deployment_names(name):
            deployment = served[tuple(full_name.split("/"))]
            assert deployment.schedules and deployment.schedules[0].schedule.cron
            assert "params" in deployment.parameters and deployment.enforce_parameter_schema


def test_batch_scoring_has_a_manual_unscheduled_deployment():
    served = {(d.flow_name, d.name): d for d in serve.deployments()}
    assert set(FLOWS) - set(training_flows()) == {"kkbox_score"}
    assert not served[("kkbox_score", "manual")].schedules


def test_serve_serves_a_flow_without_an_entry_unscheduled(tmp_path):
    (tmp_path / "prefect.yaml").write_text("deployments: []\n")
    served = serve.deployments(tmp_path / "prefect.yaml")
    assert {(d.flow_name, d.name) for d in served} == {(load_flow(name).name, "manual") for name in FLOWS}
    assert not any(d.schedules for d in served)


def test_a_schedule_without_a_kind_is_refused_naming_the_file(tmp_path):
    from mirflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match="prefect.yaml.*needs one of cron"):
        serve.schedule({"timezone": "UTC"}, tmp_path / "prefect.yaml")


BAD_FRACTIONS = "gtzan with fractions that do not sum to 1"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Deployed, with every run of this module triggered at once from the CLI, so the
    worker overlaps their start-up; ``deployed.triggered`` maps each to its flow run id."""
    processes = Processes(tmp_path_factory.mktemp("deployed"))
    try:
        deployed = deploy_and_start_worker(processes, processes.folder / "prefect_home")
        deployed.triggered = {
            name: run_deployment(deployed.server, deployment_names(name)[0], tiny_params(name, deployed.folder / f"store-{name}"))
            for name in training_flows()
        }
        bad = {"store": str(deployed.folder / "unused_store"), "fractions": [0.5, 0.2, 0.2]}
        deployed.triggered[BAD_FRACTIONS] = run_deployment(deployed.server, deployment_names("gtzan")[0], bad)
        yield deployed
    finally:
        processes.stop_all()


@pytest.mark.heavy
def test_cron_schedules_produce_upcoming_runs(deployed):
    assert_upcoming_runs(deployed)


@pytest.mark.heavy
def test_a_bad_parameter_is_refused_naming_the_field(deployed):
    server = deployed.server
    deployment = read_deployment(server, deployment_names("gtzan")[0])
    response = server.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"params": {"n_workers": 0}}})
    assert response.status_code == 409 and "params.n_workers" in response.json()["detail"]
    cli = server.cli("deployment", "run", deployment_names("gtzan")[0], "--param", 'params={"lr": "fast"}', check=False)
    assert cli.returncode != 0 and "params.lr" in cli.stdout + cli.stderr


@pytest.mark.heavy
def test_a_parameter_the_schema_cannot_check_fails_the_run_naming_the_field(deployed):
    run = wait_for_final_state(deployed.server, deployed.triggered[BAD_FRACTIONS])
    assert run["state"]["type"] == "FAILED" and "fractions" in run["state"]["message"], run["state"]
    assert not (deployed.folder / "unused_store").exists()


@pytest.mark.heavy
@pytest.mark.parametrize("name", training_flows())
def test_a_cli_triggered_run_completes_with_artifacts_and_report(deployed, name):
    server, store, run_id = deployed.server, deployed.folder / f"store-{name}", deployed.triggered[name]
    run = wait_for_final_state(server, run_id)
    assert run["state"]["type"] == "COMPLETED", (run["state"], server.processes.log("worker"))
    assert run["parameters"]["params"]["store"] == str(store)
    assert_run_outputs(server, run_id, name, store)
    assert "demo" in run_logs(server, run_id).lower()  # no data_dir: the flow says it generated its demo set
