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
from collections.abc import Callable, Collection
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from landing.errors import PartitionError

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030"}
READ_ERROR = "_read_error"  # set on a row the reader could not make sense of (a bad JSON line)
_BOM = b"\xef\xbb\xbf"

# A reader: (file name, its bytes, the manifest's encoding, the columns the caller uses, keep
# typed dates) → an all-string frame (but for typed date columns when asked).
Reader = Callable[[str, bytes, str, Collection[str] | None, bool], pl.DataFrame]


def file_format(name: str) -> str | None:
    """The format a file name asks for (``csv.gz``), or None when no reader takes it."""
    lower = name.lower()
    # Longest extension first: part-0001.csv.gz is csv.gz, not csv.
    for suffix in sorted(READERS, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix.lstrip(".")
    return None


def formats_in_words() -> str:
    """The accepted extensions for a message: ``.csv, .csv.gz, .parquet or .jsonl``."""
    *most, last = READERS
    return f"{', '.join(most)} or {last}"


def _decode(data: bytes, encoding: str, name: str) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if encoding == "gb18030" and not data.isascii() and _is_utf8(data):
        # GB18030 decodes almost any bytes, so UTF-8 declared as GB18030 would be read as
        # garbled names. Chinese text in GB18030 is practically never also valid UTF-8.
        raise PartitionError(
            "encoding",
            f"{name} is declared gb18030 but is UTF-8 text; check the manifest's encoding",
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PartitionError(
            "encoding",
            f"{name} is not valid {encoding} (first bad byte at offset {exc.start}); "
            "check the manifest's encoding",
        ) from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _csv_header(text: str, name: str) -> list[str]:
    try:
        first = next(csv.reader(io.StringIO(text[: 64 * 1024])), None)
    except csv.Error:
        # Lone \r line ends (the contract allows \n and \r\n) make the csv module raise.
        raise PartitionError(
            "csv_format", f"{name} is not well-formed CSV: the header row cannot be read"
        ) from None
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


def _arrow_to_strings(
    table: pa.Table, name: str, wanted: Collection[str] | None = None, keep_dates: bool = False
) -> pl.DataFrame:
    """Typed Parquet columns become the strings a CSV sender would have written, exactly.

    ``keep_dates``: date columns stay ``pl.Date`` (what their text would parse back to), so that
    a caller that wants dates does not format and parse them again.
    """
    columns: dict[str, pl.Series] = {}
    names = table.column_names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise PartitionError("duplicate_column", f"{name} has the column {dup!r} twice")
    for col_name, column in zip(names, table.columns, strict=True):
        typ = column.type
        if pa.types.is_dictionary(typ):
            # What pandas writes for categoricals: the values are what was sent.
            column = column.cast(typ.value_type)
            typ = column.type
        if wanted is not None and col_name not in wanted:
            # Extra columns are allowed and ignored (feeds.md), whatever their type: a float or
            # a list beside the contract's columns must not fail the partition.
            columns[col_name] = pl.repeat(None, table.num_rows, dtype=pl.String, eager=True)
            continue
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
            columns[col_name] = _decimal_texts(col_name, column)
        elif pa.types.is_date(typ):
            if _dates_out_of_range(column):
                # polars panics (a crash, not an error) formatting such a date.
                raise PartitionError(
                    "column_value", f"{name}: column {col_name!r} has a date outside 0001-9999"
                )
            dates = _series(col_name, column).cast(pl.Date)
            columns[col_name] = dates if keep_dates else dates.dt.to_string("%Y-%m-%d")
        elif pa.types.is_timestamp(typ):
            if typ.unit == "ns":
                # Python datetimes stop at microseconds (nanoseconds would raise), and so does the
                # warehouse: cut to microseconds, as parsing a CSV value with nanoseconds does.
                column = column.cast(pa.timestamp("us", tz=typ.tz), safe=False)
            try:
                columns[col_name] = _timestamp_texts(col_name, column)
            except (ValueError, OverflowError):
                raise PartitionError(
                    "column_value", f"{name}: column {col_name!r} has a time outside 0001-9999"
                ) from None
        else:
            raise PartitionError(
                "column_type", f"{name}: column {col_name!r} has the unsupported type {typ}"
            )
    return pl.DataFrame(columns) if columns else pl.DataFrame()


# Python's date range in days since 1970-01-01: what can be written as YYYY-MM-DD.
_FIRST_DAY = (dt.date.min - dt.date(1970, 1, 1)).days
_LAST_DAY = (dt.date.max - dt.date(1970, 1, 1)).days


def _dates_out_of_range(column: pa.ChunkedArray) -> bool:
    if pa.types.is_date32(column.type):
        days = column.cast(pa.int32())
    else:  # date64: milliseconds
        days = pc.floor(pc.divide(column.cast(pa.int64()).cast(pa.float64()), 86_400_000))
    bounds = pc.min_max(days)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return low is not None and (low < _FIRST_DAY or high > _LAST_DAY)


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


# Typed Parquet columns to text in polars, value for value the text of ``_decimal_text`` and
# ``_timestamp_text`` (a Python object per value cost ~1 s per chunk of 450,000 rows): where
# polars might write a value otherwise (a type or a range it is not proved on), the Python way.
# ``tests/test_typed_text.py`` holds the two ways equal.
_FAST_YEARS = (1900, 2200)


def _decimal_texts(name: str, column: pa.ChunkedArray) -> pl.Series:
    typ = column.type
    if not pa.types.is_decimal128(typ) or typ.scale < 0 or typ.precision > 38:
        return pl.Series(name, [_decimal_text(v) for v in column.to_pylist()], pl.String)
    text = _series(name, column).cast(pl.String)  # scale digits kept: 12.30, -0.05, 7
    if typ.scale > 2:
        # 12.3400 is exactly 12.34: two places when only zeros follow (as _decimal_text)
        text = text.str.replace(r"^(-?[0-9]+\.[0-9]{2})0+$", "${1}")
    return text


def _timestamp_texts(name: str, column: pa.ChunkedArray) -> pl.Series:
    """ISO 8601 as ``datetime.isoformat`` writes it: microseconds only when not zero, the
    offset (with its seconds when it has any, as local mean time has) only when zoned."""
    try:
        moments = _series(name, column)
    except (pa.ArrowException, pl.exceptions.PolarsError, ValueError):
        moments = None
    dtype = moments.dtype if moments is not None else None
    years = moments.dt.year() if moments is not None and isinstance(dtype, pl.Datetime) else None
    if (
        moments is None
        or not isinstance(dtype, pl.Datetime)
        or years is None
        or (years.null_count() < len(years) and not _between(years, *_FAST_YEARS))
    ):
        return pl.Series(name, [_timestamp_text(v) for v in column.to_pylist()], pl.String)
    frame = moments.to_frame("t")
    t = pl.col("t")
    micro = t.dt.microsecond()
    text = t.dt.to_string("%Y-%m-%dT%H:%M:%S") + pl.when(micro != 0).then(
        "." + micro.cast(pl.String).str.zfill(6)
    ).otherwise(pl.lit(""))
    if dtype.time_zone is not None:
        seconds = (
            (
                t.dt.replace_time_zone(None)
                - t.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            )
            .dt.total_seconds()
            .cast(pl.Int64)
        )
        size = seconds.abs()
        hh_mm = pl.format(
            "{}{}:{}",
            pl.when(seconds < 0).then(pl.lit("-")).otherwise(pl.lit("+")),
            (size // 3600).cast(pl.String).str.zfill(2),
            (size % 3600 // 60).cast(pl.String).str.zfill(2),
        )
        ss = pl.when(size % 60 != 0).then(":" + (size % 60).cast(pl.String).str.zfill(2))
        text = text + hh_mm + ss.otherwise(pl.lit(""))
    return frame.select(text.alias(name)).to_series()


def _between(values: pl.Series, low: int, high: int) -> bool:
    least, most = values.min(), values.max()
    return isinstance(least, int) and isinstance(most, int) and low <= least and most <= high


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


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def read_jsonl_text(text: str) -> pl.DataFrame:
    """One JSON object per non-blank line; any other line becomes a row with a read error."""
    records: list[dict[str, str | None]] = []
    # Lines end at \n (or \r\n) only: str.splitlines would also split inside values at
    # U+2028, U+0085 and other separators.
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        error = "the line is not a JSON object"
        try:
            # Numbers stay the text that was sent (12.30, 1e5): never floats, never re-rendered.
            obj = json.loads(
                line,
                parse_float=str,
                parse_int=str,
                parse_constant=str,
                object_pairs_hook=_unique_pairs,
            )
        except _DuplicateKey:
            obj, error = None, "the object has a key twice"
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            records.append({READ_ERROR: error, "_line": line[:4096]})
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


def _unreadable_parquet(name: str, data: bytes) -> str:
    """Why a Parquet file cannot be read, as far as its footer tells (a repeated column name)."""
    try:
        names = pq.read_schema(io.BytesIO(data)).names
    except (pa.ArrowException, OSError, ValueError):
        return f"{name} is not a readable Parquet file"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f"{name} is not a readable Parquet file: the column {repeated[0]!r} appears twice"
    return f"{name} is not a readable Parquet file"


def _read_csv(
    name: str, data: bytes, encoding: str, columns: Collection[str] | None, keep_dates: bool
) -> pl.DataFrame:
    return read_csv_text(_decode(data, encoding, name), name)


def _read_csv_gz(
    name: str, data: bytes, encoding: str, columns: Collection[str] | None, keep_dates: bool
) -> pl.DataFrame:
    try:
        data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        raise PartitionError("gzip", f"{name} is not a complete gzip file") from None
    return _read_csv(name, data, encoding, columns, keep_dates)


def _plain_types(data: bytes, columns: Collection[str] | None) -> list[str] | None:
    """The wanted columns when each is a string, an integer or a date32 and none is repeated (what
    polars reads directly, without the conversions of ``_arrow_to_strings``); else None."""
    if columns is None:
        return None
    try:
        schema = pq.read_schema(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError):
        return None
    names = schema.names
    if len(set(names)) != len(names) or any(c not in names for c in columns):
        return None
    for c in columns:
        typ = schema.field(c).type
        if not (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_integer(typ)
            or pa.types.is_date32(typ)
        ):
            return None
    return list(columns)


def _read_parquet_plain(data: bytes, columns: list[str], name: str) -> pl.DataFrame:
    frame = pl.read_parquet(io.BytesIO(data), columns=columns)
    out = []
    for c in columns:
        series = frame.get_column(c)
        if series.dtype == pl.Date:
            low, high = series.to_physical().min(), series.to_physical().max()
            if (
                isinstance(low, int)
                and isinstance(high, int)
                and (low < _FIRST_DAY or high > _LAST_DAY)
            ):
                raise PartitionError(
                    "column_value", f"{name}: column {c!r} has a date outside 0001-9999"
                )
            out.append(series)
        else:
            out.append(series.cast(pl.String))
    return pl.DataFrame(out)


def _read_parquet(
    name: str, data: bytes, encoding: str, columns: Collection[str] | None, keep_dates: bool
) -> pl.DataFrame:
    plain = _plain_types(data, columns) if keep_dates else None
    try:
        if plain is not None:
            # The common typed snapshot: read straight into polars, dates kept typed.
            return _read_parquet_plain(data, plain, name)
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError, pl.exceptions.PolarsError):
        raise PartitionError("parquet", _unreadable_parquet(name, data)) from None
    return _arrow_to_strings(table, name, columns, keep_dates)


def _read_jsonl(
    name: str, data: bytes, encoding: str, columns: Collection[str] | None, keep_dates: bool
) -> pl.DataFrame:
    return read_jsonl_text(_decode(data, encoding, name))


# The feed formats (feeds.md, *Partitions and manifests*): extension → reader. The one list of
# them: the delivery check, the generator (synth) and the tests derive from it, so a new format
# is one reader here.
READERS: dict[str, Reader] = {
    ".csv": _read_csv,
    ".csv.gz": _read_csv_gz,
    ".parquet": _read_parquet,
    ".jsonl": _read_jsonl,
}
FORMATS = tuple(suffix.lstrip(".") for suffix in READERS)


def read_bytes(
    name: str,
    data: bytes,
    encoding: str,
    columns: Collection[str] | None = None,
    *,
    keep_dates: bool = False,
) -> pl.DataFrame:
    """Parse one data file's bytes (already checked against its sha256), all columns as strings.

    ``columns`` are the ones the caller uses; Parquet columns beyond them are not converted.
    ``keep_dates``: typed Parquet date columns stay ``pl.Date`` instead of becoming text.
    """
    fmt = file_format(name)
    if fmt is None:
        raise PartitionError("file_type", f"{name}: unsupported file type")
    return READERS["." + fmt](name, data, encoding, columns, keep_dates)
