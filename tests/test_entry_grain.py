"""Migration 021: ``ledger_entries`` keeps its grain without a key index.

The key index cost every posting commit, and every checkpoint after it, more as the ledger grew.
Without it, the grain (one entry per ``entry_id``, ids ``<run>-<n>``; payouts.md: unique) is kept
by ``storage.ledger.post``, which refuses, inside the commit's transaction, a run id that already
has entries; ``claims verify`` names any id held twice (``entry_grain``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from samples import rebuild_as_made
from test_instruction_grain import _money, _night
from test_night_scope import CROSSING, FIRST_NIGHT, check_equals_full_recompute, play

from pipeline import run_local
from storage import audit
from storage.ledger import RunAlreadyPosted, post
from storage.warehouse import open_warehouse, transaction

ENTRIES = "SELECT * FROM ledger_entries ORDER BY ALL"
KEYED = (
    "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'ledger_entries' "
    "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
)


def _as_before_021(path: Path) -> None:
    """Put the ledger back as 003 made it (with its key), the rows in the order they had."""
    with open_warehouse(path) as con:
        rebuild_as_made(con, "003_money.sql", "ledger_entries")
        con.execute("DELETE FROM schema_migrations WHERE version >= 21")


def test_a_ledger_migrated_to_021_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        native = con.execute(ENTRIES).fetchall()
        assert native  # the history pays
        assert con.execute(KEYED).fetchone() == (0,)
    _as_before_021(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(KEYED).fetchone() == (1,)  # as 003 made it
    with open_warehouse(settings.warehouse) as con:  # migrates
        assert con.execute(ENTRIES).fetchall() == native
        assert con.execute(KEYED).fetchone() == (0,)
        assert audit.entry_grain(con) == []
        assert audit.seal_chain(con) == []  # the same entries give the same seals
    # a night on the migrated warehouse posts as before, each entry once
    _night(settings, CROSSING.nights + 1, "N1")
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=CROSSING.nights + 1))
    assert not result.failed and result.entries >= 1
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.entry_grain(con) == []
        assert audit.member_identity(con) == []
    check_equals_full_recompute(settings, tmp_path)


def test_a_run_id_that_already_has_entries_is_refused_and_nothing_is_posted(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        row = con.execute("SELECT max(run_id) FROM ledger_entries").fetchone()
    assert row is not None and row[0]
    posted_run = str(row[0])
    before = _money(settings)
    # a commit that would post under a run id already in the ledger (its batch id is new):
    # refused before anything is posted, and its transaction rolled back
    with (
        open_warehouse(settings.warehouse) as con,
        pytest.raises(RunAlreadyPosted, match=f"run {posted_run} already has"),
        transaction(con),
    ):
        post(con, run_id=posted_run, batch_id="B-never-issued", at=datetime.now(UTC))
    assert _money(settings) == before
    # the next run posts its stay once, under a run id of its own
    _night(settings, CROSSING.nights + 1, "N1")
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=CROSSING.nights + 1))
    assert not result.failed and result.entries >= 1
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert audit.entry_grain(con) == []
        assert audit.member_identity(con) == []


def test_verify_names_an_entry_id_held_twice(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        assert audit.entry_grain(con) == []
        # someone writes an entry again, outside claims: no key stops it now
        con.execute(
            "INSERT INTO ledger_entries SELECT * FROM ledger_entries ORDER BY entry_id LIMIT 1"
        )
        found = audit.entry_grain(con)
    assert [f.check for f in found] == ["entry_grain"]
    assert "2 ledger entries under one id" in found[0].detail
