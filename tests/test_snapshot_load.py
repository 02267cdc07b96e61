"""The snapshot load's diff: one join on enrollment_id finds exactly the people whose enrolment
rows differ in any column, as two set differences over whole rows do (issue 16), on the
fingerprints the load before kept (migration 023); when they cannot be compared (a warehouse
from before 023, another way of hashing), exactly the people whose kept rows change (their
enrolments' cover or their member row, migration 024, ADR 0034), on both sides hashed anew;
over kept fingerprints only the changed people's rows are replaced, and the tables end as a
load that replaces everyone leaves them (ADR 0029)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from storage.members import (
    SNAPSHOT_CHANGES,
    fingerprint_canary,
    fingerprints,
    load_budget,
    load_snapshot,
)
from storage.warehouse import open_warehouse, transaction
from transforms.enrollments import STAGED_COLUMNS

COLUMNS = ", ".join(STAGED_COLUMNS)
# What ``enrollments`` keeps of a row (its cover, migration 024), and what ``members`` keeps of
# a person's latest row.
COVER = ["enrollment_id", "national_id", "plan_code", "coverage_start", "coverage_end"]
PERSON = ["member_name", "member_name_norm", "gender", "birth_date", "payee_account"]


def _row(eid: int, person: int, rng: random.Random) -> dict[str, object]:
    start = date(2024, 1, 1) + timedelta(days=rng.randrange(400))
    end = None if rng.random() < 0.4 else start + timedelta(days=rng.randrange(30, 400))
    name = rng.choice(["张伟", "王芳", "李娜"])
    return {
        "enrollment_id": f"E{eid}",
        "national_id": f"P{person}",
        "member_name": name,
        "member_name_norm": name,
        "gender": rng.choice("MF"),
        "birth_date": date(1950, 1, 1) + timedelta(days=rng.randrange(20_000)),
        "plan_code": rng.choice(["RETIREE_INPATIENT", "WORKER_MUTUAL"]),
        "coverage_start": start,
        "coverage_end": end,
        "payee_account": f"{rng.randrange(10**15, 10**16)}",
    }


def _changed(rows: list[dict[str, object]], rng: random.Random) -> list[dict[str, object]]:
    """Each row kept, dropped, moved to another person or changed in one column; some added."""
    out: list[dict[str, object]] = []
    for r in rows:
        r = dict(r)
        what = rng.randrange(12)
        if what == 0:
            continue
        if what == 1:
            r["national_id"] = f"P{rng.randrange(60)}"
        elif what == 2:
            r["coverage_end"] = None if r["coverage_end"] else r["coverage_start"]
        elif what == 3:
            column = rng.choice(
                ["member_name", "member_name_norm", "gender", "plan_code", "payee_account"]
            )
            r[column] = {"gender": "X", "plan_code": "GIG_WORKER"}.get(column, f"{r[column]}9")
        elif what == 4:
            r["birth_date"] = r["birth_date"] + timedelta(days=1)  # type: ignore[operator]
        elif what == 5:
            r["coverage_start"] = r["coverage_start"] - timedelta(days=1)  # type: ignore[operator]
        out.append(r)
    out += [_row(1000 + i, rng.randrange(70), rng) for i in range(rng.randrange(5))]
    return out


def _schema() -> dict[str, type[pl.DataType]]:
    return {
        c: pl.Date if c.endswith(("_date", "_start", "_end")) else pl.String
        for c in COLUMNS.split(", ")
    }


def _stage(folder: Path, rows: list[dict[str, object]], slices: int) -> Path:
    folder.mkdir(parents=True)
    frame = pl.DataFrame(rows, schema=_schema()).select(STAGED_COLUMNS)
    size = max(1, -(-frame.height // slices))
    for i in range(slices):
        frame.slice(i * size, size).write_ipc(
            folder / f"part-{i:04d}.arrow", compression="uncompressed"
        )
    return folder


def fingerprints_of(
    rows: list[dict[str, object]], *, large: bool = False, batch: int = 1 << 20
) -> list[int]:
    frame = pl.DataFrame(rows, schema=_schema()).select(STAGED_COLUMNS)
    table = frame.to_arrow()
    if large:
        table = table.cast(
            pa.schema(
                pa.field(f.name, pa.large_string())
                if pa.types.is_string(f.type) or pa.types.is_string_view(f.type)
                else f
                for f in table.schema
            )
        )
    return fingerprints(table, batch=batch).column("fingerprint").to_pylist()


def _first_load(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    warehouse = tmp_path / "w.duckdb"
    with open_warehouse(warehouse) as con, transaction(con):
        load_snapshot(
            con,
            staged=_stage(tmp_path / "a", rows, 1),
            snapshot_date=date(2025, 1, 1),
            content_hash="a",
            run_id="r1",
        )
        # A stay in the warehouse: the load diffs only when there is something to re-match.
        con.execute(
            "INSERT INTO stay_outcomes (hospital_code, settlement_id, current_version, status, "
            "reason, national_id, match_method) "
            "VALUES ('H', 'S', 1, 'paid', '', 'P1', 'id')"
        )
    return warehouse


def _differing(before: pl.DataFrame, after: pl.DataFrame, on: list[str]) -> set[str]:
    """The people of the rows, old or new, without an equal twin on the other side in ``on``."""
    return {
        *pl.concat(
            [
                before.join(after, on=on, how="anti", nulls_equal=True),
                after.join(before, on=on, how="anti", nulls_equal=True),
            ]
        )
        .get_column("national_id")
        .to_list()
    }


def _latest(rows: pl.DataFrame) -> pl.DataFrame:
    """Each person's row with the latest start, then the greatest id (benefits.md, *Matching*)."""
    order = ["national_id", "coverage_start", "enrollment_id"]
    return rows.sort(order).group_by("national_id", maintain_order=True).last()


def _diff(
    warehouse: Path,
    folder: Path,
    old: list[dict[str, object]],
    new: list[dict[str, object]],
    day: date,
    *,
    kept: bool = True,
) -> tuple[set[str], set[object]]:
    """Load ``new`` over ``old``, the snapshot in effect: (the people it names, the people set
    differences name). On kept fingerprints (``kept``): over whole rows. Otherwise over what
    the warehouse keeps (ADR 0034): the enrolments' cover, and each person's latest row."""
    before = pl.DataFrame(old, schema=_schema()).select(STAGED_COLUMNS)
    after = pl.DataFrame(new, schema=_schema()).select(STAGED_COLUMNS)
    if kept:
        expected = _differing(before, after, STAGED_COLUMNS)
    else:
        expected = _differing(before, after, COVER) | _differing(
            _latest(before).join(_latest(after), on="national_id", how="semi"),
            _latest(after).join(_latest(before), on="national_id", how="semi"),
            ["national_id", *PERSON],
        )
    with open_warehouse(warehouse) as con, transaction(con):
        load_snapshot(
            con,
            staged=_stage(folder, new, 3),
            snapshot_date=day,
            content_hash=folder.name,
            run_id=folder.name,
        )
        found = con.sql(f"SELECT DISTINCT national_id FROM {SNAPSHOT_CHANGES}").fetchall()
        loaded = con.sql(f"SELECT {', '.join(COVER)} FROM enrollments").pl()
        members = con.sql(f"SELECT national_id, {', '.join(PERSON)} FROM members").pl()
        missing = con.sql("SELECT count(*) FROM enrollments WHERE fingerprint IS NULL").fetchall()
        canary = con.sql("SELECT hash_canary FROM fingerprint_keys").fetchall()
    assert loaded.sort("enrollment_id").equals(after.select(COVER).sort("enrollment_id"))
    assert members.sort("national_id").equals(
        _latest(after).select(members.columns).sort("national_id")
    )
    assert missing == [(0,)] and canary == [(fingerprint_canary(),)]  # kept for the next diff
    return {r[0] for r in found}, expected


@pytest.mark.parametrize("seed", range(8))
def test_the_diff_names_the_people_a_set_difference_names(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    old = [_row(i, rng.randrange(50), rng) for i in range(200)]
    warehouse = _first_load(tmp_path, old)
    second = _changed(old, rng)
    found, expected = _diff(warehouse, tmp_path / "b", old, second, date(2025, 2, 1))
    assert expected, "the random changes changed somebody"
    assert found == expected
    # and again, on the fingerprints the second load kept
    third = _changed(second, rng)
    found, expected = _diff(warehouse, tmp_path / "c", second, third, date(2025, 3, 1))
    assert expected and found == expected


def _as_before_023(warehouse: Path) -> None:
    """Put ``enrollments`` back as 002 made it (no fingerprints), and forget migration 023."""
    with open_warehouse(warehouse) as con:
        con.execute("ALTER TABLE enrollments DROP COLUMN fingerprint")
        con.execute("DROP TABLE fingerprint_keys")
        con.execute("DELETE FROM schema_migrations WHERE version = 23")


@pytest.mark.parametrize("seed", range(4))
def test_a_warehouse_from_before_023_diffs_as_it_did_then_keeps_fingerprints(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    old = [_row(i, rng.randrange(50), rng) for i in range(200)]
    warehouse = _first_load(tmp_path, old)
    _as_before_023(warehouse)
    with open_warehouse(warehouse) as con:  # migrates
        assert con.sql("SELECT count(fingerprint) FROM enrollments").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM fingerprint_keys").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM enrollments").fetchall() == [(len(old),)]
    second = _changed(old, rng)
    found, expected = _diff(warehouse, tmp_path / "b", old, second, date(2025, 2, 1), kept=False)
    assert expected and found == expected  # not everyone: the old side was hashed anew
    third = _changed(second, rng)
    found, expected = _diff(warehouse, tmp_path / "c", second, third, date(2025, 3, 1))
    assert expected and found == expected


def test_a_warehouse_from_before_024_keeps_its_cover_and_diffs_on_its_fingerprints(
    tmp_path: Path,
) -> None:
    """Migration 024 drops the person's columns from ``enrollments`` (their member row keeps
    them): the cover, chains and fingerprints stay, and the next diff reads the fingerprints."""
    rng = random.Random(11)
    old = [_row(i, rng.randrange(50), rng) for i in range(200)]
    warehouse = _first_load(tmp_path, old)
    with open_warehouse(warehouse) as con:
        before = con.sql("SELECT * FROM enrollments ORDER BY enrollment_id").fetchall()
        for column, kind in zip(PERSON, ["VARCHAR"] * 3 + ["DATE", "VARCHAR"], strict=True):
            con.execute(f"ALTER TABLE enrollments ADD COLUMN {column} {kind}")
        con.execute("UPDATE enrollments SET member_name = 'someone', payee_account = '6222'")
        con.execute("DELETE FROM schema_migrations WHERE version = 24")
    with open_warehouse(warehouse) as con:  # migrates
        columns = [r[0] for r in con.sql("DESCRIBE enrollments").fetchall()]
        after = con.sql("SELECT * FROM enrollments ORDER BY enrollment_id").fetchall()
    assert columns == [*COVER, "chain_start", "fingerprint"] and after == before
    second = _changed(old, rng)
    found, expected = _diff(warehouse, tmp_path / "b", old, second, date(2025, 2, 1))
    assert expected and found == expected


def _spoil(warehouse: Path, enrollment_id: str, *, canary: bool) -> None:
    """A kept fingerprint that no longer fits its row; with ``canary``, also a canary that says
    the fingerprints were made some other way."""
    with open_warehouse(warehouse) as con:
        con.execute(
            "UPDATE enrollments SET fingerprint = fingerprint + 1 WHERE enrollment_id = $e",
            {"e": enrollment_id},
        )
        if canary:
            con.execute("UPDATE fingerprint_keys SET hash_canary = hash_canary + 1")


def test_the_diff_reads_the_kept_fingerprints_while_the_canary_matches(tmp_path: Path) -> None:
    rng = random.Random(7)
    old = [_row(i, i % 50, rng) for i in range(200)]
    warehouse = _first_load(tmp_path, old)
    _spoil(warehouse, "E3", canary=False)
    found, expected = _diff(warehouse, tmp_path / "b", old, old, date(2025, 2, 1))
    # nothing changed, but the kept fingerprint of E3 says it did: it was read
    assert expected == set() and found == {"P3"}


def test_a_canary_that_differs_hashes_both_sides_anew(tmp_path: Path) -> None:
    rng = random.Random(8)
    old = [_row(i, i % 50, rng) for i in range(200)]
    warehouse = _first_load(tmp_path, old)
    _spoil(warehouse, "E3", canary=True)
    found, expected = _diff(warehouse, tmp_path / "b", old, old, date(2025, 2, 1), kept=False)
    assert expected == set() and found == set()  # the kept fingerprints were not read


def test_a_fingerprint_covers_every_column_and_tells_null_from_empty() -> None:
    rng = random.Random(9)
    row = _row(1, 1, rng)
    base = fingerprints_of([row])
    for column, value in row.items():
        other = {**row, column: None if value is not None else date(2030, 1, 1)}
        assert fingerprints_of([other]) != base, column
    assert fingerprints_of([{**row, "payee_account": ""}]) != fingerprints_of(
        [{**row, "payee_account": None}]
    )
    # the value alone counts, not the text's Arrow type or the batch it arrives in
    assert fingerprints_of([row], large=True) == base
    assert fingerprints_of([row, row] * 3, batch=2)[:1] == base


def test_a_failed_load_leaves_nothing_and_compression_as_it_was(tmp_path: Path) -> None:
    # ... and DuckDB's memory cap, which a load lowers by the size of the slices it maps.
    rng = random.Random(1)
    good = [_row(i, i, rng) for i in range(20)]
    bad = [*good[:10], {**good[10], "national_id": None}]  # breaks enrollments' NOT NULL
    warehouse = tmp_path / "w.duckdb"
    with open_warehouse(warehouse) as con:
        default = con.sql("SELECT current_setting('force_compression')").fetchall()
        cap = con.sql("SELECT current_setting('memory_limit')").fetchall()
        with transaction(con):
            load_snapshot(
                con,
                staged=_stage(tmp_path / "a", good, 2),
                snapshot_date=date(2025, 1, 1),
                content_hash="a",
                run_id="r1",
            )
        with pytest.raises(duckdb.ConstraintException), transaction(con):
            load_snapshot(
                con,
                staged=_stage(tmp_path / "b", bad, 1),
                snapshot_date=date(2025, 2, 1),
                content_hash="b",
                run_id="r2",
            )
        assert con.sql("SELECT current_setting('force_compression')").fetchall() == default
        assert con.sql("SELECT current_setting('memory_limit')").fetchall() == cap
        assert con.sql("SELECT count(*) FROM enrollments").fetchall() == [(20,)]
        assert con.sql("SELECT content_hash FROM current_snapshot").fetchall() == [("a",)]


def test_duckdb_gets_the_cap_less_the_mapped_slices_never_below_half() -> None:
    """The slices DuckDB scans in place are this process's memory too (~1.5 GB at 10 M
    enrolments): during the load DuckDB's cap is lowered by their size, never below half."""
    gb = 10**9
    assert load_budget(4 * gb, int(1.5 * gb)) == int(2.5 * gb)
    assert load_budget(4 * gb, 0) == 4 * gb
    assert load_budget(4 * gb, 3 * gb) == 2 * gb


def _load_and_read(warehouse: Path, folder: Path, new: list[dict[str, object]]) -> dict[str, list]:
    """Load ``new`` over the snapshot in effect: every table the load writes, and the changes
    it hands to adjudication (the people and their demographics, old and new)."""
    with open_warehouse(warehouse) as con, transaction(con):
        load_snapshot(
            con,
            staged=_stage(folder, new, 3),
            snapshot_date=date(2025, 2, 1),
            content_hash="b",
            run_id="r2",
        )
        tables = {
            "enrollments": "SELECT * FROM enrollments ORDER BY ALL",
            "members": "SELECT * FROM members ORDER BY ALL",
            "changes": f"SELECT DISTINCT * FROM {SNAPSHOT_CHANGES} ORDER BY ALL",
            "current_snapshot": "SELECT snapshot_date, content_hash, row_count, run_id "
            "FROM current_snapshot",
            "fingerprint_keys": "SELECT * FROM fingerprint_keys",
            "rowids": "SELECT enrollment_id, rowid FROM enrollments ORDER BY ALL",
        }
        return {name: con.sql(sql).fetchall() for name, sql in tables.items()}


@pytest.mark.parametrize("seed", range(8))
def test_replacing_the_changed_people_writes_what_replacing_everyone_writes(
    tmp_path: Path, seed: int
) -> None:
    """Over kept fingerprints only the changed people's rows are written again (ADR 0029): the
    enrolments (with chains and fingerprints) and the members are those of a load that replaces
    every row (forced by a canary that says the kept fingerprints were made otherwise), and so
    are the changes handed to adjudication, but for the people whose earlier enrolments alone
    changed a name or a payee: the kept fingerprints name them too (ADR 0034), with the same
    demographics before and after."""
    rng = random.Random(seed)
    old = [_row(i, rng.randrange(120), rng) for i in range(200)]  # some people unchanged
    warehouse = _first_load(tmp_path, old)
    whole = tmp_path / "whole.duckdb"
    whole.write_bytes(warehouse.read_bytes())
    with open_warehouse(whole) as con:
        con.execute("UPDATE fingerprint_keys SET hash_canary = hash_canary + 1")
    with open_warehouse(warehouse) as con:
        rowids = dict(con.sql("SELECT enrollment_id, rowid FROM enrollments").fetchall())
    new = _changed(old, rng)
    changed = _load_and_read(warehouse, tmp_path / "b", new)
    everyone = _load_and_read(whole, tmp_path / "c", new)
    kept = {e for e, rowid in changed.pop("rowids") if rowids.get(e) == rowid}
    moved = {e for e, rowid in everyone.pop("rowids") if rowids.get(e) == rowid}
    named, named_by_all = set(changed["changes"]), set(everyone.pop("changes"))
    extra = {r[0] for r in named - named_by_all}
    assert {r for r in named if r[0] not in extra} == named_by_all
    for person in extra:  # one set of demographics, and the row that names them
        assert len({r for r in named if r[0] == person and r[1] is not None}) == 1
    assert changed.pop("changes") and changed == everyone
    # the unchanged people's rows were left where they were; the whole load wrote every row
    people = {r[0] for r in named}
    unchanged = {r[0] for r in changed["enrollments"] if r[1] not in people}
    assert kept == unchanged and unchanged and not moved
