"""Scale-out without surprises: a Dask scheduler and two workers, as the README starts them (bound
to 127.0.0.1, no dashboard), run a night; a worker is killed mid-run. Workers need no Prefect
API: none of them starts a Prefect server, and once the cluster is stopped no process of it is
left. Every process the cluster starts is found by a marker in its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from test_flows import build_landing, initialised, partition_status
from test_prefect_server import BIN, PROJECT, _env, _free_port, _stop, _tail

pytestmark = pytest.mark.slow


def marked(marker: str) -> dict[int, str]:
    """Processes whose environment carries ``marker``: pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker.encode() in environ:
            found[int(entry.name)] = cmdline
    return found


def test_workers_start_no_prefect_server_and_leave_nothing_behind(tmp_path: Path) -> None:
    landing = initialised(build_landing(tmp_path / "claims", nights=2, failing_night=None))
    marker = f"CLAIMS_CLUSTER_TEST={uuid.uuid4().hex}"
    name, value = marker.split("=")
    env = _env(tmp_path / "prefect-home", **{name: value})
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "cluster.log"
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with logs.open("ab") as out:
            process = subprocess.Popen(
                [str(BIN / "dask"), *args],
                env=env,
                cwd=PROJECT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        workers = [
            start("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard")
            for _ in range(2)
        ]
        time.sleep(5)
        assert all(p.poll() is None for p in started), _tail(logs)

        run_env = {k: v for k, v in env.items() if k != name}  # the writer is not the cluster's
        staging = landing.settings.warehouse.parent / "warehouse.staging"
        with (tmp_path / "run.log").open("wb") as out:
            run = subprocess.Popen(
                [
                    str(BIN / "claims"),
                    "run",
                    "--date",
                    str(landing.feed_dates[-1]),
                    *landing.cli_paths(),
                    "--task-runner",
                    "dask",
                    "--dask-address",
                    address,
                ],
                env=run_env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # A worker dies in the middle of the night (once validation has started).
        deadline = time.monotonic() + 180
        while run.poll() is None and not any(staging.glob("*/feed_date-*")):
            assert time.monotonic() < deadline, _tail(tmp_path / "run.log")
            time.sleep(0.05)
        os.killpg(workers[0].pid, signal.SIGKILL)
        during = marked(marker)
        assert run.wait(timeout=300) == 0, _tail(tmp_path / "run.log")
        during |= marked(marker)
    finally:
        for process in started:
            _stop(process, signal.SIGTERM)

    assert set(partition_status(landing.settings.warehouse).values()) == {"succeeded"}
    # The cluster's processes: the scheduler and the workers (with their nannies), never a
    # Prefect server of their own.
    assert during, "the cluster's processes were not found"
    assert not [c for c in during.values() if "uvicorn" in c or "prefect" in c], during
    time.sleep(2)
    assert marked(marker) == {}, "processes of the cluster left running"
