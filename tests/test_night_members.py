"""The members a night reads once, and recovery balances kept only where something is owed.

A commit reads the members it can need once (``storage.adjudication``: ``night_members``), and
the posting takes the name and payee account of each member it pays from there, reading
``members`` only for a member matching did not look up. Proved on real runs:

- every instruction names the payee in effect: the name and account of the snapshot the run
  had (payouts.md, benefits.md *Matching*), across a new snapshot that changes two members'
  accounts (one matched by ID, one by demographics) and removes a third;
- the posting's own lookup (every member it pays left to it) gives the same instructions,
  balances and ledger, on that history and on random ones;
- a recovery balance that comes to 0 leaves no row (migration 017), and the identity
  ``sum(instructions) − recovery_due = sum(ledger)`` holds for every member after every run;
  a warehouse from before 017 loses its rows of 0 and no figure of ``member_accounts``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

import synth
from config.settings import Settings
from pipeline import run_local
from storage import ledger
from storage.warehouse import open_warehouse
from tests.test_matching import (
    REGISTRY,
    Person,
    by_id,
    demographic,
    enrolment,
    frame,
    new_settings,
    query,
)
from tests.test_snapshot_diff import _enrolments, _people, _second_snapshot, _stays

A = Person("张伟", "M", "1960-01-01", 101)
B = Person("王芳", "F", "1962-02-02", 102)  # her stays carry no ID: matched by demographics
C = Person("李娜", "F", "1963-03-03", 104)  # leaves with the second snapshot
PLAN = "WORKER_MUTUAL"

SNAP_1, NIGHT_1 = date(2025, 6, 30), date(2025, 7, 10)
SNAP_2 = date(2025, 9, 1)  # a new snapshot and a night
NIGHT_3, NIGHT_4 = date(2025, 9, 10), date(2025, 9, 20)


def _snapshot(accounts: dict[Person, str]) -> list[dict[str, str]]:
    return [
        enrolment(f"E{who.seq}", who, PLAN, "2020-01-01", account=account)
        for who, account in accounts.items()
    ]


FIRST = {A: "6222000000000101", B: "6222000000000102", C: "6222000000000104"}
SECOND = {A: "6222999900000101", B: "6222999900000102"}  # new accounts; C is gone

NIGHTS: list[tuple[date, list[dict[str, str]], dict[Person, str] | None]] = [
    (
        NIGHT_1,
        [
            by_id(A, "2025-03-03", "2025-03-10", sid="S1", self_pay="3000.00"),
            demographic(B.name, B.gender, B.birth, "2025-04-01", "2025-04-06", sid="S2"),
            by_id(C, "2025-05-01", "2025-05-04", sid="S3"),
        ],
        FIRST,
    ),
    (
        SNAP_2,
        [
            by_id(A, "2025-06-03", "2025-06-08", sid="S4"),
            demographic(B.name, B.gender, B.birth, "2025-07-01", "2025-07-03", sid="S5"),
        ],
        SECOND,
    ),
    # S1 voided: A owes it back
    (
        NIGHT_3,
        [
            by_id(
                A,
                "2025-03-03",
                "2025-03-10",
                sid="S1",
                self_pay="3000.00",
                version=2,
                record_type="V",
            )
        ],
        None,
    ),
    # a larger stay of A's: paid net of what A owes, which comes to 0
    (NIGHT_4, [by_id(A, "2025-08-01", "2025-08-21", sid="S6", self_pay="9000.00")], None),
]


def _deliver(settings: Settings, night: date, stays: list[dict[str, str]], snap: Any) -> None:
    if snap is not None:
        day = SNAP_1 if night == NIGHT_1 else night
        synth.write_snapshot(
            settings.landing, day, frame(_snapshot(snap), synth.ENROLLMENT_COLUMNS)
        )
    synth.write_partition(settings.landing, night, "SHYB", frame(stays, synth.DISCHARGE_COLUMNS))


def _instructions(settings: Settings, batch_id: str | None) -> list[tuple[Any, ...]]:
    if batch_id is None:
        return []
    return query(
        settings,
        "SELECT national_id, payee_name, payee_account, amount_fen, entry_count "
        "FROM payment_instructions WHERE batch_id = ? ORDER BY national_id",
        [batch_id],
    )


def _money(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "recovery": query(settings, "SELECT * FROM recovery_balances ORDER BY ALL"),
        "ledger": query(
            settings,
            "SELECT hospital_code, settlement_id, version, plan_code, national_id, amount_fen, "
            "reason FROM ledger_entries ORDER BY ALL",
        ),
        "accounts": query(settings, "SELECT * FROM member_accounts ORDER BY ALL"),
    }


def _identity_holds(settings: Settings) -> None:
    """payouts.md: for every member, sum(instructions) − recovery_due = sum(ledger entries)."""
    bad = query(
        settings,
        "SELECT national_id FROM member_accounts "
        "WHERE paid_out_fen - recovery_due_fen <> ledger_fen",
    )
    assert bad == []
    assert query(settings, "SELECT count(*) FROM recovery_balances WHERE recovery_due_fen = 0") == [
        (0,)
    ]


def _owed(settings: Settings) -> dict[str, int]:
    return dict(query(settings, "SELECT national_id, recovery_due_fen FROM recovery_balances"))


def _history(settings: Settings) -> list[tuple[list[tuple[Any, ...]], dict[str, int]]]:
    """The scenario's four runs: each run's instructions, checked against the snapshot it had,
    and the recovery balances after it."""
    synth.write_registry(settings.landing, REGISTRY)
    batches = []
    for night, stays, snap in NIGHTS:
        _deliver(settings, night, stays, snap)
        result = run_local(settings, as_of=night)
        assert not result.failed, result.errors
        rows = _instructions(settings, result.batch_id)
        # the payee in effect: the name and account of the snapshot this run had
        in_effect = dict(
            (r[0], (r[1], r[2]))
            for r in query(settings, "SELECT national_id, member_name, payee_account FROM members")
        )
        for nid, name, account, *_ in rows:
            assert in_effect[nid] == (name, account)
        _identity_holds(settings)
        batches.append((rows, _owed(settings)))
    return batches


def test_every_instruction_names_the_payee_in_effect(tmp_path: Path) -> None:
    settings = new_settings(tmp_path)
    (first, _), (second, _), (third, owed), (fourth, owed_at_end) = _history(settings)
    assert [(r[0], r[2]) for r in first] == sorted((w.nid, FIRST[w]) for w in (A, B, C))
    # after the new snapshot: A (by ID) and B (by demographics) are paid to their new accounts;
    # C left, so C's stay is no longer matched and C owes what it was paid
    assert [(r[0], r[2]) for r in second] == sorted((w.nid, SECOND[w]) for w in (A, B))
    assert third == []  # the void pays nothing: A owes S1's payment
    paid_s1 = next(r[3] for r in first if r[0] == A.nid)
    paid_c = next(r[3] for r in first if r[0] == C.nid)
    assert owed == {A.nid: paid_s1, C.nid: paid_c}
    # the next payout is netted against it and A owes nothing: no row is left for A
    assert [(r[0], r[2]) for r in fourth] == [(A.nid, SECOND[A])]
    assert owed_at_end == {C.nid: paid_c}
    entries_s6 = query(
        settings, "SELECT sum(amount_fen) FROM ledger_entries WHERE settlement_id = 'S6'"
    )[0][0]
    assert fourth[0][3] == entries_s6 - paid_s1 > 0


def _posting_looks_up_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty what matching looked up before each posting: the posting reads ``members`` for
    every member it pays."""
    real: Callable[..., ledger.Posted] = ledger.post

    def post(con: duckdb.DuckDBPyConnection, **kw: Any) -> ledger.Posted:
        con.execute("DELETE FROM night_members")
        con.execute("DELETE FROM night_ids")
        return real(con, **kw)

    monkeypatch.setattr("pipeline.write.post", post)


def test_the_postings_own_lookup_gives_the_same_money(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carried = new_settings(tmp_path / "carried")
    want = _history(carried)
    _posting_looks_up_everyone(monkeypatch)
    looked_up = new_settings(tmp_path / "looked-up")
    assert _history(looked_up) == want
    assert _money(looked_up) == _money(carried)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_postings_own_lookup_over_random_histories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random people, stays by ID and by demographics (shared names), then a new snapshot
    changing payees, names, enrolments and people (``tests.test_snapshot_diff``)."""

    def history(settings: Settings) -> list[list[tuple[Any, ...]]]:
        rng = random.Random(seed)
        synth.write_registry(settings.landing, REGISTRY)
        members, newcomers = _people(rng, 10, 100), _people(rng, 3, 500)
        first = {who: _enrolments(rng, who, 100 + 10 * i) for i, who in enumerate(members)}
        rows = [r for rs in first.values() for r in rs]
        synth.write_snapshot(
            settings.landing, date(2025, 6, 30), frame(rows, synth.ENROLLMENT_COLUMNS)
        )
        batches = []
        for n, night in enumerate((date(2025, 7, 10), date(2025, 8, 10), date(2025, 9, 1))):
            if n == 2:
                second = _second_snapshot(rng, first, newcomers)
                synth.write_snapshot(
                    settings.landing, night, frame(second, synth.ENROLLMENT_COLUMNS)
                )
            stays = _stays(rng, night, members + newcomers, f"S{n}-")
            synth.write_partition(
                settings.landing, night, "SHYB", frame(stays, synth.DISCHARGE_COLUMNS)
            )
            result = run_local(settings, as_of=night)
            assert not result.failed, result.errors
            batches.append(_instructions(settings, result.batch_id))
            _identity_holds(settings)
        return batches

    carried = new_settings(tmp_path / "carried")
    want = history(carried)
    assert any(want)
    _posting_looks_up_everyone(monkeypatch)
    looked_up = new_settings(tmp_path / "looked-up")
    assert history(looked_up) == want
    assert _money(looked_up) == _money(carried)


def test_migration_017_drops_the_rows_of_0_and_no_figure(tmp_path: Path) -> None:
    settings = new_settings(tmp_path)
    synth.write_registry(settings.landing, REGISTRY)
    night, stays, snap = NIGHTS[0]
    _deliver(settings, night, stays, snap)
    assert not run_local(settings, as_of=night).failed
    assert query(settings, "SELECT count(*) FROM recovery_balances") == [(0,)]
    # As a warehouse before 017 has it: a row of 0 for every member the posting paid, and one
    # that is owed.
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(
            "INSERT INTO recovery_balances (national_id, recovery_due_fen) "
            "SELECT DISTINCT national_id, 0 FROM payment_instructions"
        )
        # 017 again, and 020 after it (which keeps each balance's plan)
        con.execute("DELETE FROM schema_migrations WHERE version IN (17, 20)")
        before = con.execute("SELECT * FROM member_accounts ORDER BY ALL").fetchall()
        paid = con.execute("SELECT count(*) FROM recovery_balances").fetchone()
    finally:
        con.close()
    assert paid == (3,)
    with open_warehouse(settings.warehouse):  # migrates
        pass
    assert query(settings, "SELECT count(*) FROM recovery_balances") == [(0,)]
    assert query(settings, "SELECT * FROM member_accounts ORDER BY ALL") == before
    # and the next run goes on from there
    night, stays, snap = NIGHTS[1]
    _deliver(settings, night, stays, snap)
    assert not run_local(settings, as_of=night).failed
    _identity_holds(settings)
