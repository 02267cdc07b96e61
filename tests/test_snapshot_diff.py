"""A new snapshot re-matches only the stays its changed people can change (issue 16).

Property: random histories (a first snapshot, two nights of stays matched by ID and by
demographics), then a new snapshot with random changes (payee, name, birth date, gender, new and
ended enrolments, removed people, new people who match stays left unmatched by ID and by
demographics) and a night.
The commit scoped by the snapshot's diff ends with the same ``stay_outcomes``,
``stay_plan_targets`` and ledger (per stay, plan and member) as a full recompute of a copy.
"""

from __future__ import annotations

import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

import synth
from config.settings import Settings
from pipeline import run_local
from pipeline.sequence import LocalSteps, Request, cleanup, plan_request
from pipeline.write import commit
from storage.lock import run_lock
from storage.warehouse import open_warehouse
from tests.samples import every_table
from tests.test_matching import (
    REGISTRY,
    Person,
    by_id,
    demographic,
    enrolment,
    frame,
    new_settings,
)

SNAP_1 = date(2025, 6, 30)
NIGHTS = (date(2025, 7, 10), date(2025, 8, 10))
SNAP_2 = date(2025, 9, 1)
PLANS = ("RETIREE_INPATIENT", "WORKER_MUTUAL", "GIG_WORKER", "UNION_BASIC")
# Few names and birth dates, so that people share demographics (ambiguous candidates).
NAMES = ("张伟", "王芳", "李娜")
BIRTHS = ("1950-03-01", "1961-07-15")


def _people(rng: random.Random, n: int, first_seq: int) -> list[Person]:
    people = []
    for i in range(n):
        gender = rng.choice("MF")
        seq = first_seq + 2 * i + (1 if gender == "M" else 0)
        people.append(Person(rng.choice(NAMES), gender, rng.choice(BIRTHS), seq))
    return people


def _enrolments(rng: random.Random, who: Person, first_eid: int) -> list[dict[str, str]]:
    rows = []
    for k in range(rng.randint(1, 3)):
        start = f"{rng.choice((2020, 2023, 2025))}-0{rng.randint(1, 6)}-01"
        end = rng.choice(("", "", f"2025-0{rng.randint(2, 8)}-28"))
        if end and end < start:
            end = ""
        rows.append(enrolment(f"E{first_eid + k}", who, rng.choice(PLANS), start, end))
    return rows


def _stays(rng: random.Random, night: date, people: list[Person], prefix: str) -> list[dict]:
    rows = []
    for i, who in enumerate(rng.sample(people, min(len(people), 8))):
        month = rng.randint(1, night.month - 1)
        adm, dis = f"2025-{month:02d}-03", f"2025-{month:02d}-{rng.randint(5, 20):02d}"
        sid = f"{prefix}{i:02d}"
        if rng.random() < 0.6:
            rows.append(by_id(who, adm, dis, sid=sid, hospital=rng.choice(("H001", "H002"))))
        else:
            rows.append(demographic(who.name, who.gender, who.birth, adm, dis, sid=sid))
    return rows


def _ledger(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen) "
        "FROM ledger_entries GROUP BY ALL HAVING sum(amount_fen) <> 0 ORDER BY ALL"
    ).fetchall()


def _state(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return {
            "stay_outcomes": con.execute("SELECT * FROM stay_outcomes ORDER BY ALL").fetchall(),
            "stay_plan_targets": con.execute(
                "SELECT * FROM stay_plan_targets ORDER BY ALL"
            ).fetchall(),
            "ledger": _ledger(con),
        }
    finally:
        con.close()


def _full_run(settings: Settings, as_of: date) -> None:
    """The same run, every stay re-adjudicated."""
    steps = LocalSteps()
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        plan = plan_request(settings, Request("run", as_of, None, False, None))
        result = commit(settings, plan, steps.validate(settings, plan), full=True)
        steps.issue(settings)
        cleanup(plan)
    assert result.full_recompute


def _second_snapshot(
    rng: random.Random, first: dict[Person, list[dict[str, str]]], newcomers: list[Person]
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    eid = 5000
    for who, enrolled in first.items():
        change = rng.choice(
            ("keep", "keep", "payee", "name", "birth", "gender", "add", "end", "remove")
        )
        if change == "remove":
            continue
        for r in enrolled:
            r = dict(r)
            if change == "payee":
                r["payee_account"] = f"6222999{rng.randint(10**8, 10**9 - 1)}"
            elif change == "name":
                r["member_name"] = rng.choice([n for n in NAMES if n != who.name])
            elif change == "birth":  # a corrected birth date: stays by demographics move
                r["birth_date"] = next(b for b in BIRTHS if b != who.birth)
            elif change == "gender":
                r["gender"] = "F" if who.gender == "M" else "M"
            elif change == "end" and not r["coverage_end"] and r["coverage_start"] < "2025-05":
                r["coverage_end"] = "2025-05-31"
            rows.append(r)
        if change == "add":
            eid += 1
            rows.append(enrolment(f"E{eid}", who, rng.choice(PLANS), "2024-01-01"))
    for who in newcomers:  # they had stays, unmatched until now
        eid += 1
        rows.append(enrolment(f"E{eid}", who, rng.choice(PLANS), "2024-01-01"))
    return rows


def _as_before_023(settings: Settings) -> None:
    """The warehouse as a release before migration 023 left it: enrolments without their
    fingerprints; opening it again migrates it, and every other row is as it was."""
    with open_warehouse(settings.warehouse) as con:
        before = every_table(con)
        con.execute("ALTER TABLE enrollments DROP COLUMN fingerprint")
        con.execute("DROP TABLE fingerprint_keys")
        con.execute("DELETE FROM schema_migrations WHERE version = 23")
    with open_warehouse(settings.warehouse) as con:  # migrates
        after = every_table(con)
    assert after.pop("fingerprint_keys") == []
    assert before.pop("fingerprint_keys") != []
    for table in ("enrollments",):  # the same rows, their fingerprints not kept (NULL)
        assert [r[:-1] for r in after.pop(table)] == [r[:-1] for r in before.pop(table)]
    assert after == before


@pytest.mark.parametrize("seed", range(1, 9))
def test_snapshot_diff_scope_equals_a_full_recompute(tmp_path: Path, seed: int) -> None:
    _play(tmp_path, seed, before_023=False)


@pytest.mark.parametrize("seed", range(1, 4))
def test_a_warehouse_from_before_023_migrates_and_diffs_as_well(tmp_path: Path, seed: int) -> None:
    _play(tmp_path, seed, before_023=True)


def _play(tmp_path: Path, seed: int, *, before_023: bool) -> None:
    rng = random.Random(seed)
    settings = new_settings(tmp_path / "scoped")
    synth.write_registry(settings.landing, REGISTRY)
    members = _people(rng, 10, 100)
    newcomers = _people(rng, 3, 500)
    first = {who: _enrolments(rng, who, 100 + 10 * i) for i, who in enumerate(members)}
    synth.write_snapshot(
        settings.landing,
        SNAP_1,
        frame([r for rows in first.values() for r in rows], synth.ENROLLMENT_COLUMNS),
    )
    for n, night in enumerate(NIGHTS):
        stays = _stays(rng, night, members + newcomers, f"S{n}-")
        synth.write_partition(
            settings.landing, night, "SHYB", frame(stays, synth.DISCHARGE_COLUMNS)
        )
        run_local(settings, as_of=night)

    if before_023:
        _as_before_023(settings)
    second = _second_snapshot(rng, first, newcomers)
    synth.write_snapshot(settings.landing, SNAP_2, frame(second, synth.ENROLLMENT_COLUMNS))
    tonight = _stays(rng, SNAP_2, members + newcomers, "T-")
    synth.write_partition(settings.landing, SNAP_2, "SHYB", frame(tonight, synth.DISCHARGE_COLUMNS))

    shutil.copytree(tmp_path / "scoped", tmp_path / "full")
    reference = new_settings(tmp_path / "full")

    scoped = run_local(settings, as_of=SNAP_2)
    assert scoped.snapshot is not None, scoped.errors
    assert not scoped.full_recompute
    _full_run(reference, SNAP_2)

    got, want = _state(settings), _state(reference)
    for table in want:
        assert got[table] == want[table], table
    assert want["stay_outcomes"]  # the comparison is not empty
