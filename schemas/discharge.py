"""Discharge settlement records (feeds.md, *Discharge settlement record*), in three stages.

- ``RawDischarge``: the values as received, trimmed, all text. Checks shapes value by value.
- ``ParsedDischarge``: typed values. Checks the rules that compare values (amounts, dates,
  hospital registry).
- ``StagedDischarge``: what is written to the warehouse; only rows that passed both.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from schemas import checks
from schemas.checks import col, passes, rule
from schemas.discharge_columns import (
    COLUMNS,
    DATES,
    EARLIEST_ADMISSION,
    MONEY,
    MUST_BE_PRESENT,
    OPTIONAL,
    REQUIRED,
    SETTLEMENT_ID_RE,
    STAGED_COLUMNS,
    STAGED_SCHEMA,
    TIMESTAMP_RE,
    VERSION_RE,
    parse_timestamp,
)
from schemas.notation import (
    DECIMAL_RE,
    DIAGNOSIS_RE,
    NUMBER_LIKE_RE,
    too_large,
    too_many_places,
)

__all__ = [
    "COLUMNS",
    "DATES",
    "EARLIEST_ADMISSION",
    "MONEY",
    "MUST_BE_PRESENT",
    "OPTIONAL",
    "REQUIRED",
    "SETTLEMENT_ID_RE",
    "STAGED_COLUMNS",
    "STAGED_SCHEMA",
    "TIMESTAMP_RE",
    "VERSION_RE",
    "DischargeRecord",
    "ParsedDischarge",
    "RawDischarge",
    "StagedDischarge",
    "parse_timestamp",
]


class DischargeRecord(pa.DataFrameModel):
    """A discharge settlement record as sent: feeds.md's columns in its order, all text.

    ``COLUMNS`` (``schemas.discharge_columns``) lists the same columns without pandera; a test
    holds the two equal.
    """

    settlement_id: Series[str] = pa.Field(nullable=True)
    version: Series[str] = pa.Field(nullable=True)
    record_type: Series[str] = pa.Field(nullable=True)
    hospital_code: Series[str] = pa.Field(nullable=True)
    national_id: Series[str] = pa.Field(nullable=True)
    patient_name: Series[str] = pa.Field(nullable=True)
    gender: Series[str] = pa.Field(nullable=True)
    birth_date: Series[str] = pa.Field(nullable=True)
    admission_date: Series[str] = pa.Field(nullable=True)
    discharge_date: Series[str] = pa.Field(nullable=True)
    primary_diagnosis: Series[str] = pa.Field(nullable=True)
    total_cost: Series[str] = pa.Field(nullable=True)
    fund_paid: Series[str] = pa.Field(nullable=True)
    self_pay_in_scope: Series[str] = pa.Field(nullable=True)
    self_pay_out_of_scope: Series[str] = pa.Field(nullable=True)
    settled_at: Series[str] = pa.Field(nullable=True)


class RawDischarge(DischargeRecord):
    """One row per data row of a delivery (grain: ``row_number``), text as received, trimmed."""

    row_number: Series[int] = pa.Field(unique=True)

    class Config:
        strict = False  # extra columns are allowed and ignored
        coerce = False

    present = checks.required(*MUST_BE_PRESENT)

    @pa.check("settlement_id", error=rule("invalid_value", "must be 1-32 of A-Z, a-z, 0-9, -"))
    def settlement_id_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).str.contains(SETTLEMENT_ID_RE))

    @pa.check("version", error=rule("invalid_value", "must be a whole number ≥ 1"))
    def version_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).str.contains(VERSION_RE))

    @pa.check("record_type", error=rule("invalid_value", "must be N, C or V"))
    def record_type_enum(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_in(["N", "C", "V"]))

    gender_enum = checks.gender("gender")
    real_date = checks.real_date(*DATES)
    name_shape = checks.person_name("patient_name")

    @pa.check("settled_at", error=rule("invalid_value", "must be an ISO 8601 timestamp"))
    def timestamp_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_null() | parse_timestamp(col(data)).is_not_null())

    @pa.check(*MONEY, error=rule("invalid_value", "is not a number"))
    def money_is_number(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, c.str.contains(DECIMAL_RE) | c.str.contains(NUMBER_LIKE_RE))

    @pa.check(
        *MONEY,
        error=rule("invalid_amount", "not plain decimal notation (exponent, separator, NaN, …)"),
    )
    def money_notation(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, c.str.contains(DECIMAL_RE) | ~c.str.contains(NUMBER_LIKE_RE))

    @pa.check(*MONEY, error=rule("invalid_amount", "more than 2 decimal places"))
    def money_places(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, ~(c.str.contains(DECIMAL_RE) & too_many_places(c)))

    @pa.check(*MONEY, error=rule("invalid_amount", "negative"))
    def money_sign(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        negative = c.str.contains(DECIMAL_RE) & c.str.contains(r"^-") & c.str.contains(r"[1-9]")
        return passes(data, ~negative)

    @pa.check(*MONEY, error=rule("invalid_amount", "too large"))
    def money_size(cls, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, ~(c.str.contains(DECIMAL_RE) & too_large(c)))

    @pa.check(
        "primary_diagnosis",
        error=rule("invalid_diagnosis", "empty or not an ICD-10 code of the national edition"),
    )
    def diagnosis_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(col(data).str.contains(DIAGNOSIS_RE).fill_null(False))


class ParsedDischarge(pa.DataFrameModel):
    """One row per data row (grain: ``row_number``), typed; nulls where a value did not parse."""

    row_number: Series[int] = pa.Field(unique=True)
    feed_date: Series[pl.Date]
    is_known_hospital: Series[bool]
    admission_date: Series[pl.Date] = pa.Field(nullable=True)
    discharge_date: Series[pl.Date] = pa.Field(nullable=True)
    total_cost_fen: Series[pl.Int64] = pa.Field(nullable=True)
    fund_paid_fen: Series[pl.Int64] = pa.Field(nullable=True)
    self_pay_in_scope_fen: Series[pl.Int64] = pa.Field(nullable=True)
    self_pay_out_of_scope_fen: Series[pl.Int64] = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False

    @pa.dataframe_check(
        error=rule(
            "amount_mismatch",
            "total_cost ≠ fund_paid + self_pay_in_scope + self_pay_out_of_scope",
        )
    )
    def amounts_add_up(cls, data: PolarsData) -> pl.LazyFrame:
        parts = (
            pl.col("fund_paid_fen")
            + pl.col("self_pay_in_scope_fen")
            + pl.col("self_pay_out_of_scope_fen")
        )
        return passes(data, pl.col("total_cost_fen") == parts)

    @pa.check("admission_date", error=rule("date_order", "admitted before 1990-01-01"))
    def admitted_since_1990(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data) >= pl.lit(EARLIEST_ADMISSION))

    @pa.dataframe_check(error=rule("date_order", "discharged before it was admitted"))
    def discharged_after_admission(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, pl.col("discharge_date") >= pl.col("admission_date"))

    @pa.dataframe_check(error=rule("future_discharge", "discharged after the feed date"))
    def discharged_by_feed_date(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, pl.col("discharge_date") <= pl.col("feed_date"))

    @pa.check("is_known_hospital", error=rule("unknown_hospital", "not in the hospital registry"))
    def known_hospital(cls, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data))


class StagedDischarge(pa.DataFrameModel):
    """One row per accepted data row, grain (``feed_date``, ``source``, ``row_number``).

    Several rows may carry one stay version (re-deliveries, conflicts): the warehouse decides
    which stands, by partition order, so that the outcome never depends on arrival order.
    """

    feed_date: Series[pl.Date]
    source: Series[str]
    row_number: Series[pl.Int64] = pa.Field(ge=1)
    hospital_code: Series[str]
    settlement_id: Series[str] = pa.Field(str_matches=SETTLEMENT_ID_RE)
    version: Series[pl.Int64] = pa.Field(ge=1)
    record_type: Series[str] = pa.Field(isin=["N", "C", "V"])
    national_id: Series[str]  # normalised; "" when the feed had none
    is_valid_id: Series[bool]
    patient_name: Series[str]
    patient_name_norm: Series[str]
    gender: Series[str] = pa.Field(isin=["M", "F"])
    birth_date: Series[pl.Date]
    admission_date: Series[pl.Date] = pa.Field(ge=EARLIEST_ADMISSION)
    discharge_date: Series[pl.Date]
    primary_diagnosis: Series[str]
    is_known_diagnosis: Series[bool]
    total_cost_fen: Series[pl.Int64] = pa.Field(ge=0)
    fund_paid_fen: Series[pl.Int64] = pa.Field(ge=0)
    self_pay_in_scope_fen: Series[pl.Int64] = pa.Field(ge=0)
    self_pay_out_of_scope_fen: Series[pl.Int64] = pa.Field(ge=0)
    settled_at: Series[pl.Datetime(time_unit="us", time_zone="UTC")]  # type: ignore[valid-type]
    raw: Series[str]

    class Config:
        strict = True
        unique = ["feed_date", "source", "row_number"]  # noqa: RUF012 - pandera reads a list
