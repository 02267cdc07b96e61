"""Landing files: the registry, snapshots and partitions in every format, manifests last."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from datetime import date
from decimal import MAX_PREC, Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from landing import readers
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema
from synth.contract import DECIMAL_LITERAL, ENCODINGS, FORMATS, MANIFEST_NAME, REGISTRY_COLUMNS

_MONEY_COLUMNS = discharge_schema.MONEY
_TYPED_DATES = {"discharges": discharge_schema.DATES, "enrollments": enrollment_schema.DATES}
_EXTENSIONS = tuple(readers.READERS)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a dot-name (ignored by the pipeline), then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _as_strings(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, dates in ISO form."""
    return frame.select([pl.col(c).cast(pl.String) for c in frame.columns])


def _text_bytes(frame: pl.DataFrame, fmt: str, *, encoding: str, bom: bool, crlf: bool) -> bytes:
    """CSV or JSONL text of a frame, encoded as a sender would."""
    buffer = io.BytesIO()
    strings = _as_strings(frame)
    if fmt in ("csv", "csv.gz"):
        strings.write_csv(
            buffer, line_terminator="\r\n" if crlf else "\n", null_value="", quote_style="necessary"
        )
        data = buffer.getvalue()
    else:
        strings.write_ndjson(buffer)
        data = buffer.getvalue()
        if crlf:
            data = data.replace(b"\n", b"\r\n")
    if encoding == "gb18030":
        data = data.decode("utf-8").encode("gb18030")
    if bom:
        data = b"\xef\xbb\xbf" + data
    return data


def _typed_table(frame: pl.DataFrame, kind: str) -> pa.Table:
    """Parquet with real types: version int64, dates date32, money decimal(12,2), timestamps."""
    strings = _as_strings(frame)
    exprs = []
    for column in strings.columns:
        col = pl.col(column)
        if column in _TYPED_DATES[kind]:
            exprs.append(col.str.to_date("%Y-%m-%d", strict=True))
        elif kind == "discharges" and column == "version":
            exprs.append(col.str.strip_chars().cast(pl.Int64, strict=True))
        elif kind == "discharges" and column in _MONEY_COLUMNS:
            exprs.append(col.cast(pl.Decimal(12, 2), strict=True))
        elif kind == "discharges" and column == "settled_at":
            exprs.append(
                col.str.to_datetime(
                    "%Y-%m-%dT%H:%M:%S%z", strict=True, time_unit="us"
                ).dt.convert_time_zone("Asia/Shanghai")
            )
        else:
            exprs.append(col)
    money_ok = [
        (strings[c].is_null() | strings[c].str.contains(r"^-?[0-9]+(\.[0-9]{1,2})?$")).all()
        for c in _MONEY_COLUMNS
        if kind == "discharges" and c in strings.columns
    ]
    if not all(money_ok):
        raise ValueError("typed parquet needs amounts with at most 2 decimals; use typed=False")
    try:
        typed = strings.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"typed parquet needs rows that parse: {type(exc).__name__}") from exc
    table = typed.to_arrow(compat_level=pl.CompatLevel.oldest())
    schema = pa.schema(
        [
            pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
            for f in table.schema
        ]
    )
    return table.cast(schema)


def _file_bytes(
    frame: pl.DataFrame,
    fmt: str,
    *,
    kind: str,
    encoding: str,
    bom: bool,
    crlf: bool,
    typed: bool,
) -> bytes:
    """The bytes of one data file in the given format."""
    if fmt == "parquet":
        if bom or crlf:
            raise ValueError("bom and crlf apply to CSV and JSONL only")
        if typed:
            table = _typed_table(frame, kind)
        else:
            strings = _as_strings(frame).to_arrow(compat_level=pl.CompatLevel.oldest())
            table = strings.cast(pa.schema([pa.field(c, pa.string()) for c in frame.columns]))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()
    if typed:
        raise ValueError("typed=True applies to parquet only")
    data = _text_bytes(frame, fmt, encoding=encoding, bom=bom, crlf=crlf)
    # mtime=0 keeps the gzip header, hence the bytes and the manifest, reproducible.
    return gzip.compress(data, mtime=0) if fmt == "csv.gz" else data


def _check_options(fmt: str, encoding: str, files: int, bom: bool) -> None:
    """Reject options the contract does not know."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if bom and encoding != "utf-8":
        raise ValueError("a BOM is only written for utf-8")
    if files < 1:
        raise ValueError("files must be at least 1")


def _deliver(
    directory: Path,
    frame: pl.DataFrame,
    *,
    kind: str,
    fmt: str,
    encoding: str,
    files: int,
    bom: bool,
    crlf: bool,
    typed: bool,
    manifest: bool,
) -> Path:
    """(Re)deliver a partition: withdraw the manifest, replace the data files, manifest last."""
    _check_options(fmt, encoding, files, bom)
    directory.mkdir(parents=True, exist_ok=True)
    # Withdrawing the manifest first turns the folder back into a delivery in progress, so a
    # pipeline running meanwhile never sees new files under an old manifest.
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    for old in directory.iterdir():
        if old.is_file() and old.name.startswith("part-"):
            old.unlink()
    size, extra = divmod(frame.height, files)
    offset = 0
    for number in range(1, files + 1):
        length = size + (1 if number <= extra else 0)
        data = _file_bytes(
            frame.slice(offset, length),
            fmt,
            kind=kind,
            encoding=encoding,
            bom=bom,
            crlf=crlf,
            typed=typed,
        )
        _write_atomic(directory / f"part-{number:04d}.{fmt}", data)
        offset += length
    if manifest:
        write_manifest(directory, encoding=encoding)
    return directory


def write_registry(landing: Path, hospitals: pl.DataFrame) -> Path:
    """Write ``<landing>/reference/hospitals.csv`` (UTF-8, header, ISO dates)."""
    path = Path(landing) / "reference" / "hospitals.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, registry_csv_bytes(hospitals))
    return path


def registry_csv_bytes(hospitals: pl.DataFrame) -> bytes:
    """The registry as CSV bytes, columns in contract order."""
    return _text_bytes(
        hospitals.select(REGISTRY_COLUMNS), "csv", encoding="utf-8", bom=False, crlf=False
    )


def write_snapshot(
    landing: Path,
    snapshot_date: date,
    enrollments: pl.DataFrame,
    *,
    fmt: str = "csv",
    files: int = 1,
    encoding: str = "utf-8",
    bom: bool = False,
    crlf: bool = False,
    typed: bool = False,
    manifest: bool = True,
) -> Path:
    """Write an enrolment snapshot folder ``enrollments/snapshot_date=D/`` and its manifest."""
    directory = Path(landing) / "enrollments" / f"snapshot_date={snapshot_date.isoformat()}"
    return _deliver(
        directory,
        enrollments,
        kind="enrollments",
        fmt=fmt,
        encoding=encoding,
        files=files,
        bom=bom,
        crlf=crlf,
        typed=typed,
        manifest=manifest,
    )


def write_partition(
    landing: Path,
    feed_date: date,
    source: str,
    rows: pl.DataFrame,
    *,
    fmt: str = "csv",
    encoding: str = "utf-8",
    files: int = 1,
    bom: bool = False,
    crlf: bool = False,
    manifest: bool = True,
    typed: bool = False,
) -> Path:
    """Write a discharge partition ``discharges/feed_date=D/source=S/``; the manifest last."""
    # Only a path-safe name is accepted; names the contract rejects (lower case, too long) are
    # allowed on purpose, so that tests can deliver them.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", source):
        raise ValueError(f"source must be a plain folder name, got {source!r}")
    directory = (
        Path(landing) / "discharges" / f"feed_date={feed_date.isoformat()}" / f"source={source}"
    )
    return _deliver(
        directory,
        rows,
        kind="discharges",
        fmt=fmt,
        encoding=encoding,
        files=files,
        bom=bom,
        crlf=crlf,
        typed=typed,
        manifest=manifest,
    )


def _data_files(directory: Path) -> list[Path]:
    """The partition's data files, in name order, as the manifest lists them."""
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue
        # A file of another format is left out, so a test can leave an unlisted file behind.
        if path.name.endswith(_EXTENSIONS):
            found.append(path)
    return found


def _decode(data: bytes, encoding: str) -> str:
    """Text of a CSV/JSONL file; a wrong declared encoding falls back to a guess."""
    try:
        return data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("gb18030")


def _read_file(path: Path, encoding: str) -> tuple[int, pl.Series | None]:
    """Rows of a data file and its ``total_cost`` values as text (None without that column)."""
    if path.name.endswith(".parquet"):
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        if "total_cost" not in parquet.schema_arrow.names:
            return rows, None
        column = pl.read_parquet(path, columns=["total_cost"])["total_cost"]
        return rows, column.cast(pl.String)
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = _decode(data, encoding)
    if not text.strip():
        return 0, None
    utf8 = io.BytesIO(text.encode("utf-8"))
    if path.name.endswith(".jsonl"):
        frame = pl.read_ndjson(utf8, infer_schema_length=None)
    else:
        frame = pl.read_csv(utf8, infer_schema=False)
    if "total_cost" not in frame.columns:
        return frame.height, None
    return frame.height, frame["total_cost"].cast(pl.String)


def decimal_sum(values: Sequence[str | None] | pl.Series) -> str:
    """Exact sum of the values that are decimal literals, as text with at least 2 decimals."""
    with localcontext() as ctx:
        # Unbounded precision and a trap on rounding: the sum is exact or this raises.
        ctx.prec = MAX_PREC
        ctx.traps[Inexact] = True
        total = Decimal("0.00")
        for value in values:
            if value is not None and DECIMAL_LITERAL.fullmatch(value):
                total += Decimal(value)
        return f"{total:f}"


def write_manifest(partition_dir: Path, **overrides: Any) -> Path:
    """(Re)compute a partition's manifest from the data files present, in name order.

    ``overrides`` replace computed fields (to make a lying manifest); an override of ``None``
    removes the field. ``encoding`` is also used to read CSV and JSONL files; without it the
    previous manifest's encoding is kept (default ``utf-8``). Files of other formats are not
    listed.
    """
    directory = Path(partition_dir)
    path = directory / MANIFEST_NAME
    previous: dict[str, Any] = {}
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
    encoding = overrides.get("encoding") or previous.get("encoding") or "utf-8"

    entries = []
    row_count = 0
    cost_values: list[str | None] = []
    for data_file in _data_files(directory):
        rows, costs = _read_file(data_file, encoding)
        entries.append(
            {
                "name": data_file.name,
                "rows": rows,
                "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
            }
        )
        row_count += rows
        if costs is not None:
            cost_values.extend(costs.to_list())

    manifest: dict[str, Any]
    if directory.name.startswith("snapshot_date="):
        manifest = {"snapshot_date": directory.name.split("=", 1)[1], "encoding": encoding}
        manifest |= {"files": entries, "row_count": row_count}
    elif directory.name.startswith("source=") and directory.parent.name.startswith("feed_date="):
        manifest = {
            "feed_date": directory.parent.name.split("=", 1)[1],
            "source": directory.name.split("=", 1)[1],
            "encoding": encoding,
            "files": entries,
            "row_count": row_count,
            "total_cost_sum": decimal_sum(cost_values),
        }
    else:
        raise ValueError(f"{directory} is neither a discharge partition nor a snapshot folder")
    for key, value in overrides.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    _write_atomic(path, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode())
    return path
