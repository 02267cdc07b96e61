"""Migration 022: a night finds its people's other outcomes by their member number.

``stay_outcomes.member_number`` is the identity number as an integer (``member_number``, a macro
the migration keeps in the warehouse: 17 digits × 11 + the check character, X = 10), NULL for a
text of any other form; the night filters the outcomes by it and takes ``national_id`` from the
people it looks for, without reading that column. It replaced 014's ``hash(national_id)``, which
two people could share and so needed ``national_id`` read to check. Here: the number is one to
one on canonical identity numbers; every outcome carries its own, night after night; outcomes of
a person without one are still found (by ``national_id``); a warehouse migrated to 022 holds what
one written with it does; ``claims verify`` names a wrong number. The money is held to a full
recompute by the scoped-night property tests (``test_night_scope.py``, ``test_cap_prefix.py``).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
from samples import national_id, outcomes_as_before_022, warehouse_as_made
from test_instruction_grain import _night
from test_night_scope import CROSSING, FIRST_NIGHT, check_equals_full_recompute, play

from pipeline import run_local
from pipeline.audit import verify
from storage import adjudication, audit
from storage.members import SNAPSHOT_CHANGES
from storage.warehouse import open_warehouse

WRONG = (
    "SELECT count(*) FROM stay_outcomes "
    "WHERE member_number IS DISTINCT FROM member_number(national_id)"
)


def test_the_number_is_one_to_one_on_identity_numbers(tmp_path: Path) -> None:
    ids = [national_id("1956-03-14", n) for n in range(1, 200)]
    ids += ["11010519491231002X", "110105194912310020", "999999999999999999", "00000000000000000X"]
    with open_warehouse(tmp_path / "w.duckdb") as con:
        numbers = {
            i: con.execute("SELECT member_number($i)", {"i": i}).fetchone()[0]  # type: ignore[index]
            for i in ids
        }
        others = [
            con.execute("SELECT member_number($i)", {"i": t}).fetchone()[0]  # type: ignore[index]
            for t in ("", "11010519491231002x", "110105491231002", " 110105194912310020", "P1")
        ]
    assert len(set(numbers.values())) == len(ids)
    assert all(isinstance(n, int) and 0 <= n < 2**63 for n in numbers.values())
    assert numbers["11010519491231002X"] == 11010519491231002 * 11 + 10
    assert others == [None] * 5


def test_every_outcome_carries_its_member_number_night_after_night(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute("SELECT count(member_number) FROM stay_outcomes").fetchone() != (0,)
        assert con.execute(WRONG).fetchone() == (0,)
    # a new stay of a person with stays in the same annual caps: the night finds them by number
    night = CROSSING.nights + 1
    _night(settings, night, "N1")
    assert not run_local(settings, as_of=FIRST_NIGHT + timedelta(days=night)).failed
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(WRONG).fetchone() == (0,)
    check_equals_full_recompute(settings, tmp_path)
    assert verify(settings).findings == []


def _people_rows(con: duckdb.DuckDBPyConnection, people: list[str]) -> set[tuple[Any, ...]]:
    """The night's read of its people's other outcomes, as ``adjudicate`` makes it."""
    con.execute("CREATE OR REPLACE TEMP TABLE affected_people (national_id VARCHAR)")
    con.executemany("INSERT INTO affected_people VALUES (?)", [[p] for p in people])
    con.execute(adjudication.PEOPLE_ROWS_SQL)
    unnumbered = con.execute(adjudication.UNNUMBERED_PEOPLE_SQL).fetchone()
    if unnumbered and unnumbered[0]:
        con.execute(adjudication.PEOPLE_ROWS_BY_ID_SQL)
    return set(
        con.execute("SELECT national_id, hospital_code, settlement_id FROM people_rows").fetchall()
    )


def test_a_person_without_a_number_is_found_by_national_id(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        covered = con.execute(
            "SELECT national_id, hospital_code, settlement_id FROM stay_outcomes "
            "WHERE (status IN ('paid', 'not_covered', 'zero_benefit') "
            "OR (status = 'review' AND reason = 'overlap')) AND discharge_date IS NOT NULL "
            "ORDER BY ALL"
        ).fetchall()
        assert covered
        who = covered[0][0]
        # the same outcomes under a text that is no canonical identity number: no number
        con.execute(
            "INSERT INTO stay_outcomes BY NAME SELECT * REPLACE ('P-1' AS national_id, "
            "member_number('P-1') AS member_number, settlement_id || '-copy' AS settlement_id) "
            "FROM stay_outcomes WHERE national_id = $w",
            {"w": who},
        )
        mine = {r for r in covered if r[0] == who}
        copies = {("P-1", h, s + "-copy") for _, h, s in mine}
        assert _people_rows(con, [who]) == mine
        assert _people_rows(con, ["P-1"]) == copies
        assert _people_rows(con, [who, "P-1"]) == mine | copies


def _snapshot_scope(con: duckdb.DuckDBPyConnection, people: list[str]) -> set[tuple[str, str]]:
    """The stays a new snapshot that changed ``people`` re-matches through their outcomes."""
    con.execute("CREATE OR REPLACE TEMP TABLE scope (hospital_code VARCHAR, settlement_id VARCHAR)")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {SNAPSHOT_CHANGES} (national_id VARCHAR, "
        "member_name_norm VARCHAR, birth_date DATE, gender VARCHAR)"
    )
    for who in people:
        con.execute(f"INSERT INTO {SNAPSHOT_CHANGES} VALUES ($w, NULL, NULL, NULL)", {"w": who})
    adjudication._add_snapshot_scope(con)
    return set(con.execute("SELECT * FROM scope").fetchall())  # type: ignore[arg-type]


def test_a_new_snapshot_finds_the_outcomes_of_a_person_without_a_number(tmp_path: Path) -> None:
    """The snapshot's scope asks for people without a number apart (ADR 0029), and finds
    their outcomes by national_id; a person with one by the number alone."""
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        who = con.execute("SELECT min(national_id) FROM stay_outcomes WHERE national_id <> ''")
        who = who.fetchone()[0]  # type: ignore[index]
        mine = set(
            con.execute(
                "SELECT hospital_code, settlement_id FROM stay_outcomes WHERE national_id = $w "
                "UNION SELECT hospital_code, settlement_id FROM stays "
                "WHERE is_valid_id AND national_id = $w",
                {"w": who},
            ).fetchall()
        )
        con.execute(
            "INSERT INTO stay_outcomes BY NAME SELECT * REPLACE ('P-1' AS national_id, "
            "member_number('P-1') AS member_number, settlement_id || '-copy' AS settlement_id) "
            "FROM stay_outcomes WHERE national_id = $w",
            {"w": who},
        )
        copies = {
            (h, s + "-copy")
            for h, s in con.execute(
                "SELECT hospital_code, settlement_id FROM stay_outcomes WHERE national_id = $w",
                {"w": who},
            ).fetchall()
        }
        assert mine and copies
        assert _snapshot_scope(con, [who]) == mine
        assert _snapshot_scope(con, ["P-1"]) == copies
        assert _snapshot_scope(con, [who, "P-1"]) == mine | copies


def test_a_warehouse_migrated_to_022_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    old = tmp_path / "old.duckdb"
    shutil.copy(settings.warehouse, old)
    with open_warehouse(old) as con:
        outcomes_as_before_022(con)
        con.execute("DELETE FROM schema_migrations WHERE version = 22")
    con = duckdb.connect(str(old), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM warehouse_keys").fetchone() == (1,)
    finally:
        con.close()
    with open_warehouse(old):  # a writer's open applies 022
        pass
    migrated = warehouse_as_made(old, "stay_outcomes")
    assert "warehouse_keys" not in migrated
    assert migrated == warehouse_as_made(settings.warehouse, "stay_outcomes")


def test_verify_names_an_outcome_with_a_wrong_number(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    assert verify(settings).findings == []
    con = duckdb.connect(str(settings.warehouse))
    try:
        stay = con.execute(
            "SELECT hospital_code, settlement_id FROM stay_outcomes "
            "WHERE member_number IS NOT NULL ORDER BY ALL LIMIT 1"
        ).fetchone()
        assert stay is not None
        con.execute(
            "UPDATE stay_outcomes SET member_number = member_number + 1 "
            "WHERE hospital_code = $h AND settlement_id = $s",
            {"h": stay[0], "s": stay[1]},
        )
    finally:
        con.close()
    found = [f for f in verify(settings).findings if f.check == "member_number"]
    assert len(found) == 1 and stay[1] in found[0].subject
    with open_warehouse(settings.warehouse, read_only=True) as con2:
        assert len(audit.member_numbers(con2)) == 1
