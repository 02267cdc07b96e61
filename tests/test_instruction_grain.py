"""Migration 014: ``payment_instructions`` keeps its grain without a key index.

The key index cost every paying commit's checkpoint more as the table grew. Without it, the
grain (one instruction per ``instruction_id``, ids ``<batch>-<n>``) is kept by
``storage.ledger.post``, which refuses, inside the commit's transaction, a batch id that already
has instructions; ``claims verify`` names any id held twice (``instruction_grain``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from samples import outcomes_as_before_022, rebuild_as_made
from test_night_scope import (
    CROSSING,
    FIRST_NIGHT,
    check_equals_full_recompute,
    frame,
    play,
)

import synth
from config.settings import Settings
from pipeline import run_local
from pipeline.plan import new_run_id, plan_run
from pipeline.sequence import LocalSteps
from pipeline.write import commit
from storage import audit
from storage.ledger import BatchAlreadyIssued
from storage.warehouse import open_warehouse

INSTRUCTIONS = "SELECT * FROM payment_instructions ORDER BY ALL"
OUTCOMES = "SELECT * FROM stay_outcomes ORDER BY ALL"
MONEY = {
    "entries": "SELECT * FROM ledger_entries ORDER BY ALL",
    "balances": "SELECT * FROM ledger_balances ORDER BY ALL",
    "instructions": INSTRUCTIONS,
    "batches": "SELECT * FROM payment_batches ORDER BY ALL",
    "recovery": "SELECT * FROM recovery_balances ORDER BY ALL",
    "outcomes": "SELECT * FROM stay_outcomes ORDER BY ALL",
    "targets": "SELECT * FROM stay_plan_targets ORDER BY ALL",
}
KEYED = (
    "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'payment_instructions' "
    "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
)


def _as_before_014(path: Path) -> None:
    """Put the warehouse back as 013 left it: the instructions' table as 003 made it (with its
    key), the outcomes without their member key, the rows as they were."""
    with open_warehouse(path) as con:
        rebuild_as_made(con, "003_money.sql", "payment_instructions")
        outcomes_as_before_022(con)
        con.execute("ALTER TABLE stay_outcomes DROP COLUMN member_key")
        con.execute("DROP TABLE warehouse_keys")
        con.execute("DELETE FROM schema_migrations WHERE version >= 14")


def _money(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    with open_warehouse(settings.warehouse, read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in MONEY.items()}


def _night(settings: Settings, night: int, sid: str) -> None:
    """Deliver a new stay of the history's first person for ``night`` (it pays)."""
    base = next(v for v in CROSSING.versions if v.who == 0 and v.record_type == "N")
    day = FIRST_NIGHT + timedelta(days=night)
    row = base.row() | {
        "settlement_id": sid,
        "admission_date": "2026-02-10",
        "discharge_date": "2026-02-14",
    }
    synth.write_partition(settings.landing, day, "HOSPX", frame([row], synth.DISCHARGE_COLUMNS))


def test_a_warehouse_migrated_to_014_holds_what_one_written_with_it_does(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        native = con.execute(INSTRUCTIONS).fetchall()
        outcomes = con.execute(OUTCOMES).fetchall()
        assert native  # the history pays
        assert con.execute(KEYED).fetchone() == (0,)
    _as_before_014(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(KEYED).fetchone() == (1,)  # as 003 made it
        assert con.execute(INSTRUCTIONS).fetchall() == native
    with open_warehouse(settings.warehouse) as con:  # migrates
        assert con.execute(INSTRUCTIONS).fetchall() == native
        assert con.execute(OUTCOMES).fetchall() == outcomes  # member keys as a night writes them
        assert con.execute(KEYED).fetchone() == (0,)
        assert con.execute("SELECT 14 IN (SELECT version FROM schema_migrations)").fetchone() == (
            True,
        )
        assert audit.instruction_grain(con) == []
    # a night on the migrated warehouse pays as before, each instruction once
    _night(settings, CROSSING.nights + 1, "N1")
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=CROSSING.nights + 1))
    assert not result.failed and result.batch_instructions == 1
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.instruction_grain(con) == []
        assert audit.member_identity(con) == []
    check_equals_full_recompute(settings, tmp_path)


def test_a_batch_id_that_already_has_instructions_is_refused_and_nothing_is_posted(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        row = con.execute(
            "SELECT run_id FROM payment_batches ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    issued_run = str(row[0])
    night = CROSSING.nights + 1
    _night(settings, night, "N1")
    before = _money(settings)
    # A run that would issue its payments under a batch id already used (a reused run id):
    # the commit is refused before posting anything, and its transaction rolled back.
    plan = plan_run(
        settings, command="run", as_of=FIRST_NIGHT + timedelta(days=night), run_id=issued_run
    )
    validated = LocalSteps().validate(settings, plan)
    with pytest.raises(BatchAlreadyIssued, match=f"batch B{issued_run} already has"):
        commit(settings, plan, validated)
    assert _money(settings) == before
    # the next run posts the stay once, under a batch of its own
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=night))
    assert not result.failed and result.batch_instructions == 1
    after = _money(settings)
    assert len(after["instructions"]) == len(before["instructions"]) + 1
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.instruction_grain(con) == []
        assert audit.member_identity(con) == []


def test_verify_names_an_instruction_id_held_twice(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        assert audit.instruction_grain(con) == []
        # someone writes a batch's row again, outside claims: no key stops it now
        con.execute(
            "INSERT INTO payment_instructions "
            "SELECT * FROM payment_instructions ORDER BY instruction_id LIMIT 1"
        )
        found = audit.instruction_grain(con)
    assert [f.check for f in found] == ["instruction_grain"]
    assert "2 payment instructions under one id" in found[0].detail


def test_runs_started_in_the_same_second_get_distinct_ids() -> None:
    # A backfill's short chunks and a test's nights start many runs a second; two that shared
    # an id would have the second refused at its posting (a batch id already paid). 10,000 ids
    # of one instant: with 16 random bits ~760 pairs would collide, with 48 ~2e-7 expected.
    started = datetime(2026, 11, 2, 3, 0, 0)
    ids = [new_run_id(started) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("20261102T030000-") for i in ids)
