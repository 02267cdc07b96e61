"""The sustainability report (operations.md, *Sustainability report*) on a hand-built warehouse.

The warehouse is a real DuckDB file, migrated, with a few members, enrolments, stays and ledger
entries written directly, chosen for the contract's edges: an enrolment starting on a 15th and
one starting on the 16th, one ending on the 14th and one on the 15th, two overlapping enrolments
of one member, a one-day enrolment on the 15th, a member who reaches the annual cap, a recovery
posted in a later month, a stay voided to zero, a stay the plan pays nothing for, a stay of the
year before, birthdays on and just after 1 January at the bands' edges.

Every measure is computed a second time here, independently (day by day, with fractions), and the
report's CSV must equal it exactly; a few figures are also written out by hand.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from claims.cli import app
from config.settings import Settings
from outbox.sustainability import MEASURES
from outbox.sustainability_report import write_sustainability
from storage.warehouse import open_warehouse

YEAR = 2026
OPEN = date(9999, 12, 31)


@dataclass(frozen=True)
class Member:
    key: str
    national_id: str
    name: str
    birth: date
    account: str


def _member(key: str, n: int, birth: date) -> Member:
    return Member(
        key,
        f"3101041{birth:%Y%m%d}{n:02d}",  # 18 characters, shaped like an identity number
        f"测试{key}号",
        birth,
        f"62220000111{n:05d}",
    )


M = {
    # age on 1 January 2026 → band
    "A": _member("A", 11, date(1966, 1, 1)),  # 60: born on 1 January, birthday has happened
    "B": _member("B", 12, date(1966, 1, 2)),  # 59: <60
    "C": _member("C", 13, date(1946, 1, 1)),  # 80: 80+
    "D": _member("D", 14, date(1946, 1, 2)),  # 79: 70-79
    "E": _member("E", 15, date(1956, 6, 30)),  # 69: 60-69
    "F": _member("F", 16, date(1956, 1, 1)),  # 70: 70-79
    "G": _member("G", 17, date(1980, 7, 1)),  # 45: <60, no cover in 2026
}

# plan_code, from_year, priority, annual_cap_fen, monthly_contribution_fen
RULES = [
    ("RETIREE_INPATIENT", 2020, 1, 1_000_000, 2_500),
    ("RETIREE_INPATIENT", 2026, 1, 500_000, 3_000),
    ("UNION_BASIC", 2020, 4, 300_000, 200),
]

# enrollment_id, member, plan, coverage_start, coverage_end (None: open)
ENROLMENTS = [
    ("EA", "A", "RETIREE_INPATIENT", date(2025, 1, 1), None),
    ("EB", "B", "RETIREE_INPATIENT", date(2026, 3, 15), date(2026, 6, 14)),  # Mar, Apr, May
    ("EC", "C", "RETIREE_INPATIENT", date(2026, 3, 16), date(2026, 6, 15)),  # Apr, May, (Jun)
    ("ED1", "D", "RETIREE_INPATIENT", date(2025, 6, 1), date(2026, 4, 30)),  # overlaps ED2
    ("ED2", "D", "RETIREE_INPATIENT", date(2026, 2, 1), None),
    ("EE", "E", "RETIREE_INPATIENT", date(2026, 5, 15), None),  # May
    ("EF1", "F", "RETIREE_INPATIENT", date(2026, 1, 15), date(2026, 1, 15)),  # Jan only
    ("EF2", "F", "UNION_BASIC", date(2026, 1, 1), None),
    ("EG", "G", "RETIREE_INPATIENT", date(2020, 1, 1), date(2025, 12, 31)),  # none in 2026
]

# settlement_id, member, discharge_date
STAYS = [
    ("S1", "A", date(2026, 1, 10)),
    ("S2", "A", date(2026, 2, 5)),  # A reaches the 5 000.00 cap
    ("S3", "A", date(2026, 3, 3)),  # capped: the plan pays nothing, no ledger entry
    ("S4", "C", date(2026, 4, 20)),  # paid, then partly recovered by a run in May
    ("S5", "B", date(2026, 3, 31)),  # paid, then voided: net 0
    ("S6", "D", date(2026, 5, 20)),  # the year's latest discharge
    ("S7", "F", date(2026, 1, 31)),  # paid by two plans
    ("S8", "A", date(2025, 12, 31)),  # the year before
    ("S10", "D", date(2026, 5, 2)),
]

# settlement_id, plan, amount_fen, posted_at (the month of posting is not the month of discharge)
LEDGER = [
    ("S1", "RETIREE_INPATIENT", 120_000, date(2026, 1, 12)),
    ("S2", "RETIREE_INPATIENT", 380_000, date(2026, 2, 7)),
    ("S4", "RETIREE_INPATIENT", 200_001, date(2026, 4, 22)),
    ("S4", "RETIREE_INPATIENT", -50_000, date(2026, 5, 9)),  # a recovery, a month later
    ("S5", "RETIREE_INPATIENT", 100_000, date(2026, 4, 2)),
    ("S5", "RETIREE_INPATIENT", -100_000, date(2026, 4, 20)),  # voided
    ("S6", "RETIREE_INPATIENT", 33_333, date(2026, 5, 21)),
    ("S10", "RETIREE_INPATIENT", 33_334, date(2026, 5, 3)),
    ("S7", "RETIREE_INPATIENT", 10_000, date(2026, 2, 2)),
    ("S7", "UNION_BASIC", 5_000, date(2026, 2, 2)),
    ("S8", "RETIREE_INPATIENT", 900_000, date(2026, 1, 3)),
]


def build_warehouse(path: Path) -> None:
    """Migrate a fresh warehouse and write the hand-built rows into it."""
    with open_warehouse(path) as con:
        for plan, year, priority, cap, contribution in RULES:
            con.execute(
                "INSERT INTO plan_rules VALUES (?, ?, ?, 5000, 0, NULL, 0, 0, ?, 0, ?)",
                [plan, year, priority, cap, contribution],
            )
        for m in M.values():
            con.execute(
                "INSERT INTO members VALUES (?, ?, ?, 'M', ?, ?)",
                [m.national_id, m.name, m.name, m.birth, m.account],
            )
        for eid, key, plan, start, end in ENROLMENTS:
            m = M[key]
            con.execute(
                "INSERT INTO enrollments (enrollment_id, national_id, plan_code, coverage_start, "
                "coverage_end, chain_start) VALUES (?, ?, ?, ?, ?, ?)",
                [eid, m.national_id, plan, start, end, start],
            )
        for sid, key, discharged in STAYS:
            m = M[key]
            con.execute(
                "INSERT INTO stays VALUES ('H001', ?, 1, 'N', ?, true, ?, 'M', ?, ?, ?, 100000, "
                "?, 'SHYB')",
                [sid, m.national_id, m.name, m.birth, discharged - timedelta(days=3), discharged,
                 discharged],
            )  # fmt: skip
        member_of = {sid: M[key] for sid, key, _ in STAYS}
        for i, (sid, plan, amount, posted) in enumerate(LEDGER):
            con.execute(
                "INSERT INTO ledger_entries VALUES (?, 'R1', 'H001', ?, 1, ?, ?, ?, 'payment', ?)",
                [f"L{i}", sid, plan, member_of[sid].national_id, amount,
                 datetime(posted.year, posted.month, posted.day, tzinfo=UTC)],
            )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The independent reading of the contract: day by day, member by member, with fractions
# ---------------------------------------------------------------------------------------------


def band_of(birth: date) -> str:
    jan1 = date(YEAR, 1, 1)
    age = jan1.year - birth.year - ((jan1.month, jan1.day) < (birth.month, birth.day))
    return "<60" if age < 60 else "60-69" if age < 70 else "70-79" if age < 80 else "80+"


def half_up(value: Fraction, places: int) -> str:
    scaled = value * 10**places
    q = math.floor(abs(scaled) + Fraction(1, 2)) * (1 if scaled >= 0 else -1)
    if places == 0:
        return str(q)
    text = f"{abs(q):0{places + 1}d}"
    return ("-" if q < 0 else "") + text[:-places] + "." + text[-places:]


def expected_rows(plans: list[str]) -> list[tuple[str, str, str, str, str]]:
    latest = max(d for _, _, d in STAYS if d.year == YEAR)
    last_month = latest.month
    days_elapsed = (latest - date(YEAR, 1, 1)).days + 1
    days_in_year = (date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days
    rule = {
        plan: max((r for r in RULES if r[0] == plan and r[1] <= YEAR), key=lambda r: r[1])
        for plan in plans
    }
    net: dict[tuple[str, str], int] = {}
    for sid, plan, amount, _ in LEDGER:
        net[(sid, plan)] = net.get((sid, plan), 0) + amount
    stay = {sid: (key, d) for sid, key, d in STAYS}
    payouts = [(sid, plan, v) for (sid, plan), v in net.items() if v != 0]  # the view's HAVING

    rows = []
    for plan in plans:
        cap, contribution = rule[plan][3], rule[plan][4]
        periods = [f"{YEAR}-{m:02d}" for m in range(1, last_month + 1)] + [str(YEAR)]
        for period in periods:
            months = list(range(1, last_month + 1)) if period == str(YEAR) else [int(period[5:])]
            end_month = months[-1]
            for band in ("all", "<60", "60-69", "70-79", "80+"):

                def in_band(key: str, band: str = band) -> bool:
                    return band == "all" or band_of(M[key].birth) == band

                mm = sum(
                    1
                    for month in months
                    for key in M
                    if in_band(key)
                    and any(
                        k == key and p == plan and s <= date(YEAR, month, 15) <= (e or OPEN)
                        for _, k, p, s, e in ENROLMENTS
                    )
                )
                mine = [
                    (stay[sid][0], v)
                    for sid, p, v in payouts
                    if p == plan
                    and stay[sid][1].year == YEAR
                    and stay[sid][1].month in months
                    and in_band(stay[sid][0])
                ]
                stays_paid = sum(1 for _, v in mine if v > 0)
                paid = sum(v for _, v in mine)
                totals: dict[str, int] = {}
                for sid, p, v in payouts:
                    key, d = stay[sid]
                    if p == plan and d.year == YEAR and d.month <= end_month and in_band(key):
                        totals[key] = totals.get(key, 0) + v
                paid_members = [t for t in totals.values() if t > 0]
                contributions = mm * contribution
                values = {
                    "member_months": str(mm),
                    "contributions_fen": str(contributions),
                    "stays_paid": str(stays_paid),
                    "paid_fen": str(paid),
                    "loss_ratio": half_up(Fraction(paid, contributions), 4)
                    if contributions
                    else "",
                    "stays_per_1000_member_months": (
                        half_up(Fraction(stays_paid * 1000, mm), 2) if mm else ""
                    ),
                    "avg_paid_fen": half_up(Fraction(paid, stays_paid), 0) if stays_paid else "",
                    "share_at_cap": (
                        half_up(Fraction(sum(t >= cap for t in paid_members), len(paid_members)), 4)
                        if paid_members
                        else ""
                    ),
                }
                if period == str(YEAR):
                    values["projected_paid_fen"] = half_up(
                        Fraction(paid * days_in_year, days_elapsed), 0
                    )
                rows.extend((plan, period, band, m, values[m]) for m in MEASURES if m in values)
    return rows


def read_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [tuple(r) for r in reader]


@pytest.fixture
def hand_built(settings: Settings) -> Settings:
    build_warehouse(settings.warehouse)
    return settings


def test_the_csv_equals_an_independent_reading_of_the_contract(hand_built: Settings) -> None:
    files = write_sustainability(hand_built, YEAR, None)
    assert files.csv == hand_built.outbox / "reports" / "sustainability-2026.csv"
    header, rows = read_csv(files.csv)
    assert header == ["plan_code", "period", "age_band", "measure", "value"]
    expected = expected_rows(["RETIREE_INPATIENT", "UNION_BASIC"])
    assert sorted(rows) == sorted(expected)
    assert len(rows) == len(set(rows)) == files.rows


def test_hand_checked_figures(hand_built: Settings) -> None:
    files = write_sustainability(hand_built, YEAR, None)
    _, rows = read_csv(files.csv)
    value = {(p, period, band, m): v for p, period, band, m, v in rows}
    r = "RETIREE_INPATIENT"
    # Latest discharge 20 May: months January to May, then the year so far.
    assert sorted({period for _, period, _, _ in value}) == [
        "2026", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05",
    ]  # fmt: skip
    # Member-months: A all months; D once a month despite two enrolments; F January only (a
    # one-day enrolment on the 15th); B from 15 March (counts) to 14 June; C from 16 March (not
    # March) ; E from 15 May. Jan 3, Feb 2, Mar 3, Apr 4, May 5.
    months = [value[(r, f"2026-{m:02d}", "all", "member_months")] for m in range(1, 6)]
    assert months == ["3", "2", "3", "4", "5"]
    assert value[(r, "2026", "all", "member_months")] == "17"
    assert value[(r, "2026", "all", "contributions_fen")] == "51000"  # 17 × 30.00 (2026 rule)
    # Bands on 1 January: A born 1 Jan 1966 is 60; B born 2 Jan 1966 is 59; C 80; D 79; F 70.
    assert value[(r, "2026-01", "60-69", "member_months")] == "1"  # A
    assert value[(r, "2026-01", "70-79", "member_months")] == "2"  # D, F
    assert value[(r, "2026-03", "<60", "member_months")] == "1"  # B
    assert value[(r, "2026-04", "80+", "member_months")] == "1"  # C
    # Paid by month of discharge, net: April is S4's 2 000.01 less the 500.00 recovered in May.
    assert value[(r, "2026-04", "all", "paid_fen")] == "150001"
    assert value[(r, "2026-04", "80+", "paid_fen")] == "150001"
    # March: S5 voided to zero and S3 paid nothing: no stay paid, no money.
    assert value[(r, "2026-03", "all", "stays_paid")] == "0"
    assert value[(r, "2026-03", "all", "paid_fen")] == "0"
    assert value[(r, "2026-03", "all", "loss_ratio")] == "0.0000"
    assert value[(r, "2026-03", "all", "avg_paid_fen")] == ""
    # January: S1 1 200.00 + S7 100.00 against 3 × 30.00.
    assert value[(r, "2026-01", "all", "loss_ratio")] == "14.4444"
    assert value[(r, "2026-01", "all", "stays_per_1000_member_months")] == "666.67"
    # May: 333.33 + 333.34 over 2 stays = 333.335 → 333.34 (half up).
    assert value[(r, "2026-05", "all", "avg_paid_fen")] == "33334"
    # Cap 5 000.00: A reaches it in February; paid members A, F, then C (April), D (May).
    shares = [value[(r, f"2026-{m:02d}", "all", "share_at_cap")] for m in range(1, 6)]
    assert shares == ["0.0000", "0.5000", "0.5000", "0.3333", "0.2500"]
    assert value[(r, "2026", "all", "share_at_cap")] == "0.2500"
    assert value[(r, "2026", "60-69", "share_at_cap")] == "1.0000"  # A alone
    # The year: 7 266.68 paid over 140 of 365 days → 18 945.27 at that run-rate.
    assert value[(r, "2026", "all", "paid_fen")] == "726668"
    assert value[(r, "2026", "all", "projected_paid_fen")] == "1894527"
    assert value[(r, "2026", "all", "loss_ratio")] == "14.2484"
    assert (r, "2026-05", "all", "projected_paid_fen") not in value
    # A band with nobody: empty ratios, zero counts.
    assert value[(r, "2026-02", "<60", "member_months")] == "0"
    assert value[(r, "2026-02", "<60", "loss_ratio")] == ""
    assert value[(r, "2026-02", "<60", "stays_per_1000_member_months")] == ""
    u = "UNION_BASIC"
    assert value[(u, "2026", "70-79", "member_months")] == "5"
    assert value[(u, "2026-01", "all", "loss_ratio")] == "25.0000"  # 50.00 / 2.00


def test_one_plan_is_that_plans_rows_of_the_full_report(hand_built: Settings) -> None:
    _, every = read_csv(write_sustainability(hand_built, YEAR, None).csv)
    _, union = read_csv(write_sustainability(hand_built, YEAR, "UNION_BASIC").csv)
    assert union == [row for row in every if row[0] == "UNION_BASIC"]


def test_no_personal_data_in_the_outputs(hand_built: Settings) -> None:
    files = write_sustainability(hand_built, YEAR, None)
    text = files.csv.read_text(encoding="utf-8") + files.html.read_text(encoding="utf-8")
    text += repr(files.headline)
    for m in M.values():
        for secret in (m.national_id, m.national_id[:-2], m.name, m.account, m.birth.isoformat()):
            assert secret not in text
    assert "<svg" in text and "run-rate projection" in text


def test_the_html_page_has_its_charts_and_headline(hand_built: Settings) -> None:
    from test_flows import parse_html

    html = write_sustainability(hand_built, YEAR, None).html.read_text(encoding="utf-8")
    assert parse_html(html).fetches == []  # one self-contained page: nothing to load
    assert html.count("<svg") == 4
    titles = ("Loss ratio by month", "Paid and contributions, cumulative", "Utilisation by age")
    for title in (*titles, "Members at the annual cap"):
        assert title in html
    assert "100 %" in html
    assert "1424.8 %" in html  # 726 668 / 51 000 = 14.2484… → 1424.8 %
    # The trend: March to May, 2 166.68 paid against (3 + 4 + 5) × 30.00 = 601.855… %.
    assert "601.9 %" in html


def test_a_run_loads_the_contributions_the_report_divides_by(settings: Settings) -> None:
    from test_reference import NIGHT, landing_with_one_paid_stay

    from pipeline import run_local

    landing_with_one_paid_stay(settings)
    run_local(settings, as_of=NIGHT)
    _, rows = read_csv(write_sustainability(settings, YEAR, "RETIREE_INPATIENT").csv)
    value = {(period, band, m): v for _, period, band, m, v in rows}
    # Enrolled all along; one stay discharged 25 February paid 180.00; 35.00 a month in 2026.
    assert value[("2026", "all", "member_months")] == "2"
    assert value[("2026", "all", "contributions_fen")] == "7000"
    assert value[("2026", "all", "paid_fen")] == "18000"
    assert value[("2026", "all", "loss_ratio")] == "2.5714"
    assert value[("2026", "70-79", "member_months")] == "2"  # born 1 Jan 1950: 76


def test_a_warehouse_whose_rules_have_no_contribution_asks_for_a_run(
    hand_built: Settings,
) -> None:
    from config.settings import ConfigError

    con = duckdb.connect(str(hand_built.warehouse))
    con.execute("UPDATE plan_rules SET monthly_contribution_fen = NULL WHERE from_year = 2026")
    con.close()
    with pytest.raises(ConfigError, match=r"RETIREE_INPATIENT.*claims run"):
        write_sustainability(hand_built, YEAR, None)
    assert not (hand_built.outbox / "reports").exists()


def _cli(*args: object) -> Any:
    return CliRunner().invoke(app, ["report", "sustainability", *(str(a) for a in args)])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--year", "20x6"], "--year"),
        (["--year", "26"], "--year"),
        (["--year", "2026", "--plan", "NO_SUCH_PLAN"], "--plan"),
        (["--year", "2024"], "no stay discharged in 2024"),
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(
    hand_built: Settings, args: list[str], says: str
) -> None:
    paths = ["--warehouse", hand_built.warehouse, "--outbox", hand_built.outbox]
    result = _cli(*args, *paths)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not (hand_built.outbox / "reports").exists()


def test_a_missing_warehouse_exits_2(settings: Settings) -> None:
    result = _cli("--year", YEAR, "--warehouse", settings.warehouse, "--outbox", settings.outbox)
    assert result.exit_code == 2 and "no warehouse" in result.output
    assert not settings.warehouse.exists()


def test_the_command_writes_the_report_and_prints_the_headline(hand_built: Settings) -> None:
    result = _cli(
        "--year", YEAR, "--warehouse", hand_built.warehouse, "--outbox", hand_built.outbox
    )
    assert result.exit_code == 0, result.output
    assert "RETIREE_INPATIENT" in result.output and "1424.8 %" in result.output
    assert (hand_built.outbox / "reports" / "sustainability-2026.html").is_file()


@pytest.mark.e2e
def test_the_flow_leaves_the_link_and_the_headline_as_artifacts(
    hand_built: Settings, prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.sustainability import sustainability

    state = sustainability(
        year="2026",  # a deployment passes JSON
        warehouse=str(hand_built.warehouse),
        outbox=str(hand_built.outbox),
        landing=str(hand_built.landing),
        return_state=True,
    )
    assert state.is_completed()
    files = state.result()
    _, rows = read_csv(files.csv)
    assert sorted(rows) == sorted(expected_rows(["RETIREE_INPATIENT", "UNION_BASIC"]))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    assert run.name == "sustainability-2026"
    by_key = {a.key: a for a in artifacts}
    link = by_key["claims-sustainability-report"]
    # Prefect 3 stores a link artifact as markdown: [text](url).
    assert link.type == "markdown" and f"({files.html.resolve().as_uri()})" in str(link.data)
    table = by_key["claims-sustainability-headline"]
    assert table.type == "table"
    assert "RETIREE_INPATIENT" in str(table.data) and "1424.8 %" in str(table.data)
    for artifact in artifacts:
        for m in M.values():
            assert m.national_id not in str(artifact.data) and m.name not in str(artifact.data)


def test_the_monthly_deployment_carries_paths_only(settings: Settings) -> None:
    from flows.sustainability import default_year, sustainability_deployment

    deployment = sustainability_deployment(settings)
    assert deployment.name == "claims-sustainability-monthly"
    assert deployment.parameters == {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
    }
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 6 2 * *"
    assert schedule.schedule.timezone == "Asia/Shanghai"
    assert 2025 <= default_year() <= date.today().year
