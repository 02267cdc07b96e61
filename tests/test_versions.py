"""Versions, duplicates and re-deliveries (feeds.md, *Versions and duplicates*; ADR 0002).

Everything goes through ``run_local`` on real landing folders and a real DuckDB file, and is read
back from the contract's views. One member (a retiree: 60 % of ``self_pay_in_scope`` in 2026, no
deductible) is enrolled, so which row of a stay stands shows in ``paid_fen``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
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

DAY1 = date(2026, 11, 26)
DAY2 = date(2026, 11, 27)
P1 = f"feed_date={DAY1}/source=SHYB"
P2 = f"feed_date={DAY2}/source=SHYB"
P0 = f"feed_date={DAY1}/source=ALPHA"  # same day as P1, earlier by source
HOSPITALS = synth.make_hospitals(3)
HOSPITAL = HOSPITALS["hospital_code"][0]
BODY = "31010419500101001"
MEMBER = BODY + ric.calc_check_digit(BODY + "0")


def paid(in_scope_yuan: int) -> int:
    """What RETIREE_INPATIENT (2026: rate 0.60) pays for a stay, in fen."""
    return in_scope_yuan * 60


# Each (stay, hospital) lies in its own nights: the member never lies in two beds at once
# (benefits.md, *Overlapping stays*), so no stay here is held for a person.
_NIGHTS: dict[tuple[str, str], int] = {}


def _nights(sid: str, hospital: str) -> dict[str, str]:
    slot = _NIGHTS.setdefault((sid, hospital), len(_NIGHTS))
    admitted = date(2026, 1, 1) + timedelta(days=2 * slot)
    return {
        "admission_date": admitted.isoformat(),
        "discharge_date": (admitted + timedelta(days=1)).isoformat(),
    }


def stay(sid: str, version: int, record_type: str, in_scope: int, **values: str) -> dict[str, str]:
    """A row of the member's stay with ``in_scope`` yuan paid inside the catalogue."""
    base = {
        "settlement_id": sid,
        "version": str(version),
        "record_type": record_type,
        "hospital_code": HOSPITAL,
        "national_id": MEMBER,
        "patient_name": "张三",
        "gender": "M",
        "birth_date": "1950-01-01",
        "admission_date": "2026-11-02",
        "discharge_date": "2026-11-12",
        "primary_diagnosis": "I10.x05",
        "total_cost": f"{in_scope + 70}.00",
        "fund_paid": "60.00",
        "self_pay_in_scope": f"{in_scope}.00",
        "self_pay_out_of_scope": "10.00",
        "settled_at": f"2026-11-12T1{version}:00:00+08:00",
    }
    row = base | values
    return row | _nights(sid, row["hospital_code"])


def new_landing(root: Path, *, member: bool = True) -> Settings:
    """An empty landing folder with the registry and a one-member snapshot; its own warehouse."""
    settings = Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")
    synth.write_registry(settings.landing, HOSPITALS)
    if not member:
        return settings
    enrolment = {
        "enrollment_id": "E000000001",
        "national_id": MEMBER,
        "member_name": "张三",
        "gender": "M",
        "birth_date": "1950-01-01",
        "plan_code": "RETIREE_INPATIENT",
        "coverage_start": "2020-01-01",
        "coverage_end": "",
        "payee_account": "6222020200001234567",
    }
    synth.write_snapshot(settings.landing, date(2026, 11, 1), pl.DataFrame([enrolment]))
    return settings


def deliver(settings: Settings, day: date, rows: list[dict[str, str]]) -> Path:
    frame = pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))
    return synth.write_partition(settings.landing, day, "SHYB", frame)


def query(settings: Settings, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@dataclass
class State:
    """What the contract's views show after a run."""

    claim_outcomes: list[tuple[Any, ...]]
    claim_plan_payouts: list[tuple[Any, ...]]
    quarantine_rows: list[tuple[Any, ...]]
    partition_runs: list[tuple[Any, ...]]

    @classmethod
    def of(cls, settings: Settings) -> State:
        return cls(
            query(settings, "SELECT * FROM claim_outcomes ORDER BY ALL"),
            query(settings, "SELECT * FROM claim_plan_payouts ORDER BY ALL"),
            query(settings, "SELECT * FROM quarantine_rows ORDER BY ALL"),
            # Everything but the time of the update.
            query(settings, "SELECT * EXCLUDE (updated_at) FROM partition_runs ORDER BY ALL"),
        )

    def outcome(self, sid: str, hospital: str = HOSPITAL) -> tuple[int, str, int] | None:
        """(current_version, status, paid_fen) of a stay, None when there is no such stay."""
        found = [(r[2], r[3], r[7]) for r in self.claim_outcomes if r[:2] == (hospital, sid)]
        return found[0] if found else None

    def quarantined(self) -> list[tuple[str, int, str]]:
        return [(r[0], r[1], r[2]) for r in self.quarantine_rows]

    def run_of(self, key: str) -> dict[str, Any]:
        names = ("kind", "partition_key", "status", "rows_read", "rows_quarantined", "error",
                 "attempts")  # fmt: skip
        return next(dict(zip(names, r, strict=True)) for r in self.partition_runs if r[1] == key)


# Two nights of one source, and a small partition of another source on the first night. Row
# numbers are noted where the quarantine shows them. The conflicts are quarantined rows: more
# stays (K, M) keep each partition within the 5 % reject threshold in either order.
OTHER_HOSPITAL = HOSPITALS["hospital_code"][1]
NIGHT1 = [
    stay("A", 1, "N", 30),
    stay("A", 1, "N", 45, hospital_code=OTHER_HOSPITAL),  # another hospital: another stay
    stay("B", 1, "N", 40),
    stay("D", 1, "N", 50),
    stay("E", 1, "N", 20),  # 5
    stay("F", 2, "C", 80),  # a correction that arrives before the version it corrects
    stay("H", 1, "N", 40),
    stay("L", 1, "N", 60),  # 8: conflicts with ALPHA's L v1, which comes first by source
    *(stay(f"M{n:02d}", 1, "N", n) for n in range(1, 15)),
]
NIGHT1_ALPHA = [stay("L", 1, "N", 65)]
NIGHT2 = [
    stay("A", 2, "C", 35),  # 1: corrects A
    stay("B", 2, "V", 40),  # 2: voids B
    stay("D", 1, "N", 50),  # 3: D v1 again, identical: a re-delivery
    stay("E", 1, "N", 25),  # 4: E v1 again, different content: version_conflict
    stay("F", 1, "N", 70),  # 5: F v1, lower than the v2 already received
    stay("G", 1, "N", 10),  # 6: G v1 ...
    stay("G", 1, "N", 15),  # 7: ... and G v1 again in the same partition: version_conflict
    # 8: H v1 again, written differently but the same once parsed: a re-delivery
    stay("H", 1, "N", 40, total_cost="110", self_pay_in_scope=" 40.0",
         settled_at="2026-11-12T03:00:00Z",
         national_id=f"{MEMBER[:6]} {MEMBER[6:14]} {MEMBER[14:]}"),
    *(stay(f"K{n:02d}", 1, "N", n) for n in range(1, 33)),
]  # fmt: skip


def deliver_alpha(settings: Settings) -> None:
    frame = pl.DataFrame(NIGHT1_ALPHA, schema=dict.fromkeys(NIGHT1_ALPHA[0], pl.String))
    synth.write_partition(settings.landing, DAY1, "ALPHA", frame)


@pytest.fixture(scope="module")
def in_order(tmp_path_factory: pytest.TempPathFactory) -> State:
    """The two nights processed in feed-date order; ALPHA of the first night arrives late."""
    settings = new_landing(tmp_path_factory.mktemp("in_order"))
    deliver(settings, DAY1, NIGHT1)
    run_local(settings, as_of=DAY1)
    deliver_alpha(settings)
    deliver(settings, DAY2, NIGHT2)
    run_local(settings, as_of=DAY2)
    return State.of(settings)


@pytest.fixture(scope="module")
def reversed_order(tmp_path_factory: pytest.TempPathFactory) -> tuple[State, State]:
    """The second night delivered and processed first; the first night arrives afterwards."""
    settings = new_landing(tmp_path_factory.mktemp("reversed"))
    deliver(settings, DAY2, NIGHT2)
    deliver_alpha(settings)
    run_local(settings, as_of=DAY2)
    before = State.of(settings)
    deliver(settings, DAY1, NIGHT1)
    run_local(settings, as_of=DAY2)
    return before, State.of(settings)


def test_every_partition_succeeds(in_order: State) -> None:
    runs = {key: in_order.run_of(key) for key in (P0, P1, P2)}

    assert {key: run["status"] for key, run in runs.items()} == dict.fromkeys(runs, "succeeded")
    assert [(run["rows_read"], run["rows_quarantined"]) for run in runs.values()] == [
        (1, 0), (22, 1), (40, 2)
    ]  # fmt: skip


def test_correction_replaces_the_lower_version(in_order: State) -> None:
    assert in_order.outcome("A") == (2, "paid", paid(35))
    assert in_order.outcome("A", OTHER_HOSPITAL) == (1, "paid", paid(45))


def test_void_cancels_the_stay(in_order: State) -> None:
    assert in_order.outcome("B") == (2, "void", 0)


def test_identical_row_in_another_partition_is_a_no_op(in_order: State) -> None:
    assert in_order.outcome("D") == (1, "paid", paid(50))
    assert in_order.outcome("H") == (1, "paid", paid(40))
    assert (P2, 3, "version_conflict") not in in_order.quarantined()
    assert (P2, 8, "version_conflict") not in in_order.quarantined()


def test_same_version_with_different_content_quarantines_the_later_partitions_row(
    in_order: State,
) -> None:
    assert (P2, 4, "version_conflict") in in_order.quarantined()
    assert in_order.outcome("E") == (1, "paid", paid(20))  # the first night's row stands
    message = next(r[3] for r in in_order.quarantine_rows if r[:2] == (P2, 4))
    assert P1 in message and "(row 5)" in message


def test_within_one_partition_the_later_row_is_quarantined(in_order: State) -> None:
    assert (P2, 7, "version_conflict") in in_order.quarantined()
    assert (P2, 6, "version_conflict") not in in_order.quarantined()
    assert in_order.outcome("G") == (1, "paid", paid(10))


def test_highest_version_wins_when_it_arrives_first(in_order: State) -> None:
    assert in_order.outcome("F") == (2, "paid", paid(80))


def test_partitions_are_ordered_by_feed_date_then_source_not_by_arrival(in_order: State) -> None:
    # SHYB of the first night was processed a night before ALPHA arrived, yet ALPHA's row stands.
    assert in_order.outcome("L") == (1, "paid", paid(65))
    assert (P1, 8, "version_conflict") in in_order.quarantined()
    assert in_order.run_of(P1)["rows_quarantined"] == 1
    assert in_order.run_of(P0)["rows_quarantined"] == 0


def test_only_the_conflicts_are_quarantined(in_order: State) -> None:
    assert in_order.quarantined() == [
        (P1, 8, "version_conflict"),
        (P2, 4, "version_conflict"),
        (P2, 7, "version_conflict"),
    ]


def test_conflict_found_late_moves_to_the_later_partition(
    reversed_order: tuple[State, State],
) -> None:
    before, after = reversed_order
    # Without the first SHYB night, the second night's E v1 stands and only its own repeat of G
    # is a conflict ...
    assert before.quarantined() == [(P2, 7, "version_conflict")]
    assert before.outcome("E") == (1, "paid", paid(25))
    assert before.outcome("F") == (1, "paid", paid(70))
    assert before.run_of(P2)["rows_quarantined"] == 1
    # ... until the earlier night arrives: its E v1 stands, the later one becomes the conflict.
    assert after.quarantined() == [
        (P1, 8, "version_conflict"),
        (P2, 4, "version_conflict"),
        (P2, 7, "version_conflict"),
    ]
    assert after.outcome("E") == (1, "paid", paid(20))
    assert after.outcome("F") == (2, "paid", paid(80))
    assert after.run_of(P2)["rows_quarantined"] == 2
    assert after.run_of(P2)["status"] == "succeeded"


def test_processing_order_does_not_change_the_outcome(
    in_order: State, reversed_order: tuple[State, State]
) -> None:
    _, after = reversed_order

    assert after.claim_outcomes == in_order.claim_outcomes
    assert after.claim_plan_payouts == in_order.claim_plan_payouts
    assert after.quarantine_rows == in_order.quarantine_rows
    assert after.partition_runs == in_order.partition_runs


def test_conflicts_and_the_reject_threshold_do_not_depend_on_order(tmp_path: Path) -> None:
    night1 = [stay("E", 1, "N", 20)]
    night2 = [stay("E", 1, "N", 25), stay("K", 1, "N", 5)]  # one conflict in two rows
    forward = new_landing(tmp_path / "forward", member=False)
    deliver(forward, DAY1, night1)
    run_local(forward, as_of=DAY1)
    deliver(forward, DAY2, night2)
    run_local(forward, as_of=DAY2)
    backward = new_landing(tmp_path / "backward", member=False)
    deliver(backward, DAY2, night2)
    run_local(backward, as_of=DAY2)
    deliver(backward, DAY1, night1)
    run_local(backward, as_of=DAY2)

    assert State.of(backward).claim_outcomes == State.of(forward).claim_outcomes
    assert State.of(backward).partition_runs == State.of(forward).partition_runs


# --- re-delivery -------------------------------------------------------------------------------


@dataclass
class Redelivery:
    voided: State  # both nights in: Y voided, Z paid
    redelivered: State  # the second night re-delivered without Y's void and without Z
    again: State  # one more run with nothing new
    again_result: CommitResult


@pytest.fixture(scope="module")
def redelivery(tmp_path_factory: pytest.TempPathFactory) -> Redelivery:
    settings = new_landing(tmp_path_factory.mktemp("redelivery"))
    deliver(settings, DAY1, [stay("Y", 1, "N", 30)])
    deliver(settings, DAY2, [stay("Y", 2, "V", 30), stay("Z", 1, "N", 50)])
    run_local(settings, as_of=DAY2)
    voided = State.of(settings)
    # A new delivery of the second night: new files, new manifest.
    deliver(settings, DAY2, [stay("W", 1, "N", 10)])
    run_local(settings, as_of=DAY2)
    redelivered = State.of(settings)
    result = run_local(settings, as_of=DAY2)
    return Redelivery(voided, redelivered, State.of(settings), result)


def test_redelivery_replaces_the_partitions_rows(redelivery: Redelivery) -> None:
    assert redelivery.voided.outcome("Y") == (2, "void", 0)
    assert redelivery.voided.outcome("Z") == (1, "paid", paid(50))

    after = redelivery.redelivered
    # The void is gone with the delivery that carried it: Y is back to its first version ...
    assert after.outcome("Y") == (1, "paid", paid(30))
    # ... the stay the new delivery dropped disappears, and its money is recovered ...
    assert after.outcome("Z") is None
    assert [r[1] for r in after.claim_plan_payouts] == ["W", "Y"]
    # ... and the new delivery's own stay is in.
    assert after.outcome("W") == (1, "paid", paid(10))


def test_redelivery_is_a_new_content_and_one_more_attempt(redelivery: Redelivery) -> None:
    run = redelivery.redelivered.run_of(P2)

    assert (run["status"], run["rows_read"], run["attempts"], run["error"]) == (
        "succeeded", 1, 2, ""
    )  # fmt: skip


def test_unchanged_content_is_not_processed_again(redelivery: Redelivery) -> None:
    assert redelivery.again == redelivery.redelivered
    result = redelivery.again_result
    assert sorted(result.partitions["skipped"]) == [P1, P2]
    assert "succeeded" not in result.partitions and "failed" not in result.partitions
    assert result.entries == 0 and result.rows_read == 0


# --- failed partitions -------------------------------------------------------------------------


def test_failed_partition_waits_for_a_new_delivery_or_an_explicit_rerun(tmp_path: Path) -> None:
    settings = new_landing(tmp_path, member=False)
    folder = deliver(settings, DAY1, [stay("Y", 1, "N", 30)])
    synth.write_manifest(folder, row_count=2)  # a manifest that does not match its file

    run_local(settings, as_of=DAY1)
    failed = State.of(settings).run_of(P1)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error"] == "row_count: read 1 rows, the manifest's row_count is 2"
    when = "SELECT updated_at FROM partition_runs WHERE partition_key = ?"
    updated_at = query(settings, when, P1)

    # The same content fails the same way: `run` leaves it alone.
    result = run_local(settings, as_of=DAY1)
    assert all(P1 not in keys for keys in result.partitions.values())
    assert State.of(settings).run_of(P1) == failed
    assert query(settings, when, P1) == updated_at

    # An explicit rerun tries it again, and counts the attempt.
    result = run_local(settings, as_of=DAY1, command="rerun", rerun_keys=[P1])
    assert result.partitions["failed"] == [P1]
    assert State.of(settings).run_of(P1)["attempts"] == 2

    # The sender fixes the manifest: a new content, processed by the next run: a third attempt.
    synth.write_manifest(folder)
    result = run_local(settings, as_of=DAY1)
    assert result.partitions["succeeded"] == [P1]
    fixed = State.of(settings)
    run = fixed.run_of(P1)
    assert (run["status"], run["attempts"], run["error"], run["rows_read"]) == (
        "succeeded", 3, "", 1
    )  # fmt: skip
    assert fixed.outcome("Y") == (1, "unmatched", 0)  # nobody is enrolled in this landing
