"""Enrolment snapshot rows (feeds.md, *Enrolment snapshot*): raw text, then typed and staged."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from schemas import checks
from schemas import enrollment_columns as _columns
from schemas.checks import col, passes, rule
from schemas.reference import PLAN_CODES


class EnrollmentRecord(pa.DataFrameModel):
    """An enrolment row as sent: the snapshot's columns (feeds.md), in order, all text."""

    enrollment_id: Series[str] = pa.Field(nullable=True)
    national_id: Series[str] = pa.Field(nullable=True)
    member_name: Series[str] = pa.Field(nullable=True)
    gender: Series[str] = pa.Field(nullable=True)
    birth_date: Series[str] = pa.Field(nullable=True)
    plan_code: Series[str] = pa.Field(nullable=True)
    coverage_start: Series[str] = pa.Field(nullable=True)
    coverage_end: Series[str] = pa.Field(nullable=True)
    payee_account: Series[str] = pa.Field(nullable=True)


# Declared without pandera in ``schemas.enrollment_columns`` (a clean snapshot's validation
# needs them, not the models); ``tests/test_lazy_imports.py`` holds them to the model.
COLUMNS = _columns.COLUMNS
OPTIONAL = _columns.OPTIONAL
REQUIRED = _columns.REQUIRED
DATES = _columns.DATES


class RawEnrollment(EnrollmentRecord):
    """One row per data row of a snapshot (grain: ``row_number``), text as received, trimmed."""

    row_number: Series[int] = pa.Field(unique=True)

    class Config:
        strict = False
        coerce = False

    present = checks.required(*REQUIRED)

    # Marked on the whole snapshot before it is validated in slices (mark_repeated_ids).
    is_repeated_id: Series[bool]

    @pa.check("is_repeated_id", error=rule("invalid_value", "repeats within the snapshot"))
    def unique_id(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, ~col(data))

    name_shape = checks.person_name("member_name")
    gender_enum = checks.gender("gender")
    real_date = checks.real_date(*DATES)

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
