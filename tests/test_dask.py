"""Validation on a Dask cluster (``flows.cluster.DaskValidation``), chosen by configuration.

Partitions of a night are independent until the warehouse write: workers read, validate and
stage them under the staging folder, and the one writer (the ``commit`` task, in the flow's
process) loads what they staged. The end-to-end test runs the same landing folder once on local
threads and once on a real ``distributed.LocalCluster`` of two worker processes, and expects the
same warehouse; it uses the session's Prefect test server (``prefect_harness``).
"""

from __future__ import annotations

import importlib
import pickle
import shutil
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from test_cli import Invoke, claims  # noqa: F401  (the fixture)
from test_flows import build_landing, initialised, population, query

from config.settings import ConfigError, Settings
from landing.partitions import Partition

# ---------------------------------------------------------------------------------------------
# Configuration: which task runner, where the staging folder is
# ---------------------------------------------------------------------------------------------


def test_threads_by_default_dask_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.cluster import DaskValidation
    from flows.nightly import nightly, nightly_for

    for name in ("CLAIMS_TASK_RUNNER", "CLAIMS_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    wh = tmp_path / "warehouse.duckdb"

    default = Settings.build(warehouse=wh)
    assert (default.task_runner, default.dask_address) == ("threads", None)
    assert nightly_for(default) is nightly
    assert isinstance(nightly.task_runner, ThreadPoolTaskRunner)
    assert nightly.task_runner._max_workers == 2

    remote = nightly_for(
        Settings.build(warehouse=wh, task_runner="dask", dask_address="tcp://scheduler:8786")
    )
    assert remote.name == nightly.name == "claims-nightly"
    assert isinstance(remote.task_runner, DaskValidation)
    assert remote.task_runner.address == "tcp://scheduler:8786"

    # Dask without a scheduler: a temporary cluster here, one single-threaded process per core.
    local = nightly_for(Settings.build(warehouse=wh, task_runner="dask")).task_runner
    assert isinstance(local, DaskValidation) and local.address is None
    assert local.cluster_kwargs["processes"] is True
    assert local.cluster_kwargs["threads_per_worker"] == 1
    assert local.cluster_kwargs["dashboard_address"] is None  # no dashboard on every interface
    assert local.cluster_kwargs["host"] == "127.0.0.1"

    # The variables: an address alone means dask; an explicit runner wins.
    monkeypatch.setenv("CLAIMS_DASK_ADDRESS", "tls://scheduler.example:8786")
    implied = Settings.build(warehouse=wh)
    assert (implied.task_runner, implied.dask_address) == ("dask", "tls://scheduler.example:8786")
    monkeypatch.setenv("CLAIMS_TASK_RUNNER", "threads")
    assert Settings.build(warehouse=wh).task_runner == "threads"
    assert Settings.build(warehouse=wh).dask_address is None

    for bad in ({"task_runner": "ray"}, {"task_runner": "dask", "dask_address": "scheduler:8786"}):
        with pytest.raises(ConfigError):
            Settings.build(warehouse=wh, **bad)


def test_staging_folder_beside_the_warehouse_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAIMS_STAGING", raising=False)
    wh = tmp_path / "wh" / "claims.duckdb"
    assert Settings.build(warehouse=wh).staging_dir == tmp_path / "wh" / "claims.staging"
    assert Settings.build(warehouse=wh, staging=tmp_path / "nfs").staging_dir == tmp_path / "nfs"
    monkeypatch.setenv("CLAIMS_STAGING", str(tmp_path / "shared"))
    assert Settings.build(warehouse=wh).staging_dir == tmp_path / "shared"
    monkeypatch.chdir(tmp_path)
    assert Settings.build(warehouse=wh, staging=Path("rel")).staging_dir == tmp_path / "rel"


BAD_RUNNERS = {
    "unknown runner": (["--task-runner", "spark"], {}),
    "address without scheme": (["--task-runner", "dask", "--dask-address", "scheduler:8786"], {}),
    "unknown runner in the environment": ([], {"CLAIMS_TASK_RUNNER": "ray"}),
}


@pytest.mark.parametrize("args, env", BAD_RUNNERS.values(), ids=BAD_RUNNERS.keys())
def test_bad_runner_configuration_exits_2_having_done_nothing(
    claims: Invoke,  # noqa: F811
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
) -> None:
    wh = tmp_path / "warehouse.duckdb"
    paths = ["--landing", tmp_path / "landing", "--warehouse", wh, "--outbox", tmp_path / "out"]
    result = claims("run", *args, *paths, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not wh.exists()


# ---------------------------------------------------------------------------------------------
# A night on a real cluster of two worker processes
# ---------------------------------------------------------------------------------------------


def views(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The contract's views (partition_runs without its timestamp), rows sorted."""
    return {
        name: query(warehouse, sql)
        for name, sql in {
            "claim_outcomes": "SELECT * FROM claim_outcomes ORDER BY ALL",
            "claim_plan_payouts": "SELECT * FROM claim_plan_payouts ORDER BY ALL",
            "member_accounts": "SELECT * FROM member_accounts ORDER BY ALL",
            "partition_runs": "SELECT * EXCLUDE (updated_at) FROM partition_runs ORDER BY ALL",
            "quarantine_rows": "SELECT * FROM quarantine_rows ORDER BY ALL",
        }.items()
    }


@pytest.mark.e2e
def test_a_night_on_a_dask_cluster_equals_the_night_on_local_threads(
    claims: Invoke,  # noqa: F811
    tmp_path: Path,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import Client, LocalCluster

    from flows.cluster import DaskValidation

    threads = initialised(
        build_landing(tmp_path / "threads")
    )  # 2 nights × 2 sources, one partition failing
    day = threads.feed_dates[-1]
    root = tmp_path / "dask"
    shutil.copytree(threads.settings.landing, root / "landing")
    shared = tmp_path / "shared-staging"  # not beside the warehouse, as on a cluster
    on_dask = [
        *("--landing", root / "landing", "--warehouse", root / "warehouse.duckdb"),
        *("--outbox", root / "outbox", "--staging", shared),
    ]

    # What the flow hands to the cluster: a plain function (no Prefect task) and its inputs.
    sent: list[tuple[str, dict[str, Any]]] = []
    call = DaskValidation.call

    def recording_call(self: Any, fn: Any, ref: Any, **kw: Any) -> Any:
        sent.append((fn.__name__, {"ref": ref, **kw}))
        return call(self, fn, ref, **kw)

    monkeypatch.setattr(DaskValidation, "call", recording_call)

    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        # A long-lived cluster has imported the project already: warm the workers up while
        # the local-threads run goes on (a cold worker imports Prefect, polars and pandera).
        warm = [
            client.submit(importlib.import_module, "pipeline", workers=[w], pure=False)
            for w in cluster.scheduler_info["workers"]
        ]

        local = claims("run", "--date", day, *threads.cli_paths())
        assert local.exit_code == 1, local.output  # the failing partition; the rest is paid

        client.gather(warm)
        address = cluster.scheduler_address
        assert claims("init", *on_dask[2:6]).exit_code == 0
        remote = claims(
            "run", "--date", day, *on_dask, "--task-runner", "dask", "--dask-address", address
        )
        assert remote.exit_code == 1, remote.output
        # Every validation ran in a worker process (besides the two warm-ups), and no worker
        # imported Prefect: it needs no Prefect API, so it starts no server of its own.
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        prefect_on_workers = client.run(lambda: "prefect" in __import__("sys").modules)
    assert sum(executed.values()) == len(warm) + len(threads.keys) + 1, executed
    assert not any(prefect_on_workers.values()), prefect_on_workers

    assert views(root / "warehouse.duckdb") == views(threads.settings.warehouse)

    # One task run per partition, each sent a Partition and paths: small, picklable, and
    # without personal data.
    names = sorted(name for name, _ in sent)
    assert names == sorted(["validate_partition"] * len(threads.keys) + ["validate_snapshot"])
    ids = population().enrollments.get_column("national_id").unique().to_list()
    for _, parameters in sent:
        assert isinstance(parameters["ref"], Partition)
        assert all(isinstance(v, str | float) for k, v in parameters.items() if k != "ref")
        blob = cloudpickle.dumps(parameters)
        assert len(blob) < 1024, f"{len(blob)} bytes sent for {parameters['ref'].key}"
        assert pickle.loads(blob) == parameters
        text = blob.decode("latin-1")
        assert not any(i in text for i in ids)
        assert parameters["work_dir"].startswith(str(shared))

    # The staging folder asked for, emptied after the commit; nothing beside the warehouse.
    assert shared.is_dir() and list(shared.iterdir()) == []
    assert not (root / "warehouse.staging").exists()
