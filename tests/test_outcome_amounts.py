"""Migration 016: each outcome carries its stay's targets' raw amounts per plan.

A night's annual caps start from the sum of raw amounts of the people's stays before each cap's
first change (``cap_prefix``). It was summed from ``stay_plan_targets``, a scan of every target
(3.4 M after a year, ~0.24 CPU s) for the ~16,000 stays it needed; now from the outcomes the
night reads with the people's other stays anyway. The money is held to a full recompute by the
scoped-night tests (``test_night_scope.py``, ``test_cap_prefix.py``: every column of the outcomes
and targets, the new one included); here, that the carried amounts are the targets' after every
night, that an outcome whose amounts change is rewritten, and that ``claims verify`` names one
that drifted. The migrated warehouse is held to a built one in ``test_recovery_balances.py``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from test_review import BED, RICH, _by_id, deliver, night, world

from pipeline.audit import verify
from storage import audit
from storage.warehouse import open_warehouse

CARRIED = """
SELECT hospital_code, settlement_id, raw_by_plan FROM stay_outcomes ORDER BY ALL
"""
FROM_TARGETS = """
SELECT o.hospital_code, o.settlement_id, t.raws FROM stay_outcomes o LEFT JOIN (
    SELECT hospital_code, settlement_id,
           list({'plan_code': plan_code, 'raw_fen': raw_fen} ORDER BY plan_code) AS raws
    FROM stay_plan_targets GROUP BY ALL) t USING (hospital_code, settlement_id)
ORDER BY ALL
"""


def _carried_and_targets(path: Path) -> tuple[list[object], list[object]]:
    with open_warehouse(path, read_only=True) as con:
        return con.execute(CARRIED).fetchall(), con.execute(FROM_TARGETS).fetchall()


def test_outcomes_carry_their_targets_raw_amounts_night_after_night(tmp_path: Path) -> None:
    settings = world(tmp_path)
    # a paid stay; then its correction to less in scope (its amounts change) and another's
    deliver(settings, 0, [_by_id("A1", BED, "2026-01-05", "2026-01-08", self_pay="3000.00")])
    night(settings)
    first, targets = _carried_and_targets(settings.warehouse)
    assert first == targets and first[0][2] is not None
    deliver(
        settings,
        1,
        [
            _by_id("A1", BED, "2026-01-05", "2026-01-08", version=2, record_type="C"),
            _by_id("A2", RICH, "2026-01-05", "2026-01-08", self_pay="500.00"),
        ],
    )
    night(settings)
    second, targets = _carried_and_targets(settings.warehouse)
    assert second == targets
    assert dict(((h, s), r) for h, s, r in second)[first[0][0], first[0][1]] != first[0][2]
    # a later stay of the same member in the same year: its cap starts from the carried sum
    deliver(settings, 2, [_by_id("A3", BED, "2026-02-05", "2026-02-08")])
    night(settings)
    third, targets = _carried_and_targets(settings.warehouse)
    assert third == targets and len(third) == 3
    assert verify(settings).findings == []


def test_verify_names_an_outcome_whose_amounts_drifted(tmp_path: Path) -> None:
    settings = world(tmp_path)
    deliver(settings, 0, [_by_id("D1", BED, "2026-01-05", "2026-01-08")])
    night(settings)
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(
            "UPDATE stay_outcomes SET raw_by_plan = "
            "[{'plan_code': raw_by_plan[1].plan_code, 'raw_fen': raw_by_plan[1].raw_fen + 1}] "
            "WHERE settlement_id = 'D1'"
        )
    finally:
        con.close()
    found = [f for f in verify(settings).findings if f.check == "outcome_amounts"]
    assert len(found) == 1 and "D1" in found[0].subject
    with open_warehouse(settings.warehouse, read_only=True) as con2:
        assert len(audit.outcome_amounts(con2)) == 1


def test_verify_names_a_stay_whose_targets_lost_their_carried_amounts(tmp_path: Path) -> None:
    """Both directions: an outcome carrying amounts its targets lack, and the reverse."""
    settings = world(tmp_path)
    deliver(
        settings,
        0,
        [
            _by_id("E1", BED, "2026-01-05", "2026-01-08"),
            _by_id("E2", RICH, "2026-01-05", "2026-01-08"),
        ],
    )
    night(settings)
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute("UPDATE stay_outcomes SET raw_by_plan = NULL WHERE settlement_id = 'E1'")
        con.execute("DELETE FROM stay_plan_targets WHERE settlement_id = 'E2'")
    finally:
        con.close()
    with open_warehouse(settings.warehouse, read_only=True) as con2:
        named = sorted(f.subject.rsplit("/", 1)[1] for f in audit.outcome_amounts(con2))
    assert named == ["E1", "E2"]
