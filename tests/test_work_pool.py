"""``claims deploy --pool NAME``: the nightly deployment on a Prefect process work pool.

The fast tests check what ``claims deploy`` hands to Prefect and its usage errors. The slow one
starts ``prefect server start`` on 127.0.0.1 (a free port, a temporary PREFECT_HOME), creates a
process work pool, deploys with ``claims deploy`` (validation on a ``distributed.LocalCluster``),
starts ``prefect worker start --pool NAME``, triggers the deployment for one date and checks the
warehouse; it always stops the worker, the cluster and the server. A few minutes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_cli import Invoke, claims  # noqa: F401  (the fixture)
from test_flows import (
    SNAPSHOT,
    build_landing,
    initialised,
    partition_status,
    query,
    settled_task_runs,
)
from test_prefect_server import (  # noqa: F401  (prefect_server is the fixture)
    BIN,
    _env,
    _stop,
    _tail,
    _wait,
    prefect_server,
)

from config.settings import Settings

POOL = "claims-pool"


# ---------------------------------------------------------------------------------------------
# What `claims deploy` asks of Prefect
# ---------------------------------------------------------------------------------------------


def test_deploy_registers_to_the_pool_with_the_runner_in_the_job_env(
    claims: Invoke,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.types.entrypoint import EntrypointType

    import flows.deploy

    landing = initialised(build_landing(tmp_path, nights=1, failing_night=None))
    deployed: dict[str, Any] = {}
    monkeypatch.setattr(flows.deploy, "_process_pool", lambda pool: deployed.update(pool=pool))
    monkeypatch.setattr(
        flows.deploy.nightly, "deploy", lambda **kw: deployed.update(kw) or "0000-id"
    )
    staging = tmp_path / "nfs" / "staging"
    args = ["deploy", "--pool", POOL, "--cron", "30 1 * * *", *landing.cli_paths()]
    result = claims(
        *args,
        "--staging",
        staging,
        "--task-runner",
        "dask",
        "--dask-address",
        "tcp://scheduler:8786",
    )
    assert result.exit_code == 0, result.output
    assert f"prefect worker start --pool {POOL}" in result.output
    assert deployed["pool"] == deployed["work_pool_name"] == POOL
    assert deployed["name"] == "pool"  # not the served deployment's name
    assert deployed["concurrency_limit"].limit == 1
    (schedule,) = deployed["schedules"]
    assert (schedule.cron, schedule.timezone) == ("30 1 * * *", "Asia/Shanghai")
    assert deployed["parameters"] == {**landing.paths(), "staging": str(staging)}
    assert deployed["job_variables"] == {
        "env": {"CLAIMS_TASK_RUNNER": "dask", "CLAIMS_DASK_ADDRESS": "tcp://scheduler:8786"}
    }
    # A module entrypoint: the worker needs the project installed, not this machine's folder.
    assert deployed["entrypoint_type"] == EntrypointType.MODULE_PATH
    assert deployed["build"] is False and deployed["push"] is False

    # By default: local threads, the staging folder beside the warehouse (no parameter).
    deployed.clear()
    assert (
        claims("deploy", "--pool", POOL, "--name", "shard-31", *landing.cli_paths()).exit_code == 0
    )
    assert deployed["name"] == "shard-31"
    assert deployed["parameters"] == landing.paths()
    assert deployed["job_variables"] == {"env": {"CLAIMS_TASK_RUNNER": "threads"}}

    deployed.clear()
    for bad in (["--cron", "61 2 * * *"], ["--timezone", "Mars/Olympus"], ["--name", "a/b"]):
        result = claims("deploy", "--pool", POOL, *bad, *landing.cli_paths())
        assert result.exit_code == 2, result.output
    assert claims("deploy", *landing.cli_paths()).exit_code == 2  # --pool is required
    assert deployed == {}


def test_deploy_needs_a_prefect_server(claims: Invoke, tmp_path: Path) -> None:  # noqa: F811
    from prefect.settings import PREFECT_API_URL, temporary_settings

    landing = initialised(build_landing(tmp_path, nights=1, failing_night=None))
    # Whatever server this session's other tests started: none here.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = claims("deploy", "--pool", POOL, *landing.cli_paths())
    assert result.exit_code == 2 and "PREFECT_API_URL" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# A real server, pool, worker and Dask cluster
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_on_the_pool_runs_the_night_into_the_warehouse(
    tmp_path: Path,
    prefect_server: str,  # noqa: F811
) -> None:
    from distributed import Client, LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    landing = initialised(build_landing(tmp_path / "claims"))
    settings: Settings = landing.settings
    day = landing.feed_dates[-1]
    home = tmp_path / "prefect-home"
    staging = tmp_path / "shared-staging"
    env = _env(home, PREFECT_API_URL=prefect_server)

    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as dask,
    ):
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
        address = cluster.scheduler_address
        deploy = subprocess.run(
            [
                str(BIN / "claims"),
                *("deploy", "--pool", POOL, "--cron", "0 2 * * *"),
                *("--timezone", "Asia/Shanghai", *landing.cli_paths()),
                *("--staging", str(staging), "--task-runner", "dask", "--dask-address", address),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        registered = client.read_deployment_by_name("claims-nightly/pool")
        assert registered.work_pool_name == POOL
        assert registered.entrypoint == "flows.nightly.nightly"
        (schedule,) = registered.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (
            "0 2 * * *",
            "Asia/Shanghai",
        )
        assert registered.parameters == {**landing.paths(), "staging": str(staging)}
        assert registered.job_variables == {
            "env": {"CLAIMS_TASK_RUNNER": "dask", "CLAIMS_DASK_ADDRESS": address}
        }

        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as out:
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL],
                env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            triggered = client.create_flow_run_from_deployment(
                registered.id, parameters={"as_of": day.isoformat()}
            )

            def finished() -> Any:
                assert worker.poll() is None, f"the worker exited:\n{_tail(worker_log)}"
                run = client.read_flow_run(triggered.id)
                return run if run.state and run.state.is_final() else None

            run = _wait("the flow run", finished, 420, worker_log)
            # A night with a failed partition ends Failed, naming it (the rest is paid).
            assert run.state.is_failed(), f"{run.state}\n{_tail(worker_log)}"
            assert run.state.message.startswith(
                f"1 of 5 partitions failed: {landing.failing}: reject_threshold"
            ), run.state.message
            assert run.name == f"run-{day.isoformat()}-{str(run.id)[:8]}"
            assert run.work_pool_name == POOL
            settled_task_runs(
                client, run.id, {*landing.keys, f"snapshot_date={SNAPSHOT}", "commit", "report"}
            )
            # The worker's flow run validated on the Dask cluster, as its job env asked.
            executed = dask.run(lambda dask_worker: dask_worker.state.executed_count)
            assert sum(executed.values()) == len(landing.keys) + 1, executed
        finally:
            _stop(worker)

    warehouse = settings.warehouse
    states = partition_status(warehouse)
    assert landing.failing is not None and states.pop(landing.failing) == "failed"
    assert set(states.values()) == {"succeeded"}
    assert query(warehouse, "SELECT count(*) FROM claim_outcomes")[0][0] > 0
    assert query(warehouse, "SELECT sum(ledger_fen) FROM member_accounts")[0][0] > 0
    ((batch_id,),) = query(warehouse, "SELECT batch_id FROM runs")
    assert (settings.outbox / "payments" / f"batch_id={batch_id}" / "_manifest.json").exists()
    assert staging.is_dir() and list(staging.iterdir()) == []
    assert not (warehouse.parent / "warehouse.staging").exists()
