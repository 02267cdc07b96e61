"""Golden cases for the benefit formula and the ledger (benefits.md, payouts.md; issue 4).

Every amount below was computed by hand from the contract, to the fen. The single-night cases
are data: ``tests/cases/benefits/given_*.csv`` is the landing folder, ``expected_*.csv`` the
outcome, one row per stay and per (stay, plan), with the arithmetic in a ``why`` column. The
cases that need several nights (corrections, voids, recoveries, reallocation) are written out
below, night by night.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from stdnum.cn import ric

import synth
from config.settings import Settings
from outbox.summary import CommitResult
from pipeline import run_local
from storage.review import record_decision

CASES = Path(__file__).parent / "cases" / "benefits"
SNAPSHOT_DAY = date(2026, 2, 1)
FEED_DAY = date(2026, 3, 1)
REGISTRY = pl.DataFrame(
    {
        "hospital_code": ["H001", "H002"],
        "hospital_name": ["一院", "二院"],
        "district": ["黄浦区", "徐汇区"],
        "level": ["3", "2"],
        "in_network_from": ["2015-01-01", "2015-01-01"],
        "in_network_to": ["", ""],
    }
)


# ---------------------------------------------------------------------------------------------
# Tiny landing folders
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A person known by a short key in the case files."""

    key: str
    number: int

    @property
    def name(self) -> str:
        return f"成员{self.key}"

    @property
    def birth(self) -> str:
        return (date(1950, 1, 1) + timedelta(days=37 * self.number)).isoformat()

    @property
    def nid(self) -> str:
        body = f"310104{self.birth.replace('-', '')}{2 * self.number + 1:03d}"
        return body + ric.calc_check_digit(body + "0")

    @property
    def account(self) -> str:
        return f"62170000{self.number:08d}"


def members(keys: list[str]) -> dict[str, Member]:
    return {key: Member(key, i + 1) for i, key in enumerate(dict.fromkeys(keys))}


def enrolment_row(eid: str, m: Member, plan: str, start: str, end: str = "") -> dict[str, str]:
    return {
        "enrollment_id": eid,
        "national_id": m.nid,
        "member_name": m.name,
        "gender": "M",
        "birth_date": m.birth,
        "plan_code": plan,
        "coverage_start": start,
        "coverage_end": end,
        "payee_account": m.account,
    }


def stay_row(
    sid: str,
    m: Member,
    admitted: str,
    discharged: str,
    self_pay: str,
    *,
    hospital: str = "H001",
    version: int = 1,
    record_type: str = "N",
    settled_at: str | None = None,
) -> dict[str, str]:
    """A discharge row whose amounts add up (fund 800.00, out of scope 12.34)."""
    fund, out = Decimal("800.00"), Decimal("12.34")
    return {
        "settlement_id": sid,
        "version": str(version),
        "record_type": record_type,
        "hospital_code": hospital,
        "national_id": m.nid,
        "patient_name": m.name,
        "gender": "M",
        "birth_date": m.birth,
        "admission_date": admitted,
        "discharge_date": discharged,
        "primary_diagnosis": "J18.900",
        "total_cost": str(fund + out + Decimal(self_pay)),
        "fund_paid": str(fund),
        "self_pay_in_scope": self_pay,
        "self_pay_out_of_scope": str(out),
        "settled_at": settled_at or f"{discharged}T09:30:00+08:00",
    }


def frame(rows: list[dict[str, str]], columns: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(
        [[r[c] for c in columns] for r in rows],
        schema={c: pl.String for c in columns},
        orient="row",
    )


def read_case(name: str) -> list[dict[str, str]]:
    with (CASES / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def query(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def new_settings(root: Path) -> Settings:
    return Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")


# ---------------------------------------------------------------------------------------------
# One night of golden cases
# ---------------------------------------------------------------------------------------------

TARGET_COLUMNS = (
    "rule_year",
    "remaining_before_fen",
    "base_fen",
    "reimbursement_fen",
    "allowance_fen",
    "raw_fen",
    "cap_used_before_fen",
    "target_fen",
)
GIVEN_STAYS = read_case("given_stays.csv")
EXPECTED_TARGETS = read_case("expected_targets.csv")
EXPECTED_OUTCOMES = read_case("expected_outcomes.csv")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The case files as a landing folder, run once."""
    settings = new_settings(tmp_path_factory.mktemp("benefits"))
    enrolled = read_case("given_enrollments.csv")
    people = members([e["member"] for e in enrolled])
    synth.write_registry(settings.landing, REGISTRY)
    snapshot = [
        enrolment_row(
            f"E{i:03d}", people[e["member"]], e["plan_code"], e["coverage_start"], e["coverage_end"]
        )
        for i, e in enumerate(enrolled, start=1)
    ]
    synth.write_snapshot(settings.landing, SNAPSHOT_DAY, frame(snapshot, synth.ENROLLMENT_COLUMNS))
    stays = [
        stay_row(
            s["settlement_id"],
            people[s["member"]],
            s["admission_date"],
            s["discharge_date"],
            s["self_pay_in_scope"],
            hospital=s["hospital_code"],
        )
        for s in GIVEN_STAYS
    ]
    synth.write_partition(settings.landing, FEED_DAY, "SHYB", frame(stays, synth.DISCHARGE_COLUMNS))
    result = run_local(settings, as_of=FEED_DAY)
    assert not result.failed and result.rows_quarantined == 0
    # The cap-order cases lie in overlapping beds: held for a person (benefits.md, *Overlapping
    # stays*). A person approves them; the next run pays them as usual, in cap order.
    held = query(
        settings,
        "SELECT hospital_code, settlement_id FROM claim_outcomes WHERE reason = 'overlap' "
        "ORDER BY ALL",
    )
    assert sorted(sid for _, sid in held) == ["GA", "GB", "HS1", "HS9"]
    for hospital, sid in held:
        record_decision(
            settings.warehouse,
            stay=(hospital, sid),
            decision="approve",
            operator="reviewer",
            note="two bills for one person: checked with the hospitals",
            limit_fen=2_000_000,
            lock_timeout_s=5,
        )
    result = run_local(settings, as_of=FEED_DAY)
    assert not result.failed and result.entries > 0
    return settings


def _case_of(sid: str) -> str:
    return next(s["case"] for s in GIVEN_STAYS if s["settlement_id"] == sid)


@pytest.mark.parametrize(
    "expected",
    EXPECTED_TARGETS,
    ids=[f"{e['settlement_id']}-{e['plan_code']}" for e in EXPECTED_TARGETS],
)
def test_golden_plan_target(golden: Settings, expected: dict[str, str]) -> None:
    rows = query(
        golden,
        f"SELECT {', '.join(TARGET_COLUMNS)} FROM stay_plan_targets "
        "WHERE settlement_id = ? AND plan_code = ?",
        [expected["settlement_id"], expected["plan_code"]],
    )
    want = tuple(int(expected[c]) for c in TARGET_COLUMNS)
    assert rows == [want], f"{_case_of(expected['settlement_id'])}: {expected['why']}"
    # claim_plan_payouts: the ledger's net sum, and no row at all for a zero.
    paid = query(
        golden,
        "SELECT paid_fen FROM claim_plan_payouts WHERE settlement_id = ? AND plan_code = ?",
        [expected["settlement_id"], expected["plan_code"]],
    )
    target = int(expected["target_fen"])
    assert paid == ([(target,)] if target else [])


@pytest.mark.parametrize(
    "expected", EXPECTED_OUTCOMES, ids=[e["settlement_id"] for e in EXPECTED_OUTCOMES]
)
def test_golden_outcome(golden: Settings, expected: dict[str, str]) -> None:
    rows = query(
        golden,
        "SELECT status, reason, paid_fen FROM claim_outcomes WHERE settlement_id = ?",
        [expected["settlement_id"]],
    )
    assert rows == [(expected["status"], "", int(expected["paid_fen"]))], _case_of(
        expected["settlement_id"]
    )


def test_golden_files_cover_every_stay_and_plan(golden: Settings) -> None:
    targets = query(golden, "SELECT settlement_id, plan_code FROM stay_plan_targets")
    assert sorted(targets) == sorted((e["settlement_id"], e["plan_code"]) for e in EXPECTED_TARGETS)
    outcomes = query(golden, "SELECT settlement_id FROM claim_outcomes")
    assert sorted(r[0] for r in outcomes) == sorted(s["settlement_id"] for s in GIVEN_STAYS)
    # Each paid fen is a first posting, but G0: discharged last, it used the cap first while
    # GA and GB were held, and gave it back when they were approved.
    reasons = query(
        golden,
        "SELECT DISTINCT settlement_id, reason FROM ledger_entries WHERE reason <> 'initial'",
    )
    assert reasons == [("G0", "reallocation")]


def test_golden_payment_batch(golden: Settings) -> None:
    """One instruction per paid member, of the sum of their targets, in yuan with 2 decimals."""
    fen_paid: dict[str, int] = {}
    # Two batches: the first night, and the approved overlaps the next run paid.
    for folder in (golden.outbox / "payments").glob("batch_id=*"):
        with (folder / "payments.csv").open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                amount = int(Decimal(r["amount"]) * 100)
                fen_paid[r["national_id"]] = fen_paid.get(r["national_id"], 0) + amount
    paid = {nid: f"{fen // 100}.{fen % 100:02d}" for nid, fen in fen_paid.items()}
    enrolled = read_case("given_enrollments.csv")
    people = members([e["member"] for e in enrolled])
    expected = {o["settlement_id"]: int(o["paid_fen"]) for o in EXPECTED_OUTCOMES}
    per_member: dict[str, int] = {}
    for s in GIVEN_STAYS:
        nid = people[s["member"]].nid
        per_member[nid] = per_member.get(nid, 0) + expected[s["settlement_id"]]
    assert paid == {nid: f"{fen // 100}.{fen % 100:02d}" for nid, fen in per_member.items() if fen}
    assert paid[people["A"].nid] == "0.01"


# ---------------------------------------------------------------------------------------------
# Several nights: corrections, voids, recoveries, reallocation
# ---------------------------------------------------------------------------------------------

NIGHTS = (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3))
SEQ = members(["UP", "DOWN", "VOID", "NET", "REAL", "SAME"])


def _night_rows(n: int) -> list[dict[str, str]]:
    """What each night's partition delivers (all stays 2025: RETIREE rate 0.50, cap 10000.00)."""
    up, down, void, net, real, same = (SEQ[k] for k in SEQ)
    if n == 0:
        return [
            stay_row("UP1", up, "2025-04-01", "2025-04-05", "1000.00"),  # 50 000
            stay_row("DOWN1", down, "2025-04-01", "2025-04-05", "1000.00"),  # 50 000
            stay_row("VOID1", void, "2025-04-01", "2025-04-05", "1000.00"),  # 50 000
            stay_row("NET1", net, "2025-04-01", "2025-04-05", "1000.00"),  # 50 000
            stay_row("REAL2", real, "2025-06-01", "2025-06-10", "16000.00"),  # 800 000
            stay_row("SAME1", same, "2025-04-01", "2025-04-05", "1000.00"),  # 50 000
        ]
    if n == 1:
        return [
            # Correction raising: 1500.00 × 0.50 = 75 000, so +25 000.
            stay_row("UP1", up, "2025-04-01", "2025-04-05", "1500.00", version=2, record_type="C"),
            # Correction lowering: 400.00 × 0.50 = 20 000, so −30 000, owed back.
            stay_row("DOWN1", down, "2025-04-01", "2025-04-05", "400.00", version=2,
                     record_type="C"),
            # Void after payment: −50 000, owed back.
            stay_row("VOID1", void, "2025-04-01", "2025-04-05", "1000.00", version=2,
                     record_type="V"),
            # Void netted in the same run against a new stay of 80 000: pays 30 000.
            stay_row("NET1", net, "2025-04-01", "2025-04-05", "1000.00", version=2,
                     record_type="V"),
            stay_row("NET2", net, "2025-05-01", "2025-05-05", "1600.00"),
            # A late, earlier stay takes 600 000 of the 1 000 000 cap: REAL2 drops to 400 000.
            stay_row("REAL1", real, "2025-02-01", "2025-02-10", "12000.00"),
            # A correction that changes no amount posts nothing.
            stay_row("SAME1", same, "2025-04-01", "2025-04-05", "1000.00", version=2,
                     record_type="C", settled_at="2025-04-20T16:00:00+08:00"),
        ]  # fmt: skip
    # The member who owes 30 000 gets a new 50 000 stay: paid 20 000, owes nothing.
    return [stay_row("DOWN2", down, "2025-06-01", "2025-06-05", "1000.00")]


@dataclass
class Night:
    result: CommitResult
    entries: set[tuple[str, str, int, int, str]]  # (sid, nid, version, amount, reason)
    paid: dict[str, int]  # claim_outcomes.paid_fen by settlement_id
    status: dict[str, str]
    accounts: dict[str, tuple[int, int, int]]  # ledger, paid out, recovery due
    batch: dict[str, str]  # payments.csv of this run: national_id → amount


def _night(settings: Settings, result: CommitResult) -> Night:
    entries = {
        (r[0], r[1], r[2], r[3], r[4])
        for r in query(
            settings,
            "SELECT settlement_id, national_id, version, amount_fen, reason FROM ledger_entries "
            "WHERE run_id = ?",
            [result.run_id],
        )
    }
    outcomes = query(settings, "SELECT settlement_id, status, paid_fen FROM claim_outcomes")
    accounts = {
        r[0]: (r[1], r[2], r[3])
        for r in query(
            settings,
            "SELECT national_id, ledger_fen, paid_out_fen, recovery_due_fen FROM member_accounts",
        )
    }
    batch: dict[str, str] = {}
    if result.batch_id:
        path = settings.outbox / "payments" / f"batch_id={result.batch_id}" / "payments.csv"
        with path.open(encoding="utf-8", newline="") as fh:
            batch = {r["national_id"]: r["amount"] for r in csv.DictReader(fh)}
    return Night(
        result,
        entries,
        {r[0]: r[2] for r in outcomes},
        {r[0]: r[1] for r in outcomes},
        accounts,
        batch,
    )


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> list[Night]:
    settings = new_settings(tmp_path_factory.mktemp("ledger-nights"))
    synth.write_registry(settings.landing, REGISTRY)
    snapshot = [
        enrolment_row(f"E{i:03d}", m, "RETIREE_INPATIENT", "2020-01-01")
        for i, m in enumerate(SEQ.values(), start=1)
    ]
    synth.write_snapshot(settings.landing, SNAPSHOT_DAY, frame(snapshot, synth.ENROLLMENT_COLUMNS))
    done = []
    for n, day in enumerate(NIGHTS):
        synth.write_partition(
            settings.landing, day, "SHYB", frame(_night_rows(n), synth.DISCHARGE_COLUMNS)
        )
        done.append(_night(settings, run_local(settings, as_of=day)))
    return done


def test_first_night_pays_initial_amounts(nights: list[Night]) -> None:
    first = nights[0]
    assert {(e[0], e[3], e[4]) for e in first.entries} == {
        ("UP1", 50_000, "initial"),
        ("DOWN1", 50_000, "initial"),
        ("VOID1", 50_000, "initial"),
        ("NET1", 50_000, "initial"),
        ("REAL2", 800_000, "initial"),
        ("SAME1", 50_000, "initial"),
    }
    assert first.batch[SEQ["REAL"].nid] == "8000.00"


def test_correction_raising_an_amount(nights: list[Night]) -> None:
    up = SEQ["UP"].nid
    assert ("UP1", up, 2, 25_000, "correction") in nights[1].entries
    assert nights[1].paid["UP1"] == 75_000
    assert nights[1].batch[up] == "250.00"
    assert nights[1].accounts[up] == (75_000, 75_000, 0)


def test_correction_lowering_an_amount_is_owed_back(nights: list[Night]) -> None:
    down = SEQ["DOWN"].nid
    assert ("DOWN1", down, 2, -30_000, "correction") in nights[1].entries
    assert nights[1].paid["DOWN1"] == 20_000
    assert down not in nights[1].batch  # net ≤ 0: no instruction
    assert nights[1].accounts[down] == (20_000, 50_000, 30_000)


def test_void_after_payment_is_recovered(nights: list[Night]) -> None:
    void = SEQ["VOID"].nid
    assert ("VOID1", void, 2, -50_000, "void") in nights[1].entries
    assert (nights[1].status["VOID1"], nights[1].paid["VOID1"]) == ("void", 0)
    assert void not in nights[1].batch
    assert nights[1].accounts[void] == (0, 50_000, 50_000)
    # Nothing more happens to it, and the debt stays on the books.
    assert nights[2].accounts[void] == (0, 50_000, 50_000)


def test_void_netted_against_a_payout_in_the_same_run(nights: list[Night]) -> None:
    net = SEQ["NET"].nid
    assert {e for e in nights[1].entries if e[1] == net} == {
        ("NET1", net, 2, -50_000, "void"),
        ("NET2", net, 1, 80_000, "initial"),
    }
    assert nights[1].batch[net] == "300.00"  # 800.00 − 500.00
    assert nights[1].accounts[net] == (80_000, 80_000, 0)


def test_recovery_offset_by_a_later_payout(nights: list[Night]) -> None:
    down = SEQ["DOWN"].nid
    assert nights[2].entries == {("DOWN2", down, 1, 50_000, "initial")}
    assert nights[2].batch == {down: "200.00"}  # 500.00 − 300.00 owed
    assert nights[2].accounts[down] == (70_000, 70_000, 0)


def test_late_earlier_stay_reallocates_the_annual_cap(nights: list[Night]) -> None:
    real = SEQ["REAL"].nid
    assert {e for e in nights[1].entries if e[1] == real} == {
        ("REAL1", real, 1, 600_000, "initial"),
        ("REAL2", real, 1, -400_000, "reallocation"),
    }
    assert (nights[1].paid["REAL1"], nights[1].paid["REAL2"]) == (600_000, 400_000)
    assert nights[1].batch[real] == "2000.00"
    assert nights[1].accounts[real] == (1_000_000, 1_000_000, 0)


def test_correction_without_a_new_amount_posts_nothing(nights: list[Night]) -> None:
    assert all(e[0] != "SAME1" for e in nights[1].entries)
    assert nights[1].paid["SAME1"] == 50_000


def test_every_member_balances_after_every_night(nights: list[Night]) -> None:
    """payouts.md: sum(instructions) − recovery_due = sum(ledger entries), at all times."""
    for night in nights:
        for ledger, paid_out, due in night.accounts.values():
            assert paid_out - due == ledger
