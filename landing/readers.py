"""Read one data file into an all-string frame: the raw values exactly as the sender wrote them.

Typing happens later, in ``transforms``, so that a bad value becomes a quarantine row with its raw
text instead of a reader crash. Library error texts can quote file content (names, identity
numbers), so they are never passed on: each failure gets our own message.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import zlib
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from landing.errors import PartitionError

SUPPORTED_SUFFIXES = (".csv.gz", ".csv", ".parquet", ".jsonl")
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030"}
READ_ERROR = "_read_error"  # set on a row the reader could not make sense of (a bad JSON line)
_BOM = b"\xef\xbb\xbf"


def file_format(name: str) -> str | None:
    """The reader a file name asks for, or None when the extension is not one we accept."""
    lower = name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if lower.endswith(suffix):
            return suffix.lstrip(".")
    return None


def _decode(data: bytes, encoding: str, name: str) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PartitionError(
            "encoding",
            f"{name} is not valid {encoding} (first bad byte at offset {exc.start}); "
            "check the manifest's encoding",
        ) from None


def _csv_header(text: str, name: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text[: 64 * 1024])), None)
    if not first or all(not c.strip() for c in first):
        raise PartitionError("empty_file", f"{name} has no header row")
    header = [c.strip() for c in first]
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise PartitionError("duplicate_column", f"{name} has the column {col!r} twice")
        seen.add(col)
    return header


def read_csv_text(text: str, name: str) -> pl.DataFrame:
    """Parse decoded CSV text; every column a string, empty fields null."""
    header = _csv_header(text, name)
    if "\x00" in text:
        # The CSV parser would stop at a NUL; the value is kept and later rejected as invalid.
        text = text.replace("\x00", "\ufffd")
    try:
        frame = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            has_header=True,
            new_columns=header,
            infer_schema=False,
            quote_char='"',
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        detail = str(exc)
        if "more fields" in detail:
            reason = "a line has more fields than the header"
        else:
            reason = "unbalanced quote or a field that cannot be read"
        raise PartitionError("csv_format", f"{name} is not well-formed CSV: {reason}") from None
    return frame


def _arrow_to_strings(table: pa.Table, name: str) -> pl.DataFrame:
    """Typed Parquet columns become the strings a CSV sender would have written, exactly."""
    columns: dict[str, pl.Series] = {}
    names = table.column_names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise PartitionError("duplicate_column", f"{name} has the column {dup!r} twice")
    for col_name, column in zip(names, table.columns, strict=True):
        typ = column.type
        if pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            # Money must never pass through a float; a float column is the sender's bug.
            raise PartitionError(
                "column_type",
                f"{name}: column {col_name!r} has type {typ}; expected string, integer, "
                "decimal, date or timestamp",
            )
        if (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_string_view(typ)
            or pa.types.is_null(typ)
        ) or pa.types.is_integer(typ):
            columns[col_name] = _series(col_name, column).cast(pl.String)
        elif pa.types.is_decimal(typ):
            columns[col_name] = pl.Series(
                col_name, [_decimal_text(v) for v in column.to_pylist()], pl.String
            )
        elif pa.types.is_date(typ):
            columns[col_name] = _series(col_name, column).cast(pl.Date).dt.to_string("%Y-%m-%d")
        elif pa.types.is_timestamp(typ):
            columns[col_name] = pl.Series(
                col_name, [_timestamp_text(v) for v in column.to_pylist()], pl.String
            )
        else:
            raise PartitionError(
                "column_type", f"{name}: column {col_name!r} has the unsupported type {typ}"
            )
    return pl.DataFrame(columns) if columns else pl.DataFrame()


def _series(name: str, column: pa.ChunkedArray) -> pl.Series:
    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.alias(name)


def _decimal_text(value: Decimal | None) -> str | None:
    """A decimal(…, 4) of 12.3400 is exactly 12.34: written with 2 places when nothing is lost."""
    if value is None:
        return None
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and value == value.quantize(Decimal("0.01")):
        value = value.quantize(Decimal("0.01"))
    return format(value, "f")


def _timestamp_text(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _json_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    # Nested values are kept as their JSON text so the quarantine shows what was sent.
    return json.dumps(value, ensure_ascii=False, default=str)


def read_jsonl_text(text: str) -> pl.DataFrame:
    """One JSON object per non-blank line; any other line becomes a row with a read error."""
    records: list[dict[str, str | None]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            # parse_float=Decimal keeps 12.30 as 12.30: JSON numbers never become floats.
            obj = json.loads(line, parse_float=Decimal)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            records.append({READ_ERROR: "the line is not a JSON object", "_line": line[:4096]})
            continue
        records.append({str(k): _json_value(v) for k, v in obj.items()})
    if not records:
        return pl.DataFrame()
    keys: dict[str, None] = {}
    for rec in records:
        keys.update(dict.fromkeys(rec))
    return pl.DataFrame(
        {k: pl.Series(k, [rec.get(k) for rec in records], dtype=pl.String) for k in keys}
    )


def read_bytes(name: str, data: bytes, encoding: str) -> pl.DataFrame:
    """Parse one data file's bytes (already checked against its sha256), all columns as strings."""
    fmt = file_format(name)
    if fmt == "parquet":
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError, ValueError):
            raise PartitionError("parquet", f"{name} is not a readable Parquet file") from None
        return _arrow_to_strings(table, name)
    if fmt == "csv.gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise PartitionError("gzip", f"{name} is not a complete gzip file") from None
    text = _decode(data, encoding, name)
    if fmt == "jsonl":
        return read_jsonl_text(text)
    if fmt in ("csv", "csv.gz"):
        return read_csv_text(text, name)
    raise PartitionError("file_type", f"{name}: unsupported file type")
