"""Discharge records' columns, patterns and timestamps, without pandera (``schemas.discharge``
holds the models that state the rules).

What a clean night needs to validate its rows: the screen of ``transforms.discharges`` passes
most rows without calling the models, so that a night without a suspect row never imports
pandera (~0.2 s of a night's start). ``tests/test_lazy_imports.py`` holds the constants here
equal to the models'.
"""

from __future__ import annotations

from datetime import date

import polars as pl

# feeds.md's columns in its order, as ``schemas.discharge.DischargeRecord`` declares them.
COLUMNS = (
    "settlement_id",
    "version",
    "record_type",
    "hospital_code",
    "national_id",
    "patient_name",
    "gender",
    "birth_date",
    "admission_date",
    "discharge_date",
    "primary_diagnosis",
    "total_cost",
    "fund_paid",
    "self_pay_in_scope",
    "self_pay_out_of_scope",
    "settled_at",
)
# national_id may be empty, and a feed without the column at all still matches by demographics.
OPTIONAL = ("national_id",)
REQUIRED = tuple(c for c in COLUMNS if c not in OPTIONAL)
MONEY = ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope")
DATES = ("birth_date", "admission_date", "discharge_date")
# An empty diagnosis is its own rule (invalid_diagnosis), not missing_value.
MUST_BE_PRESENT = tuple(c for c in REQUIRED if c != "primary_diagnosis")

# The staged frame's names and types, in order, as ``schemas.discharge.StagedDischarge``
# declares them (what ``transforms.discharges`` guards a staged frame against).
STAGED_SCHEMA = pl.Schema(
    {
        "feed_date": pl.Date(),
        "source": pl.String(),
        "row_number": pl.Int64(),
        "hospital_code": pl.String(),
        "settlement_id": pl.String(),
        "version": pl.Int64(),
        "record_type": pl.String(),
        "national_id": pl.String(),
        "is_valid_id": pl.Boolean(),
        "patient_name": pl.String(),
        "patient_name_norm": pl.String(),
        "gender": pl.String(),
        "birth_date": pl.Date(),
        "admission_date": pl.Date(),
        "discharge_date": pl.Date(),
        "primary_diagnosis": pl.String(),
        "is_known_diagnosis": pl.Boolean(),
        "total_cost_fen": pl.Int64(),
        "fund_paid_fen": pl.Int64(),
        "self_pay_in_scope_fen": pl.Int64(),
        "self_pay_out_of_scope_fen": pl.Int64(),
        "settled_at": pl.Datetime(time_unit="us", time_zone="UTC"),
        "raw": pl.String(),
    }
)
STAGED_COLUMNS = tuple(STAGED_SCHEMA)

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
