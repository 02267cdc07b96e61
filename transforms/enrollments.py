"""Validate an enrolment snapshot's raw rows: staged enrolments, the rest quarantined.

A snapshot holds ~10 million rows, so the work is done in slices (memory stays flat whatever the
snapshot's size) and the raw JSON the quarantine shows is built for bad rows only. The one rule
that spans slices, a unique ``enrollment_id``, is marked on the whole frame first.

Each slice is screened first by one polars pass over typed columns (``_suspect``): every rule of
the models, as one boolean per row, erring towards suspicion. Clean rows are staged from it;
only the suspects (usually none) go through the pandera models, which word their quarantine
rows. So the models stay the one statement of the rules and their messages, and a 10-million-row
snapshot does not pay pandera's per-check cost on rows that pass. Typed Parquet dates stay
dates; a suspect's dates become text again, as it was read before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import polars as pl

from landing.readers import READ_ERROR
from schemas.codes import PLAN_CODES
from schemas.enrollment_columns import COLUMNS, DATES, REQUIRED, STAGED_COLUMNS, STAGED_SCHEMA
from schemas.notation import CONTROL_RE, parse_date
from schemas.quarantine import combine, empty_quarantine, failures_to_quarantine
from transforms.identity import canonical_validity, with_id_columns
from transforms.names import normalized_names

if TYPE_CHECKING:
    import pandera.polars as pa

SLICE_ROWS = 1_000_000
REPEATED_ID = "is_repeated_id"


@dataclass
class ValidatedSnapshot:
    staged: pl.DataFrame  # StagedEnrollment
    quarantine: pl.DataFrame  # QuarantineRow
    rows_read: int

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.get_column("row_number").n_unique()


def _validate(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    from pandera.errors import SchemaErrors

    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        return failures_to_quarantine(
            errors,
            frame,
            column_names={"is_valid_id": "national_id", REPEATED_ID: "enrollment_id"},
        )
    return failures_to_quarantine(None, frame)


def mark_repeated_ids(raw: pl.DataFrame) -> pl.DataFrame:
    """Flag every row whose (trimmed) enrollment_id appears more than once in the snapshot."""
    ids = pl.col("enrollment_id").str.strip_chars().replace("", None)
    # Distinct 64-bit hashes prove distinct ids; a repeat or a collision makes fewer, and then
    # the ids themselves are marked below. Counting hashes costs a third of counting the strings
    # (10 M ids: ~0.45 CPU s instead of ~1.3).
    counts = raw.select(
        ids.drop_nulls().hash().n_unique().alias("distinct"), ids.null_count().alias("nulls")
    ).row(0)
    if counts[0] == raw.height - counts[1]:
        # Every id distinct (the usual snapshot): counting is much cheaper than marking.
        return raw.with_columns(pl.lit(False).alias(REPEATED_ID))
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


def _as_text(raw: pl.DataFrame) -> pl.DataFrame:
    """Typed date columns back to the text a sender would have written (``landing.readers``)."""
    return raw.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%d") for c in DATES if raw.schema.get(c) == pl.Date
    )


def validate_enrollments(raw: pl.DataFrame, *, snapshot_date: date) -> ValidatedSnapshot:
    """Check every row of one slice; identity numbers must be valid on the snapshot date.

    ``raw`` must carry the ``is_repeated_id`` flag (``mark_repeated_ids``) when it is a slice of
    a larger snapshot; a whole snapshot gets it here. Date columns may be text or ``pl.Date``.
    """
    if REPEATED_ID not in raw.columns:
        raw = mark_repeated_ids(raw)
    screened = _screen(raw, snapshot_date)
    clean = screened.filter(~pl.col(_SUSPECT))
    suspects = raw.join(
        screened.filter(pl.col(_SUSPECT)).select("row_number"), on="row_number", how="semi"
    )
    del screened
    staged = _staged(clean)
    if not suspects.height:
        _check_staged(staged)
        return ValidatedSnapshot(staged, empty_quarantine(), raw.height)
    judged = _judge(_as_text(suspects), snapshot_date)
    staged = pl.concat([staged, judged.staged])
    _check_staged(staged)
    return ValidatedSnapshot(staged, judged.quarantine, raw.height)


def _check_staged(staged: pl.DataFrame) -> None:
    """A staged frame of other names, order or types than ``StagedEnrollment``'s is our bug:
    fail loudly rather than store it. Its rows' values were checked by the screen or by the
    models (``_staged``), so this compares the schema only, as a pandera call on a lazy frame
    did, without importing pandera for a snapshot whose every row the screen passes."""
    if staged.schema != STAGED_SCHEMA:
        found = {n: str(t) for n, t in staged.schema.items() if STAGED_SCHEMA.get(n) != t}
        raise RuntimeError(
            f"staged enrolment rows do not have the staged schema: columns {list(staged.schema)}"
            f", differing types {found}"
        )


_SUSPECT = "_suspect"
# Columns whose passing values are of a closed shape without white space (an identity number in
# normal form, ``M``/``F``, a plan code, 12-19 digits): the screen checks them as received,
# untrimmed, which saves copying ~10 M values per column. A value the screen passes is then its
# own trimmed form; one with white space around it (or empty) fails the shape and is a suspect,
# which the models trim and judge as ever.
_AS_RECEIVED = ("national_id", "gender", "plan_code", "payee_account")
# Typed dates outside these years go the slow way, as text (a text year has four digits).
_PLAIN_DATES = (date(1000, 1, 1), date(9999, 12, 31))


def _screen(raw: pl.DataFrame, snapshot_date: date) -> pl.DataFrame:
    """The slice trimmed and typed as staged, with ``_suspect``: the row may break a rule of
    ``RawEnrollment``/``ParsedEnrollment``. Never false for a row the models would quarantine
    (``tests/test_enrollments.py`` holds it to that); true for a few they pass is harmless."""
    present = [c for c in COLUMNS if c in raw.columns]
    text = [c for c in present if raw.schema[c] != pl.Date]
    # The columns of a closed shape are checked as received (``_AS_RECEIVED``), the others
    # trimmed first.
    trimmed = raw.with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in text if c not in _AS_RECEIVED
    )
    # Identity numbers already in normal form are checked as they are (``canonical_validity``);
    # any other spelling, valid or not, is a suspect that the models check the full way (a
    # 15-digit number, white space, full-width characters: rare in a snapshot).
    parsed = trimmed.with_columns(
        canonical_validity(pl.col("national_id"), snapshot_date).alias("is_valid_id"),
        *(pl.col(c).alias(f"_given_{c}") for c in DATES if c in text),
    )
    parsed = parsed.with_columns(parse_date(pl.col(c)).alias(c) for c in DATES if c in text)
    missing = [c for c in REQUIRED if c not in present]
    broken = [
        pl.col(READ_ERROR).is_not_null(),
        pl.col(REPEATED_ID),
        *(pl.col(c).is_null() for c in REQUIRED if c in present),
        pl.lit(bool(missing)),
        ~pl.col("is_valid_id"),
        ~pl.col("gender").is_in(["M", "F"]),
        ~pl.col("plan_code").is_in(list(PLAN_CODES)),
        ~pl.col("payee_account").str.contains(r"^[0-9]{12,19}$"),
        pl.col("member_name").str.len_chars() > 50,
        pl.col("member_name").str.contains(CONTROL_RE),
        *(
            [pl.col("coverage_end") < pl.col("coverage_start")]
            if "coverage_end" in present and "coverage_start" in present
            else []
        ),
        *(pl.col(f"_given_{c}").is_not_null() & pl.col(c).is_null() for c in DATES if c in text),
        *(~pl.col(c).is_between(*_PLAIN_DATES) for c in DATES if c in present and c not in text),
    ]
    if missing:
        return parsed.with_columns(pl.lit(True).alias(_SUSPECT))
    return parsed.with_columns(
        pl.any_horizontal(b.fill_null(False) for b in broken).alias(_SUSPECT)
    )


def _staged(parsed: pl.DataFrame) -> pl.DataFrame:
    """Rows that passed every rule, as ``StagedEnrollment``. Its data rules were checked by the
    models (or the screen) on these very rows: a caller checks the frame's names and types only
    (a lazy frame), which costs nothing per row."""
    if "coverage_end" not in parsed.columns:
        parsed = parsed.with_columns(pl.lit(None, pl.Date).alias("coverage_end"))
    norm = normalized_names(parsed.get_column("member_name")).alias("member_name_norm")
    return parsed.with_columns(norm).select(STAGED_COLUMNS)


def _judge(raw: pl.DataFrame, snapshot_date: date) -> ValidatedSnapshot:
    """The models' verdict on rows as text: quarantine rows with their messages, and the rows
    that pass after all staged."""
    # Here, not at the top: pandera (the models) only where a suspect row needs it.
    from schemas.enrollment import ParsedEnrollment, RawEnrollment

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
    staged = _staged(parsed.join(bad, on="row_number", how="anti"))
    return ValidatedSnapshot(staged, quarantine, raw.height)


def validate_in_slices(
    raw: pl.DataFrame, *, snapshot_date: date, slice_rows: int = SLICE_ROWS
) -> Iterator[ValidatedSnapshot]:
    """``validate_enrollments`` over consecutive slices of a whole snapshot."""
    raw = mark_repeated_ids(raw)
    for offset in range(0, max(raw.height, 1), slice_rows):
        yield validate_enrollments(raw.slice(offset, slice_rows), snapshot_date=snapshot_date)
