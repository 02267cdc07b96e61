"""The sustainability report's counts from the warehouse (operations.md, *Sustainability report*).

Three set-based queries, each a handful of rows per (plan, age band, month) however many members
there are: the plans and the year's facts, member-months from the enrolments, and the payouts from
``claim_plan_payouts`` by month of discharge. The ratios and their rounding are computed from these
counts in ``outbox/sustainability.py``; nothing personal leaves this module.

>>> counts = read_sustainability_counts(path, 2026, plan=None)     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from storage.lock import is_locked
from storage.warehouse import WarehouseBusy, open_warehouse


class ReportUnavailable(Exception):
    """The warehouse cannot answer for this year or plan; the message says why and what to do."""


# Age on 1 January of the year from the birth date, in the contract's bands. Born on 1 January:
# the birthday has happened by then.
_BAND = """
CASE
    WHEN $year - year({b}) - CASE WHEN month({b}) = 1 AND day({b}) = 1 THEN 0 ELSE 1 END < 60
        THEN '<60'
    WHEN $year - year({b}) - CASE WHEN month({b}) = 1 AND day({b}) = 1 THEN 0 ELSE 1 END < 70
        THEN '60-69'
    WHEN $year - year({b}) - CASE WHEN month({b}) = 1 AND day({b}) = 1 THEN 0 ELSE 1 END < 80
        THEN '70-79'
    ELSE '80+'
END
"""

# The rule entry in effect for the year per plan: the latest whose from_year ≤ the year.
PLANS_SQL = """
SELECT plan_code, from_year AS rule_year, priority, annual_cap_fen, monthly_contribution_fen
FROM plan_rules
WHERE from_year <= $year
QUALIFY row_number() OVER (PARTITION BY plan_code ORDER BY from_year DESC) = 1
ORDER BY priority, plan_code
"""

LATEST_SQL = """
SELECT max(discharge_date) AS latest
FROM stays
WHERE discharge_date BETWEEN make_date($year, 1, 1) AND make_date($year, 12, 31)
"""

# A member counts for month m of a plan when one of their enrolments in it covers the 15th of m.
# Each enrolment's months become a 12-bit mask (bit m-1: month m); or-ing the masks of a member's
# enrolments in a plan counts overlapping enrolments once. Members are then counted per (plan,
# band, mask): a few hundred groups, expanded to months at the end.
MEMBER_MONTHS_SQL = f"""
WITH spans AS (
    SELECT plan_code, national_id,
        CASE WHEN coverage_start <= make_date($year, 1, 15) THEN 1
             ELSE month(coverage_start) + CASE WHEN day(coverage_start) > 15 THEN 1 ELSE 0 END
        END AS m_from,
        CASE WHEN coverage_end IS NULL OR coverage_end >= make_date($year, 12, 15) THEN 12
             ELSE month(coverage_end) - CASE WHEN day(coverage_end) < 15 THEN 1 ELSE 0 END
        END AS m_to
    FROM enrollments
    WHERE coverage_start <= make_date($year, 12, 15)
      AND coalesce(coverage_end, DATE '9999-12-31') >= make_date($year, 1, 15)
      AND ($plan IS NULL OR plan_code = $plan)
), per_member AS (
    SELECT plan_code, national_id,
           bit_or((1::BIGINT << m_to) - (1::BIGINT << (m_from - 1))) AS mask
    FROM spans
    WHERE m_from <= m_to
    GROUP BY plan_code, national_id
), banded AS (
    SELECT p.plan_code, {_BAND.format(b="m.birth_date")} AS age_band,
           p.mask, count(*) AS members
    FROM per_member p JOIN members m USING (national_id)  -- everyone enrolled is a member
    GROUP BY ALL
)
SELECT b.plan_code, b.age_band, mo.month::INTEGER AS month,
       sum(CASE WHEN (b.mask >> (mo.month - 1)) & 1 = 1 THEN b.members ELSE 0 END)::BIGINT
           AS member_months
FROM banded b CROSS JOIN (SELECT range AS month FROM range(1, 13)) mo
GROUP BY ALL
"""

# What each plan pays, net, for the stays discharged in each month of the year, and how many of
# its members have been paid and have reached the annual cap by each month. A member's running
# total changes only in months with one of their stays: each such month records the change in
# "paid anything" and "reached the cap" (+1, 0 or -1, a later recovery can undo either), so the
# counts at month M are the running sums of those changes.
PAYOUTS_SQL = f"""
WITH year_rules AS (
    SELECT plan_code, annual_cap_fen
    FROM plan_rules
    WHERE from_year <= $year
    QUALIFY row_number() OVER (PARTITION BY plan_code ORDER BY from_year DESC) = 1
), paid AS (
    SELECT p.plan_code, p.national_id, month(s.discharge_date)::INTEGER AS month,
           p.paid_fen, s.birth_date AS stay_birth_date
    FROM claim_plan_payouts p JOIN stays s USING (hospital_code, settlement_id)
    WHERE s.discharge_date BETWEEN make_date($year, 1, 1) AND make_date($year, 12, 31)
      AND ($plan IS NULL OR p.plan_code = $plan)
), member_month AS (
    SELECT plan_code, national_id, month, any_value(stay_birth_date) AS stay_birth_date,
           count(*) FILTER (WHERE paid_fen > 0) AS stays_paid, sum(paid_fen)::BIGINT AS paid_fen
    FROM paid
    GROUP BY ALL
), running AS (
    SELECT mm.*, r.annual_cap_fen,
           sum(mm.paid_fen) OVER (PARTITION BY mm.plan_code, mm.national_id ORDER BY mm.month
                                  ROWS UNBOUNDED PRECEDING) AS total_fen
    FROM member_month mm JOIN year_rules r USING (plan_code)
), changes AS (
    -- the total before this month is the running total less this month's: no second window
    SELECT *,
           (total_fen > 0)::INTEGER - (total_fen - paid_fen > 0)::INTEGER AS d_paid_members,
           (total_fen >= annual_cap_fen)::INTEGER
             - (total_fen - paid_fen >= annual_cap_fen)::INTEGER AS d_capped_members
    FROM running
)
SELECT c.plan_code,
       {_BAND.format(b="coalesce(m.birth_date, c.stay_birth_date)")} AS age_band,
       c.month,
       sum(c.stays_paid)::BIGINT AS stays_paid,
       sum(c.paid_fen)::BIGINT AS paid_fen,
       sum(c.d_paid_members)::BIGINT AS d_paid_members,
       sum(c.d_capped_members)::BIGINT AS d_capped_members
FROM changes c LEFT JOIN members m USING (national_id)
GROUP BY ALL
"""


@dataclass(frozen=True)
class SustainabilityCounts:
    """Everything the report computes its measures from: counts, no person in them."""

    year: int
    latest_discharge: date  # the year's latest discharge date: months and run-rate end there
    plans: pl.DataFrame  # plan_code, rule_year, priority, annual_cap_fen, monthly_contribution_fen
    member_months: pl.DataFrame  # plan_code, age_band, month, member_months
    payouts: pl.DataFrame  # plan_code, age_band, month, stays_paid, paid_fen, d_paid/d_capped


def _has_contributions(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.sql("SELECT count(*) FROM schema_migrations WHERE version = 10").fetchall()
    return rows[0][0] == 1


def sustainability_counts(
    con: duckdb.DuckDBPyConnection, year: int, *, plan: str | None
) -> SustainabilityCounts:
    """The report's counts for a benefit year (and one plan, if given)."""
    params = {"year": year, "plan": plan}
    if not _has_contributions(con):
        raise ReportUnavailable(
            "the warehouse predates monthly contributions: run `claims run` once to migrate it "
            "and load the rules file"
        )
    plans = con.sql(PLANS_SQL, params={"year": year}).pl()
    if plan is not None:
        plans = plans.filter(pl.col("plan_code") == plan)
        if plans.is_empty():
            raise ReportUnavailable(f"no plan {plan} in the warehouse's rules for {year}")
    if plans.is_empty():
        raise ReportUnavailable(f"the warehouse has no plan rules in effect in {year}")
    unknown = plans.filter(pl.col("monthly_contribution_fen").is_null())["plan_code"].to_list()
    if unknown:
        raise ReportUnavailable(
            f"no monthly contribution for {', '.join(unknown)} in the warehouse's rules: run "
            "`claims run` once to load the rules file"
        )
    latest = con.sql(LATEST_SQL, params={"year": year}).fetchall()[0][0]
    if latest is None:
        raise ReportUnavailable(f"no stay discharged in {year} in the warehouse: nothing to report")
    return SustainabilityCounts(
        year=year,
        latest_discharge=latest,
        plans=plans,
        member_months=con.sql(MEMBER_MONTHS_SQL, params=params).pl(),
        payouts=con.sql(PAYOUTS_SQL, params=params).pl(),
    )


def read_sustainability_counts(path: Path, year: int, *, plan: str | None) -> SustainabilityCounts:
    """The counts from the warehouse file, opened read-only (WarehouseBusy while a run writes)."""
    try:
        with open_warehouse(path, read_only=True) as con:
            return sustainability_counts(con, year, plan=plan)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower() or is_locked(path):
            raise WarehouseBusy(
                f"the warehouse {path.name} is being written by a run; try again when it ends"
            ) from None
        raise
