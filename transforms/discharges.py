"""Validate one delivery's raw discharge rows: staged rows for the warehouse, the rest quarantined.

Pure: a raw frame (from ``landing``) and the registry's hospital codes in; two frames and counts
out. No I/O, no warehouse, no Prefect.

Every row is screened first by one polars pass (``_screen``): every rule of ``RawDischarge`` and
``ParsedDischarge`` as one boolean per row, ``_suspect``, erring towards suspicion (a row is
also suspect when the frame's shape is not the usual one, e.g. a column missing or a
``row_number`` repeated, so that the models' frame-wide checks see the whole frame). Rows the
screen passes are staged from its own typed columns without calling pandera; only the suspects
(a night usually has a few, a clean chunk none) go through the models, as text, exactly as every
row did before (``_judge``), so the models stay the one statement of the rules and the
quarantine's rules, messages and raw JSON do not change. ``screen=False`` judges every row by the
models: the reference ``tests/test_discharge_screen.py`` holds the screen to.

Typed Parquet dates may arrive as ``pl.Date`` (``landing.readers``, ``keep_dates``): the screen
uses them as they are; the raw JSON and the models get the text the reader would have made of
them (``YYYY-MM-DD``), so a row's raw JSON shows its values as received either way. (The
pipeline reads discharges as text all the same: measured on a backfill chunk, keeping dates
typed saved nothing, and every staged row carries its raw JSON, as text, anyway.)

The staged frame is guarded against our own bugs cheaply (``_check_staged``): names and types
against ``StagedDischarge`` and one pass counting nulls, not a pandera pass over every row.
Pandera and the models are imported only when there are suspects to judge: a night without
one validates without them (the columns, patterns and the staged schema come from
``schemas.discharge_columns``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import polars as pl

from landing.readers import READ_ERROR
from schemas.discharge_columns import (
    COLUMNS,
    DATES,
    EARLIEST_ADMISSION,
    MONEY,
    MUST_BE_PRESENT,
    SETTLEMENT_ID_RE,
    STAGED_COLUMNS,
    STAGED_SCHEMA,
    VERSION_RE,
    parse_timestamp,
)
from schemas.notation import CONTROL_RE, DIAGNOSIS_RE, parse_date
from schemas.quarantine import (
    QUARANTINE_SCHEMA,
    combine,
    empty_quarantine,
    failures_to_quarantine,
)
from transforms.diagnosis import is_known, is_well_formed
from transforms.identity import with_id_columns
from transforms.money import is_plain_amount, plain_to_fen, to_fen
from transforms.names import normalized_name

if TYPE_CHECKING:
    import pandera.polars as pa

# Derived columns reported under the contract column they come from.
_REPORTED_AS = {"is_known_hospital": "hospital_code", **{f"{m}_fen": m for m in MONEY}}


@dataclass
class ValidatedRows:
    """The outcome of validating one delivery's rows."""

    staged: pl.DataFrame  # StagedDischarge
    quarantine: pl.DataFrame  # QuarantineRow
    rows_read: int
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.get_column("row_number").n_unique()


def raw_json(raw: pl.DataFrame) -> pl.Expr:
    """The row's values as received, as a JSON object (what the quarantine shows). A typed date
    column shows the text the reader would have made of it (``landing.readers``)."""
    present = [
        pl.col(c).dt.to_string("%Y-%m-%d") if raw.schema[c] == pl.Date else pl.col(c)
        for c in COLUMNS
        if c in raw.columns
    ]
    return (
        pl.when(pl.col(READ_ERROR).is_not_null())
        .then(pl.struct(pl.col("_line").alias("line")).struct.json_encode())
        .otherwise(pl.struct(present).struct.json_encode())
        .alias("raw")
    )


def _as_text(raw: pl.DataFrame) -> pl.DataFrame:
    """Typed date columns back to the text the reader would have made of them."""
    return raw.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%d") for c in DATES if raw.schema.get(c) == pl.Date
    )


def _trimmed(raw: pl.DataFrame) -> pl.DataFrame:
    """Surrounding white space trimmed; an empty value is a missing one."""
    return raw.with_columns(
        pl.col(c).str.strip_chars().replace("", None)
        for c in COLUMNS
        if c in raw.columns and raw.schema[c] == pl.String
    )


def _parsed(trimmed: pl.DataFrame, hospital_codes: pl.Series) -> pl.DataFrame:
    plain = [
        m
        for m, usual in trimmed.select(
            (is_plain_amount(pl.col(m)) | pl.col(m).is_null()).all() for m in MONEY
        )
        .row(0, named=True)
        .items()
        if usual
    ]
    return trimmed.with_columns(
        pl.col(_FEED_DATE).alias("feed_date"),
        pl.col("hospital_code")
        .is_in(hospital_codes.implode())
        .fill_null(True)
        .alias("is_known_hospital"),
        pl.col("version").cast(pl.Int64, strict=False),
        *(parse_date(pl.col(c)).alias(c) for c in DATES if trimmed.schema.get(c) != pl.Date),
        # A column of usual amounts only (the common case) takes the cheap way to the same fen.
        *((plain_to_fen if m in plain else to_fen)(pl.col(m)).alias(f"{m}_fen") for m in MONEY),
        parse_timestamp(pl.col("settled_at")).alias("settled_at"),
    )


def _validate(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    from pandera.errors import SchemaErrors

    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        return failures_to_quarantine(errors, frame, column_names=_REPORTED_AS)
    return failures_to_quarantine(None, frame)


@dataclass(frozen=True)
class RawRows:
    """One delivery's raw rows (``landing.delivery``) and the partition they came in."""

    frame: pl.DataFrame
    feed_date: date
    source: str


# Scratch columns of a batch: which delivery a row came from, and its own row number. Inside a
# batch ``row_number`` is made unique across deliveries (delivery × 2³² + row number), so that
# the models' grain (one row per row_number) and the quarantine's row mapping hold unchanged.
_PART, _ROW, _FEED_DATE, _SOURCE = "__part", "__row", "__feed_date", "__source"
_POS = "__pos"  # the row's place in the batch: staged rows keep the order they came in
_PART_SPAN = 1 << 32


def validate_discharges(
    raw: pl.DataFrame,
    *,
    feed_date: date,
    source: str,
    hospital_codes: pl.Series,
    screen: bool = True,
) -> ValidatedRows:
    """Check every row against feeds.md; a row gets every rule it breaks."""
    return validate_discharge_batch(
        [RawRows(raw, feed_date, source)], hospital_codes, screen=screen
    )[0]


def validate_discharge_batch(
    deliveries: Sequence[RawRows], hospital_codes: pl.Series, *, screen: bool = True
) -> list[ValidatedRows]:
    """Validate several deliveries at once, each exactly as ``validate_discharges`` would.

    Deliveries with the same columns and types are checked as one frame: one screen, and one
    call of each Pandera model for the suspects of all of them instead of one per delivery (a
    call costs ~0.1 s whatever its size), then the good and quarantined rows are split back per
    delivery. A rule looks at one row at a time, and the partition's feed date travels with each
    row, so a row's outcome does not depend on the rows beside it.

    ``screen=False`` sends every row through the models (the reference the screen is tested
    against); the outcome is the same.
    """
    results: list[ValidatedRows | None] = [None] * len(deliveries)
    formats: dict[tuple[tuple[str, pl.DataType], ...], list[int]] = {}
    for i, d in enumerate(deliveries):
        formats.setdefault(tuple(d.frame.schema.items()), []).append(i)
    for members in formats.values():
        group = [deliveries[i] for i in members]
        outcomes = _validate_group(group, hospital_codes, screen=screen)
        for i, rows in zip(members, outcomes, strict=True):
            results[i] = rows
    return [r for r in results if r is not None]


def _tagged(deliveries: Sequence[RawRows]) -> pl.DataFrame:
    frames = [
        d.frame.with_columns(
            pl.lit(k, pl.Int64).alias(_PART),
            pl.col("row_number").alias(_ROW),
            pl.lit(d.feed_date, pl.Date).alias(_FEED_DATE),
            pl.lit(d.source, pl.String).alias(_SOURCE),
        )
        for k, d in enumerate(deliveries)
    ]
    raw = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    return raw.with_columns(
        (pl.col(_PART) * _PART_SPAN + pl.col(_ROW)).alias("row_number")
    ).with_row_index(_POS)


def _validate_group(
    deliveries: Sequence[RawRows], hospital_codes: pl.Series, *, screen: bool
) -> list[ValidatedRows]:
    raw = _tagged(deliveries)
    raw = raw.with_columns(raw_json(raw))
    if screen:
        screened = _screen(raw, hospital_codes)
        suspect = screened.get_column(_SUSPECT)
        clean = screened.filter(~suspect)
        suspects = raw.filter(suspect)
        del screened, suspect
    else:
        clean, suspects = raw.clear(), raw
    good, quarantine = _judge(_as_text(suspects), hospital_codes)
    if not clean.height:
        staged = _staged(good)
    elif not good.height:
        staged = _staged(clean)
    else:
        staged = pl.concat([_staged(clean), _staged(good)]).sort(_POS)
    _check_staged(staged)
    staged = staged.drop(_POS)
    quarantine = quarantine.with_columns(
        (pl.col("row_number") // _PART_SPAN).alias(_PART),
        (pl.col("row_number") % _PART_SPAN).alias("row_number"),
    )
    by_part_staged = staged.partition_by(_PART, as_dict=True, include_key=False)
    by_part_quarantine = quarantine.partition_by(_PART, as_dict=True, include_key=False)
    rows_read = dict(raw.group_by(_PART).len().iter_rows())
    out = []
    for k in range(len(deliveries)):
        part_staged = by_part_staged.get((k,), staged.clear().drop(_PART))
        part_quarantine = by_part_quarantine.get((k,), quarantine.clear().drop(_PART))
        out.append(
            ValidatedRows(
                part_staged,
                part_quarantine.select(list(QUARANTINE_SCHEMA)),
                rows_read=rows_read.get(k, 0),
                warnings=_warnings(part_staged),
            )
        )
    return out


def _judge(raw: pl.DataFrame, hospital_codes: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The models' verdict on rows as text (with their ``raw`` JSON): the rows that pass,
    parsed, and the quarantine rows with their messages. No rows, no call of the models."""
    if not raw.height:
        return _parsed(_trimmed(raw), hospital_codes), empty_quarantine()
    # The models (and pandera with them) only for suspects: a clean night never imports them.
    from schemas.discharge import ParsedDischarge, RawDischarge

    unreadable = raw.filter(pl.col(READ_ERROR).is_not_null())
    readable = raw.filter(pl.col(READ_ERROR).is_null())
    line_failures = unreadable.select(
        "row_number", rule=pl.lit("invalid_value"), message=pl.col(READ_ERROR)
    )
    trimmed = _trimmed(readable)
    raw_failures = _validate(RawDischarge, trimmed)
    parsed = _parsed(trimmed, hospital_codes)
    parsed_failures = _validate(ParsedDischarge, parsed)

    quarantine = combine([line_failures, raw_failures, parsed_failures], raw)
    bad = quarantine.get_column("row_number").unique().implode()
    return parsed.filter(~pl.col("row_number").is_in(bad)), quarantine


_SUSPECT = "__suspect"
_GIVEN = "__given_"  # a value's trimmed text, kept beside its parsed value
# Typed dates outside these years go the models' way, as text (a text year has four digits).
_PLAIN_DATES = (date(1000, 1, 1), date(9999, 12, 31))


def _screen(raw: pl.DataFrame, hospital_codes: pl.Series) -> pl.DataFrame:
    """The rows trimmed and parsed as the models parse them, with ``__suspect``: the row may
    break a rule of ``RawDischarge`` or ``ParsedDischarge``. Never false for a row the models
    would quarantine (``tests/test_discharge_screen.py`` holds it to that); true for a few they
    pass is harmless (they are judged by the models).

    Each rule below is the negation of a model's check, with the check's reading of a null (a
    check passes a null value; ``missing_value`` and ``invalid_diagnosis`` are the ones that do
    not). The frame-wide conditions the models check (every column present with its type,
    ``row_number`` unique) make every row suspect when they do not hold.
    """
    present = [c for c in COLUMNS if c in raw.columns]
    text = [c for c in present if raw.schema[c] == pl.String]
    typed_dates = [c for c in DATES if c in present and raw.schema[c] == pl.Date]
    rows = raw.get_column("row_number")
    shapeless = (
        len(present) != len(COLUMNS)  # the models want every column, national_id too
        or len(text) + len(typed_dates) != len(present)
        or rows.null_count() > 0
        or rows.n_unique() != raw.height
    )
    if shapeless:
        return raw.with_columns(pl.lit(True).alias(_SUSPECT))
    trimmed = _trimmed(raw)
    given = [*(d for d in DATES if d in text), "settled_at", "version"]
    parsed = _parsed(
        trimmed.with_columns(pl.col(g).alias(_GIVEN + g) for g in given), hospital_codes
    )
    c = pl.col
    parts = c("fund_paid_fen") + c("self_pay_in_scope_fen") + c("self_pay_out_of_scope_fen")
    broken = [
        c(READ_ERROR).is_not_null(),
        # RawDischarge (read on the parsed values: one that did not parse is suspect too)
        *(c(name).is_null() for name in MUST_BE_PRESENT),
        ~c("settlement_id").str.contains(SETTLEMENT_ID_RE),
        ~c(_GIVEN + "version").str.contains(VERSION_RE),
        c(_GIVEN + "version").is_not_null() & c("version").is_null(),  # staged needs an Int64
        ~c("record_type").is_in(["N", "C", "V"]),
        ~c("gender").is_in(["M", "F"]),
        *(c(_GIVEN + d).is_not_null() & c(d).is_null() for d in DATES if d in text),
        *(~c(d).is_between(*_PLAIN_DATES) for d in typed_dates),
        c("patient_name").str.len_chars() > 50,
        c("patient_name").str.contains(CONTROL_RE),
        c(_GIVEN + "settled_at").is_not_null() & c("settled_at").is_null(),
        # money: decimal notation, at most 2 places, not too large (else no fen), not negative
        *(c(m).is_not_null() & (c(f"{m}_fen").is_null() | (c(f"{m}_fen") < 0)) for m in MONEY),
        ~c("primary_diagnosis").str.contains(DIAGNOSIS_RE).fill_null(False),
        # ParsedDischarge
        c("total_cost_fen") != parts,
        c("admission_date") < pl.lit(EARLIEST_ADMISSION),
        c("discharge_date") < c("admission_date"),
        c("discharge_date") > c("feed_date"),
        ~c("is_known_hospital"),
    ]
    return parsed.with_columns(
        pl.any_horizontal(b.fill_null(False) for b in broken).alias(_SUSPECT)
    )


def _warnings(staged: pl.DataFrame) -> dict[str, int]:
    return {
        "unknown_diagnosis": int((~staged.get_column("is_known_diagnosis")).sum()),
        # Not quarantine reasons (matching falls back to name, birth date and gender), but a
        # sender whose numbers go bad should show up in the report.
        "missing_national_id": int((staged.get_column("national_id") == "").sum()),
        "invalid_national_id": int(
            (~staged.get_column("is_valid_id") & (staged.get_column("national_id") != "")).sum()
        ),
    }


def _staged(good: pl.DataFrame) -> pl.DataFrame:
    """The accepted rows as StagedDischarge, with their delivery's tag and position."""
    if "national_id" not in good.columns:
        good = good.with_columns(pl.lit(None, pl.String).alias("national_id"))
    # One pass for the four identity columns: as separate expressions polars would repeat the
    # shared normalisation for each (3.5x the work).
    return (
        with_id_columns(good, "national_id", pl.col("feed_date"))
        .with_columns(
            normalized_name(pl.col("patient_name")).alias("patient_name_norm"),
            is_known(pl.col("primary_diagnosis")).alias("is_known_diagnosis"),
            pl.col(_SOURCE).alias("source"),
            pl.col(_ROW).alias("row_number"),  # the delivery's own row number again
        )
        .select(*STAGED_COLUMNS, _PART, _POS)
    )


def _check_staged(staged: pl.DataFrame) -> None:
    """A staged row breaking its contract is our bug: fail loudly rather than store it.

    The rules of ``StagedDischarge`` were checked on these very rows, by the screen or by the
    models, so the guard is cheap and needs no pandera call: the frame's names, order and types
    must be the model's (``STAGED_SCHEMA``), and one polars pass over the validity masks finds
    any null, which no staged column may hold (a value that did not parse but was staged would
    show as one). The rows' values are not checked again one by one.
    """
    frame = staged.select(STAGED_COLUMNS)
    if frame.schema != STAGED_SCHEMA:
        found = {n: str(t) for n, t in frame.schema.items() if STAGED_SCHEMA.get(n) != t}
        raise RuntimeError(f"staged discharge rows have the wrong types: {found}")
    nulls = [name for name, n in frame.null_count().row(0, named=True).items() if n]
    if nulls:
        raise RuntimeError(f"staged discharge rows hold nulls in {', '.join(nulls)}")


__all__ = [
    "RawRows",
    "ValidatedRows",
    "is_well_formed",
    "validate_discharge_batch",
    "validate_discharges",
]
