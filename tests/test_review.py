"""People in the loop (benefits.md, *Overlapping stays*, *Review decisions*; issue 15).

Real warehouses, real runs (``run_local``), the command line through typer's CliRunner:
overlapping stays are held the same whatever order the partitions arrive in and released when a
void removes the overlap; every decision path (name mismatch, ambiguous, overlap, reject), four
eyes above the second-approval limit, re-opening by a new version, and every bad input (exit 2,
nothing recorded). The queue's output carries no personal data.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from rich.console import Console
from test_matching import Person, enrolment, frame, new_settings, outcomes, query, stay
from typer.testing import CliRunner

import claims.options as cli_module
import synth
from claims.cli import app
from config.settings import Settings
from pipeline import run_local
from storage.review import ReviewError, open_items, record_decision

SNAPSHOT_DAY = date(2026, 1, 20)
AS_OF = date(2026, 3, 5)
PARTITIONS = [(date(2026, 3, 1), "SHYB"), (date(2026, 3, 2), "SHYB"), (date(2026, 3, 3), "HOSPX")]
LIMIT = 2_000_000

BED = Person("周平", "M", "1950-06-01", 51)  # lies in two beds
TYPO = Person("吴芳", "F", "1952-02-02", 52)  # the hospital typed 吴方
TWIN_A = Person("郑丽", "F", "1958-08-08", 54)
TWIN_B = Person("郑丽", "F", "1958-08-08", 56)
RICH = Person("冯强", "M", "1949-09-09", 57)  # a large bill: four eyes

ENROLMENTS = [
    enrolment("E101", BED, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E102", TYPO, "RETIREE_INPATIENT", "2020-01-01"),
    enrolment("E103", TWIN_A, "UNION_BASIC", "2020-01-01"),
    enrolment("E104", TWIN_B, "UNION_BASIC", "2020-01-01"),
    enrolment("E105", RICH, "RETIREE_INPATIENT", "2020-01-01"),
]
REGISTRY = synth.make_hospitals(3, seed=1)
H = REGISTRY["hospital_code"].to_list()


def _by_id(sid: str, who: Person, adm: str, dis: str, **kw: Any) -> dict[str, str]:
    return stay(
        sid,
        nid=who.nid,
        name=kw.pop("name", who.name),
        gender=who.gender,
        birth=who.birth,
        admitted=adm,
        discharged=dis,
        hospital=kw.pop("hospital", H[0]),
        **kw,
    )


# A (Jan 5–12) pays; B (Jan 8–14) overlaps A: held; C (Jan 12–16) is a transfer from A (no
# overlap) but overlaps B: held too. Each arrives in its own partition.
A = _by_id("OVA", BED, "2026-01-05", "2026-01-12")
B = _by_id("OVB", BED, "2026-01-08", "2026-01-14", hospital=H[1])
C = _by_id("OVC", BED, "2026-01-12", "2026-01-16", hospital=H[2])


def world(root: Path) -> Settings:
    settings = new_settings(root)
    synth.write_registry(settings.landing, REGISTRY)
    synth.write_snapshot(
        settings.landing, SNAPSHOT_DAY, frame(ENROLMENTS, synth.ENROLLMENT_COLUMNS)
    )
    return settings


def deliver(settings: Settings, n: int, rows: list[dict[str, str]]) -> None:
    day, source = PARTITIONS[n]
    synth.write_partition(settings.landing, day, source, frame(rows, synth.DISCHARGE_COLUMNS))


def night(settings: Settings) -> Any:
    result = run_local(settings, as_of=AS_OF)
    assert not result.failed, result.errors
    return result


def holds(settings: Settings) -> dict[str, tuple[str, str, int]]:
    return {sid: (o["status"], o["reason"], o["paid_fen"]) for sid, o in outcomes(settings).items()}


def decisions(settings: Settings) -> int:
    return int(query(settings, "SELECT count(*) FROM review_decisions")[0][0])


# ---------------------------------------------------------------------------------------------
# Overlapping stays, in every arrival order
# ---------------------------------------------------------------------------------------------

HELD = {
    "OVA": ("paid", "", 60_000),
    "OVB": ("review", "overlap", 0),
    "OVC": ("review", "overlap", 0),
}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_overlaps_are_held_whatever_order_the_partitions_arrive_in(
    tmp_path: Path, order: tuple[int, ...]
) -> None:
    settings = world(tmp_path)
    rows = [A, B, C]
    for n in order:
        deliver(settings, n, [rows[n]])
        night(settings)
    # The same holds, and the same ledger sums, as one run that saw everything at once.
    assert holds(settings) == HELD
    fresh = world(tmp_path / "fresh")
    for n in range(3):
        deliver(fresh, n, [rows[n]])
    night(fresh)
    assert holds(fresh) == HELD
    ledger = "SELECT settlement_id, sum(amount_fen) FROM ledger_entries GROUP BY ALL ORDER BY 1"
    assert [r for r in query(settings, ledger) if r[1]] == [("OVA", 60_000)]
    # explain names the stay a held one overlaps; the review list says what it needs
    out = cli(settings, "explain", "--stay", f"{H[1]}/OVB")
    assert f"{H[0]}/OVA" in out.output
    # A void of B removes the only overlap C has (C is a transfer from A): C is released.
    synth.write_partition(
        settings.landing,
        date(2026, 3, 4),
        "SHYB",
        frame(
            [
                _by_id(
                    "OVB",
                    BED,
                    "2026-01-08",
                    "2026-01-14",
                    hospital=H[1],
                    version=2,
                    record_type="V",
                )
            ],
            synth.DISCHARGE_COLUMNS,
        ),
    )
    night(settings)
    after = holds(settings)
    assert after["OVB"][0] == "void"
    assert after["OVC"] == ("paid", "", 60_000)
    assert after["OVA"] == ("paid", "", 60_000)


def test_a_held_stay_that_was_paid_is_recovered_and_paid_after_approval(tmp_path: Path) -> None:
    settings = world(tmp_path)
    deliver(settings, 0, [B])
    night(settings)
    assert holds(settings)["OVB"][0] == "paid"
    deliver(settings, 1, [A])  # arrives late, admitted earlier: B is now the one held
    night(settings)
    assert holds(settings)["OVB"] == ("review", "overlap", 0)
    assert holds(settings)["OVA"][0] == "paid"
    record_decision(
        settings.warehouse,
        stay=(H[1], "OVB"),
        decision="approve",
        operator="liu",
        note="two hospitals confirmed both stays",
        limit_fen=LIMIT,
        lock_timeout_s=5,
    )
    result = night(settings)  # an incremental run: the decision marked the stay touched
    assert not result.full_recompute
    assert holds(settings)["OVB"][0] == "paid"
    # approved for this version: not held again on later runs
    deliver(settings, 2, [C])
    night(settings)
    assert holds(settings)["OVB"][0] == "paid"
    assert holds(settings)["OVC"] == ("review", "overlap", 0)
    # a new version of B re-opens it
    deliver(
        settings,
        0,
        [
            B,
            _by_id(
                "OVB",
                BED,
                "2026-01-08",
                "2026-01-14",
                hospital=H[1],
                version=2,
                record_type="C",
                self_pay="1200.00",
            ),
        ],
    )
    night(settings)
    assert holds(settings)["OVB"] == ("review", "overlap", 0)
    assert [
        i.approvals
        for i in open_items(settings.warehouse, limit_fen=LIMIT)
        if i.settlement_id == "OVB"
    ] == [0]


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------

NAME = _by_id("NAME1", TYPO, "2026-02-01", "2026-02-05", name="吴方")
AMBIG = stay(
    "AMB1",
    nid="",
    name=TWIN_A.name,
    gender=TWIN_A.gender,
    birth=TWIN_A.birth,
    admitted="2026-02-01",
    discharged="2026-02-04",
    hospital=H[0],
)
BIG = _by_id("BIG1", RICH, "2026-02-01", "2026-02-20", self_pay="30000.00")


@pytest.fixture
def queue(tmp_path: Path) -> Settings:
    settings = world(tmp_path)
    deliver(settings, 0, [NAME, AMBIG, BIG, A, B])
    night(settings)
    got = holds(settings)
    assert got["NAME1"][:2] == ("review", "name_mismatch")
    assert got["AMB1"][:2] == ("review", "ambiguous")
    assert got["BIG1"][0] == "paid"
    return settings


def cli(settings: Settings, *args: str) -> Any:
    """``claims ARGS…`` on a 100-column terminal."""
    saved = cli_module.console, cli_module.err
    cli_module.console = Console(width=100)
    cli_module.err = Console(width=100, stderr=True)
    paths = ["--warehouse", str(settings.warehouse), "--landing", str(settings.landing)]
    paths += ["--outbox", str(settings.outbox)]
    try:
        return CliRunner().invoke(app, [*args, *paths])
    finally:
        cli_module.console, cli_module.err = saved


def test_approve_name_mismatch_matches_by_review_and_pays(queue: Settings) -> None:
    out = cli(
        queue,
        "review",
        "approve",
        "--stay",
        f"{H[0]}/NAME1",
        "--by",
        "liu",
        "--note",
        "called the hospital: typo",
    )
    assert out.exit_code == 0, out.output
    assert "next run pays" in out.output
    night(queue)
    o = outcomes(queue)["NAME1"]
    assert (o["status"], o["match_method"], o["national_id"]) == ("paid", "review", TYPO.nid)
    log = query(
        queue,
        "SELECT hospital_code, settlement_id, version, decision, enrollment_id, "
        "operator, note FROM review_log",
    )
    assert log == [(H[0], "NAME1", 1, "approve", "", "liu", "called the hospital: typo")]


def test_approve_ambiguous_names_one_enrolment(queue: Settings) -> None:
    out = cli(
        queue,
        "review",
        "approve",
        "--stay",
        f"{H[0]}/AMB1",
        "--enrollment",
        "E104",
        "--by",
        "liu",
        "--note",
        "the hospital confirmed the birth certificate",
    )
    assert out.exit_code == 0, out.output
    night(queue)
    o = outcomes(queue)["AMB1"]
    assert (o["status"], o["match_method"], o["national_id"]) == ("paid", "review", TWIN_B.nid)


def test_reject_recovers_and_is_final_for_the_version(queue: Settings) -> None:
    out = cli(
        queue,
        "review",
        "reject",
        "--stay",
        f"{H[1]}/OVB",
        "--by",
        "liu",
        "--note",
        "the second bill is a duplicate",
    )
    assert out.exit_code == 0, out.output
    night(queue)
    assert holds(queue)["OVB"] == ("rejected", "review_rejected", 0)
    out = cli(queue, "review", "approve", "--stay", f"{H[1]}/OVB", "--by", "ma", "--note", "x")
    assert out.exit_code == 2 and "not in review" in out.output


def test_reject_recovers_what_was_paid(tmp_path: Path) -> None:
    settings = world(tmp_path)
    deliver(settings, 0, [B])
    night(settings)
    paid = holds(settings)["OVB"][2]
    assert paid > 0
    deliver(settings, 1, [A])
    night(settings)
    cli(settings, "review", "reject", "--stay", f"{H[1]}/OVB", "--by", "liu", "--note", "dup")
    night(settings)
    assert holds(settings)["OVB"] == ("rejected", "review_rejected", 0)
    (total,) = query(
        settings, "SELECT sum(amount_fen) FROM ledger_entries WHERE settlement_id = 'OVB'"
    )[0]
    assert total == 0


def test_four_eyes_above_the_limit(queue: Settings) -> None:
    # BIG1 paid; make it overlap a stay admitted before it, so it is held and needs two people
    deliver(queue, 1, [_by_id("BIG0", RICH, "2026-01-30", "2026-02-03")])
    night(queue)
    assert holds(queue)["BIG1"][:2] == ("review", "overlap")
    stay_ = f"{H[0]}/BIG1"
    first = cli(queue, "review", "approve", "--stay", stay_, "--by", "liu", "--note", "ok")
    assert first.exit_code == 0 and "approval 1 of 2" in first.output
    night(queue)
    assert holds(queue)["BIG1"][:2] == ("review", "overlap"), "one approval is not enough"
    (item,) = [i for i in open_items(queue.warehouse, limit_fen=LIMIT) if i.settlement_id == "BIG1"]
    assert (item.approvals, item.approvals_needed, item.approved_by) == (1, 2, ["liu"])
    before = decisions(queue)
    again = cli(queue, "review", "approve", "--stay", stay_, "--by", "liu", "--note", "again")
    assert again.exit_code == 2 and "second, different operator" in again.output
    assert decisions(queue) == before
    second = cli(queue, "review", "approve", "--stay", stay_, "--by", "ma", "--note", "agreed")
    assert second.exit_code == 0 and "next run pays" in second.output
    night(queue)
    assert holds(queue)["BIG1"][0] == "paid"


def test_a_new_version_reopens_a_decided_stay(queue: Settings) -> None:
    record_decision(
        queue.warehouse,
        stay=(H[0], "NAME1"),
        decision="approve",
        operator="liu",
        note="typo",
        limit_fen=LIMIT,
        lock_timeout_s=5,
    )
    night(queue)
    assert holds(queue)["NAME1"][0] == "paid"
    deliver(
        queue,
        1,
        [
            _by_id(
                "NAME1", TYPO, "2026-02-01", "2026-02-06", name="吴方", version=2, record_type="C"
            )
        ],
    )
    night(queue)
    assert holds(queue)["NAME1"] == ("review", "name_mismatch", 0)
    # the stale version is refused, the current one accepted
    stale = cli(
        queue,
        "review",
        "approve",
        "--stay",
        f"{H[0]}/NAME1",
        "--version",
        "1",
        "--by",
        "liu",
        "--note",
        "typo",
    )
    assert stale.exit_code == 2 and "stale" in stale.output


BAD = [
    (["approve", "--stay", "H999/NOPE"], "no stay"),
    (["approve", "--stay", "nonsense"], "HOSPITAL_CODE/SETTLEMENT_ID"),
    (["approve", "--stay", "{h0}/OVA"], "not in review"),
    (["approve", "--stay", "{h0}/AMB1", "--enrollment", "E101"], "not one of"),
    (["approve", "--stay", "{h0}/AMB1"], "needs --enrollment"),
    (["approve", "--stay", "{h0}/NAME1", "--enrollment", "E102"], "only for ambiguous"),
    (["approve", "--stay", "{h0}/NAME1", "--version", "2"], "stale"),
    (["approve", "--stay", "{h0}/NAME1", "--by", ""], "must not be empty"),
    (["approve", "--stay", "{h0}/NAME1", "--by", "x" * 200], "longer than"),
    (["approve", "--stay", "{h0}/NAME1", "--note", "  "], "must not be empty"),
    (["reject", "--stay", "{h0}/NAME1", "--by", "a\tb"], "control characters"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[b[1] for b in BAD])
def test_bad_input_exits_2_and_records_nothing(queue: Settings, args: list[str], says: str) -> None:
    full = [a.format(h0=H[0]) for a in args]
    if "--by" not in full:
        full += ["--by", "liu"]
    if "--note" not in full:
        full += ["--note", "checked"]
    out = cli(queue, "review", *full)
    assert out.exit_code == 2, out.output
    assert says in out.output
    assert decisions(queue) == 0
    assert query(queue, "SELECT count(*) FROM review_touched")[0][0] == 0


def test_an_already_decided_stay_is_refused_until_the_run(queue: Settings) -> None:
    cli(queue, "review", "approve", "--stay", f"{H[0]}/NAME1", "--by", "liu", "--note", "ok")
    out = cli(queue, "review", "reject", "--stay", f"{H[0]}/NAME1", "--by", "ma", "--note", "no")
    assert out.exit_code == 2 and "already decided" in out.output
    assert decisions(queue) == 1


def test_a_decision_waits_for_a_running_night(queue: Settings) -> None:
    from storage.lock import run_lock
    from storage.warehouse import WarehouseBusy

    with run_lock(queue.warehouse, 1), pytest.raises(WarehouseBusy):
        import threading

        failure: list[BaseException] = []

        def other() -> None:
            try:
                record_decision(
                    queue.warehouse,
                    stay=(H[0], "NAME1"),
                    decision="approve",
                    operator="liu",
                    note="ok",
                    limit_fen=LIMIT,
                    lock_timeout_s=0.3,
                )
            except BaseException as exc:
                failure.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        raise failure[0]
    assert decisions(queue) == 0


def test_review_list_shows_the_evidence_masked(queue: Settings) -> None:
    out = cli(queue, "review", "list")
    assert out.exit_code == 0, out.output
    text = out.output
    assert f"{H[0]}/AMB1" in text and "ambiguous" in text and "E103" in text and "E104" in text
    assert "differ: name" in text  # the typo
    assert f"lies in the same nights as {H[0]}/OVA" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    for who in (BED, TYPO, TWIN_A, TWIN_B, RICH):
        assert who.nid not in text and who.name not in text
    assert not re.search(r"\d{15,}", text)
    only = cli(queue, "review", "list", "--reason", "overlap")
    assert "AMB1" not in only.output and "OVB" in only.output
    bad = cli(queue, "review", "list", "--reason", "nope")
    assert bad.exit_code == 2


def test_the_limit_is_a_parameter_of_the_rules_file(tmp_path: Path) -> None:
    from transforms.reference import ReferenceError, load_rules, second_approval_limit_fen

    default = Path(__file__).resolve().parent.parent / "data" / "reference" / "plans.toml"
    assert second_approval_limit_fen(load_rules(default)) == 2_000_000
    text = default.read_text(encoding="utf-8").replace(
        'second_approval_limit = "20000.00"', 'second_approval_limit = "500.00"'
    )
    (tmp_path / "plans.toml").write_text(text, encoding="utf-8")
    assert second_approval_limit_fen(load_rules(tmp_path / "plans.toml")) == 50_000
    (tmp_path / "plans.toml").write_text(text.replace('"500.00"', "500.0"), encoding="utf-8")
    with pytest.raises(ReferenceError):
        load_rules(tmp_path / "plans.toml")


def test_review_error_is_a_usage_error() -> None:
    from config.settings import ConfigError

    assert issubclass(ReviewError, ConfigError)


# ---------------------------------------------------------------------------------------------
# Property: any arrival order ends in the same holds, those of benefits.md
# ---------------------------------------------------------------------------------------------


@st.composite
def bed_scenarios(draw: st.DrawFn) -> tuple[list[tuple[int, dict[str, str]]], list[int]]:
    """Stays of two members crowded into three weeks (overlaps likely), some voided later."""
    rows: list[tuple[int, dict[str, str]]] = []
    for i in range(draw(st.integers(2, 5))):
        who = draw(st.sampled_from((BED, RICH)))
        day = draw(st.integers(1, 18))
        los = draw(st.integers(0, 6))
        hospital = draw(st.sampled_from(H))
        adm, dis = f"2026-01-{day:02d}", f"2026-01-{min(28, day + los):02d}"
        rows.append((draw(st.integers(0, 2)), _by_id(f"P{i}", who, adm, dis, hospital=hospital)))
        if draw(st.integers(0, 3)) == 0:
            rows.append(
                (
                    draw(st.integers(0, 2)),
                    _by_id(f"P{i}", who, adm, dis, hospital=hospital, version=2, record_type="V"),
                )
            )
    order = draw(st.permutations([0, 1, 2]))
    return rows, list(order)


def expected_holds(rows: list[tuple[int, dict[str, str]]]) -> dict[str, str]:
    """benefits.md, *Overlapping stays*, read independently: sid → paid | overlap | void."""
    current: dict[str, dict[str, str]] = {}
    for _, r in rows:
        if r["settlement_id"] not in current or int(r["version"]) > int(
            current[r["settlement_id"]]["version"]
        ):
            current[r["settlement_id"]] = r
    out = {sid: "void" for sid, r in current.items() if r["record_type"] == "V"}
    live = sorted(
        (r for r in current.values() if r["record_type"] != "V"),
        key=lambda r: (
            r["admission_date"],
            r["discharge_date"],
            r["hospital_code"],
            r["settlement_id"],
        ),
    )
    for i, b in enumerate(live):
        held = any(
            a["national_id"] == b["national_id"]
            and a["admission_date"] < b["discharge_date"]
            and b["admission_date"] < a["discharge_date"]
            for a in live[:i]
        )
        out[b["settlement_id"]] = "overlap" if held else "paid"
    return out


@hypothesis.settings(
    max_examples=int(os.environ.get("CLAIMS_REVIEW_EXAMPLES", "5")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(bed_scenarios())
def test_any_order_of_partitions_ends_in_the_same_holds(
    scenario: tuple[list[tuple[int, dict[str, str]]], list[int]],
) -> None:
    rows, order = scenario
    with tempfile.TemporaryDirectory() as tmp:
        settings, fresh = world(Path(tmp) / "a"), world(Path(tmp) / "b")
        for n in order:
            part = [r for p, r in rows if p == n]
            if part:
                deliver(settings, n, part)
                deliver(fresh, n, part)
                night(settings)
        night(fresh)
        got = {sid: o["reason"] or o["status"] for sid, o in outcomes(settings).items()}
        assert got == {sid: o["reason"] or o["status"] for sid, o in outcomes(fresh).items()}
        assert got == expected_holds(rows)
        # the same money per stay (a stay paid, then held, nets to zero in the ledger)
        ledger = (
            "SELECT settlement_id, sum(amount_fen) FROM ledger_entries GROUP BY ALL "
            "HAVING sum(amount_fen) <> 0 ORDER BY 1"
        )
        assert query(settings, ledger) == query(fresh, ledger)


def test_explain_reads_at_100_columns_and_says_why(queue: Settings) -> None:
    stranger = Person("路人", "M", "1966-06-06", 41)
    deliver(
        queue,
        1,
        [
            _by_id("UNM1", stranger, "2026-02-01", "2026-02-03"),
            stay(
                "UNM2",
                nid="",
                name="无名",
                gender="F",
                birth="1970-01-01",
                admitted="2026-02-01",
                discharged="2026-02-03",
                hospital=H[0],
            ),
        ],
    )
    night(queue)
    paid = cli(queue, "explain", "--stay", f"{H[0]}/BIG1")
    assert paid.exit_code == 0, paid.output
    assert "RETIREE_INPATIENT" in paid.output and "paid by this plan" in paid.output
    assert "annual cap" in paid.output and "15000.00" in paid.output
    by_id = cli(queue, "explain", "--stay", f"{H[0]}/UNM1")
    assert "nobody holds it in the current snapshot" in by_id.output
    assert stranger.nid not in by_id.output and stranger.nid[:3] in by_id.output
    no_id = cli(queue, "explain", "--stay", f"{H[0]}/UNM2")
    assert "no usable ID number" in no_id.output and "same name: 0" in no_id.output
    amb = cli(queue, "explain", "--stay", f"{H[0]}/AMB1")
    assert "needs a person" in amb.output and "--enrollment" in amb.output
    for out in (paid, by_id, no_id, amb):
        assert max(len(line) for line in out.output.splitlines()) <= 100
        for who in (BED, TYPO, TWIN_A, TWIN_B, RICH):
            assert who.nid not in out.output and who.name not in out.output
