"""The snapshot load's diff: one join on enrollment_id finds exactly the people whose enrolment
rows differ in any column, as two set differences over whole rows do (issue 16)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from storage.members import SNAPSHOT_CHANGES, load_budget, load_snapshot
from storage.warehouse import open_warehouse, transaction
from transforms.enrollments import STAGED_COLUMNS

COLUMNS = ", ".join(STAGED_COLUMNS)


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


def _stage(folder: Path, rows: list[dict[str, object]], slices: int) -> Path:
    folder.mkdir(parents=True)
    schema = {
        c: pl.Date if c.endswith(("_date", "_start", "_end")) else pl.String
        for c in COLUMNS.split(", ")
    }
    frame = pl.DataFrame(rows, schema=schema).select(STAGED_COLUMNS)
    size = max(1, -(-frame.height // slices))
    for i in range(slices):
        frame.slice(i * size, size).write_ipc(
            folder / f"part-{i:04d}.arrow", compression="uncompressed"
        )
    return folder


@pytest.mark.parametrize("seed", range(8))
def test_the_diff_names_the_people_a_set_difference_names(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    old = [_row(i, rng.randrange(50), rng) for i in range(200)]
    new = _changed(old, rng)
    warehouse = tmp_path / "w.duckdb"
    with open_warehouse(warehouse) as con, transaction(con):
        load_snapshot(
            con,
            staged=_stage(tmp_path / "a", old, 1),
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
    with open_warehouse(warehouse) as con, transaction(con):
        before = con.sql(f"SELECT {COLUMNS} FROM enrollments").pl()
        after = pl.DataFrame(new, schema=before.schema).select(STAGED_COLUMNS)
        expected = {
            *pl.concat(
                [
                    before.join(after, on=STAGED_COLUMNS, how="anti", nulls_equal=True),
                    after.join(before, on=STAGED_COLUMNS, how="anti", nulls_equal=True),
                ]
            )
            .get_column("national_id")
            .to_list()
        }
        load_snapshot(
            con,
            staged=_stage(tmp_path / "b", new, 3),
            snapshot_date=date(2025, 2, 1),
            content_hash="b",
            run_id="r2",
        )
        found = con.sql(f"SELECT DISTINCT national_id FROM {SNAPSHOT_CHANGES}").fetchall()
        loaded = con.sql(f"SELECT {COLUMNS} FROM enrollments").pl()
        members = con.sql("SELECT count(*) FROM members").fetchall()[0]
    assert expected, "the random changes changed somebody"
    assert {r[0] for r in found} == expected
    assert loaded.sort("enrollment_id").equals(after.sort("enrollment_id"))
    assert members == (after.get_column("national_id").n_unique(),)


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
