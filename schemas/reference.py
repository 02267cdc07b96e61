"""Reference data: plan parameters and the hospital registry."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from schemas.codes import PLAN_CODES

__all__ = ["PLAN_CODES", "Hospital", "PlanRule"]


class PlanRule(pa.DataFrameModel):
    """One row per (plan_code, from_year): the parameters from that benefit year on."""

    plan_code: Series[str] = pa.Field(isin=list(PLAN_CODES))
    from_year: Series[pl.Int64] = pa.Field(ge=1990, le=2100)
    priority: Series[pl.Int64] = pa.Field(ge=1)
    rate_bp: Series[pl.Int64] = pa.Field(ge=0, le=10_000)
    deductible_fen: Series[pl.Int64] = pa.Field(ge=0)
    per_stay_cap_fen: Series[pl.Int64] = pa.Field(ge=0, nullable=True)
    daily_allowance_fen: Series[pl.Int64] = pa.Field(ge=0)
    allowance_days: Series[pl.Int64] = pa.Field(ge=0)
    annual_cap_fen: Series[pl.Int64] = pa.Field(ge=0)
    waiting_days: Series[pl.Int64] = pa.Field(ge=0)
    # What one member pays the plan for one month of cover (operations.md, *Sustainability
    # report*): read by the report only, never by adjudication.
    monthly_contribution_fen: Series[pl.Int64] = pa.Field(ge=0)

    class Config:
        strict = True
        unique = ["plan_code", "from_year"]  # noqa: RUF012 - pandera reads a list


class Hospital(pa.DataFrameModel):
    """One row per hospital_code: the registry (feeds.md, *Hospital registry*)."""

    hospital_code: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    hospital_name: Series[str]
    district: Series[str]
    level: Series[pl.Int64] = pa.Field(isin=[1, 2, 3])
    in_network_from: Series[pl.Date]
    in_network_to: Series[pl.Date] = pa.Field(nullable=True)

    class Config:
        strict = True

    @pa.dataframe_check(error="in_network_to is before in_network_from")
    def network_period(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("in_network_to") >= pl.col("in_network_from")).fill_null(True)
        )
