"""A night opens the warehouse file twice, a backfill once (``storage.warehouse_session``).

A night's pairing check and plan share one connection, its commit and the batch's issue
another; between them, while the partitions are validated, the file is closed so that
``claims status`` can read it (``tests/test_concurrency.py`` holds that moment). What a held
connection must not change is proved here on real runs: the connections counted at the one
place that makes them (``storage.warehouse._connect``, the real one, counted); a failed
partition still a Failed task run and the night a Failed flow run; an error after the commit
leaves the commit durable, the lock and the file released; a kill after the commit, before the
session's checkpoint, leaves the night in the write-ahead log, and the next run pays it once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_flows import (
    build_landing,
    partition_status,
    query,
    run_flow,
    settled_task_runs,
)

import storage.warehouse as warehouse
from config.settings import Settings
from pipeline import backfill_local, run_local
from pipeline.sequence import LocalSteps, Request, run_steps
from storage.lock import is_locked

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int]]:
    """Every connection the warehouse module opens, as (read_only, thread id)."""
    made: list[tuple[bool, int]] = []
    real: Callable[..., duckdb.DuckDBPyConnection] = warehouse._connect

    def counted(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        made.append((read_only, threading.get_ident()))
        return real(path, read_only=read_only)

    monkeypatch.setattr(warehouse, "_connect", counted)
    return made


@pytest.fixture
def client(prefect_harness: None) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def holds_file(path: Path) -> bool:
    """Whether this process has ``path`` open (DuckDB holds its file while connected)."""
    target = str(path.resolve())
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def assert_released(settings: Settings) -> None:
    """Nothing of the run is held: no session, no open file, no run lock."""
    assert not warehouse._sessions
    assert not holds_file(settings.warehouse)
    assert not is_locked(settings.warehouse)


def batch_files(outbox: Path) -> list[str]:
    """The batch folders written to the outbox (``batch_id=…``)."""
    return sorted(p.name for p in (outbox / "payments").glob("batch_id=*"))


def test_a_night_opens_the_warehouse_to_plan_and_to_commit(
    tmp_path: Path, connections: list[tuple[bool, int]]
) -> None:
    landing = build_landing(tmp_path, failing_night=None)
    result = run_local(landing.settings, as_of=landing.feed_dates[-1])
    assert result.batch_id and result.entries > 0
    # Two writers, one per phase (pairing + plan; commit + issue), none read-only.
    assert [ro for ro, _ in connections] == [False, False]
    assert_released(landing.settings)
    assert query(landing.settings.warehouse, "SELECT count(*) FROM payment_batches "
                 "WHERE issued_at IS NULL") == [(0,)]  # fmt: skip
    assert set(partition_status(landing.settings.warehouse).values()) == {"succeeded"}


def test_a_backfill_keeps_one_connection(
    tmp_path: Path, connections: list[tuple[bool, int]]
) -> None:
    landing = build_landing(tmp_path, nights=3, failing_night=None)
    first, last = landing.feed_dates[0], landing.feed_dates[-1]
    results = backfill_local(landing.settings, first, last, chunk_days=1)
    assert len(results) == 3 and all(r.batch_id for r in results)
    assert len(connections) == 1
    assert_released(landing.settings)


@pytest.mark.e2e
def test_the_nightly_flow_opens_it_twice_and_prefect_still_shows_the_truth(
    tmp_path: Path, client: Any, connections: list[tuple[bool, int]]
) -> None:
    """The plan, commit and issue task runs run in the flow's thread, on its two sessions;
    the failed partition is a Failed task run, the night a Failed flow run."""
    landing = build_landing(tmp_path)
    result, state = run_flow(
        as_of=landing.feed_dates[-1].isoformat(), command="run", **landing.paths()
    )
    assert landing.failing is not None
    assert result.partitions["failed"] == [landing.failing]
    assert result.batch_id and result.entries > 0
    assert [ro for ro, _ in connections] == [False, False]
    assert len({thread for _, thread in connections}) == 1

    run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_failed()
    tasks = settled_task_runs(client, run.id, {landing.failing, "plan", "commit", "issue-batch"})
    assert tasks[landing.failing].state.is_failed()
    assert all(tasks[name].state.is_completed() for name in ("plan", "commit", "issue-batch"))
    assert_released(landing.settings)
    assert query(landing.settings.warehouse, "SELECT count(*) FROM payment_batches "
                 "WHERE issued_at IS NULL") == [(0,)]  # fmt: skip


class IssueFails(LocalSteps):
    """A night whose batch cannot be issued: an error after the commit, in its session."""

    def issue(self, settings: Settings) -> list[str]:
        raise RuntimeError("the outbox is gone")


def test_an_error_after_the_commit_leaves_it_committed_and_releases_everything(
    tmp_path: Path,
) -> None:
    landing = build_landing(tmp_path, failing_night=None)
    settings, day = landing.settings, landing.feed_dates[-1]
    with pytest.raises(RuntimeError, match="the outbox is gone"):
        run_steps(settings, IssueFails(), Request("run", day))
    assert_released(settings)
    # The commit stands (checkpointed by the close), its batch not yet issued.
    unissued = query(settings.warehouse, "SELECT batch_id FROM payment_batches "
                     "WHERE issued_at IS NULL")  # fmt: skip
    assert len(unissued) == 1
    assert batch_files(settings.outbox) == []
    # The next run issues it first, once, and has nothing else to pay.
    again = run_local(settings, as_of=day)
    assert again.batch_id is None or again.batch_fen == 0
    assert [n for n in batch_files(settings.outbox) if unissued[0][0] in n]
    assert query(settings.warehouse, "SELECT count(*) FROM payment_batches "
                 "WHERE issued_at IS NULL") == [(0,)]  # fmt: skip
    assert_released(settings)


def _night_in_a_process(
    settings: Settings, day: date, **env: str
) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from datetime import date; from pathlib import Path\n"
        "from config.settings import Settings; from pipeline import run_local\n"
        "s = Settings.build(*(Path(a) for a in sys.argv[1:4]))\n"
        "run_local(s, as_of=date.fromisoformat(sys.argv[4]))\n"
    )
    paths = [str(settings.landing), str(settings.warehouse), str(settings.outbox)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    return subprocess.run(
        [sys.executable, "-c", code, *paths, day.isoformat()],
        cwd=PROJECT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_night_killed_after_its_commit_is_in_the_log_and_paid_once(tmp_path: Path) -> None:
    """Killed (``kill -9``) after the commit, before the session's checkpoint and the batch
    file: the night's transaction is only in the write-ahead log; the OS released the lock;
    the next run finds it committed, writes its batch, and ends as a run never killed."""
    killed = build_landing(tmp_path / "killed", failing_night=None)
    alone = build_landing(tmp_path / "alone", failing_night=None)
    day = killed.feed_dates[-1]
    settings = killed.settings

    died = _night_in_a_process(settings, day, CLAIMS_FAULT="after_commit")
    assert died.returncode == 137, died.stderr[-2000:]
    assert settings.warehouse.with_name(settings.warehouse.name + ".wal").exists()
    assert not is_locked(settings.warehouse)
    assert batch_files(settings.outbox) == []
    assert query(settings.warehouse, "SELECT count(*) FROM payment_batches "
                 "WHERE issued_at IS NULL") == [(1,)]  # fmt: skip

    assert _night_in_a_process(settings, day).returncode == 0
    assert _night_in_a_process(alone.settings, day).returncode == 0
    money = (
        "SELECT national_id, ledger_fen, paid_out_fen, recovery_due_fen FROM member_accounts "
        "ORDER BY ALL"
    )
    assert query(settings.warehouse, money) == query(alone.settings.warehouse, money)
    assert len(batch_files(settings.outbox)) == len(batch_files(alone.settings.outbox))
    assert set(partition_status(settings.warehouse).values()) == {"succeeded"}
