"""Migration 025: a commit finds its matched people's enrolments by their member number.

``enrollments.member_number`` is ``member_number(national_id)`` (022's macro: the identity number
as an integer, one to one on the canonical form, NULL for any other text), written with every
enrolment by the snapshot load (the whole and the partial replacement alike) and, for the rows
of a warehouse from before 025, by the migration. The covering enrolments (COVERING_SQL) are
filtered by it inside the scan; a row without one is still found, by national_id. Here: both
loads write the number; a row without a number covers as before; a warehouse migrated to 025
holds what one written with it does and keeps its money night after night. The money is held to
a full recompute by the scoped-night property tests (``test_night_scope.py``).
"""

from __future__ import annotations

import random
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
from samples import national_id, warehouse_as_made
from test_instruction_grain import _night
from test_night_scope import CROSSING, FIRST_NIGHT, check_equals_full_recompute, play
from test_snapshot_load import _changed, _row, _stage

from config.settings import Settings
from pipeline import run_local
from pipeline.audit import verify
from storage.adjudication import adjudicate
from storage.members import load_snapshot
from storage.warehouse import open_warehouse, transaction

WRONG = (
    "SELECT count(*) FROM enrollments "
    "WHERE member_number IS DISTINCT FROM member_number(national_id)"
)


def _canonical(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """``P<n>`` as a canonical identity number, but for person 7, who keeps a text without one."""
    out = []
    for r in rows:
        if not str(r["national_id"]).startswith("P"):  # made canonical before
            out.append(r)
            continue
        n = int(str(r["national_id"])[1:])
        out.append(
            r | {"national_id": r["national_id"] if n == 7 else national_id("1960-01-01", n)}
        )
    return out


def _load(warehouse: Path, folder: Path, rows: list[dict[str, object]], day: date) -> None:
    with open_warehouse(warehouse) as con, transaction(con):
        load_snapshot(
            con,
            staged=_stage(folder, rows, 2),
            snapshot_date=day,
            content_hash=str(day),
            run_id="r",
        )
        # A stay in the warehouse: the next load diffs (and so replaces the changed people only).
        con.execute(
            "INSERT INTO stay_outcomes (hospital_code, settlement_id, current_version, status, "
            "reason, national_id, match_method) SELECT 'H', 'S', 1, 'paid', '', 'P7', 'id' "
            "WHERE NOT EXISTS (SELECT 1 FROM stay_outcomes)"
        )


def _numbers(warehouse: Path) -> tuple[int, int, int]:
    """(rows, rows with a number, rows whose number is not their national_id's)."""
    with open_warehouse(warehouse, read_only=True) as con:
        rows, numbered = con.execute(
            "SELECT count(*), count(member_number) FROM enrollments"
        ).fetchone()  # type: ignore[misc]
        wrong = con.execute(WRONG).fetchone()[0]  # type: ignore[index]
    return rows, numbered, wrong


def test_the_whole_and_the_partial_load_write_every_enrolments_number(tmp_path: Path) -> None:
    rng = random.Random(25)
    old = _canonical([_row(i, rng.randrange(60), rng) for i in range(150)])
    warehouse = tmp_path / "w.duckdb"
    _load(warehouse, tmp_path / "a", old, date(2025, 1, 1))
    unnumbered = sum(r["national_id"] == "P7" for r in old)
    rows, numbered, wrong = _numbers(warehouse)
    assert (rows, numbered, wrong) == (len(old), len(old) - unnumbered, 0)
    with open_warehouse(warehouse, read_only=True) as con:
        kept = con.execute("SELECT hash_canary FROM fingerprint_keys").fetchall()
    assert kept, "the whole load kept its fingerprints: the next load replaces the changed only"
    new = _canonical(_changed(old, rng))
    _load(warehouse, tmp_path / "b", new, date(2025, 2, 1))
    unnumbered = sum(r["national_id"] == "P7" for r in new)
    assert _numbers(warehouse) == (len(new), len(new) - unnumbered, 0)


def _covering(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    adjudicate(con, full=True, write=False)
    return con.execute("SELECT * FROM calc_covering ORDER BY ALL").fetchall()


def test_an_enrolment_without_a_number_covers_as_one_with_it(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        assert con.execute(WRONG).fetchone() == (0,)
        before = _covering(con)
        assert before
        # half the people's enrolments without a number, as a table written by hand has them
        con.execute(
            "UPDATE enrollments SET member_number = NULL WHERE national_id IN ("
            "SELECT national_id FROM enrollments ORDER BY national_id "
            "LIMIT (SELECT count(*) // 2 FROM enrollments))"
        )
        assert con.execute(
            "SELECT count(*) FROM enrollments WHERE member_number IS NULL"
        ).fetchone() != (0,)
        assert _covering(con) == before
        # and a wrong number does not cover: the number is what the covering reads
        con.execute("UPDATE enrollments SET member_number = member_number + 1")
        assert _covering(con) != before


def test_a_warehouse_migrated_to_025_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    shutil.copytree(tmp_path / "crossing", tmp_path / "old")  # the warehouse with its outbox
    moved = Settings.build(
        tmp_path / "old" / "landing",
        tmp_path / "old" / "warehouse.duckdb",
        tmp_path / "old" / "outbox",
    )
    old = moved.warehouse
    with open_warehouse(old) as con:  # the warehouse as it was before 025
        con.execute("ALTER TABLE enrollments DROP COLUMN member_number")
        con.execute("DELETE FROM schema_migrations WHERE version = 25")
    with open_warehouse(old):  # a writer's open applies 025
        pass
    assert warehouse_as_made(old, "enrollments") == warehouse_as_made(
        settings.warehouse, "enrollments"
    )
    # and keeps its money: a night after, then a full recompute, move nothing
    night = CROSSING.nights + 1
    _night(moved, night, "N1")
    assert not run_local(moved, as_of=FIRST_NIGHT + timedelta(days=night)).failed
    check_equals_full_recompute(moved, tmp_path)
    assert verify(moved).findings == []
