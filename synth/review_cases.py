"""Stays for people in the loop, added to the demo's deliveries (benefits.md, *Review decisions*).

Two cases the demo tells the story of:

- ``BIG``: a large stay (26 000.00 yuan of self-pay in scope, above the 20 000.00 second-approval
  limit) whose patient name the hospital mistyped: it waits in review (``name_mismatch``) until
  two different operators approve it; the next run pays it.
- ``OVERLAP``: one member billed by two hospitals for the same nights: the later admission is
  held (``overlap``) while the first pays.

Both belong to members with an open-ended ``RETIREE_INPATIENT`` enrolment well before the stays,
at hospitals in the network, so that nothing but the review stands between them and payment.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl

BIG = "ZY20261120-9000001"
OVERLAP_FIRST = "ZY20261120-9000002"
OVERLAP_SECOND = "ZY20261121-9000003"

Delivery = tuple[int, str, pl.DataFrame, dict[str, Any]]


def _people(enrollments: pl.DataFrame, start: date, exclude: set[str]) -> list[dict[str, Any]]:
    """Two members with one open RETIREE_INPATIENT enrolment that began a year before ``start``."""
    single = enrollments.group_by("national_id").len().filter(pl.col("len") == 1)
    found = (
        enrollments.join(single.select("national_id"), on="national_id")
        .filter(
            (pl.col("plan_code") == "RETIREE_INPATIENT")
            & pl.col("coverage_end").is_null()
            & (pl.col("coverage_start") <= start - timedelta(days=365))
            & ~pl.col("national_id").is_in(list(exclude))
        )
        .sort("enrollment_id")
    )
    if found.height < 2:  # pragma: no cover - tiny demos only
        raise RuntimeError("the demo has no retired members for its review cases")
    return list(found.head(2).iter_rows(named=True))


def _row(
    template: dict[str, Any],
    who: dict[str, Any],
    *,
    settlement_id: str,
    hospital: str,
    admitted: date,
    discharged: date,
    in_scope_fen: int,
    name: str | None = None,
) -> dict[str, Any]:
    fund_fen, out_fen = in_scope_fen * 2, in_scope_fen // 10

    def yuan(fen: int) -> str:
        return f"{fen // 100}.{fen % 100:02d}"

    return {
        **template,
        "settlement_id": settlement_id,
        "version": "1",
        "record_type": "N",
        "hospital_code": hospital,
        "national_id": who["national_id"],
        "patient_name": name or who["member_name"],
        "gender": who["gender"],
        "birth_date": who["birth_date"].isoformat(),
        "admission_date": admitted.isoformat(),
        "discharge_date": discharged.isoformat(),
        "total_cost": yuan(fund_fen + in_scope_fen + out_fen),
        "fund_paid": yuan(fund_fen),
        "self_pay_in_scope": yuan(in_scope_fen),
        "self_pay_out_of_scope": yuan(out_fen),
        "settled_at": f"{discharged.isoformat()}T10:30:00+08:00",
        "defect": None,
        "identity": "exact",
        "name_form": "exact" if name is None else "typo",
    }


def add_review_cases(
    delivered: list[Delivery],
    enrollments: pl.DataFrame,
    hospitals: pl.DataFrame,
    feed_dates: list[date],
    *,
    exclude: set[str],
) -> list[Delivery]:
    """The deliveries with BIG and OVERLAP_FIRST in night 1's SHYB, OVERLAP_SECOND in night 2's."""
    start = feed_dates[0]
    big, bed = _people(enrollments, start, exclude)
    network = (
        hospitals.filter(
            pl.col("in_network_to").is_null()
            & (pl.col("in_network_from") <= start - timedelta(days=365))
        )
        .sort("hospital_code")["hospital_code"]
        .to_list()
    )
    out = []
    for i, source, rows, options in delivered:
        if source == "SHYB" and i in (0, 1):
            template = rows.filter(pl.col("defect").is_null()).row(0, named=True)
            misspelt = big["member_name"][:-1] + ("伟" if big["member_name"][-1] != "伟" else "玮")
            extra = (
                [
                    _row(
                        template,
                        big,
                        settlement_id=BIG,
                        hospital=network[0],
                        admitted=start - timedelta(days=24),
                        discharged=start - timedelta(days=3),
                        in_scope_fen=2_600_000,
                        name=misspelt,
                    ),
                    _row(
                        template,
                        bed,
                        settlement_id=OVERLAP_FIRST,
                        hospital=network[1],
                        admitted=start - timedelta(days=12),
                        discharged=start - timedelta(days=2),
                        in_scope_fen=480_000,
                    ),
                ]
                if i == 0
                else [
                    _row(
                        template,
                        bed,
                        settlement_id=OVERLAP_SECOND,
                        hospital=network[2],
                        admitted=start - timedelta(days=9),
                        discharged=start - timedelta(days=5),
                        in_scope_fen=310_000,
                    ),
                ]
            )
            rows = pl.concat([rows, pl.DataFrame(extra, schema=rows.schema)])
        out.append((i, source, rows, options))
    return out
