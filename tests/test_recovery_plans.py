"""Migration 020: each recovery balance keeps the plan the morning shows it under.

The morning report shows a member's recovery balance under the plan that recovered most from
them (the smallest plan code on a tie). It summed every recovery of the owing members in the
ledger each night; now ``recovery_balances.plan_code`` keeps that plan and
``member_plan_recoveries`` what each plan recovered from each member, both written by the
posting in the run's transaction. Real nights through ``run_local``: the kept figures equal
an independent reading of the ledger; a warehouse migrated to 020 holds what one written with it
does; ``claims verify`` names a wrong plan and a drifted total. Random nights:
``tests/test_ledger.py`` (``check_recovery_plans`` after every run).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
from samples import table_as_made, warehouse_as_made
from test_matching import Person, enrolment, frame, new_settings, query
from test_review import REGISTRY, _by_id

import synth
from config.masking import mask_id
from config.settings import Settings
from pipeline import run_local
from pipeline.audit import verify
from storage.warehouse import open_warehouse

SNAPSHOT_DAY = date(2026, 1, 20)
AS_OF = date(2026, 3, 5)
PARTITIONS = [(date(2026, 3, 1), "SHYB"), (date(2026, 3, 2), "SHYB"), (date(2026, 3, 3), "HOSPX")]
TWO = Person("钱进", "M", "1951-04-04", 61)  # two plans
ONE = Person("孙梅", "F", "1953-05-05", 62)  # one plan
ENROLMENTS = [
    enrolment("E201", TWO, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E202", TWO, "WORKER_MUTUAL", "2020-01-01"),
    enrolment("E203", ONE, "RETIREE_INPATIENT", "2020-01-01"),
]


def _world(root: Path) -> Settings:
    settings = new_settings(root)
    synth.write_registry(settings.landing, REGISTRY)
    synth.write_snapshot(
        settings.landing, SNAPSHOT_DAY, frame(ENROLMENTS, synth.ENROLLMENT_COLUMNS)
    )
    return settings


def _night(settings: Settings, n: int, rows: list[dict[str, str]]) -> dict[str, Any]:
    day, source = PARTITIONS[n]
    synth.write_partition(settings.landing, day, source, frame(rows, synth.DISCHARGE_COLUMNS))
    result = run_local(settings, as_of=AS_OF)
    assert not result.failed, result.errors
    return dict(result.waiting)


def _nights(settings: Settings) -> list[dict[str, Any]]:
    """Both people paid; then both stays corrected to nothing in scope: recovered from both
    plans of TWO and the one of ONE, with nothing to net it against (carried)."""
    waiting = [
        _night(
            settings,
            0,
            [
                _by_id("P1", TWO, "2026-01-05", "2026-01-20", self_pay="20000.00"),
                _by_id("P2", ONE, "2026-01-05", "2026-01-08"),
            ],
        )
    ]
    corrected = {"version": 2, "record_type": "C", "self_pay": "0.00"}
    waiting.append(
        _night(
            settings,
            1,
            [
                _by_id("P1", TWO, "2026-01-05", "2026-01-20", **corrected),
                _by_id("P2", ONE, "2026-01-05", "2026-01-08", **corrected),
            ],
        )
    )
    return waiting


def ledger_reading(settings: Settings) -> tuple[dict[tuple[str, str], int], dict[str, str | None]]:
    """What each plan recovered from each member, and the plan of each balance, read from the
    ledger here: the most recovered, the smallest code on a tie, None for nothing recovered."""
    recovered: dict[tuple[str, str], int] = defaultdict(int)
    for nid, plan, fen in query(
        settings, "SELECT national_id, plan_code, amount_fen FROM ledger_entries"
    ):
        if fen < 0:
            recovered[(nid, plan)] -= fen
    plans: dict[str, str | None] = {}
    for (nid,) in query(settings, "SELECT national_id FROM recovery_balances"):
        mine = sorted((-fen, plan) for (who, plan), fen in recovered.items() if who == nid)
        plans[nid] = mine[0][1] if mine else None
    return dict(recovered), plans


def kept(settings: Settings) -> tuple[dict[tuple[str, str], int], dict[str, str | None]]:
    rows = query(
        settings, "SELECT national_id, plan_code, recovered_fen FROM member_plan_recoveries"
    )
    assert len(rows) == len({(n, p) for n, p, _ in rows})  # the grain
    plans = query(settings, "SELECT national_id, plan_code FROM recovery_balances")
    return {(n, p): f for n, p, f in rows}, dict(plans)


def morning_by_plan(settings: Settings) -> dict[str, int]:
    """The morning's outstanding recoveries from the ledger's reading."""
    _, plans = ledger_reading(settings)
    out: dict[str, int] = defaultdict(int)
    for nid, due in query(settings, "SELECT national_id, recovery_due_fen FROM recovery_balances"):
        if due > 0:
            out[plans[nid] or "unknown"] += due
    return dict(out)


def test_each_balance_is_shown_under_the_plan_that_recovered_most(tmp_path: Path) -> None:
    settings = _world(tmp_path)
    waiting = _nights(settings)
    recovered, plans = ledger_reading(settings)
    assert kept(settings) == (recovered, plans)
    # TWO was recovered from under both plans, and owes; so does ONE under its one plan
    assert {p for n, p in recovered if n == TWO.nid} == {"RETIREE_INPATIENT", "WORKER_MUTUAL"}
    assert set(plans) == {TWO.nid, ONE.nid} and plans[ONE.nid] == "RETIREE_INPATIENT"
    assert waiting[0]["recoveries_by_plan"] == {}
    assert waiting[1]["recoveries_by_plan"] == morning_by_plan(settings)
    assert waiting[1]["recovery_members"] == 2
    assert verify(settings).findings == []
    # a new payout to TWO nets part of the balance: the plan stays, the total is unchanged
    third = _night(settings, 2, [_by_id("P3", TWO, "2026-02-05", "2026-02-07", self_pay="900.00")])
    assert kept(settings) == ledger_reading(settings)
    assert third["recoveries_by_plan"] == morning_by_plan(settings)
    assert verify(settings).findings == []


def _as_before_020(path: Path) -> None:
    """``recovery_balances`` as 017 left it (no plan) and no kept recoveries."""
    create = table_as_made(
        "017_recovery_balances_not_zero.sql", "recovery_balances_017", "recovery_balances_old"
    )
    with open_warehouse(path) as con:
        con.execute(create)
        con.execute(
            "INSERT INTO recovery_balances_old SELECT national_id, recovery_due_fen "
            "FROM recovery_balances"
        )
        con.execute("DROP TABLE recovery_balances")
        con.execute("ALTER TABLE recovery_balances_old RENAME TO recovery_balances")
        con.execute("DROP TABLE member_plan_recoveries")
        con.execute("DELETE FROM schema_migrations WHERE version = 20")


def test_a_warehouse_migrated_to_020_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = _world(tmp_path / "native")
    _nights(settings)
    old = tmp_path / "old.duckdb"
    shutil.copy(settings.warehouse, old)
    _as_before_020(old)
    with open_warehouse(old, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM recovery_balances").fetchone() == (2,)
    with open_warehouse(old):  # a writer's open applies 020
        pass
    assert warehouse_as_made(
        old, "recovery_balances", "member_plan_recoveries"
    ) == warehouse_as_made(settings.warehouse, "recovery_balances", "member_plan_recoveries")


def test_verify_names_a_wrong_plan_and_a_drifted_total(tmp_path: Path) -> None:
    settings = _world(tmp_path)
    _nights(settings)
    assert verify(settings).findings == []
    _, plans = ledger_reading(settings)
    wrong = "WORKER_MUTUAL" if plans[TWO.nid] == "RETIREE_INPATIENT" else "RETIREE_INPATIENT"
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(
            "UPDATE recovery_balances SET plan_code = ? WHERE national_id = ?", [wrong, TWO.nid]
        )
        con.execute(
            "UPDATE member_plan_recoveries SET recovered_fen = recovered_fen + 1 "
            "WHERE national_id = ?",
            [ONE.nid],
        )
    finally:
        con.close()
    found = [f for f in verify(settings).findings if f.check == "recovery_plan"]
    assert sorted(f.subject for f in found) == sorted(
        [f"member {mask_id(ONE.nid)} plan RETIREE_INPATIENT", f"member {mask_id(TWO.nid)}"]
    )
    assert all(TWO.nid not in f.detail + f.subject for f in found)
    shown = next(f for f in found if f.subject == f"member {mask_id(TWO.nid)}")
    assert wrong in shown.detail and plans[TWO.nid] in shown.detail  # type: ignore[operator]
