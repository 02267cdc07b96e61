"""Validate an enrolment snapshot's raw rows: staged enrolments, the rest quarantined.

A snapshot holds ~10 million rows, so the work is done in slices (memory stays flat whatever the
snapshot's size) and the raw JSON the quarantine shows is built for bad rows only. The one rule
that spans slices, a unique ``enrollment_id``, is marked on the whole frame first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pandera.polars as pa
import polars as pl

from landing.readers import READ_ERROR
from schemas.checks import columns_of
from schemas.enrollment import (
    COLUMNS,
    DATES,
    ParsedEnrollment,
    RawEnrollment,
    StagedEnrollment,
)
from schemas.notation import parse_date
from schemas.quarantine import combine, empty_quarantine, failures_to_quarantine
from transforms.identity import with_id_columns
from transforms.names import normalized_name

SLICE_ROWS = 1_000_000
REPEATED_ID = "is_repeated_id"
STAGED_COLUMNS = columns_of(StagedEnrollment)


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
        return failures_to_quarantine(
            errors,
            frame,
            column_names={"is_valid_id": "national_id", REPEATED_ID: "enrollment_id"},
        )
    return failures_to_quarantine(None, frame)


def mark_repeated_ids(raw: pl.DataFrame) -> pl.DataFrame:
    """Flag every row whose (trimmed) enrollment_id appears more than once in the snapshot."""
    ids = pl.col("enrollment_id").str.strip_chars().replace("", None)
    return raw.with_columns((ids.is_not_null() & ids.is_duplicated()).alias(REPEATED_ID))


def _raw_json(raw: pl.DataFrame) -> pl.DataFrame:
    """(row_number, raw) for the given rows: the values as received, as a JSON object."""
    present = [c for c in COLUMNS if c in raw.columns]
    return raw.select(
        "row_number",
        pl.when(pl.col(READ_ERROR).is_not_null())
        .then(pl.struct(pl.col("_line").alias("line")).struct.json_encode())
        .otherwise(pl.struct(present).struct.json_encode())
        .alias("raw"),
    )


def validate_enrollments(raw: pl.DataFrame, *, snapshot_date: date) -> ValidatedSnapshot:
    """Check every row of one slice; identity numbers must be valid on the snapshot date.

    ``raw`` must carry the ``is_repeated_id`` flag (``mark_repeated_ids``) when it is a slice of
    a larger snapshot; a whole snapshot gets it here.
    """
    if REPEATED_ID not in raw.columns:
        raw = mark_repeated_ids(raw)
    present = [c for c in COLUMNS if c in raw.columns]
    line_failures = raw.filter(pl.col(READ_ERROR).is_not_null()).select(
        "row_number", rule=pl.lit("invalid_value"), message=pl.col(READ_ERROR)
    )
    trimmed = raw.filter(pl.col(READ_ERROR).is_null()).with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in present
    )
    raw_failures = _validate(RawEnrollment, trimmed)
    parsed = with_id_columns(trimmed, "national_id", snapshot_date).with_columns(
        *(parse_date(pl.col(c)).alias(c) for c in DATES),
    )
    del trimmed
    parsed_failures = _validate(ParsedEnrollment, parsed)
    failures = [line_failures, raw_failures, parsed_failures]
    bad = pl.concat([f.select("row_number") for f in failures]).unique()
    quarantine = (
        combine(failures, _raw_json(raw.join(bad, on="row_number", how="semi")))
        if bad.height
        else empty_quarantine()
    )
    staged = (
        parsed.join(bad, on="row_number", how="anti")
        .with_columns(member_name_norm=normalized_name(pl.col("member_name")))
        .select(STAGED_COLUMNS)
    )
    # Names and types only (a lazy frame): every data rule was checked by the models above, on
    # these very rows; checking them again would cost ~1.4 s per million rows.
    StagedEnrollment.validate(staged.lazy())
    return ValidatedSnapshot(staged, quarantine, raw.height)


def validate_in_slices(
    raw: pl.DataFrame, *, snapshot_date: date, slice_rows: int = SLICE_ROWS
) -> Iterator[ValidatedSnapshot]:
    """``validate_enrollments`` over consecutive slices of a whole snapshot."""
    raw = mark_repeated_ids(raw)
    for offset in range(0, max(raw.height, 1), slice_rows):
        yield validate_enrollments(raw.slice(offset, slice_rows), snapshot_date=snapshot_date)
