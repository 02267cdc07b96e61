"""The snapshot load's chains and members, derived from the staged rows before the insert, against a
plain Python reading of benefits.md (gaps and islands per (person, plan); a person's attributes
from the enrolment with the latest coverage_start, ties by the greatest enrollment_id)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from storage.members import load_snapshot, repeat_flags
from storage.warehouse import open_warehouse, transaction
from transforms.enrollments import STAGED_COLUMNS

PLANS = ["RETIREE_INPATIENT", "WORKER_MUTUAL", "GIG_WORKER"]


def _rows(rng: random.Random, people: int, count: int) -> list[dict[str, object]]:
    rows = []
    for eid in range(count):
        start = date(2024, 1, 1) + timedelta(days=rng.randrange(300))
        # Chains that touch (end + 1 = next start), overlap, gap, or stay open.
        end = None if rng.random() < 0.3 else start + timedelta(days=rng.randrange(0, 120))
        name = rng.choice(["张伟", "王芳", "李娜"])
        rows.append(
            {
                "enrollment_id": f"E{rng.randrange(10**6):06d}-{eid}",
                "national_id": f"P{rng.randrange(people)}",
                "member_name": name,
                "member_name_norm": name,
                "gender": rng.choice("MF"),
                "birth_date": date(1950, 1, 1) + timedelta(days=rng.randrange(20_000)),
                "plan_code": rng.choice(PLANS),
                "coverage_start": start,
                "coverage_end": end,
                "payee_account": f"{rng.randrange(10**15, 10**16)}",
            }
        )
    return rows


def _chain_starts(rows: list[dict[str, object]]) -> dict[str, date]:
    out: dict[str, date] = {}
    pairs: dict[tuple[object, object], list[dict[str, object]]] = {}
    for r in rows:
        pairs.setdefault((r["national_id"], r["plan_code"]), []).append(r)
    for group in pairs.values():
        group.sort(key=lambda r: (r["coverage_start"], r["enrollment_id"]))
        covered_until: date | None = None
        chain: date | None = None
        for r in group:
            start = r["coverage_start"]
            assert isinstance(start, date)
            if covered_until is None or start > covered_until + timedelta(days=1):
                chain = start
            end = r["coverage_end"] or date(9999, 12, 30)
            assert isinstance(end, date) and chain is not None
            covered_until = end if covered_until is None else max(covered_until, end)
            out[str(r["enrollment_id"])] = chain
    return out


def _members(rows: list[dict[str, object]]) -> set[tuple[object, ...]]:
    latest: dict[object, dict[str, object]] = {}
    for r in rows:
        key = (r["coverage_start"], r["enrollment_id"])
        best = latest.get(r["national_id"])
        if best is None or key > (best["coverage_start"], best["enrollment_id"]):  # type: ignore[operator]
            latest[r["national_id"]] = r
    return {
        (r["national_id"], r["member_name"], r["gender"], r["birth_date"], r["payee_account"])
        for r in latest.values()
    }


def _stage(folder: Path, rows: list[dict[str, object]], slices: int) -> Path:
    folder.mkdir(parents=True)
    schema = {
        c: pl.Date if c in ("birth_date", "coverage_start", "coverage_end") else pl.String
        for c in STAGED_COLUMNS
    }
    frame = pl.DataFrame(rows, schema=schema).select(STAGED_COLUMNS)
    size = max(1, -(-frame.height // slices))
    for i in range(slices):
        frame.slice(i * size, size).write_ipc(
            folder / f"part-{i:04d}.arrow", compression="uncompressed"
        )
    return folder


@pytest.mark.parametrize("seed", range(6))
def test_chains_and_members_equal_a_plain_reading(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # Few people for many rows: most pairs repeat, across slices too; some people have one row.
    rows = _rows(rng, people=rng.choice([5, 40, 400]), count=rng.randrange(1, 600))
    staged = _stage(tmp_path / "staged", rows, slices=rng.randrange(1, 4))
    with open_warehouse(tmp_path / "w.duckdb") as con:
        with transaction(con):
            count = load_snapshot(
                con, staged=staged, snapshot_date=date(2025, 1, 1), content_hash="h", run_id="r"
            )
        chains = dict(con.execute("SELECT enrollment_id, chain_start FROM enrollments").fetchall())
        members = set(
            con.execute(
                "SELECT national_id, member_name, gender, birth_date, payee_account FROM members"
            ).fetchall()
        )
    assert count == len(rows)
    assert chains == _chain_starts(rows)
    assert members == _members(rows)


@pytest.mark.parametrize("seed", range(6))
def test_repeat_flags_are_exact_counts(seed: int) -> None:
    rng = random.Random(seed)
    ids = [
        rng.choice(["", "P1", "P2", "1", "11", "P1P2"]) + str(rng.randrange(30)) for _ in range(500)
    ]
    table = pa.table({"national_id": ids, "other": list(range(len(ids)))})
    flagged = repeat_flags(table)
    people = Counter(ids)
    assert flagged.column("several_person").to_pylist() == [people[i] > 1 for i in ids]
    assert flagged.column("other").to_pylist() == list(range(len(ids)))


def _frame(rows: list[dict[str, object]], flag_everyone: bool) -> pl.DataFrame:
    people = Counter(r["national_id"] for r in rows)
    return pl.DataFrame(
        {
            "national_id": [r["national_id"] for r in rows],
            "plan_code": [r["plan_code"] for r in rows],
            "coverage_start": [r["coverage_start"] for r in rows],
            "coverage_end": [r["coverage_end"] for r in rows],
            "enrollment_id": [r["enrollment_id"] for r in rows],
            # A collision can flag a person with one row: flagging everyone plays it.
            "several_person": [flag_everyone or people[r["national_id"]] > 1 for r in rows],
        },
        schema_overrides={"coverage_end": pl.Date},
    )


def _latest_ids(rows: list[dict[str, object]]) -> set[str]:
    best: dict[object, tuple[object, object]] = {}
    for r in rows:
        key = (r["coverage_start"], r["enrollment_id"])
        if r["national_id"] not in best or key > best[r["national_id"]]:  # type: ignore[operator]
            best[r["national_id"]] = key
    return {str(eid) for _, eid in best.values()}


@pytest.mark.parametrize("seed", range(4))
def test_chains_and_latest_do_not_depend_on_the_keys(seed: int) -> None:
    """The 64-bit keys of people and plans only order the rows: a key shared by many people
    (one value for all, or the plan's hash) or by a person's plans is found out and the strings
    decide, with the same chain starts and the same latest rows."""
    from storage.members import _derive

    rng = random.Random(seed)
    rows = _rows(rng, people=rng.choice([3, 30]), count=rng.randrange(1, 400))
    # Same-day starts of one person: the id decides which is the latest.
    for r in rows[: len(rows) // 5]:
        r["coverage_start"] = date(2024, 3, 1)
    expected_chains, expected_latest = _chain_starts(rows), _latest_ids(rows)
    nid, plan = pl.col("national_id"), pl.col("plan_code")
    # the first key of each pair orders, the second checks: colliding first keys are found out
    person_keys = [(nid.hash(), nid.hash(seed=2)), (pl.lit(7, pl.UInt64), nid.hash(seed=2))]
    person_keys.append((plan.hash(), nid.hash(seed=2)))
    plan_keys = [(plan.hash(seed=1), plan.hash(seed=3)), (pl.lit(0, pl.UInt64), plan.hash(seed=3))]
    plan_keys.append((nid.hash(), plan.hash(seed=3)))
    for flag_everyone in (False, True):
        frame = _frame(rows, flag_everyone)
        for person in person_keys:
            for plan in plan_keys:
                starts, latest = _derive(frame, person, plan)
                ids = [str(r["enrollment_id"]) for r in rows]
                assert dict(zip(ids, starts.to_list(), strict=True)) == expected_chains
                assert {i for i, x in zip(ids, latest.to_list(), strict=True) if x} == (
                    expected_latest
                )


def test_chain_starts_at_the_ends_of_the_calendar() -> None:
    """Days from 0001-01-01 to 9999-12-31, open ends, a chain continued the day after an end."""
    from storage.members import derive, repeat_flags

    first, last = date(1, 1, 1), date(9999, 12, 31)
    table = pa.table(
        {
            "national_id": ["A", "A", "A", "A", "B", "B"],
            "plan_code": ["P", "P", "P", "Q", "P", "P"],
            "coverage_start": [first, date(1, 1, 2), last, last, date(2024, 1, 1), last],
            "coverage_end": [first, date(1, 1, 5), None, None, None, None],
            "enrollment_id": ["1", "2", "3", "4", "5", "6"],
        },
        schema=pa.schema(
            [
                ("national_id", pa.string()),
                ("plan_code", pa.string()),
                ("coverage_start", pa.date32()),
                ("coverage_end", pa.date32()),
                ("enrollment_id", pa.string()),
            ]
        ),
    )
    derived = derive(repeat_flags(table))
    starts = derived.column("chain_start").to_pylist()
    assert starts == [first, first, last, last, date(2024, 1, 1), date(2024, 1, 1)]
    # the latest by start, then id: A's two rows starting 9999-12-31, the greater id
    assert derived.column("latest").to_pylist() == [False, False, False, True, False, True]


def test_members_take_the_latest_start_then_the_greatest_id(tmp_path: Path) -> None:
    """Same-day starts: the greater enrollment_id gives the person's name and payee; a later
    start wins over a greater id; a person's single enrolment is their member row."""

    def row(eid: str, nid: str, start: date, payee: str) -> dict[str, object]:
        return {
            "enrollment_id": eid,
            "national_id": nid,
            "member_name": f"N{eid}",
            "member_name_norm": f"N{eid}",
            "gender": "F",
            "birth_date": date(1970, 1, 1),
            "plan_code": PLANS[0],
            "coverage_start": start,
            "coverage_end": None,
            "payee_account": payee,
        }

    rows = [
        row("E2", "A", date(2024, 5, 1), "A-greater-id"),
        row("E1", "A", date(2024, 5, 1), "A-smaller-id"),
        row("E0", "A", date(2024, 1, 1), "A-earlier"),
        row("E3", "B", date(2024, 6, 1), "B-later"),
        row("E9", "B", date(2024, 2, 1), "B-greater-id-earlier"),
        row("E5", "C", date(2024, 3, 1), "C-only"),
    ]
    staged = _stage(tmp_path / "staged", rows, slices=2)
    with open_warehouse(tmp_path / "w.duckdb") as con:
        with transaction(con):
            load_snapshot(
                con, staged=staged, snapshot_date=date(2025, 1, 1), content_hash="h", run_id="r"
            )
        payees = dict(con.execute("SELECT national_id, payee_account FROM members").fetchall())
    assert payees == {"A": "A-greater-id", "B": "B-later", "C": "C-only"}


def test_validations_repeated_ids_are_not_the_loads_repeated_people() -> None:
    """Why the load flags its repeated people itself (ADR 0033): validation's whole-snapshot
    flag is about ``enrollment_id`` (a repeat is quarantined), the load's ``several_person``
    about ``national_id`` among the staged rows; and a flag on the raw numbers would not be the
    load's either: one person spelled three ways (a 15-digit legacy number, its 18-character
    form, lower case with spaces) is three raw values and one staged person, and a person whose
    second row is quarantined repeats raw and not staged."""
    from stdnum.cn import ric

    from landing.readers import READ_ERROR
    from transforms.enrollments import REPEATED_ID, mark_repeated_ids, validate_in_slices

    b, c, d = (
        body + ric.calc_check_digit(body + "0")
        for body in ("11010519491231003", "11010519491231004", "11010519491231005")
    )

    def raw(eid: str, nid: str, plan: str = "WORKER_MUTUAL") -> dict[str, str | None]:
        return {
            "enrollment_id": eid,
            "national_id": nid,
            "member_name": "张三",
            "gender": "M",
            "birth_date": "1949-12-31",
            "plan_code": plan,
            "coverage_start": "2020-01-01",
            "coverage_end": None,
            "payee_account": "6222000011112222",
        }

    rows = [
        raw("E1", "11010519491231002X"),
        raw("E2", "110105491231002"),  # the same person's legacy number
        raw("E3", " 110105 19491231002x "),
        raw("E4", b),
        raw("E5", c),  # C and D share an enrolment id: both quarantined
        raw("E5", d),
        raw("E6", b, plan="GOLD"),  # B again, quarantined
    ]
    frame = (
        pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})
        .with_columns(
            pl.lit(None, pl.String).alias(READ_ERROR), pl.lit(None, pl.String).alias("_line")
        )
        .with_row_index("row_number", offset=1)
        .with_columns(pl.col("row_number").cast(pl.Int64))
    )
    validation_flag = mark_repeated_ids(frame).get_column(REPEATED_ID).to_list()
    assert validation_flag == [False, False, False, False, True, True, False]
    raw_number_flag = frame.get_column("national_id").is_duplicated().to_list()
    assert raw_number_flag == [False, False, False, True, False, False, True]

    (part,) = validate_in_slices(frame, snapshot_date=date(2026, 11, 1))
    staged = part.staged.to_arrow(compat_level=pl.CompatLevel.newest())
    assert set(staged.column("national_id").to_pylist()) == {"11010519491231002X", b}
    flags = repeat_flags(staged)
    several = dict(
        zip(
            flags.column("enrollment_id").to_pylist(),
            flags.column("several_person").to_pylist(),
            strict=True,
        )
    )
    assert several == {"E1": True, "E2": True, "E3": True, "E4": False}
