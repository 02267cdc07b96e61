"""The review desk's warehouse side: operators, their passwords, item views, the facts of an item.

Decisions are not written here: the desk records them through ``storage.review.record_decision``,
the command line's code path. Reads open the file read-only for one request and close it, so the
nightly run is never kept waiting by an idle desk; writes take the run lock like every writer.

>>> add_operator(path, "liu", "reviewer", "a long passphrase", lock_timeout_s=30)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from config.settings import ConfigError
from storage.lock import run_lock
from storage.warehouse import now, open_warehouse, transaction

ROLES = ("reviewer", "approver", "auditor")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

# scrypt at n=2**15, r=8, p=1: 32 MB and ~150 ms per check on this 2-core machine (measured),
# a cost paid once per sign-in; OWASP's minimum is n=2**17 (128 MB), too much memory per sign-in
# here. The parameters are stored with each hash, so raising them later needs no migration.
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class DeskError(ConfigError):
    """An operator command that cannot be done (exit status 2); nothing was written."""


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    is_disabled: bool
    password_hash: str = field(repr=False)


def check_name(name: str) -> str:
    """An operator's login: lowercase letters, digits, ``.``, ``_``, ``-`` (never a person's name
    in Han characters: it is written on every decision and in the server's log)."""
    if not _NAME.fullmatch(name):
        raise DeskError(
            "an operator name is 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (a staff login, e.g. liu.wei)"
        )
    return name


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32
    )
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from ``hash_password`` (constant-time compare)."""
    try:
        kind, n, r, p, salt, expected = stored.split("$")
        if kind != "scrypt" or int(n) > 2**20:
            return False
        digest = hashlib.scrypt(
            password.encode()[: MAX_PASSWORD * 4],
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=max(_MAXMEM, 256 * int(n) * int(r)),  # the hash's own cost, if raised
            dklen=len(expected) // 2,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


# A hash to check against when the operator does not exist: the answer takes as long either way.
_DUMMY = hash_password(secrets.token_hex(16))


def add_operator(
    path: Path, name: str, role: str, password: str, *, lock_timeout_s: float
) -> Operator:
    """Add an operator (exit 2 if the name is taken, the role unknown or the password short)."""
    check_name(name)
    if role not in ROLES:
        raise DeskError(f"--role must be one of {', '.join(ROLES)}")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise DeskError(f"a password has at least {MIN_PASSWORD} characters")
    if not path.exists():
        raise DeskError(f"no warehouse at {path}: run `claims run` first")
    stored = hash_password(password)
    with run_lock(path, lock_timeout_s), open_warehouse(path) as con, transaction(con):
        if con.execute("SELECT 1 FROM operators WHERE operator = ?", [name]).fetchone():
            raise DeskError(f"operator {name} already exists")
        con.execute(
            "INSERT INTO operators VALUES (?, ?, ?, false, ?, NULL)", [name, role, stored, now()]
        )
    return Operator(name, role, False, stored)


def disable_operator(path: Path, name: str, *, lock_timeout_s: float) -> None:
    """Disable an operator: no sign-in, and their open sessions end at their next request."""
    check_name(name)
    if not path.exists():
        raise DeskError(f"no warehouse at {path}: run `claims run` first")
    with run_lock(path, lock_timeout_s), open_warehouse(path) as con, transaction(con):
        found = con.execute("SELECT is_disabled FROM operators WHERE operator = ?", [name])
        row = found.fetchone()
        if row is None:
            raise DeskError(f"no operator {name}")
        if not row[0]:
            con.execute(
                "UPDATE operators SET is_disabled = true, disabled_at = ? WHERE operator = ?",
                [now(), name],
            )


def find_operator(path: Path, name: str) -> Operator | None:
    """The operator of that name, or None (also when the warehouse has no operators yet)."""
    if not _NAME.fullmatch(name) or not path.exists():
        return None
    with open_warehouse(path, read_only=True) as con:
        try:
            row = con.execute(
                "SELECT operator, role, is_disabled, password_hash FROM operators "
                "WHERE operator = ?",
                [name],
            ).fetchone()
        except duckdb.CatalogException:  # migration 011 not applied: nobody was ever added
            return None
    return Operator(row[0], row[1], bool(row[2]), row[3]) if row else None


def authenticate(path: Path, name: str, password: str) -> Operator | None:
    """The operator if the name and password match and they are not disabled, else None."""
    found = find_operator(path, name)
    ok = verify_password(password, found.password_hash if found else _DUMMY)
    if found is None or not ok or found.is_disabled:
        return None
    return found


def record_view(
    path: Path, operator: str, stay: tuple[str, str], version: int, *, lock_timeout_s: float
) -> None:
    """Note that an operator was shown an item's personal data (audit)."""
    with run_lock(path, lock_timeout_s), open_warehouse(path) as con, transaction(con):
        con.execute(
            "INSERT INTO desk_views VALUES (?, ?, ?, ?, ?)", [operator, *stay, version, now()]
        )


# ---------------------------------------------------------------------------------------------
# The facts of an item page
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StayFacts:
    """A stay as the hospital sent it (current version). Personal fields raw: item pages only."""

    hospital_code: str
    settlement_id: str
    hospital_name: str
    version: int
    record_type: str
    patient_name: str
    national_id: str
    is_valid_id: bool
    gender: str
    birth_date: date
    admission_date: date
    discharge_date: date
    primary_diagnosis: str
    total_cost_fen: int
    fund_paid_fen: int
    self_pay_in_scope_fen: int
    self_pay_out_of_scope_fen: int
    status: str
    reason: str
    paid_fen: int


@dataclass(frozen=True)
class PlanAmount:
    """What one plan would pay for the stay if it were this member's (before the annual cap)."""

    plan_code: str
    reimbursement_fen: int
    allowance_fen: int

    @property
    def raw_fen(self) -> int:
        return self.reimbursement_fen + self.allowance_fen


@dataclass(frozen=True)
class Decision:
    decision_id: str
    version: int
    reason: str
    decision: str
    enrollment_id: str
    operator: str
    note: str
    decided_at: datetime


@dataclass(frozen=True)
class ItemFacts:
    stay: StayFacts
    overlapped: StayFacts | None
    at_stake: dict[str, list[PlanAmount]]  # candidate national_id -> plans in priority order
    decisions: list[Decision]


_STAY_SQL = """
SELECT s.hospital_code, s.settlement_id, coalesce(h.hospital_name, ''), s.current_version,
       s.record_type, coalesce(r.patient_name, ''), s.national_id, s.is_valid_id, s.gender,
       s.birth_date, s.admission_date, s.discharge_date, coalesce(r.primary_diagnosis, ''),
       coalesce(r.total_cost_fen, 0), coalesce(r.fund_paid_fen, 0), s.self_pay_in_scope_fen,
       coalesce(r.self_pay_out_of_scope_fen, 0), coalesce(o.status, ''), coalesce(o.reason, ''),
       coalesce(c.paid_fen, 0)
FROM stays s
LEFT JOIN hospitals h USING (hospital_code)
LEFT JOIN stay_outcomes o USING (hospital_code, settlement_id)
LEFT JOIN claim_outcomes c USING (hospital_code, settlement_id)
LEFT JOIN (
    SELECT * FROM discharge_rows
    WHERE hospital_code = $h AND settlement_id = $s
    QUALIFY row_number() OVER (PARTITION BY version ORDER BY feed_date DESC, row_number DESC) = 1
) r ON r.hospital_code = s.hospital_code AND r.settlement_id = s.settlement_id
   AND r.version = s.current_version
WHERE s.hospital_code = $h AND s.settlement_id = $s
"""


def _stay(con: Any, hospital: str, settlement: str) -> StayFacts | None:
    row = con.execute(_STAY_SQL, {"h": hospital, "s": settlement}).fetchone()
    if row is None:
        return None
    text = [str(v) for v in row]
    money = [int(v) for v in row[13:17]]
    return StayFacts(
        hospital_code=text[0],
        settlement_id=text[1],
        hospital_name=text[2],
        version=int(row[3]),
        record_type=text[4],
        patient_name=text[5],
        national_id=text[6],
        is_valid_id=bool(row[7]),
        gender=text[8],
        birth_date=row[9],
        admission_date=row[10],
        discharge_date=row[11],
        primary_diagnosis=text[12],
        total_cost_fen=money[0],
        fund_paid_fen=money[1],
        self_pay_in_scope_fen=money[2],
        self_pay_out_of_scope_fen=money[3],
        status=text[17],
        reason=text[18],
        paid_fen=int(row[19]),
    )


def _plan_amounts(con: Any, stay: StayFacts, national_id: str) -> list[PlanAmount]:
    """benefits.md, *Amount for one stay*, for the plans that would cover this member."""
    year = stay.discharge_date.year
    rules = con.execute(
        "SELECT plan_code, priority, rate_bp, deductible_fen, per_stay_cap_fen, "
        "daily_allowance_fen, allowance_days, waiting_days FROM plan_rules WHERE from_year <= ? "
        "QUALIFY row_number() OVER (PARTITION BY plan_code ORDER BY from_year DESC) = 1 "
        "ORDER BY priority, plan_code",
        [year],
    ).fetchall()
    enrolled = con.execute(
        "SELECT plan_code, coverage_start, coverage_end, chain_start FROM enrollments "
        "WHERE national_id = ?",
        [national_id],
    ).fetchall()
    adm = stay.admission_date
    los = max(1, (stay.discharge_date - adm).days)
    remaining = stay.self_pay_in_scope_fen
    amounts = []
    for plan, _, rate_bp, deductible, cap, daily, days, waiting in rules:
        covered = any(
            p == plan
            and start <= adm
            and (end is None or adm <= end)
            and adm >= chain + timedelta(days=waiting)
            for p, start, end, chain in enrolled
        )
        if not covered:
            continue
        base = max(0, remaining - deductible)
        reimbursement = (base * rate_bp + 5_000) // 10_000
        if cap is not None:
            reimbursement = min(reimbursement, cap)
        remaining -= reimbursement
        amounts.append(PlanAmount(plan, reimbursement, daily * min(los, days)))
    return amounts


def item_facts(path: Path, stay: tuple[str, str], candidates: list[str]) -> ItemFacts | None:
    """The stay, the stay it overlaps, what each candidate's plans would pay, its decisions."""
    with open_warehouse(path, read_only=True) as con:
        facts = _stay(con, *stay)
        if facts is None:
            return None
        overlapped = None
        held = con.execute(
            "SELECT overlapped_stay FROM stay_outcomes WHERE hospital_code = ? "
            "AND settlement_id = ?",
            list(stay),
        ).fetchone()
        if held and held[0]:
            other_h, _, other_s = str(held[0]).partition("/")
            overlapped = _stay(con, other_h, other_s)
        at_stake = {nid: _plan_amounts(con, facts, nid) for nid in candidates}
        decisions = [
            Decision(r[0], int(r[1]), r[2], r[3], r[4] or "", r[5], r[6], r[7])
            for r in con.execute(
                "SELECT decision_id, version, reason, decision, enrollment_id, operator, note, "
                "decided_at FROM review_decisions WHERE hospital_code = ? AND settlement_id = ? "
                "ORDER BY decided_at, decision_id",
                list(stay),
            ).fetchall()
        ]
    return ItemFacts(facts, overlapped, at_stake, decisions)


@dataclass(frozen=True)
class LogRow:
    hospital_code: str
    settlement_id: str
    version: int
    reason: str
    decision: str
    enrollment_id: str
    approvals_needed: int
    operator: str
    note: str
    decided_at: datetime


def decision_log(
    path: Path,
    *,
    operator: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    since: date | None = None,
    limit: int = 500,
) -> list[LogRow]:
    """Recorded decisions, newest first, filtered (read-only). Notes are raw: mask to show."""
    where: list[str] = ["true"]
    params: list[object] = []
    for column, value in (("operator", operator), ("decision", decision), ("reason", reason)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("decided_at >= ?")
        params.append(datetime.combine(since, datetime.min.time()))
    with open_warehouse(path, read_only=True) as con:
        rows = con.execute(
            "SELECT hospital_code, settlement_id, version, reason, decision, "
            "coalesce(enrollment_id, ''), approvals_needed, operator, note, decided_at "
            f"FROM review_decisions WHERE {' AND '.join(where)} "
            "ORDER BY decided_at DESC, decision_id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
    return [LogRow(*r) for r in rows]
