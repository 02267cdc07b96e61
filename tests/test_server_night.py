"""The night-against-a-server benchmark runs end to end on a tiny landing folder, so that it
cannot rot: ``python -m benchmarks.server_night`` starts a real ``prefect server start`` on
127.0.0.1, runs the real ``claims run`` against it and writes its figures.

Shape and committed results only: no timing is asserted (the targets are judged in the
benchmark's output).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_flows import SNAPSHOT, build_landing, initialised

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_server_night_writes_the_split_and_the_night_is_committed(tmp_path: Path) -> None:
    landing = initialised(build_landing(tmp_path / "claims"))
    day = landing.feed_dates[-1]
    out = tmp_path / "server-night.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.server_night",
            "--warehouse",
            str(landing.settings.warehouse),
            "--landing",
            str(landing.settings.landing),
            "--outbox",
            str(landing.settings.outbox),
            "--date",
            day.isoformat(),
            "--repeats",
            "1",
            "--json",
            str(out),
            "--pycache",
            str(tmp_path / "pycache"),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["server_start_s"] > 0
    (run,) = result["runs"]
    for figure in ("wall_s", "import_s", "api_s", "data_s", "peak_rss"):
        assert run[figure] > 0, (figure, run)
    # The parts add up to the whole (they are cut from one timeline).
    parts = run["import_s"] + run["api_s"] + run["data_s"] + run["exit_s"]
    assert abs(parts - run["wall_s"]) < 0.5, run
    # The night ran against the server: one flow run, named like the command, Failed because
    # the landing's bad partition failed; a task run per step and per partition.
    assert run["flow_run_name"].startswith(f"run-{day.isoformat()}-")
    assert run["flow_run_state"] == "FAILED" and run["returncode"] == 1
    partitions = len(landing.keys) + 1  # both nights' partitions and the snapshot
    assert run["task_runs"] >= partitions + 3
    # Its log reached the server, the last line (sent at the command's exit) included, and the
    # failed partition's WARNING with it.
    assert run["warnings"] >= 1 and run["log_lines"] > run["task_runs"]
    # ... and committed: every partition has its state, the money is posted, a batch written.
    committed = run["committed"]
    assert committed["partitions"] == {"succeeded": partitions - 1, "failed": 1}, committed
    assert committed["ledger_fen"] == committed["target_fen"] > 0
    assert committed["batches"] == 1
    # The printed table: its header and one row of figures, no partition keys.
    assert "wall" in proc.stdout and "import" in proc.stdout and "task_runs" in proc.stdout
    assert f"snapshot_date={SNAPSHOT}" not in proc.stdout
