"""A version received twice with different content, in two partitions: the later row is
quarantined with its own raw text and a message naming the first (feeds.md, version rules),
whichever commit brings which partition, one by one or together in a chunk."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from test_ledger import frame
from test_night_scope import REGISTRY, SNAPSHOT, History, _snapshot, _v

import synth
from config.settings import Settings
from pipeline import backfill_local
from storage.warehouse import open_warehouse

FIRST, SECOND = date(2026, 3, 1), date(2026, 3, 2)
HISTORY = History(
    nights=1,
    enrolments=((0, "RETIREE_INPATIENT"),),
    versions=(
        _v("C1", 1, "N", 0, "2026-02-01", "2026-02-05", 1_000_000, 0),
        _v("C2", 1, "N", 0, "2026-02-03", "2026-02-06", 500_000, 0),
    ),
    decisions=(),
)


@pytest.mark.parametrize("chunk_days", [1, 2])
def test_a_conflicting_row_of_a_later_partition_is_quarantined_with_its_own_raw_text(
    tmp_path: Path, chunk_days: int
) -> None:
    settings = Settings.build(
        tmp_path / "landing", tmp_path / "warehouse.duckdb", tmp_path / "outbox"
    )
    synth.write_registry(settings.landing, REGISTRY)
    synth.write_snapshot(settings.landing, SNAPSHOT, _snapshot(HISTORY))
    first = [v.row() for v in HISTORY.versions]
    # the same version 1 of C1 again, with another amount, as the second row of a later file
    changed = replace(HISTORY.versions[0], self_pay_fen=1_234_500).row()
    other = _v("C3", 1, "N", 0, "2026-02-10", "2026-02-12", 300_000, 1).row()
    synth.write_partition(settings.landing, FIRST, "SHYB", frame(first, synth.DISCHARGE_COLUMNS))
    synth.write_partition(
        settings.landing, SECOND, "SHYB", frame([other, changed], synth.DISCHARGE_COLUMNS)
    )
    results = backfill_local(settings, FIRST, SECOND, chunk_days=chunk_days)
    assert all(not r.failed for r in results)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "SELECT partition_key, row_number, message, raw FROM quarantine WHERE derived"
        ).fetchall()
        amount = con.execute(
            "SELECT self_pay_in_scope_fen FROM stays WHERE settlement_id = 'C1'"
        ).fetchone()
    assert len(rows) == 1
    key, row_number, message, raw = rows[0]
    assert key == f"feed_date={SECOND.isoformat()}/source=SHYB"
    assert row_number == 2
    assert message == (
        f"version 1 of this stay was first received in feed_date={FIRST.isoformat()}/source=SHYB"
        " (row 1) with different content"
    )
    fields = json.loads(raw)
    assert fields["settlement_id"] == "C1"
    assert fields["self_pay_in_scope"] == changed["self_pay_in_scope"]
    assert amount == (1_000_000,)  # the first received version stands
