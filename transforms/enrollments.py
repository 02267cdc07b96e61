"""Validate an enrolment snapshot's raw rows: staged enrolments, the rest quarantined."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandera.polars as pa
import polars as pl

from landing.readers import READ_ERROR
from schemas.discharge import parse_date
from schemas.enrollment import COLUMNS, ParsedEnrollment, RawEnrollment, StagedEnrollment
from schemas.quarantine import combine, failures_to_quarantine
from transforms.identity import with_id_columns
from transforms.names import normalized_name


@dataclass
class ValidatedSnapshot:
    staged: pl.DataFrame  # StagedEnrollment
    quarantine: pl.DataFrame  # QuarantineRow
    rows_read: int

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.get_column("row_number").n_unique()


def _validate(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return failures_to_quarantine(errors, frame, column_names={"is_valid_id": "national_id"})
    return failures_to_quarantine(None, frame)


def validate_enrollments(raw: pl.DataFrame, *, snapshot_date: date) -> ValidatedSnapshot:
    """Check every snapshot row; identity numbers must be valid on the snapshot date."""
    present = [c for c in COLUMNS if c in raw.columns]
    raw = raw.with_columns(
        pl.when(pl.col(READ_ERROR).is_not_null())
        .then(pl.struct(pl.col("_line").alias("line")).struct.json_encode())
        .otherwise(pl.struct(present).struct.json_encode())
        .alias("raw")
    )
    unreadable = raw.filter(pl.col(READ_ERROR).is_not_null())
    line_failures = unreadable.select(
        "row_number", rule=pl.lit("invalid_value"), message=pl.col(READ_ERROR)
    )
    trimmed = raw.filter(pl.col(READ_ERROR).is_null()).with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in present
    )
    raw_failures = _validate(RawEnrollment, trimmed)
    parsed = with_id_columns(trimmed, "national_id", snapshot_date).with_columns(
        *(parse_date(pl.col(c)).alias(c) for c in ("birth_date", "coverage_start", "coverage_end")),
    )
    parsed_failures = _validate(ParsedEnrollment, parsed)
    quarantine = combine([line_failures, raw_failures, parsed_failures], raw)
    bad = quarantine.get_column("row_number").unique().implode()
    staged = parsed.filter(~pl.col("row_number").is_in(bad)).select(
        "enrollment_id",
        "national_id",
        "member_name",
        normalized_name(pl.col("member_name")).alias("member_name_norm"),
        "gender",
        "birth_date",
        "plan_code",
        "coverage_start",
        "coverage_end",
        "payee_account",
    )
    return ValidatedSnapshot(StagedEnrollment.validate(staged), quarantine, raw.height)
