"""End to end with a real Prefect server: `claims serve` registers the nightly deployment, a run
is triggered through the API, served, and lands in the warehouse (operations.md, *Flows*).

Starts ``prefect server start`` on 127.0.0.1 (a free port, a temporary PREFECT_HOME) and
``claims serve`` pointed at it with PREFECT_API_URL; always stops both. A few minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_flows import (
    SNAPSHOT,
    artifacts_of,
    build_landing,
    check_report,
    initialised,
    partition_status,
    query,
    settled_task_runs,
)

from outbox.summary import CommitResult

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
BIN = PROJECT / ".venv" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    """Stop a process this test started, and its children (its own session), politely first."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:  # the process is gone; its children may not be
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLAIMS_"))}
    return {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        **extra,
    }


@contextlib.contextmanager
def running_server(root: Path) -> Iterator[tuple[str, Path, Path]]:
    """A real `prefect server start` on a free port of 127.0.0.1, stopped on the way out;
    yields (its API URL, its PREFECT_HOME, its log file)."""
    home = root / "prefect-home"
    port = _free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ui",
            ],
            env=_env(home),
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"the server exited:\n{_tail(log)}"
            assert time.monotonic() < deadline, f"the server never answered:\n{_tail(log)}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        yield url, home, log
    finally:
        _stop(server, signal.SIGTERM)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A real `prefect server start` on a free port; yields its API URL."""
    with running_server(tmp_path) as (url, _home, _log):
        yield url


def _wait(what: str, check: Any, timeout: float, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{_tail(logs)}"
        time.sleep(1)


def test_served_deployment_runs_the_night_into_the_warehouse(
    tmp_path: Path, prefect_server: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    landing = initialised(build_landing(tmp_path / "claims"))
    day = landing.feed_dates[-1]
    serve_log = tmp_path / "serve.log"
    with serve_log.open("wb") as out:
        serve = subprocess.Popen(
            [str(BIN / "claims"), "serve", *landing.cli_paths()],
            env=_env(
                tmp_path / "prefect-home",
                PREFECT_API_URL=prefect_server,
                PREFECT_RUNNER_POLL_FREQUENCY="1",
            ),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with (
            temporary_settings({PREFECT_API_URL: prefect_server}),
            get_client(sync_client=True) as client,
        ):

            def deployment() -> Any:
                assert serve.poll() is None, f"claims serve exited:\n{_tail(serve_log)}"
                try:
                    return client.read_deployment_by_name("claims-nightly/serve")
                except ObjectNotFound:
                    return None

            registered = _wait("the deployment", deployment, 120, serve_log)
            (schedule,) = registered.schedules
            assert schedule.schedule.cron == "0 2 * * *"
            assert schedule.schedule.timezone == "Asia/Shanghai"
            assert registered.parameters == landing.paths()

            triggered = client.create_flow_run_from_deployment(
                registered.id, parameters={"as_of": day.isoformat()}
            )

            def finished() -> Any:
                assert serve.poll() is None, f"claims serve exited:\n{_tail(serve_log)}"
                run = client.read_flow_run(triggered.id)
                return run if run.state and run.state.is_final() else None

            run = _wait("the flow run", finished, 240, serve_log)
            # A night with a failed partition ends Failed, naming it (the rest is paid).
            assert run.state.is_failed(), f"{run.state}\n{_tail(serve_log)}"
            assert run.state.message.startswith(
                f"1 of 5 partitions failed: {landing.failing}: reject_threshold"
            ), run.state.message
            assert run.name == f"run-{day.isoformat()}-{str(run.id)[:8]}"
            settled_task_runs(
                client, run.id, {*landing.keys, f"snapshot_date={SNAPSHOT}", "commit", "report"}
            )
            by_key = {a.key: a for a in artifacts_of(client, run.id)}
            assert set(by_key) == {"claims-run-report", "claims-partitions"}
            artifact = by_key["claims-run-report"]
    finally:
        _stop(serve)

    warehouse = landing.settings.warehouse
    states = partition_status(warehouse)
    assert landing.failing is not None and states.pop(landing.failing) == "failed"
    assert set(states.values()) == {"succeeded"}
    assert query(warehouse, "SELECT count(*) FROM claim_outcomes")[0][0] > 0
    assert query(warehouse, "SELECT sum(ledger_fen) FROM member_accounts")[0][0] > 0
    ((run_id, batch_id),) = query(warehouse, "SELECT run_id, batch_id FROM runs")
    assert batch_id and batch_id in artifact.data
    assert (
        landing.settings.outbox / "payments" / f"batch_id={batch_id}" / "_manifest.json"
    ).exists()
    # The report of the run, with the figures the run recorded.
    summary = json.loads(query(warehouse, "SELECT summary FROM runs")[0][0])
    check_report(landing.settings.outbox / "reports" / f"{run_id}.html", CommitResult(**summary))
