"""The sustainability report's measures and its tidy CSV (operations.md, *Sustainability report*).

Built from ``SustainabilityCounts`` (a few numbers per plan, age band and month: no person in
them). Every ratio is computed from integers and rounded half up (away from zero) exactly, never
through a float: ``2 / 3`` to 4 decimals is ``0.6667``.

One row of the CSV per (plan_code, period, age_band, measure); ``period`` is ``YYYY-MM`` for the
months up to the year's latest discharge date, then ``YYYY`` for the year so far.
"""

from __future__ import annotations

import calendar
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from storage.sustainability import SustainabilityCounts
from transforms.money import fen_to_yuan

BANDS = ("<60", "60-69", "70-79", "80+")
AGE_BANDS = ("all", *BANDS)
MEASURES = (
    "member_months",
    "contributions_fen",
    "stays_paid",
    "paid_fen",
    "loss_ratio",
    "stays_per_1000_member_months",
    "avg_paid_fen",
    "share_at_cap",
    "projected_paid_fen",
)
CSV_COLUMNS = ("plan_code", "period", "age_band", "measure", "value")
_COUNTS = ("member_months", "stays_paid", "paid_fen", "paid_members", "capped_members")


def div_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to an integer, halves away from zero.

    >>> div_half_up(5, 2), div_half_up(-5, 2), div_half_up(7, 3)
    (3, -3, 2)
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q = (2 * abs(numerator) + denominator) // (2 * denominator)
    return -q if numerator < 0 else q


def decimal_text(numerator: int, denominator: int, places: int) -> str | None:
    """The quotient with ``places`` decimals, half up, dot as separator; None for ``x / 0``.

    >>> decimal_text(2, 3, 4), decimal_text(1, 8, 2), decimal_text(0, 5, 4), decimal_text(1, 0, 4)
    ('0.6667', '0.13', '0.0000', None)
    """
    if denominator == 0:
        return None
    q = div_half_up(numerator * 10**places, denominator)
    sign = "-" if q < 0 else ""
    whole, part = divmod(abs(q), 10**places)
    return f"{sign}{whole}.{part:0{places}d}" if places else f"{sign}{whole}"


@dataclass(frozen=True)
class Sustainability:
    """The report's figures: counts per (plan, period, band) and the measures from them."""

    year: int
    latest_discharge: date
    days_elapsed: int
    days_in_year: int
    plans: list[str]  # in priority order
    contribution_fen: dict[str, int]  # monthly, per plan
    counts: pl.DataFrame  # plan_code, period, age_band, member_months … capped_members
    tidy: pl.DataFrame  # the CSV: plan_code, period, age_band, measure, value (str or null)


def _grid(counts: SustainabilityCounts, months: int) -> pl.DataFrame:
    """Counts per (plan, band, month), zeros where nothing happened, members as running totals."""
    plans = counts.plans["plan_code"].to_list()
    keys = pl.DataFrame(
        [(p, b, m) for p in plans for b in BANDS for m in range(1, months + 1)],
        schema={"plan_code": pl.String, "age_band": pl.String, "month": pl.Int32},
        orient="row",
    )
    mm = counts.member_months.with_columns(pl.col("month").cast(pl.Int32))
    pay = counts.payouts.with_columns(pl.col("month").cast(pl.Int32))
    return (
        keys.join(mm, on=["plan_code", "age_band", "month"], how="left")
        .join(pay, on=["plan_code", "age_band", "month"], how="left")
        .with_columns(
            pl.col("member_months", "stays_paid", "paid_fen", "d_paid_members", "d_capped_members")
            .fill_null(0)
            .cast(pl.Int64)
        )
        .sort("plan_code", "age_band", "month")
        .with_columns(
            # A member's running total changes only in months with a stay of theirs: the number
            # paid (or capped) by month M is the running sum of the changes up to M.
            paid_members=pl.col("d_paid_members").cum_sum().over("plan_code", "age_band"),
            capped_members=pl.col("d_capped_members").cum_sum().over("plan_code", "age_band"),
        )
        .drop("d_paid_members", "d_capped_members")
    )


def _periods(grid: pl.DataFrame, year: int, months: int) -> pl.DataFrame:
    """Months and the year so far, for each band and for all bands together."""
    monthly = grid.with_columns(
        period=pl.format("{}-{}", pl.lit(year), pl.col("month").cast(pl.String).str.zfill(2))
    )
    yearly = monthly.group_by("plan_code", "age_band").agg(
        pl.col("member_months", "stays_paid", "paid_fen").sum(),
        # Members paid and capped in the year so far: the running counts at its last month.
        pl.col("paid_members", "capped_members").filter(pl.col("month") == months).sum(),
        period=pl.lit(str(year)),
        month=pl.lit(months + 1, pl.Int32),  # sorts the year after its months
    )
    banded = pl.concat([monthly.select(yearly.columns), yearly], how="vertical_relaxed")
    every = banded.group_by("plan_code", "period", "month").agg(
        pl.col(*_COUNTS).sum(), age_band=pl.lit("all")
    )
    return pl.concat([banded, every.select(banded.columns)], how="vertical_relaxed")


def compute(counts: SustainabilityCounts) -> Sustainability:
    """Every measure of the contract for every plan, period and age band."""
    year, latest = counts.year, counts.latest_discharge
    months = latest.month
    days_in_year = 366 if calendar.isleap(year) else 365
    days_elapsed = (latest - date(year, 1, 1)).days + 1
    contribution = dict(
        zip(
            counts.plans["plan_code"].to_list(),
            counts.plans["monthly_contribution_fen"].to_list(),
            strict=True,
        )
    )
    plans = counts.plans["plan_code"].to_list()
    rank = {p: i for i, p in enumerate(plans)}
    table = _periods(_grid(counts, months), year, months).with_columns(
        pl.col(*_COUNTS).cast(pl.Int64),
        plan_rank=pl.col("plan_code").replace_strict(rank, return_dtype=pl.Int32),
        band_rank=pl.col("age_band").replace_strict(
            {b: i for i, b in enumerate(AGE_BANDS)}, return_dtype=pl.Int32
        ),
    )
    table = table.sort("plan_rank", "month", "band_rank").drop("plan_rank", "band_rank")

    rows: list[tuple[str, str, str, str, str | None]] = []
    # One pass over the few hundred (plan, period, band) cells, never over members.
    for cell in table.iter_rows(named=True):
        plan, period, band = cell["plan_code"], cell["period"], cell["age_band"]
        mm, stays, paid = cell["member_months"], cell["stays_paid"], cell["paid_fen"]
        contributions = mm * contribution[plan]
        values: dict[str, str | None] = {
            "member_months": str(mm),
            "contributions_fen": str(contributions),
            "stays_paid": str(stays),
            "paid_fen": str(paid),
            "loss_ratio": decimal_text(paid, contributions, 4),
            "stays_per_1000_member_months": decimal_text(stays * 1000, mm, 2),
            "avg_paid_fen": decimal_text(paid, stays, 0),
            "share_at_cap": decimal_text(cell["capped_members"], cell["paid_members"], 4),
        }
        if len(period) == 4:
            values["projected_paid_fen"] = str(div_half_up(paid * days_in_year, days_elapsed))
        rows.extend((plan, period, band, m, values[m]) for m in MEASURES if m in values)
    tidy = pl.DataFrame(rows, schema=dict.fromkeys(CSV_COLUMNS, pl.String), orient="row")
    return Sustainability(
        year=year,
        latest_discharge=latest,
        days_elapsed=days_elapsed,
        days_in_year=days_in_year,
        plans=plans,
        contribution_fen=contribution,
        counts=table,
        tidy=tidy,
    )


def _percent(numerator: int, denominator: int) -> str:
    text = decimal_text(numerator * 100, denominator, 1)
    return "-" if text is None else f"{text} %"


def headline(report: Sustainability) -> list[dict[str, str]]:
    """One row per plan for the year so far, in words a reader scans (yuan, percent)."""
    year = report.counts.filter(
        (pl.col("period") == str(report.year)) & (pl.col("age_band") == "all")
    )
    last_month = report.latest_discharge.month
    months = report.counts.filter(
        (pl.col("period") != str(report.year)) & (pl.col("age_band") == "all")
    )
    out = []
    for plan in report.plans:
        c = year.filter(pl.col("plan_code") == plan).row(0, named=True)
        contributions = c["member_months"] * report.contribution_fen[plan]
        # The trend in one figure: the latest three months against the year so far.
        recent = (
            months.filter((pl.col("plan_code") == plan) & (pl.col("month") > last_month - 3))
            .select(pl.col("paid_fen", "member_months").sum())
            .row(0, named=True)
        )
        recent_contributions = recent["member_months"] * report.contribution_fen[plan]
        avg = decimal_text(c["paid_fen"], c["stays_paid"], 0)
        out.append(
            {
                "plan": plan,
                "member-months": str(c["member_months"]),
                "contributions (CNY)": fen_to_yuan(contributions),
                "paid (CNY)": fen_to_yuan(c["paid_fen"]),
                "loss ratio": _percent(c["paid_fen"], contributions),
                "loss ratio, last 3 months": _percent(recent["paid_fen"], recent_contributions),
                "stays per 1000 member-months": decimal_text(
                    c["stays_paid"] * 1000, c["member_months"], 2
                )
                or "-",
                "average paid (CNY)": "-" if avg is None else fen_to_yuan(int(avg)),
                "members at the annual cap": _percent(c["capped_members"], c["paid_members"]),
                "paid, run-rate projection of the full year (CNY)": fen_to_yuan(
                    div_half_up(c["paid_fen"] * report.days_in_year, report.days_elapsed)
                ),
            }
        )
    return out


def write_csv(folder: Path, report: Sustainability) -> Path:
    """``sustainability-<year>.csv``, written to a temporary name and renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sustainability-{report.year}.csv"
    tmp = folder / f".{path.name}.tmp"
    report.tidy.write_csv(tmp, null_value="")
    os.replace(tmp, path)
    return path
