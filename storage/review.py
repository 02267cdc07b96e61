"""People in the loop: the review queue and its decisions (benefits.md, *Review decisions*).

One code path for every face (the command line today, a review desk later): ``open_items``
reads the queue with the evidence a person needs, ``record_decision`` checks a decision and
appends it under the run lock, so it never races a run. A decision marks its stay touched; the
next run (even an incremental one) re-adjudicates it and pays or recovers.

>>> record_decision(path, stay=("H001", "S1"), decision="approve", operator="wang",
...                 note="same person, typo in the hospital's record",
...                 limit_fen=2_000_000, lock_timeout_s=30)        # doctest: +SKIP
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from config.settings import ConfigError
from storage.lock import run_lock
from storage.queries import rows
from storage.warehouse import now, open_warehouse, transaction

DECISIONS = ("approve", "reject")
REASONS = ("name_mismatch", "ambiguous", "overlap")
MAX_OPERATOR = 100
MAX_NOTE = 1000


class ReviewError(ConfigError):
    """A decision that cannot be recorded (exit status 2); nothing was written."""


@dataclass(frozen=True)
class Candidate:
    """A member a review item may belong to. Personal fields are raw here: mask to show."""

    national_id: str
    member_name: str
    birth_date: date
    gender: str
    enrollments: list[str]
    agree: list[str]
    differ: list[str]


@dataclass(frozen=True)
class ReviewItem:
    """One open item of the queue, with the evidence for a decision."""

    hospital_code: str
    settlement_id: str
    version: int
    reason: str
    self_pay_in_scope_fen: int
    approvals: int
    approvals_needed: int
    approved_by: list[str]
    opened_at: datetime | None
    candidates: list[Candidate] = field(default_factory=list)
    overlapped_stay: str = ""


@dataclass(frozen=True)
class Recorded:
    """What a recorded decision does."""

    decision_id: str
    version: int
    takes_effect: bool  # False: an approval waiting for a second operator
    approvals: int
    approvals_needed: int


def _approvals_needed(self_pay_fen: int, limit_fen: int) -> int:
    return 2 if self_pay_fen > limit_fen else 1


_QUEUE_SQL = """
SELECT q.hospital_code, q.settlement_id, q.current_version, q.reason,
       q.self_pay_in_scope_fen, q.approvals, q.opened_at, o.national_id AS held_member,
       o.overlapped_stay, s.national_id AS stay_id, s.is_valid_id, s.patient_name_norm,
       s.birth_date, s.gender
FROM review_queue q
JOIN stay_outcomes o USING (hospital_code, settlement_id)
JOIN stays s USING (hospital_code, settlement_id)
"""


def _candidates(con: Any, item: dict[str, Any]) -> list[Candidate]:
    """The members the item could be, with the fields that agree and differ."""
    if item["reason"] == "ambiguous":
        members = rows(
            con,
            "SELECT * FROM members WHERE member_name_norm = ? AND birth_date = ? AND gender = ? "
            "ORDER BY national_id",
            [item["patient_name_norm"], item["birth_date"], item["gender"]],
        )
    else:
        nid = item["held_member"] if item["reason"] == "overlap" else item["stay_id"]
        members = rows(con, "SELECT * FROM members WHERE national_id = ?", [nid])
    found = []
    for m in members:
        enrolled = rows(
            con,
            "SELECT enrollment_id, plan_code FROM enrollments WHERE national_id = ? "
            "ORDER BY coverage_start, enrollment_id",
            [m["national_id"]],
        )
        checks = {
            "national_id": bool(item["is_valid_id"]) and m["national_id"] == item["stay_id"],
            "name": m["member_name_norm"] == item["patient_name_norm"],
            "birth_date": m["birth_date"] == item["birth_date"],
            "gender": m["gender"] == item["gender"],
        }
        found.append(
            Candidate(
                national_id=m["national_id"],
                member_name=m["member_name"],
                birth_date=m["birth_date"],
                gender=m["gender"],
                enrollments=[f"{e['enrollment_id']} ({e['plan_code']})" for e in enrolled],
                agree=[k for k, ok in checks.items() if ok],
                differ=[k for k, ok in checks.items() if not ok],
            )
        )
    return found


def open_items(path: Path, *, reason: str | None = None, limit_fen: int) -> list[ReviewItem]:
    """The open review items, oldest first, with their candidates (read-only)."""
    if reason is not None and reason not in REASONS:
        raise ReviewError(f"--reason must be one of {', '.join(REASONS)}")
    if not path.exists():
        raise ReviewError(f"no warehouse at {path}: run `claims run` first")
    where, params = ("WHERE q.reason = ?", [reason]) if reason else ("", [])
    with open_warehouse(path, read_only=True) as con:
        queue = rows(
            con,
            f"{_QUEUE_SQL} {where} ORDER BY q.opened_at, q.hospital_code, q.settlement_id",
            params,
        )
        items = []
        for q in queue:
            approvers = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT operator FROM review_decisions WHERE hospital_code = ? "
                    "AND settlement_id = ? AND version = ? AND reason = ? "
                    "AND decision = 'approve' ORDER BY operator",
                    [q["hospital_code"], q["settlement_id"], q["current_version"], q["reason"]],
                ).fetchall()
            ]
            items.append(
                ReviewItem(
                    hospital_code=q["hospital_code"],
                    settlement_id=q["settlement_id"],
                    version=int(q["current_version"]),
                    reason=q["reason"],
                    self_pay_in_scope_fen=int(q["self_pay_in_scope_fen"]),
                    approvals=int(q["approvals"]),
                    approvals_needed=_approvals_needed(int(q["self_pay_in_scope_fen"]), limit_fen),
                    approved_by=approvers,
                    opened_at=q["opened_at"],
                    candidates=_candidates(con, q),
                    overlapped_stay=q["overlapped_stay"] or "",
                )
            )
    return items


def parse_stay(text: str) -> tuple[str, str]:
    """``HOSPITAL_CODE/SETTLEMENT_ID``, each part plain (checked before any query)."""
    hospital, sep, settlement = text.partition("/")
    ok = all(
        part and len(part) <= 64 and all(c.isalnum() or c in "-_." for c in part)
        for part in (hospital, settlement)
    )
    if not sep or not ok:
        raise ReviewError("--stay takes HOSPITAL_CODE/SETTLEMENT_ID")
    return hospital, settlement


def _check_text(value: str, what: str, longest: int) -> str:
    text = value.strip()
    if not text:
        raise ReviewError(f"{what} must not be empty")
    if len(text) > longest:
        raise ReviewError(f"{what} is longer than {longest} characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise ReviewError(f"{what} must not contain control characters")
    return text


def record_decision(
    path: Path,
    *,
    stay: tuple[str, str],
    decision: str,
    operator: str,
    note: str,
    limit_fen: int,
    lock_timeout_s: float,
    enrollment_id: str | None = None,
    version: int | None = None,
) -> Recorded:
    """Check and append one decision against the stay's current version, under the run lock.

    ``version`` is the version the operator reviewed: a stay that has moved on since is refused
    (stale). Raises ReviewError, having written nothing, for anything the contract refuses.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"a decision is one of {', '.join(DECISIONS)}")
    operator = _check_text(operator, "--by (the operator)", MAX_OPERATOR)
    note = _check_text(note, "--note", MAX_NOTE)
    if decision == "reject" and enrollment_id is not None:
        raise ReviewError("--enrollment goes with approve, not reject")
    if not path.exists():
        raise ReviewError(f"no warehouse at {path}: run `claims run` first")
    hospital, settlement = stay
    with run_lock(path, lock_timeout_s), open_warehouse(path) as con, transaction(con):
        row = con.execute(
            "SELECT s.current_version, s.self_pay_in_scope_fen, s.patient_name_norm, "
            "s.birth_date, s.gender, s.national_id, s.is_valid_id, o.status, o.reason, "
            "o.current_version FROM stays s LEFT JOIN stay_outcomes o "
            "USING (hospital_code, settlement_id) WHERE hospital_code = ? AND settlement_id = ?",
            [hospital, settlement],
        ).fetchone()
        if row is None:
            raise ReviewError(f"no stay {hospital}/{settlement} in the warehouse")
        current, self_pay, name_norm, birth, gender, stay_id, valid_id = row[:7]
        status, reason, adjudicated_version = row[7:]
        if version is not None and version != current:
            raise ReviewError(
                f"stale: the stay is now at version {current}, not {version}; "
                "look at it again (`claims review list`)"
            )
        if status != "review" or adjudicated_version != current:
            shown = status or "not adjudicated yet"
            raise ReviewError(f"the stay is not in review (status {shown})")
        still_open = con.execute(
            "SELECT approvals FROM review_queue WHERE hospital_code = ? AND settlement_id = ?",
            [hospital, settlement],
        ).fetchone()
        if still_open is None:
            raise ReviewError(
                "the stay was already decided; the decision takes effect on the next run"
            )
        needed = _approvals_needed(int(self_pay), limit_fen)
        member = None
        if decision == "approve":
            if reason == "ambiguous":
                if not enrollment_id:
                    raise ReviewError(
                        "an ambiguous stay needs --enrollment: the enrolment of the candidate "
                        "you chose (`claims review list` shows them)"
                    )
                found = con.execute(
                    "SELECT e.national_id FROM enrollments e JOIN members m USING (national_id) "
                    "WHERE e.enrollment_id = ? AND m.member_name_norm = ? AND m.birth_date = ? "
                    "AND m.gender = ?",
                    [enrollment_id, name_norm, birth, gender],
                ).fetchone()
                if found is None:
                    raise ReviewError(
                        f"enrolment {enrollment_id} is not one of this stay's candidates"
                    )
                member = str(found[0])
            elif enrollment_id is not None:
                raise ReviewError(f"--enrollment is only for ambiguous stays, not {reason}")
            elif reason == "name_mismatch":
                member = str(stay_id) if valid_id else None
            same = con.execute(
                "SELECT count(*) FROM review_decisions WHERE hospital_code = ? "
                "AND settlement_id = ? AND version = ? AND reason = ? AND decision = 'approve' "
                "AND operator = ?",
                [hospital, settlement, current, reason, operator],
            ).fetchone()
            if same is not None and same[0]:
                raise ReviewError(
                    f"{operator} already approved this stay: four eyes needs a second, "
                    "different operator"
                )
        decision_id = f"R{now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        con.execute(
            "INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                decision_id,
                hospital,
                settlement,
                current,
                reason,
                decision,
                enrollment_id,
                member,
                needed,
                operator,
                note,
                now(),
            ],
        )
        con.execute("INSERT INTO review_touched VALUES (?, ?)", [hospital, settlement])
        approvals = 0
        if decision == "approve":
            got = con.execute(
                "SELECT count(DISTINCT operator) FROM review_decisions WHERE hospital_code = ? "
                "AND settlement_id = ? AND version = ? AND reason = ? AND decision = 'approve' "
                "AND coalesce(national_id, '') = ?",
                [hospital, settlement, current, reason, member or ""],
            ).fetchone()
            approvals = int(got[0]) if got else 0
        takes_effect = decision == "reject" or approvals >= needed
        return Recorded(decision_id, int(current), takes_effect, approvals, needed)


def queue_summary(con: Any) -> dict[str, Any]:
    """Open review items for the morning report: counts, oldest age, money at stake."""
    row = con.execute(
        "SELECT count(*), min(opened_at), coalesce(sum(self_pay_in_scope_fen), 0) FROM review_queue"
    ).fetchone()
    by_reason = dict(
        con.execute("SELECT reason, count(*) FROM review_queue GROUP BY ALL ORDER BY 1").fetchall()
    )
    return {
        "pending": int(row[0]) if row else 0,
        "oldest_opened_at": row[1] if row else None,
        "at_stake_fen": int(row[2]) if row else 0,
        "by_reason": {str(k): int(v) for k, v in by_reason.items()},
    }
