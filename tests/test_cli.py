"""The ``claims`` command (operations.md, *Commands*): every command and its exit status.

0 all well; 1 the run finished but some partition failed (the rest is committed); 2 bad usage or
configuration, nothing done; 3 another run holds the warehouse, nothing done. Commands that run
flows use the session's Prefect test server; usage errors and a busy warehouse stop before
Prefect is even imported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from rich.console import Console
from test_flows import (
    START,
    build_landing,
    holding_run_lock,
    initialised,
    key,
    partition_status,
    query,
)
from typer.testing import CliRunner

import claims.options as cli_module
from claims.cli import app
from storage.lock import is_locked

PROJECT = Path(__file__).resolve().parent.parent
CLAIMS = PROJECT / ".venv" / "bin" / "claims"

Invoke = Callable[..., Result]


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """``claims ARGS…`` in this process; wide consoles so that no table folds a value."""
    monkeypatch.setattr(cli_module, "console", Console(width=250))
    monkeypatch.setattr(cli_module, "err", Console(width=250, stderr=True))

    def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(app, [str(a) for a in args], env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def outbox_files(outbox: Path) -> list[Path]:
    return sorted(p for p in outbox.rglob("*") if p.is_file()) if outbox.exists() else []


# ---------------------------------------------------------------------------------------------
# Exit 2: bad usage or configuration, nothing done
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A landing folder nothing has run on."""
    return build_landing(tmp_path_factory.mktemp("untouched"))


USAGE_ERRORS = {
    "run: not a date": ["run", "--date", "2026-13-01"],
    "run: unknown option": ["run", "--bogus"],
    "rerun: month 13, lower-case source": ["rerun", "--partition", "feed_date=2026-13-01/source=x"],
    "rerun: a path": ["rerun", "--partition", "../etc"],
    "rerun: a path as source": ["rerun", "--partition", "feed_date=2026-03-02/source=../../etc"],
    "rerun: neither option": ["rerun"],
    "rerun: both options": ["rerun", "--partition", key(START, "SHYB"), "--failed"],
    "rerun: unknown partition": ["rerun", "--partition", "feed_date=2026-01-01/source=NOPE"],
    "backfill: from after to": ["backfill", "--from", "2026-03-04", "--to", "2026-03-02"],
    "backfill: not a date": ["backfill", "--from", "yesterday", "--to", "2026-03-02"],
    "backfill: no --from": ["backfill", "--to", "2026-03-02"],
    "backfill: chunk of 0 days": [
        "backfill",
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-03",
        "--chunk-days",
        "0",
    ],
    "backfill: chunk not a number": [
        "backfill",
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-03",
        "--chunk-days",
        "a",
    ],
    "status: not a date": ["status", "--date", "03/02/2026"],
    "quarantine: a path": ["quarantine", "--partition", "../etc"],
    "quarantine: no warehouse yet": ["quarantine", "--partition", key(START, "SHYB")],
    "explain: not a stay": ["explain", "--stay", "H310101001"],
}


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_bad_usage_exits_2_having_done_nothing(
    claims: Invoke, untouched: Any, args: list[str]
) -> None:
    result = claims(*args, *untouched.cli_paths())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not untouched.settings.warehouse.exists()
    assert outbox_files(untouched.settings.outbox) == []


def test_bad_configuration_exits_2(claims: Invoke, untouched: Any, tmp_path: Path) -> None:
    result = claims("run", *untouched.cli_paths(), env={"CLAIMS_LOCK_TIMEOUT": "soon"})
    assert result.exit_code == 2 and "CLAIMS_LOCK_TIMEOUT" in result.output
    assert not untouched.settings.warehouse.exists()

    # The demo deletes only a folder it made itself.
    (tmp_path / "notes.txt").write_text("keep me")
    assert claims("demo", "--folder", tmp_path, "--nights", "2").exit_code == 2
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert claims("demo", "--folder", tmp_path / "demo", "--nights", "1").exit_code == 2


MISSING_WAREHOUSE = {
    "run": ["run"],
    "rerun": ["rerun", "--partition", key(START, "SHYB")],
    "rerun --failed": ["rerun", "--failed"],
    "backfill": ["backfill", "--from", "2026-03-02", "--to", "2026-03-03"],
    "status": ["status"],
    "quarantine": ["quarantine", "--partition", key(START, "SHYB")],
    "explain": ["explain", "--stay", "H310101001/S1"],
    "serve": ["serve"],
}


@pytest.mark.parametrize("args", MISSING_WAREHOUSE.values(), ids=MISSING_WAREHOUSE.keys())
def test_a_missing_warehouse_is_refused_creating_nothing(
    claims: Invoke, untouched: Any, tmp_path: Path, args: list[str]
) -> None:
    """Only `claims init` makes a warehouse: a mistyped path must not start an empty ledger."""
    wrong = tmp_path / "typo" / "warehouse.duckdb"
    paths = ["--landing", untouched.settings.landing, "--warehouse", wrong]
    result = claims(*args, *paths, "--outbox", tmp_path / "outbox")
    assert result.exit_code == 2, result.output
    assert str(wrong) in result.output.replace("\n", "") and "claims init" in result.output
    assert list(tmp_path.iterdir()) == []  # no file, no folder


def test_init_creates_the_warehouse_paired_with_its_outbox(
    claims: Invoke, untouched: Any, tmp_path: Path
) -> None:
    paths = untouched.cli_paths()
    folder = tmp_path / "w"
    own = ["--landing", untouched.settings.landing, "--warehouse", folder / "w.duckdb"]
    made = claims("init", *own, "--outbox", folder / "outbox")
    assert made.exit_code == 0, made.output
    assert (folder / "w.duckdb").is_file() and (folder / "outbox" / "_warehouse.json").is_file()
    again = claims("init", *own, "--outbox", folder / "outbox")
    assert again.exit_code == 0 and "already exists" in again.output
    status = claims("status", *own, "--outbox", folder / "outbox")
    assert status.exit_code == 0 and "no partitions yet" in status.output
    # A second, new warehouse beside an outbox that belongs to the first: refused.
    other = claims(
        "init", *paths[:2], "--warehouse", tmp_path / "x.duckdb", "--outbox", folder / "outbox"
    )
    assert other.exit_code == 2 and "another warehouse" in other.output
    assert not (tmp_path / "x.duckdb").exists()


LANDINGS = {"missing": "nowhere", "without feeds": "empty"}


@pytest.mark.parametrize("name", LANDINGS.values(), ids=LANDINGS.keys())
def test_a_landing_folder_without_feeds_is_refused(
    claims: Invoke, tmp_path: Path, name: str
) -> None:
    landing = initialised(build_landing(tmp_path / "real", nights=1, failing_night=None))
    wrong = tmp_path / name
    if name == "empty":
        (wrong / "discharge").mkdir(parents=True)  # a typo: none of the feed folders
    before = outbox_files(landing.settings.outbox)
    args = ["--landing", wrong, *landing.cli_paths()[2:]]
    for command in (["run"], ["rerun", "--failed"], ["backfill", "--from", START, "--to", START]):
        result = claims(*command, *args)
        assert result.exit_code == 2, result.output
        assert "landing folder" in result.output
    assert outbox_files(landing.settings.outbox) == before
    assert partition_status(landing.settings.warehouse) == {}


def test_serve_registers_the_nightly_schedule(
    claims: Invoke, inited: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``claims serve`` hands ``0 2 * * *`` Asia/Shanghai and the paths to ``nightly.serve``."""
    import flows.deploy

    untouched = inited
    served: dict[str, Any] = {}
    monkeypatch.setattr(flows.deploy.nightly, "serve", lambda **kw: served.update(kw))
    assert claims("serve", *untouched.cli_paths()).exit_code == 0
    assert served["name"] == "serve"
    assert served["global_limit"].limit == 1  # one run at a time, the next one queued
    (schedule,) = served["schedules"]
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert served["parameters"] == untouched.paths()

    served.clear()
    assert claims("serve", "--cron", "61 2 * * *", *untouched.cli_paths()).exit_code == 2
    assert claims("serve", "--timezone", "Mars/Olympus", *untouched.cli_paths()).exit_code == 2
    assert served == {}


# ---------------------------------------------------------------------------------------------
# Exit 3: another run holds the warehouse
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inited(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A landing folder and a warehouse made by `claims init`, nothing run yet."""
    return initialised(build_landing(tmp_path_factory.mktemp("inited")))


@pytest.fixture
def held(inited: Any) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the warehouse's run lock, as a running `claims run` does."""
    with holding_run_lock(inited.settings.warehouse) as holder:
        yield holder


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["rerun", "--partition", key(START, "SHYB")],
        ["backfill", "--from", "2026-03-02", "--to", "2026-03-03"],
    ],
    ids=["run", "rerun", "backfill"],
)
def test_a_second_run_waits_then_exits_3_having_changed_nothing(
    claims: Invoke, inited: Any, held: subprocess.Popen[str], args: list[str]
) -> None:
    before = outbox_files(inited.settings.outbox)
    started = time.monotonic()
    result = claims(*args, *inited.cli_paths(), env={"CLAIMS_LOCK_TIMEOUT": "1"})
    waited = time.monotonic() - started
    assert result.exit_code == 3, result.output
    # It says at once that it waits, and for whom.
    assert f"waiting up to 1 s for another claims run (process {held.pid})" in result.output
    assert "busy" in result.output and "CLAIMS_LOCK_TIMEOUT" in result.output
    assert 1 <= waited < 10
    assert partition_status(inited.settings.warehouse) == {}
    assert outbox_files(inited.settings.outbox) == before


def test_status_shows_a_run_in_progress(
    claims: Invoke, inited: Any, held: subprocess.Popen[str]
) -> None:
    result = claims("status", *inited.cli_paths())
    assert result.exit_code == 0, result.output
    assert f"A run is in progress on warehouse.duckdb (process {held.pid})" in result.output


# ---------------------------------------------------------------------------------------------
# Exit 0 and 1: the nightly run, the morning after, backfills
# ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_morning_after_a_bad_night(
    claims: Invoke, tmp_path: Path, prefect_harness: None
) -> None:
    """run → 1 (one partition failed, the rest paid) → status 1 → quarantine → explain →
    the partition re-delivered → rerun → 0, status 0."""
    landing = initialised(build_landing(tmp_path))
    paths = landing.cli_paths()
    warehouse = landing.settings.warehouse
    failing = landing.failing
    assert failing is not None
    night2 = landing.feed_dates[1]

    result = claims("run", "--date", night2, *paths)
    assert result.exit_code == 1, result.output
    assert failing in result.output
    states = partition_status(warehouse)
    assert states.pop(failing) == "failed"
    assert set(states.values()) == {"succeeded"}
    assert query(warehouse, "SELECT count(*) FROM ledger_entries")[0][0] > 0
    (batch,) = (landing.settings.outbox / "payments").iterdir()
    assert (batch / "_manifest.json").exists()
    assert len(list((landing.settings.outbox / "reports").glob("*.html"))) == 1

    status = claims("status", *paths)
    assert status.exit_code == 1
    assert failing in status.output and "reject_threshold" in status.output
    assert claims("status", "--date", landing.feed_dates[0], *paths).exit_code == 0

    # The quarantined rows, masked on the terminal, whole in the file asked for.
    ids = {
        r[0]
        for r in query(
            warehouse,
            "SELECT raw->>'national_id' FROM quarantine_rows WHERE partition_key = ?",
            [failing],
        )
        if r[0]
    }
    long_ids = {i for i in ids if len(i) >= 15}
    assert long_ids
    shown = claims("quarantine", "--partition", failing, "--output", tmp_path / "q.csv", *paths)
    assert shown.exit_code == 0, shown.output
    assert "reject_threshold" in shown.output
    # per row: its rule and the offending field with its value (masked where personal)
    assert re.search(r"row \d+ +\w+ +\w+ = ", shown.output), shown.output
    assert not any(i in shown.output for i in long_ids)
    assert (tmp_path / "q.csv").stat().st_mode & 0o777 == 0o600
    written = (tmp_path / "q.csv").read_text(encoding="utf-8")
    assert any(i in written for i in long_ids)
    assert (
        claims("quarantine", "--partition", "feed_date=2026-01-01/source=NOPE", *paths).exit_code
        == 2
    )

    # How a paid stay's money was computed; the member masked.
    hospital, settlement, national_id = query(
        warehouse,
        "SELECT hospital_code, settlement_id, national_id FROM claim_outcomes "
        "WHERE status = 'paid' ORDER BY settlement_id LIMIT 1",
    )[0]
    explained = claims("explain", "--stay", f"{hospital}/{settlement}", *paths)
    assert explained.exit_code == 0, explained.output
    assert national_id not in explained.output
    assert f"{national_id[:3]}{'*' * (len(national_id) - 5)}{national_id[-2:]}" in explained.output
    assert claims("explain", "--stay", f"{hospital}/NOPE", *paths).exit_code == 2

    landing.repair()
    fixed = claims("rerun", "--partition", failing, *paths)
    assert fixed.exit_code == 0, fixed.output
    assert set(partition_status(warehouse).values()) == {"succeeded"}
    assert claims("status", *paths).exit_code == 0


@pytest.mark.e2e
def test_backfill_commits_once_per_date_and_resumes(
    claims: Invoke, tmp_path: Path, prefect_harness: None
) -> None:
    landing = initialised(build_landing(tmp_path, nights=3, failing_night=None, sources=("SHYB",)))
    first, last = landing.feed_dates[0], landing.feed_dates[-1]
    warehouse = landing.settings.warehouse

    once = ("--chunk-days", 1)
    result = claims("backfill", "--from", first, "--to", last, *once, *landing.cli_paths())
    assert result.exit_code == 0, result.output
    runs = query(warehouse, "SELECT command, as_of_date, batch_id FROM runs ORDER BY as_of_date")
    assert [(c, d) for c, d, _ in runs] == [("backfill", d) for d in landing.feed_dates]
    assert len({b for _, _, b in runs if b}) == 3  # each date paid in its own batch
    entries = query(warehouse, "SELECT count(*), count(DISTINCT run_id) FROM ledger_entries")[0]
    assert entries[1] == 3
    batches = sorted((landing.settings.outbox / "payments").iterdir())

    again = claims("backfill", "--from", first, "--to", last, *landing.cli_paths())
    assert again.exit_code == 0, again.output
    assert (
        query(warehouse, "SELECT count(*), count(DISTINCT run_id) FROM ledger_entries")[0]
        == entries
    )
    assert sorted((landing.settings.outbox / "payments").iterdir()) == batches
    assert set(partition_status(warehouse).values()) == {"succeeded"}

    empty = claims(
        "backfill",
        "--from",
        last + timedelta(days=1),
        "--to",
        last + timedelta(days=9),
        *landing.cli_paths(),
    )
    assert empty.exit_code == 0 and "No partitions" in empty.output


@pytest.mark.e2e
def test_backfill_commits_a_chunk_of_dates_at_once(
    claims: Invoke, tmp_path: Path, prefect_harness: None
) -> None:
    """The default chunk (31 days) takes three dates in one commit and one payment batch, and
    ends with the ledger that one commit per date gives (tests/test_backfill_chunks.py plays
    random chunkings and kills)."""
    landing = build_landing(tmp_path / "chunked", nights=3, failing_night=None, sources=("SHYB",))
    by_date = build_landing(tmp_path / "by-date", nights=3, failing_night=None, sources=("SHYB",))
    first, last = landing.feed_dates[0], landing.feed_dates[-1]
    for each in (landing, by_date):
        assert claims("init", *each.cli_paths()).exit_code == 0
    result = claims("backfill", "--from", first, "--to", last, *landing.cli_paths())
    assert result.exit_code == 0, result.output
    runs = query(landing.settings.warehouse, "SELECT command, as_of_date, batch_id FROM runs")
    assert [(c, d) for c, d, _ in runs] == [("backfill", last)] and runs[0][2]
    assert len(list((landing.settings.outbox / "payments").iterdir())) == 1
    assert set(partition_status(landing.settings.warehouse).values()) == {"succeeded"}
    per_date = claims(
        "backfill", "--from", first, "--to", last, "--chunk-days", 1, *by_date.cli_paths()
    )
    assert per_date.exit_code == 0, per_date.output
    ledger = (
        "SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen) "
        "FROM ledger_entries GROUP BY ALL HAVING sum(amount_fen) <> 0 ORDER BY ALL"
    )
    chunked = query(landing.settings.warehouse, ledger)
    assert chunked and chunked == query(by_date.settings.warehouse, ledger)


# ---------------------------------------------------------------------------------------------
# A run killed in the middle of its commit
# ---------------------------------------------------------------------------------------------


def views_of(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The contract's views, without run ids, timestamps and attempt counts."""
    return {
        "claim_outcomes": query(warehouse, "SELECT * FROM claim_outcomes ORDER BY ALL"),
        "claim_plan_payouts": query(warehouse, "SELECT * FROM claim_plan_payouts ORDER BY ALL"),
        "member_accounts": query(warehouse, "SELECT * FROM member_accounts ORDER BY ALL"),
        "partition_runs": query(
            warehouse,
            "SELECT kind, partition_key, status, rows_read, rows_quarantined, error "
            "FROM partition_runs ORDER BY ALL",
        ),
        "quarantine_rows": query(warehouse, "SELECT * FROM quarantine_rows ORDER BY ALL"),
        "instructions": query(
            warehouse, "SELECT national_id, amount_fen FROM payment_instructions ORDER BY ALL"
        ),
    }


@pytest.mark.e2e
def test_a_killed_run_leaves_nothing_stuck(
    claims: Invoke, tmp_path: Path, prefect_harness: None
) -> None:
    """`claims run` dies (like kill -9) with the ledger inserted but not committed; a second run
    meanwhile exits 3; the next clean run ends exactly where a run without the kill ends."""
    from prefect.settings import PREFECT_API_URL

    killed = initialised(build_landing(tmp_path / "killed", failing_night=None))
    reference = tmp_path / "reference"
    shutil.copytree(killed.settings.landing, reference / "landing")
    day = killed.feed_dates[-1]
    paths = killed.cli_paths()

    env = {
        **os.environ,
        "CLAIMS_FAULT": "in_ledger",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the test server: no 2nd Prefect start
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    run = subprocess.Popen(
        [str(CLAIMS), "run", "--date", str(day), *paths],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not is_locked(killed.settings.warehouse) and run.poll() is None:
            assert time.monotonic() < deadline, "the run never took the lock"
            time.sleep(0.05)
        busy = claims("run", "--date", day, *paths, env={"CLAIMS_LOCK_TIMEOUT": "0"})
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert busy.exit_code == 3, busy.output
    assert run.returncode == 137, output

    warehouse = killed.settings.warehouse
    assert query(warehouse, "SELECT count(*) FROM ledger_entries") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM payment_batches") == [(0,)]
    assert "running" in partition_status(warehouse).values()
    status = claims("status", *paths)
    assert "interrupted" in status.output

    clean = claims("run", "--date", day, *paths)
    assert clean.exit_code == 0, clean.output
    assert "running" not in partition_status(warehouse).values()

    assert (
        claims(
            "init", "--warehouse", reference / "w.duckdb", "--outbox", reference / "outbox"
        ).exit_code
        == 0
    )
    ref_paths = [
        "--landing",
        reference / "landing",
        "--warehouse",
        reference / "w.duckdb",
        "--outbox",
        reference / "outbox",
    ]
    assert claims("run", "--date", day, *ref_paths).exit_code == 0
    assert views_of(warehouse) == views_of(reference / "w.duckdb")


def test_a_warehouse_not_paired_with_the_outbox_never_pays_again(
    claims: Invoke, tmp_path: Path
) -> None:
    """The outbox records its warehouse: a run from another one (a mistyped path to an older
    file, a copy) stops with exit 2 before writing anything, so no stay is paid twice."""
    import pipeline

    landing = initialised(build_landing(tmp_path / "real", nights=1, failing_night=None))
    pipeline.run_local(landing.settings, as_of=START)
    outbox = landing.settings.outbox
    paid = outbox_files(outbox)
    assert any(p.name == "_manifest.json" for p in paid)

    other = tmp_path / "other.duckdb"
    assert claims("init", "--warehouse", other, "--outbox", tmp_path / "own").exit_code == 0
    before = other.read_bytes()
    wrong = [*landing.cli_paths()[:2], "--warehouse", other, "--outbox", outbox]
    for command in (["run", "--date", START], ["rerun", "--partition", key(START, "SHYB")]):
        result = claims(*command, *wrong)
        assert result.exit_code == 2, result.output
        assert "belongs to another warehouse" in result.output
    assert outbox_files(outbox) == paid and other.read_bytes() == before

    # The library path refuses it too (and pairs an outbox that records none on first write).
    with pytest.raises(Exception, match="belongs to another warehouse"):
        pipeline.run_local(
            landing.settings.__class__.build(landing.settings.landing, other, outbox), as_of=START
        )
    assert outbox_files(outbox) == paid


def test_rerun_failed_with_nothing_failed_says_so_without_starting_prefect(
    tmp_path: Path,
) -> None:
    import pipeline

    landing = initialised(build_landing(tmp_path, nights=1, failing_night=None))
    pipeline.run_local(landing.settings, as_of=START)
    code = (
        "import sys\nfrom claims.cli import main\n"
        "sys.argv = ['claims', 'rerun', '--failed', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print('exit', e.code, 'prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, landing.cli_paths())],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Nothing failed" in done.stdout, done.stdout + done.stderr
    assert done.stdout.strip().endswith("exit 0 False")  # Prefect was never imported


def test_every_help_shows_its_defaults(claims: Invoke) -> None:
    """Rich markup must not swallow a bracketed default ("Landing folder ." was the symptom)."""
    from claims.cli import app

    commands = [
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    ]
    assert {"run", "rerun", "backfill", "init", "status", "serve", "deploy"} <= set(commands)
    for command in commands:
        shown = " ".join(claims(command, "--help", env={"COLUMNS": "300"}).output.split())
        assert " . " not in shown and "folder ." not in shown, (command, shown)
        if "--landing" in shown:
            assert "data/landing" in shown and "data/warehouse.duckdb" in shown, command
            assert "data/outbox" in shown, command
        if "--date" in shown and command in ("run", "status"):
            assert "yesterday, Asia/Shanghai" in shown, command
    backfill = claims("backfill", "--help", env={"COLUMNS": "300"}).output
    assert "from --from to --to" in " ".join(backfill.split())
