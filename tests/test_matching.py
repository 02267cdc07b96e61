"""Matching a stay to a member, and coverage, over a real warehouse (benefits.md; issue 3).

Each case is one stay in a hand-written landing folder: one enrolment snapshot, one registry, one
discharge partition, one ``run_local``. The table below says what the contract expects for it.
Re-matching on later snapshots runs a second world night by night; an integration test runs a
generated population through two nights and checks the outcome table's invariants.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
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

# ---------------------------------------------------------------------------------------------
# Tiny landing folders
# ---------------------------------------------------------------------------------------------

STATUSES = {
    "void",
    "not_in_network",
    "rejected",
    "unmatched",
    "review",
    "not_covered",
    "paid",
    "zero_benefit",
}
MATCHED = {"not_covered", "paid", "zero_benefit"}

# H001 always in network; H002 left on 2025-06-30; H003 joined on 2026-02-01.
REGISTRY = pl.DataFrame(
    {
        "hospital_code": ["H001", "H002", "H003"],
        "hospital_name": ["一院", "二院", "三院"],
        "district": ["黄浦区", "徐汇区", "浦东新区"],
        "level": ["3", "2", "1"],
        "in_network_from": ["2015-01-01", "2015-01-01", "2026-02-01"],
        "in_network_to": ["", "2025-06-30", ""],
    }
)


def national_id(birth: str, seq: int, area: str = "310101") -> str:
    """A valid 18-character identity number (seq odd: male, even: female)."""
    body = f"{area}{birth.replace('-', '')}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")


@dataclass(frozen=True)
class Person:
    name: str
    gender: str
    birth: str
    seq: int

    @property
    def nid(self) -> str:
        return national_id(self.birth, self.seq)


def enrolment(
    eid: str,
    who: Person,
    plan: str,
    start: str,
    end: str = "",
    *,
    name: str | None = None,
    birth: str | None = None,
    account: str | None = None,
) -> dict[str, str]:
    """One snapshot row; name, birth date and account may differ from the person's (old data)."""
    return {
        "enrollment_id": eid,
        "national_id": who.nid,
        "member_name": name or who.name,
        "gender": who.gender,
        "birth_date": birth or who.birth,
        "plan_code": plan,
        "coverage_start": start,
        "coverage_end": end,
        "payee_account": account or f"62220200{int(eid[1:]):08d}",
    }


def stay(
    sid: str,
    *,
    nid: str,
    name: str,
    gender: str,
    birth: str,
    admitted: str,
    discharged: str,
    self_pay: str = "1000.00",
    hospital: str = "H001",
    version: int = 1,
    record_type: str = "N",
) -> dict[str, str]:
    """One discharge row whose amounts add up (fund 500.00, nothing out of scope)."""
    fund = Decimal("500.00")
    return {
        "settlement_id": sid,
        "version": str(version),
        "record_type": record_type,
        "hospital_code": hospital,
        "national_id": nid,
        "patient_name": name,
        "gender": gender,
        "birth_date": birth,
        "admission_date": admitted,
        "discharge_date": discharged,
        "primary_diagnosis": "I10.x05",
        "total_cost": str(fund + Decimal(self_pay)),
        "fund_paid": str(fund),
        "self_pay_in_scope": self_pay,
        "self_pay_out_of_scope": "0.00",
        "settled_at": f"{discharged}T10:00:00+08:00",
    }


def frame(rows: list[dict[str, str]], columns: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(
        [[r[c] for c in columns] for r in rows],
        schema={c: pl.String for c in columns},
        orient="row",
    )


def new_settings(root: Path) -> Settings:
    return Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")


def query(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Read the warehouse between runs (the connection is closed before the next run)."""
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def outcomes(settings: Settings) -> dict[str, dict[str, Any]]:
    """claim_outcomes by settlement_id."""
    rows = query(
        settings,
        "SELECT settlement_id, hospital_code, current_version, status, reason, national_id, "
        "match_method, paid_fen FROM claim_outcomes",
    )
    keys = ("hospital_code", "current_version", "status", "reason", "national_id")
    return {r[0]: dict(zip((*keys, "match_method", "paid_fen"), r[1:], strict=True)) for r in rows}


def payments(settings: Settings) -> list[dict[str, str]]:
    """Every row of every payments.csv in the outbox."""
    rows: list[dict[str, str]] = []
    for path in sorted((settings.outbox / "payments").glob("batch_id=*/payments.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


# ---------------------------------------------------------------------------------------------
# One night, one stay per rule
# ---------------------------------------------------------------------------------------------

SNAPSHOT_DAY = date(2026, 1, 15)
FEED_DAY = date(2026, 3, 1)

ZHANG = Person("张三", "M", "1950-01-01", 11)
LI = Person("LI Ming", "M", "1955-02-02", 13)
WANG = Person("王五", "M", "1956-03-03", 15)
CHEN = Person("陈敏", "F", "1960-05-05", 22)
TWIN_A = Person("赵雪", "F", "1985-03-03", 24)
TWIN_B = Person("赵雪", "F", "1985-03-03", 26)
HE = Person("何莉", "F", "1970-01-02", 28)  # her older enrolment says 何丽, born 1970-01-01
SUN = Person("孙甲", "M", "1971-04-04", 31)  # two enrolments start the same day
GAP = Person("钱一", "M", "1980-01-01", 33)
RENEW = Person("钱二", "M", "1980-02-02", 35)
WAIT = Person("钱三", "M", "1980-03-03", 37)
ENDS = Person("钱四", "M", "1950-04-04", 39)
STRANGER = Person("路人", "M", "1966-06-06", 41)  # valid number, never enrolled
# Someone whose identity number ends in the check character X.
XIE = next(
    p for p in (Person("谢军", "M", "1962-07-07", q) for q in range(1, 999, 2)) if p.nid[-1] == "X"
)

ENROLMENTS = [
    enrolment("E001", ZHANG, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E002", LI, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E003", WANG, "RETIREE_INPATIENT", "2025-01-01"),
    enrolment("E004", CHEN, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E005", TWIN_A, "UNION_BASIC", "2020-01-01"),
    enrolment("E006", TWIN_B, "UNION_BASIC", "2020-01-01"),
    # Latest coverage_start wins: E008 (2023) over E007 (2020) for name, birth date and payee.
    enrolment("E007", HE, "UNION_BASIC", "2020-01-01", name="何丽", birth="1970-01-01"),
    enrolment("E008", HE, "WORKER_MUTUAL", "2023-01-01"),
    # Same coverage_start: the greatest enrollment_id (E010) wins, not the last row of the file.
    enrolment("E010", SUN, "UNION_BASIC", "2021-01-01"),
    enrolment("E009", SUN, "RETIREE_INPATIENT", "2021-01-01", name="孙乙"),
    # One day missing between the two: a new chain starts on 2025-01-02.
    enrolment("E011", GAP, "WORKER_MUTUAL", "2024-01-01", "2024-12-31"),
    enrolment("E012", GAP, "WORKER_MUTUAL", "2025-01-02"),
    # Renewed the day after: one chain from 2024-01-01.
    enrolment("E013", RENEW, "WORKER_MUTUAL", "2024-01-01", "2024-12-31"),
    enrolment("E014", RENEW, "WORKER_MUTUAL", "2025-01-01"),
    enrolment("E015", WAIT, "GIG_WORKER", "2025-06-01"),
    enrolment("E016", ENDS, "RETIREE_INPATIENT", "2020-01-01", "2025-10-31"),
    enrolment("E017", XIE, "RETIREE_INPATIENT", "2020-01-01"),
]


@dataclass(frozen=True)
class Case:
    """One stay and the outcome the contract gives it."""

    sid: str
    why: str
    rows: tuple[dict[str, str], ...]
    status: str
    reason: str = ""
    member: Person | None = None  # the matched member, when matched
    method: str = ""


def by_id(
    who: Person,
    admitted: str,
    discharged: str,
    *,
    sid: str,
    shown_id: str | None = None,
    name: str | None = None,
    **kw: Any,
) -> dict[str, str]:
    return stay(
        sid,
        nid=who.nid if shown_id is None else shown_id,
        name=who.name if name is None else name,
        gender=who.gender,
        birth=who.birth,
        admitted=admitted,
        discharged=discharged,
        **kw,
    )


def demographic(
    name: str, gender: str, birth: str, admitted: str, discharged: str, *, sid: str, nid: str = ""
) -> dict[str, str]:
    return stay(
        sid,
        nid=nid,
        name=name,
        gender=gender,
        birth=birth,
        admitted=admitted,
        discharged=discharged,
    )


def case(
    sid: str, why: str, status: str, *rows_of: Any, reason: str = "", member=None, method=""
) -> Case:
    rows = tuple(make(sid) for make in rows_of)
    return Case(sid, why, rows, status, reason, member, method)


def _id(who: Person, adm: str, dis: str, **kw: Any) -> Any:
    return lambda sid: by_id(who, adm, dis, sid=sid, **kw)


def _demo(name: str, gender: str, birth: str, adm: str, dis: str, nid: str = "") -> Any:
    return lambda sid: demographic(name, gender, birth, adm, dis, sid=sid, nid=nid)


def _with_wrong_check(nid: str) -> str:
    checks = "10X98765432"
    return nid[:17] + checks[(checks.index(nid[17]) + 1) % 11]


CASES = [
    # benefits.md, Matching 1: valid id in the snapshot, names compared after NFKC + no spaces.
    case("M01", "id match", "paid", _id(ZHANG, "2025-03-01", "2025-03-05"),
         member=ZHANG, method="id"),
    case("M02", "white space inside the name normalises away", "paid",
         _id(ZHANG, "2025-03-10", "2025-03-12", name="张 三"), member=ZHANG, method="id"),
    case("M03", "full-width letters and an ideographic space normalise (NFKC)", "paid",
         _id(LI, "2025-03-01", "2025-03-05", name="ＬＩ\u3000Ｍｉｎｇ"), member=LI, method="id"),
    case("M04", "NFKC does not fold case: LiMing is not LIMing", "review",
         _id(LI, "2025-04-01", "2025-04-05", name="Li Ming"), reason="name_mismatch"),
    case("M05", "identity number with spaces and full-width digits is normalised", "paid",
         _id(ZHANG, "2025-04-01", "2025-04-03",
             shown_id=" ".join([ZHANG.nid[:6], ZHANG.nid[6:14], ZHANG.nid[14:]])
             .translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
         member=ZHANG, method="id"),
    case("M06", "name mismatch: review, not paid", "review",
         _id(WANG, "2025-03-01", "2025-03-05", name="王六"), reason="name_mismatch"),
    case("M07", "review is decided before coverage (admitted before WANG's cover)", "review",
         _id(WANG, "2024-06-01", "2024-06-05", name="王六"), reason="name_mismatch"),
    # Matching 2: valid id not in the snapshot.
    case("M08", "valid id not in the snapshot: unmatched", "unmatched",
         _id(STRANGER, "2025-03-01", "2025-03-05")),
    # Matching 3: empty or invalid id → name, birth date and gender.
    case("M09", "empty id: one demographic match", "paid",
         _demo("陈敏", "F", CHEN.birth, "2025-03-01", "2025-03-05"),
         member=CHEN, method="demographic"),
    case("M10", "invalid check character: demographic, normalised name", "paid",
         _demo("陈 敏", "F", CHEN.birth, "2025-05-01", "2025-05-05",
               nid=_with_wrong_check(CHEN.nid)),
         member=CHEN, method="demographic"),
    case("M11", "demographic twins: review/ambiguous", "review",
         _demo("赵雪", "F", TWIN_A.birth, "2025-03-01", "2025-03-05"), reason="ambiguous"),
    case("M12", "no demographic match: unmatched", "unmatched",
         _demo("无名氏", "F", CHEN.birth, "2025-03-01", "2025-03-05")),
    case("M13", "demographics must agree on gender", "unmatched",
         _demo("陈敏", "M", CHEN.birth, "2025-03-01", "2025-03-05")),
    # Person attributes from the enrolment with the latest coverage_start.
    case("M14", "name of the latest enrolment matches", "paid",
         _id(HE, "2025-03-01", "2025-03-05"), member=HE, method="id"),
    case("M15", "name of an older enrolment does not", "review",
         _id(HE, "2025-04-01", "2025-04-05", name="何丽"), reason="name_mismatch"),
    case("M16", "demographics of the latest enrolment match", "paid",
         _demo("何莉", "F", "1970-01-02", "2025-05-01", "2025-05-05"),
         member=HE, method="demographic"),
    case("M17", "demographics of an older enrolment do not", "unmatched",
         _demo("何丽", "F", "1970-01-01", "2025-06-01", "2025-06-05")),
    case("M18", "coverage_start tie: greatest enrollment_id's name matches", "paid",
         _id(SUN, "2025-03-01", "2025-03-05"), member=SUN, method="id"),
    case("M19", "coverage_start tie: the smaller enrollment_id's name does not", "review",
         _id(SUN, "2025-04-01", "2025-04-05", name="孙乙"), reason="name_mismatch"),
    case("M20", "valid id not in the snapshot is never matched by demographics", "unmatched",
         _demo("陈敏", "F", CHEN.birth, "2025-06-01", "2025-06-05",
               nid=national_id(CHEN.birth, 222))),
    case("M21", "a 15-digit legacy number is upgraded and matches by id", "paid",
         _id(CHEN, "2025-07-01", "2025-07-05", shown_id=CHEN.nid[:6] + CHEN.nid[8:17]),
         member=CHEN, method="id"),
    case("M22", "a trailing lower-case x is an X", "paid",
         _id(XIE, "2025-03-01", "2025-03-05", shown_id=XIE.nid.lower()), member=XIE, method="id"),
    # Coverage: chains and waiting periods (WORKER_MUTUAL waits 90 days, GIG_WORKER 30).
    case("C01", "one-day gap: the waiting period restarts on 2025-01-02", "not_covered",
         _id(GAP, "2025-01-15", "2025-01-20"), member=GAP, method="id"),
    case("C02", "new chain, one day short of chain_start + 90", "not_covered",
         _id(GAP, "2025-04-01", "2025-04-03"), member=GAP, method="id"),
    case("C03", "new chain, exactly chain_start + 90", "paid",
         _id(GAP, "2025-04-02", "2025-04-04"), member=GAP, method="id"),
    case("C04", "renewed the day after: the chain continues from 2024-01-01", "paid",
         _id(RENEW, "2025-01-15", "2025-01-20"), member=RENEW, method="id"),
    case("C05", "waiting period exactly reached (chain_start + 30)", "paid",
         _id(WAIT, "2025-07-01", "2025-07-03"), member=WAIT, method="id"),
    case("C06", "one day before the waiting period ends", "not_covered",
         _id(WAIT, "2025-06-30", "2025-07-02"), member=WAIT, method="id"),
    case("C07", "open-ended enrolment covers years later", "paid",
         _id(ZHANG, "2026-02-10", "2026-02-15"), member=ZHANG, method="id"),
    case("C08", "admitted on the last covered day (discharged after it)", "paid",
         _id(ENDS, "2025-10-31", "2025-11-05"), member=ENDS, method="id"),
    case("C09", "admitted the day after the enrolment ended", "not_covered",
         _id(ENDS, "2025-11-01", "2025-11-05"), member=ENDS, method="id"),
    case("C10", "admitted before the enrolment started", "not_covered",
         _id(ENDS, "2019-12-31", "2020-01-03"), member=ENDS, method="id"),
    # Network, on the admission date.
    case("N01", "admitted on the hospital's last in-network day", "paid",
         _id(ZHANG, "2025-06-30", "2025-07-05", hospital="H002"), member=ZHANG, method="id"),
    case("N02", "admitted after in_network_to", "not_in_network",
         _id(ZHANG, "2025-07-01", "2025-07-05", hospital="H002")),
    case("N03", "admitted before in_network_from", "not_in_network",
         _id(ZHANG, "2026-01-31", "2026-02-03", hospital="H003")),
    case("N04", "admitted on in_network_from", "paid",
         _id(ZHANG, "2026-02-01", "2026-02-03", hospital="H003"), member=ZHANG, method="id"),
    case("N05", "not in network is decided before matching", "not_in_network",
         _id(STRANGER, "2025-08-01", "2025-08-05", hospital="H002")),
    # Void beats everything.
    case("V01", "a paid stay voided", "void",
         _id(ZHANG, "2025-09-01", "2025-09-05"),
         _id(ZHANG, "2025-09-01", "2025-09-05", version=2, record_type="V")),
    case("V02", "void beats not_in_network and unmatched", "void",
         _id(STRANGER, "2025-08-01", "2025-08-05", hospital="H002"),
         _id(STRANGER, "2025-08-01", "2025-08-05", hospital="H002", version=2,
             record_type="V")),
    case("V03", "void beats review", "void",
         _id(WANG, "2025-09-01", "2025-09-05", name="王六", version=3, record_type="V")),
    case("V04", "a correction after a void is current again", "paid",
         _id(ZHANG, "2025-10-01", "2025-10-05"),
         _id(ZHANG, "2025-10-01", "2025-10-05", version=2, record_type="V"),
         _id(ZHANG, "2025-10-01", "2025-10-06", version=3, record_type="C"),
         member=ZHANG, method="id"),
]  # fmt: skip


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Every case in one partition, one run."""
    settings = new_settings(tmp_path_factory.mktemp("matching"))
    synth.write_registry(settings.landing, REGISTRY)
    synth.write_snapshot(
        settings.landing, SNAPSHOT_DAY, frame(ENROLMENTS, synth.ENROLLMENT_COLUMNS)
    )
    rows = [row for c in CASES for row in c.rows]
    synth.write_partition(settings.landing, FEED_DAY, "SHYB", frame(rows, synth.DISCHARGE_COLUMNS))
    result = run_local(settings, as_of=FEED_DAY)
    assert result.partitions["succeeded"] == [
        f"snapshot_date={SNAPSHOT_DAY}",
        f"feed_date={FEED_DAY}/source=SHYB",
    ]
    assert result.rows_quarantined == 0
    return settings


@pytest.mark.parametrize("c", CASES, ids=[f"{c.sid}-{c.why}" for c in CASES])
def test_matching_and_coverage_rule(night: Settings, c: Case) -> None:
    got = outcomes(night)[c.sid]
    assert (got["status"], got["reason"]) == (c.status, c.reason)
    # national_id and match_method are those of the matched member, empty unless matched.
    assert got["national_id"] == (c.member.nid if c.member else "")
    assert got["match_method"] == c.method
    assert got["current_version"] == max(int(r["version"]) for r in c.rows)
    assert (got["paid_fen"] > 0) == (c.status == "paid")


def test_every_stay_has_one_outcome(night: Settings) -> None:
    rows = query(night, "SELECT settlement_id FROM claim_outcomes")
    assert sorted(r[0] for r in rows) == sorted(c.sid for c in CASES)


def test_chain_start_of_the_covering_enrolment(night: Settings) -> None:
    rows = query(
        night,
        "SELECT settlement_id, enrollment_id, chain_start FROM stay_plan_targets "
        "WHERE settlement_id IN ('C03', 'C04', 'C05') ORDER BY settlement_id",
    )
    assert rows == [
        ("C03", "E012", date(2025, 1, 2)),
        ("C04", "E014", date(2024, 1, 1)),
        ("C05", "E015", date(2025, 6, 1)),
    ]


def test_members_take_name_and_payee_from_the_latest_enrolment(night: Settings) -> None:
    rows = query(
        night,
        "SELECT national_id, member_name, gender, birth_date, payee_account FROM members "
        "WHERE national_id IN (?, ?) ORDER BY member_name",
        [HE.nid, SUN.nid],
    )
    assert rows == [
        (HE.nid, "何莉", "F", date(1970, 1, 2), "6222020000000008"),
        (SUN.nid, "孙甲", "M", date(1971, 4, 4), "6222020000000010"),
    ]
    paid_to = {p["national_id"]: (p["payee_name"], p["payee_account"]) for p in payments(night)}
    assert paid_to[HE.nid] == ("何莉", "6222020000000008")
    assert paid_to[SUN.nid] == ("孙甲", "6222020000000010")
    # Only matched, paid members are paid; nobody else appears in the batch.
    paid = {c.member.nid for c in CASES if c.status == "paid" and c.member}
    assert set(paid_to) == paid


# ---------------------------------------------------------------------------------------------
# Re-matching when a newer snapshot arrives
# ---------------------------------------------------------------------------------------------

TYPO = Person("刘德华", "M", "1951-01-01", 51)
RETRO = Person("周杰", "M", "1952-02-02", 53)
LATE = Person("吴芳", "F", "1953-03-03", 54)
STEADY = Person("郑和", "M", "1954-04-04", 55)

FIRST_SNAPSHOT = date(2026, 1, 15)
SECOND_SNAPSHOT = date(2026, 2, 10)
OLDER_SNAPSHOT = date(2026, 2, 5)
NIGHT_1 = date(2026, 2, 1)


def _rematch_stays() -> list[dict[str, str]]:
    return [
        by_id(TYPO, "2025-09-01", "2025-09-05", sid="R-TYPO"),
        by_id(RETRO, "2025-09-01", "2025-09-05", sid="R-RETRO"),
        by_id(LATE, "2025-09-01", "2025-09-05", sid="R-LATE"),
        by_id(STEADY, "2025-09-01", "2025-09-05", sid="R-STEADY"),
    ]


@dataclass
class Step:
    result: CommitResult
    outcomes: dict[str, dict[str, Any]]
    entries: list[tuple[Any, ...]]  # this run's ledger entries
    snapshot: tuple[Any, ...]
    accounts: dict[str, tuple[int, int, int]]
    partitions: dict[str, tuple[str, str]]  # partition_runs: key → (status, error)


def _step(settings: Settings, result: CommitResult) -> Step:
    entries = query(
        settings,
        "SELECT settlement_id, plan_code, national_id, amount_fen, reason FROM ledger_entries "
        "WHERE run_id = ? ORDER BY settlement_id",
        [result.run_id],
    )
    snap = query(settings, "SELECT snapshot_date, row_count FROM current_snapshot")[0]
    accounts = {
        r[0]: (r[1], r[2], r[3])
        for r in query(
            settings,
            "SELECT national_id, ledger_fen, paid_out_fen, recovery_due_fen FROM member_accounts",
        )
    }
    partitions = {
        r[0]: (r[1], r[2])
        for r in query(settings, "SELECT partition_key, status, error FROM partition_runs")
    }
    return Step(result, outcomes(settings), entries, snap, accounts, partitions)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Step]]:
    """Night 1 under a first snapshot; a second snapshot; then an older one delivered late."""
    settings = new_settings(tmp_path_factory.mktemp("rematching"))
    synth.write_registry(settings.landing, REGISTRY)
    first = [
        enrolment("E101", TYPO, "RETIREE_INPATIENT", "2020-01-01", name="刘德花"),
        enrolment("E102", RETRO, "RETIREE_INPATIENT", "2020-01-01"),
        enrolment("E104", STEADY, "RETIREE_INPATIENT", "2020-01-01"),
    ]
    synth.write_snapshot(settings.landing, FIRST_SNAPSHOT, frame(first, synth.ENROLLMENT_COLUMNS))
    synth.write_partition(
        settings.landing, NIGHT_1, "SHYB", frame(_rematch_stays(), synth.DISCHARGE_COLUMNS)
    )
    steps = [_step(settings, run_local(settings, as_of=NIGHT_1))]

    second = [
        enrolment("E101", TYPO, "RETIREE_INPATIENT", "2020-01-01"),  # name fixed
        enrolment("E102", RETRO, "RETIREE_INPATIENT", "2020-01-01", "2025-08-31"),  # retro-end
        enrolment("E103", LATE, "RETIREE_INPATIENT", "2025-01-01"),  # enrolled late
        enrolment("E104", STEADY, "RETIREE_INPATIENT", "2020-01-01"),
    ]
    synth.write_snapshot(settings.landing, SECOND_SNAPSHOT, frame(second, synth.ENROLLMENT_COLUMNS))
    steps.append(_step(settings, run_local(settings, as_of=SECOND_SNAPSHOT)))

    # Delivered after the second, dated before it: it would unenrol everyone but STEADY.
    older = [enrolment("E104", STEADY, "RETIREE_INPATIENT", "2020-01-01")]
    synth.write_snapshot(settings.landing, OLDER_SNAPSHOT, frame(older, synth.ENROLLMENT_COLUMNS))
    steps.append(_step(settings, run_local(settings, as_of=SECOND_SNAPSHOT)))
    yield steps
    shutil.rmtree(settings.warehouse.parent, ignore_errors=True)


def test_first_snapshot_outcomes(snapshots: list[Step]) -> None:
    got = snapshots[0].outcomes
    assert (got["R-TYPO"]["status"], got["R-TYPO"]["reason"]) == ("review", "name_mismatch")
    assert got["R-RETRO"]["status"] == "paid"
    assert got["R-RETRO"]["paid_fen"] == 50_000  # 1000.00 × 0.50
    assert got["R-LATE"]["status"] == "unmatched"
    assert got["R-STEADY"]["status"] == "paid"


def test_name_typo_fixed_by_a_later_snapshot_pays(snapshots: list[Step]) -> None:
    after = snapshots[1].outcomes["R-TYPO"]
    assert (after["status"], after["national_id"], after["match_method"]) == (
        "paid",
        TYPO.nid,
        "id",
    )
    assert after["paid_fen"] == 50_000
    # Nothing was posted for it before: the first entry is 'initial' (ADR 0004).
    assert ("R-TYPO", "RETIREE_INPATIENT", TYPO.nid, 50_000, "initial") in snapshots[1].entries


def test_retro_termination_recovers_the_money(snapshots: list[Step]) -> None:
    after = snapshots[1].outcomes["R-RETRO"]
    assert (after["status"], after["national_id"], after["paid_fen"]) == (
        "not_covered",
        RETRO.nid,
        0,
    )
    assert ("R-RETRO", "RETIREE_INPATIENT", RETRO.nid, -50_000, "eligibility") in snapshots[
        1
    ].entries
    # Nothing else to net against: the member owes it back.
    assert snapshots[1].accounts[RETRO.nid] == (0, 50_000, 50_000)


def test_late_enrolment_pays_an_unmatched_stay(snapshots: list[Step]) -> None:
    after = snapshots[1].outcomes["R-LATE"]
    assert (after["status"], after["national_id"], after["paid_fen"]) == ("paid", LATE.nid, 50_000)
    assert ("R-LATE", "RETIREE_INPATIENT", LATE.nid, 50_000, "initial") in snapshots[1].entries


def test_unchanged_member_posts_nothing_on_a_new_snapshot(snapshots: list[Step]) -> None:
    assert all(e[0] != "R-STEADY" for e in snapshots[1].entries)
    assert snapshots[1].outcomes["R-STEADY"] == snapshots[0].outcomes["R-STEADY"]
    assert not snapshots[1].result.full_recompute  # re-matched by the snapshot's diff


def test_older_snapshot_is_not_loaded(snapshots: list[Step]) -> None:
    before, after = snapshots[1], snapshots[2]
    assert after.snapshot == (SECOND_SNAPSHOT, 4)
    assert after.result.snapshot is None
    assert after.entries == []
    assert after.outcomes == before.outcomes
    assert after.result.batch_id is None


def test_snapshot_older_than_the_loaded_one_says_so_when_it_arrives_first(
    snapshots: list[Step],
) -> None:
    """The first snapshot, superseded when the second was loaded, is reported as skipped."""
    assert snapshots[1].partitions[f"snapshot_date={FIRST_SNAPSHOT}"] == (
        "skipped",
        f"superseded by snapshot_date={SECOND_SNAPSHOT}",
    )


def test_snapshot_older_than_the_loaded_one_says_so_when_it_arrives_late(
    snapshots: list[Step],
) -> None:
    """payouts.md: partition_runs has one row per partition, this one too."""
    assert snapshots[2].partitions.get(f"snapshot_date={OLDER_SNAPSHOT}") == (
        "skipped",
        f"superseded by snapshot_date={SECOND_SNAPSHOT}",
    )


# ---------------------------------------------------------------------------------------------
# Integration: a generated population, two nights
# ---------------------------------------------------------------------------------------------

GEN_AS_OF = date(2026, 11, 19)
GEN_NIGHTS = (date(2026, 11, 20), date(2026, 11, 21))


def test_generated_population_two_nights(settings: Settings) -> None:
    pop = synth.make_population(2000, seed=5, as_of=GEN_AS_OF)
    hospitals = synth.make_hospitals()
    synth.write_registry(settings.landing, hospitals)
    synth.write_snapshot(settings.landing, GEN_AS_OF, pop.enrollments)
    labelled: dict[tuple[str, str], pl.DataFrame] = {}
    for night_day in GEN_NIGHTS:
        nights = synth.make_stays(
            pop,
            hospitals,
            feed_date=night_day,
            n=300,
            seed=5,
            bad_rate=0.01,
            history_start=GEN_NIGHTS[0],
            labels=True,
        )
        for source, rows in nights.items():
            labelled[(night_day.isoformat(), source)] = rows
            synth.write_partition(
                settings.landing,
                night_day,
                source,
                rows.drop("defect", "identity", "name_form"),
            )
    result = run_local(settings, as_of=GEN_NIGHTS[-1])
    assert not result.failed

    # The stays: every row that was not quarantined, by key.
    quarantined = {
        (r[0], r[1])
        for r in query(settings, "SELECT partition_key, row_number FROM quarantine_rows")
    }
    accepted = []
    for (day, source), rows in labelled.items():
        key = f"feed_date={day}/source={source}"
        numbered = rows.with_row_index("row_number", offset=1)
        keep = [n for n in numbered["row_number"].to_list() if (key, n) not in quarantined]
        accepted.append(numbered.filter(pl.col("row_number").is_in(keep)))
    good = pl.concat(accepted)
    stay_keys = set(good.select("hospital_code", "settlement_id").unique().iter_rows())
    assert len(stay_keys) > 500

    rows = query(
        settings,
        "SELECT hospital_code, settlement_id, status, reason, national_id, match_method, "
        "paid_fen FROM claim_outcomes",
    )
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys)), "one outcome row per stay"
    assert set(keys) == stay_keys
    for _h, _s, status, reason, nid, method, paid_fen in rows:
        assert status in STATUSES
        if status in MATCHED:
            assert nid != "" and method in ("id", "demographic")
        else:
            assert (nid, method) == ("", "")
        review_reasons = ("name_mismatch", "ambiguous", "overlap")
        assert reason in (review_reasons if status == "review" else ("",))
        assert (paid_fen > 0) == (status == "paid")
    by_status = {s: sum(1 for r in rows if r[2] == s) for s in STATUSES}
    assert by_status["paid"] > 0.5 * len(rows)
    assert by_status["unmatched"] > 0
    assert by_status["void"] > 0

    # What the generator says about a single-row, clean stay of a member, checked against it.
    outcome = {(r[0], r[1]): r for r in rows}
    singles = good.filter(
        pl.col("defect").is_null() & (pl.len().over("hospital_code", "settlement_id") == 1)
    )
    network = hospitals.filter(pl.col("in_network_to").is_null())["hospital_code"].to_list()
    checked = held = 0
    for row in singles.iter_rows(named=True):
        if row["hospital_code"] not in network:
            continue
        got = outcome[(row["hospital_code"], row["settlement_id"])]
        if row["identity"] == "unknown":  # a valid number nobody enrolled has
            assert got[2] == "unmatched"
        elif row["identity"] in ("exact", "fullwidth", "spaced", "lower_x", "legacy15"):
            if row["name_form"] == "typo":
                assert (got[2], got[3]) == ("review", "name_mismatch")
            elif (got[2], got[3]) == ("review", "overlap"):
                # matched, but the member lay in another bed the same night: held
                held += 1
            else:
                assert got[2] in MATCHED and got[5] == "id"
                assert got[4] == synth_member_id(row["national_id"])
            checked += 1
    assert checked > 200
    # the generator draws members by weight, so busy members overlap more than in life
    assert held < checked // 4, "overlaps are the exception"
    assert payments(settings), "the night paid someone"


def synth_member_id(shown: str) -> str:
    """The identity number a generated stay shows, normalised (feeds.md, Identity numbers)."""
    text = "".join(shown.split()).translate(
        str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")
    )
    text = text.upper()
    if len(text) == 15:
        body = text[:6] + "19" + text[6:]
        text = body + ric.calc_check_digit(body + "0")
    return text
