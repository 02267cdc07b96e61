"""Migrations 016 and 017: ``recovery_balances`` keeps only the balances that are not 0 (017),
and each outcome carries its targets' raw amounts (016).

Every member a night paid used to get a row, most of them owing nothing (2.09 M rows after a
year, 2,731 not 0), and each night's new members were new keys spread over the table's whole key
index, which the night's checkpoint paid for. A member without a row owes nothing, as every
reader takes it; ``storage.ledger.post`` inserts a balance that is not 0, updates one that moves
and deletes one that comes to 0.

Real nights through ``run_local``: a recovery carried forward, then netted against a payout.
A warehouse migrated to 016 and 017 is held to one written with them here (the carried amounts
night by night: ``tests/test_outcome_amounts.py``; the balances also in
``tests/test_night_members.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
from samples import every_table, outcomes_as_before_022
from test_review import BED, RICH, _by_id, deliver, night, world

from config.settings import Settings
from pipeline.audit import verify
from storage.warehouse import open_warehouse

BALANCES = "SELECT national_id, recovery_due_fen FROM recovery_balances ORDER BY ALL"
# payouts.md: sum(instructions) − recovery_due = sum(ledger entries), for every member
IDENTITY = """
SELECT national_id FROM member_accounts
WHERE paid_out_fen - recovery_due_fen <> ledger_fen
"""


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with open_warehouse(path, read_only=True) as con:
        return con.execute(sql).fetchall()


def _three_nights(settings: Settings) -> list[list[tuple[Any, ...]]]:
    """Paid; recovered with nothing to net it against (carried); netted. The balances after
    each night."""
    after = []
    # Night 1: BED is paid 600.00.
    deliver(settings, 0, [_by_id("R1", BED, "2026-01-05", "2026-01-08")])
    night(settings)
    after.append(_query(settings.warehouse, BALANCES))
    # Night 2: BED's stay is corrected to nothing in scope: 600.00 to recover, carried.
    deliver(
        settings,
        1,
        [
            _by_id(
                "R1", BED, "2026-01-05", "2026-01-08", version=2, record_type="C", self_pay="0.00"
            ),
            _by_id("R2", RICH, "2026-01-05", "2026-01-08", self_pay="500.00"),
        ],
    )
    night(settings)
    after.append(_query(settings.warehouse, BALANCES))
    # Night 3: a new stay of BED pays 900.00; the 600.00 owed is netted: BED owes nothing.
    deliver(settings, 2, [_by_id("R3", BED, "2026-02-05", "2026-02-09", self_pay="1500.00")])
    night(settings)
    after.append(_query(settings.warehouse, BALANCES))
    return after


def test_only_balances_that_are_not_zero_are_kept(tmp_path: Path) -> None:
    settings = world(tmp_path)
    after = _three_nights(settings)
    # nobody owes after night 1 (no row, not a 0); BED's 600.00 is carried; netted: gone
    assert after == [[], [(BED.nid, 60_000)], []]
    # every member's identity holds with the missing balances read as 0, and verify agrees
    assert _query(settings.warehouse, IDENTITY) == []
    accounts = dict(
        (nid, (ledger, paid, due))
        for nid, ledger, paid, due in _query(
            settings.warehouse,
            "SELECT national_id, ledger_fen, paid_out_fen, recovery_due_fen FROM member_accounts",
        )
    )
    assert accounts[BED.nid] == (90_000, 90_000, 0)
    assert accounts[RICH.nid] == (30_000, 30_000, 0)
    assert verify(settings).findings == []


def _as_before_016(path: Path) -> None:
    """What the warehouse held before 016 and 017: a balance row, 0 when nothing is owed, for
    every member a paying night posted to (``post`` inserted one for each member with entries),
    and outcomes without the raw amounts of their targets."""
    with open_warehouse(path) as con:
        outcomes_as_before_022(con)
        con.execute("ALTER TABLE stay_outcomes DROP COLUMN raw_by_plan")
        con.execute(
            "INSERT INTO recovery_balances (national_id, recovery_due_fen) "
            "SELECT DISTINCT national_id, 0 FROM ledger_entries "
            "WHERE national_id NOT IN (SELECT national_id FROM recovery_balances)"
        )
        con.execute("DELETE FROM schema_migrations WHERE version >= 16")


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = every_table(con)
        out["schema_migrations"] = con.execute(
            "SELECT version, name FROM schema_migrations ORDER BY 1"
        ).fetchall()
        out["keys"] = con.execute(
            "SELECT table_name, constraint_type, constraint_column_names FROM "
            "duckdb_constraints() WHERE table_name = 'recovery_balances' ORDER BY ALL"
        ).fetchall()
        return out
    finally:
        con.close()


def test_a_warehouse_migrated_to_016_and_017_holds_what_one_written_with_them_does(
    tmp_path: Path,
) -> None:
    settings = world(tmp_path / "native")
    _three_nights(settings)
    old = tmp_path / "old.duckdb"
    shutil.copy(settings.warehouse, old)
    _as_before_016(old)
    zeros = _query(old, "SELECT count(*) FROM recovery_balances WHERE recovery_due_fen = 0")
    assert zeros == [(2,)]  # BED and RICH: the zeros the old way kept
    with open_warehouse(old):  # a writer's open applies 016 and 017
        pass
    assert _tables(old) == _tables(settings.warehouse)
