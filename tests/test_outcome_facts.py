"""Migration 013: the outcomes carry the facts of their stays, and a warehouse migrated to it
holds what a warehouse that always had it holds.

A night reads the other stays of the people it touches from ``stay_outcomes`` alone (no join
with ``stays``), and the review queue reads the amount at stake there too; the copies are
rewritten whenever the stay changes, in the same transaction. The night-scope property tests
(``test_night_scope.py``) compare every column of ``stay_outcomes`` with a full recompute, which
takes the facts from ``stays``; here: the migration of a warehouse written before it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_night_scope import CROSSING, FIRST_NIGHT, STILL_HELD, check_equals_full_recompute, play

from config.settings import Settings
from pipeline import run_local
from storage.warehouse import open_warehouse

PROJECT = Path(__file__).resolve().parents[1]
MIGRATIONS = PROJECT / "storage" / "migrations"

OUTCOMES = "SELECT * FROM stay_outcomes ORDER BY ALL"
QUEUE = "SELECT * FROM review_queue ORDER BY ALL"
FACTS_DIFFER = """
SELECT count(*) FROM stay_outcomes o JOIN stays s USING (hospital_code, settlement_id)
WHERE o.record_type IS DISTINCT FROM s.record_type
   OR o.admission_date IS DISTINCT FROM s.admission_date
   OR o.discharge_date IS DISTINCT FROM s.discharge_date
   OR o.self_pay_in_scope_fen IS DISTINCT FROM s.self_pay_in_scope_fen
"""


def _as_before_013(path: Path) -> None:
    """Put the warehouse back as migration 012 left it: outcomes without the facts, 006's queue."""
    old_queue = (MIGRATIONS / "006_review.sql").read_text()
    start = old_queue.index("CREATE VIEW review_queue AS")
    old_queue = old_queue[start : old_queue.index(";", start) + 1]
    with open_warehouse(path) as con:
        con.execute(
            "CREATE TABLE outcomes_012 AS SELECT hospital_code, settlement_id, current_version, "
            "status, reason, national_id, match_method, overlapped_stay FROM stay_outcomes"
        )
        con.execute("DROP VIEW review_queue")
        con.execute("DROP TABLE stay_outcomes")
        con.execute("ALTER TABLE outcomes_012 RENAME TO stay_outcomes")
        con.execute(old_queue)
        # 014 (applied again after 013) adds the member key to the outcomes 013 rebuilds, and
        # 022 replaces it with the member number (dropping 014's warehouse_keys)
        con.execute("DROP TABLE IF EXISTS warehouse_keys")
        con.execute("DELETE FROM schema_migrations WHERE version >= 13")


def _migrated_equals_native(settings: Settings, tmp_path: Path) -> None:
    with open_warehouse(settings.warehouse, read_only=True) as con:
        outcomes, queue = con.execute(OUTCOMES).fetchall(), con.execute(QUEUE).fetchall()
        assert con.execute(FACTS_DIFFER).fetchone() == (0,)
    _as_before_013(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(QUEUE).fetchall() == queue  # 006's queue, before migrating
    with open_warehouse(settings.warehouse) as con:  # migrates
        assert con.execute(OUTCOMES).fetchall() == outcomes
        assert con.execute(QUEUE).fetchall() == queue
        assert con.execute("SELECT 14 IN (SELECT version FROM schema_migrations)").fetchone() == (
            True,
        )
    check_equals_full_recompute(settings, tmp_path)


def test_a_warehouse_migrated_to_013_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    _migrated_equals_native(settings, tmp_path)


def test_the_queue_held_for_overlaps_survives_the_migration_and_the_next_night(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "held", STILL_HELD)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        held = con.execute("SELECT count(*) FROM review_queue").fetchone()
    assert held is not None and held[0] > 0  # the history leaves a stay held for a person
    _migrated_equals_native(settings, tmp_path)
    # a night on the migrated warehouse: the facts stay equal to the stays
    next_night = FIRST_NIGHT + timedelta(days=STILL_HELD.nights + 1)
    assert not run_local(settings, as_of=next_night).failed
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(FACTS_DIFFER).fetchone() == (0,)
    check_equals_full_recompute(settings, tmp_path)
