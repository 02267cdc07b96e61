"""Migration 015: ``stays`` keeps its grain without a key index.

The key index cost every backfill chunk's commit ~0.7 s of CPU (its ~430,000 new keys in an
index of every stay). Without it, the grain (one row per hospital_code, settlement_id) is kept by
``storage.staging``: every row of a touched stay is deleted, one row per stay is inserted, and a
touched stay that was held twice before the commit is refused inside the commit's transaction;
``claims verify`` names any stay held twice (``stay_grain``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from samples import outcomes_as_before_022, rebuild_as_made
from test_instruction_grain import _money, _night
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
from pipeline.audit import verify
from pipeline.plan import plan_run
from pipeline.sequence import LocalSteps
from pipeline.write import commit
from storage import audit
from storage.staging import StayKeyHeld
from storage.warehouse import open_warehouse

STAYS = "SELECT * FROM stays ORDER BY ALL"
KEYED = (
    "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'stays' "
    "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
)


def _as_before_015(path: Path) -> None:
    """Put ``stays`` back as 001 made it (with its key), its rows as they were."""
    with open_warehouse(path) as con:
        rebuild_as_made(con, "001_foundation.sql", "stays")
        outcomes_as_before_022(con)
        con.execute("DELETE FROM schema_migrations WHERE version >= 15")


def _correct_a1(settings: Settings, night: int) -> None:
    """A new version of CROSSING's stay A1 (its rows and its current record are rewritten)."""
    base = next(v for v in CROSSING.versions if v.sid == "A1" and v.version == 2)
    row = replace(base, version=3, self_pay_fen=1_500_000).row()
    day = FIRST_NIGHT + timedelta(days=night)
    synth.write_partition(settings.landing, day, "SHYB", frame([row], synth.DISCHARGE_COLUMNS))


def _hold_a1_twice(path: Path) -> None:
    """Someone writes A1's current record again, outside claims: no key stops it now."""
    with open_warehouse(path) as con:
        con.execute("INSERT INTO stays SELECT * FROM stays WHERE settlement_id = 'A1'")


def test_a_warehouse_migrated_to_015_holds_what_one_written_with_it_does(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        native = con.execute(STAYS).fetchall()
        assert native
        assert con.execute(KEYED).fetchone() == (0,)
    _as_before_015(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(KEYED).fetchone() == (1,)  # as 001 made it
        assert con.execute(STAYS).fetchall() == native
    with open_warehouse(settings.warehouse) as con:  # migrates
        assert con.execute(STAYS).fetchall() == native
        assert con.execute(KEYED).fetchone() == (0,)
        assert con.execute("SELECT 15 IN (SELECT version FROM schema_migrations)").fetchone() == (
            True,
        )
        assert audit.stay_grain(con) == []
    # nights on the migrated warehouse: a new stay, and a correction of a known one
    _night(settings, CROSSING.nights + 1, "N1")
    _correct_a1(settings, CROSSING.nights + 1)
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=CROSSING.nights + 1))
    assert not result.failed, result.errors
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.stay_grain(con) == []
        assert con.execute(
            "SELECT current_version, self_pay_in_scope_fen FROM stays WHERE settlement_id = 'A1'"
        ).fetchall() == [(3, 1_500_000)]
        assert con.execute("SELECT count(*) FROM stays WHERE settlement_id = 'N1'").fetchone() == (
            1,
        )
    check_equals_full_recompute(settings, tmp_path)


def test_a_touched_stay_held_twice_is_refused_and_nothing_is_committed(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    _hold_a1_twice(settings.warehouse)
    night = CROSSING.nights + 1
    _correct_a1(settings, night)
    before = _money(settings)
    plan = plan_run(settings, command="run", as_of=FIRST_NIGHT + timedelta(days=night))
    validated = LocalSteps().validate(settings, plan)
    with open_warehouse(settings.warehouse, read_only=True) as con:  # as the plan left it
        stays_before = con.execute(STAYS).fetchall()
        states_before = con.execute("SELECT * FROM partition_state ORDER BY ALL").fetchall()
    with pytest.raises(StayKeyHeld, match="stay H001/A1 was held 2 times"):
        commit(settings, plan, validated)
    assert _money(settings) == before
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(STAYS).fetchall() == stays_before
        assert con.execute("SELECT * FROM partition_state ORDER BY ALL").fetchall() == (
            states_before
        )
    # a night that does not touch the stay is not held up by it
    _night(settings, night + 1, "N1")
    other = run_local(
        settings,
        command="backfill",
        as_of=FIRST_NIGHT + timedelta(days=night + 1),
        feed_dates=(
            FIRST_NIGHT + timedelta(days=night + 1),
            FIRST_NIGHT + timedelta(days=night + 1),
        ),
    )
    assert not other.failed, other.errors
    assert other.batch_instructions == 1


def test_verify_names_a_stay_held_twice(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.stay_grain(con) == []
    _hold_a1_twice(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        found = audit.stay_grain(con)
    assert [(f.check, f.subject, f.detail) for f in found] == [
        ("stay_grain", "stay H001/A1", "2 current records of one stay")
    ]
    # the whole self-audit reports it among its findings
    checks = {f.check for f in verify(settings).findings}
    assert "stay_grain" in checks
