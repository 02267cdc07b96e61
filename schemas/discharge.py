"""Discharge settlement records (feeds.md, *Discharge settlement record*), in three stages.

- ``RawDischarge``: the values as received, trimmed, all text. Checks shapes value by value.
- ``ParsedDischarge``: typed values. Checks the rules that compare values (amounts, dates,
  hospital registry).
- ``StagedDischarge``: what is written to the warehouse; only rows that passed both.
"""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.typing.polars import Series

from schemas import checks
from schemas.checks import col, columns_of, passes, rule
from schemas.notation import (
    DECIMAL_RE,
    DIAGNOSIS_RE,
    NUMBER_LIKE_RE,
    too_large,
    too_many_places,
)

EARLIEST_ADMISSION = date(1990, 1, 1)
SETTLEMENT_ID_RE = r"^[A-Za-z0-9-]{1,32}$"
VERSION_RE = r"^0*[1-9][0-9]{0,8}$"
TIMESTAMP_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)


# The usual way of writing one, with seconds and an offset: parsed as it is, without the
# rewriting below (which would leave it as it is anyway).
_CANONICAL_TIMESTAMP_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?[+-][0-9]{2}:[0-9]{2}$"
)
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"


def parse_timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 timestamp → UTC; without an offset it is local time in Asia/Shanghai."""
    canonical_shape = text.str.contains(_CANONICAL_TIMESTAMP_RE)
    usual = pl.when(canonical_shape).then(text)
    other = pl.when(~canonical_shape & text.str.contains(TIMESTAMP_RE)).then(text)
    # Only the other values (usually none: null elsewhere, which costs nothing) are rewritten.
    canonical = (
        other.str.replace(" ", "T")
        .str.replace(r"T([0-9]{2}:[0-9]{2})$", "T$1:00")
        .str.replace(r"T([0-9]{2}:[0-9]{2})([Z+-])", "T$1:00$2")
        .str.replace(r"Z$", "+00:00")
        .str.replace(r"([+-][0-9]{2})$", "$1:00")
    )
    with_zone = pl.when(canonical.str.contains(r"[+-][0-9]{2}:?[0-9]{2}$")).then(canonical)
    full = with_zone.otherwise(canonical + "+08:00")
    return pl.coalesce(usual, full).str.to_datetime(
        _TIMESTAMP_FORMAT, strict=False, time_zone="UTC"
    )


class DischargeRecord(pa.DataFrameModel):
    """A discharge settlement record as sent: feeds.md's columns in its order, all text.

    ``COLUMNS``, the transforms and the generator (``synth``) take the columns from here.
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


COLUMNS = columns_of(DischargeRecord)
# national_id may be empty, and a feed without the column at all still matches by demographics.
OPTIONAL = ("national_id",)
REQUIRED = tuple(c for c in COLUMNS if c not in OPTIONAL)
MONEY = ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope")
DATES = ("birth_date", "admission_date", "discharge_date")
# An empty diagnosis is its own rule (invalid_diagnosis), not missing_value.
MUST_BE_PRESENT = tuple(c for c in REQUIRED if c != "primary_diagnosis")


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
