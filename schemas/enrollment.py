"""Enrolment snapshot rows (feeds.md, *Enrolment snapshot*): raw text, then typed and staged."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from schemas.checks import col, columns_of, passes, rule
from schemas.discharge import CONTROL_RE, parse_date
from schemas.reference import PLAN_CODES


class EnrollmentRecord(pa.DataFrameModel):
    """The contract's columns of an enrolment row, in feeds.md's order, as text.

    The one list of them: ``COLUMNS`` and the generator (``synth``) derive from it.
    """

    enrollment_id: Series[str] = pa.Field(nullable=True)
    national_id: Series[str] = pa.Field(nullable=True)
    member_name: Series[str] = pa.Field(nullable=True)
    gender: Series[str] = pa.Field(nullable=True)
    birth_date: Series[str] = pa.Field(nullable=True)
    plan_code: Series[str] = pa.Field(nullable=True)
    coverage_start: Series[str] = pa.Field(nullable=True)
    coverage_end: Series[str] = pa.Field(nullable=True)
    payee_account: Series[str] = pa.Field(nullable=True)


COLUMNS = columns_of(EnrollmentRecord)
OPTIONAL = ("coverage_end",)
REQUIRED = tuple(c for c in COLUMNS if c not in OPTIONAL)
DATES = ("birth_date", "coverage_start", "coverage_end")


class RawEnrollment(EnrollmentRecord):
    """One row per data row of a snapshot (grain: ``row_number``), text as received, trimmed."""

    row_number: Series[int] = pa.Field(unique=True)

    class Config:
        strict = False
        coerce = False

    @pa.check(*REQUIRED, error=rule("missing_value", "a required value is empty"))
    def present(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(col(data).is_not_null())

    # Marked on the whole snapshot before it is validated in slices (mark_repeated_ids).
    is_repeated_id: Series[bool]

    @pa.check("is_repeated_id", error=rule("invalid_value", "repeats within the snapshot"))
    def unique_id(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, ~col(data))

    @pa.check("member_name", error=rule("invalid_value", "must be 1-50 characters, no controls"))
    def name_shape(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, (c.str.len_chars() <= 50) & ~c.str.contains(CONTROL_RE))

    @pa.check("gender", error=rule("invalid_value", "must be M or F"))
    def gender_enum(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_in(["M", "F"]))

    @pa.check(*DATES, error=rule("invalid_value", "must be a real date YYYY-MM-DD"))
    def real_date(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_null() | parse_date(col(data)).is_not_null())

    @pa.check("plan_code", error=rule("invalid_value", "is not a plan of benefits.md"))
    def known_plan(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_in(list(PLAN_CODES)))

    @pa.check("payee_account", error=rule("invalid_value", "must be 12-19 digits"))
    def account_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).str.contains(r"^[0-9]{12,19}$"))


class ParsedEnrollment(pa.DataFrameModel):
    """Typed snapshot rows (grain: ``row_number``); nulls where a value did not parse."""

    row_number: Series[int] = pa.Field(unique=True)
    is_valid_id: Series[bool]
    coverage_start: Series[pl.Date] = pa.Field(nullable=True)
    coverage_end: Series[pl.Date] = pa.Field(nullable=True)

    class Config:
        strict = False

    @pa.check(
        "is_valid_id",
        error=rule("invalid_value", "not a valid 18-character identity number"),
    )
    def valid_id(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data))

    @pa.dataframe_check(error=rule("date_order", "coverage ends before it starts"))
    def coverage_order(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, pl.col("coverage_end") >= pl.col("coverage_start"))


class StagedEnrollment(pa.DataFrameModel):
    """One row per enrolment of the snapshot (grain: ``enrollment_id``)."""

    enrollment_id: Series[str] = pa.Field(unique=True)
    national_id: Series[str] = pa.Field(str_matches=r"^[0-9]{17}[0-9X]$")
    member_name: Series[str]
    member_name_norm: Series[str]
    gender: Series[str] = pa.Field(isin=["M", "F"])
    birth_date: Series[pl.Date]
    plan_code: Series[str] = pa.Field(isin=list(PLAN_CODES))
    coverage_start: Series[pl.Date]
    coverage_end: Series[pl.Date] = pa.Field(nullable=True)
    payee_account: Series[str]

    class Config:
        strict = True
