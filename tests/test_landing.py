"""Landing (feeds.md, *Partitions and manifests*): discovery, manifest checks, formats, encodings.

Every check that fails a partition is asserted by its ``PartitionError.check`` name and by a
message that names what disagreed; real files in a temporary landing folder, read by
``landing.delivery.read_delivery`` (no validation needed) or validated by
``pipeline.validate_partition``; one night end to end through ``run_local``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from samples import HOSPITALS, national_id
from samples import discharge_row as row

import synth
from config.settings import Settings
from landing import delivery as delivery_module
from landing.delivery import Delivery, read_delivery
from landing.errors import PartitionError
from landing.partitions import DISCHARGES, Partition, discover
from landing.readers import FORMATS
from pipeline import run_local, validate_partition
from schemas.discharge import COLUMNS, OPTIONAL, REQUIRED

FEED = date(2026, 11, 27)
SOURCE = "SHYB"
HOSPITAL = HOSPITALS["hospital_code"][0]


ROWS = [
    row("S1"),
    row("S2", patient_name="欧阳娜娜", gender="F", birth_date="1971-07-01", total_cost="12.3",
        fund_paid="2.3", self_pay_in_scope="10.00", self_pay_out_of_scope="0"),
    row("S3", patient_name="王𠮷", national_id=national_id("1948-12-31", 22),
        birth_date="1948-12-31", total_cost="48211930.17", fund_paid="48000000.00",
        self_pay_in_scope="211930.17", self_pay_out_of_scope="0.00"),
]  # fmt: skip


def frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))


def deliver(
    landing: Path,
    rows: list[dict[str, str]] | pl.DataFrame = ROWS,
    *,
    day: date = FEED,
    source: str = SOURCE,
    **options: Any,
) -> Partition:
    """Write a partition with ``synth.write_partition`` (manifest last)."""
    data = rows if isinstance(rows, pl.DataFrame) else frame(rows)
    folder = synth.write_partition(landing, day, source, data, **options)
    return Partition(DISCHARGES, day, source, folder)


def read(partition: Partition) -> Delivery:
    return read_delivery(partition, REQUIRED, optional=OPTIONAL)


def failure(partition: Partition) -> PartitionError:
    """The PartitionError reading the partition raises."""
    with pytest.raises(PartitionError) as caught:
        read(partition)
    return caught.value


def manifest(partition: Partition) -> dict[str, Any]:
    return json.loads(partition.manifest_path.read_text(encoding="utf-8"))


def lay_manifest(partition: Partition, doc: dict[str, Any]) -> None:
    """Write ``_manifest.json`` exactly as given (no recomputation)."""
    partition.manifest_path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def amend_manifest(partition: Partition, **changes: Any) -> None:
    lay_manifest(partition, manifest(partition) | changes)


def entry(path: Path, rows: int) -> dict[str, Any]:
    """A manifest ``files`` entry for a file as it is on disk."""
    return {
        "name": path.name,
        "rows": rows,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def contract_values(delivery: Delivery) -> pl.DataFrame:
    """The raw contract columns and row numbers, what every format must read the same."""
    return delivery.frame.select("row_number", *COLUMNS)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture(scope="module")
def csv_values(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """ROWS as read from a plain UTF-8 CSV: the reference every format is compared with."""
    landing = tmp_path_factory.mktemp("reference") / "landing"
    return contract_values(read(deliver(landing)))


# --- discovery ---------------------------------------------------------------------------------


def test_discover_lists_ready_and_waiting_partitions_and_reports_bad_names(landing: Path) -> None:
    deliver(landing)
    deliver(landing, source="HOSPX", manifest=False)
    days = landing / "discharges"
    for bad in (
        "feed_date=2026-13-01/source=SHYB",  # not a real date
        "feed_date=27-11-2026/source=SHYB",
        f"feed_date={FEED}/source=shyb",  # lower case
        f"feed_date={FEED}/source=X",  # too short
        f"feed_date={FEED}/source=ABCDEFGHIJKLMNOPQ",  # 17 characters
        f"feed_date={FEED}/SHYB",
        "notes",
    ):
        (days / bad).mkdir(parents=True, exist_ok=True)
    # Transfer tools' temporary folders: skipped without a word.
    (days / "_tmp").mkdir()
    (days / f"feed_date={FEED}" / ".source=SHYB.partial").mkdir()

    found = discover(landing)

    assert [(p.key, p.is_ready) for p in found.discharges] == [
        (f"feed_date={FEED}/source=HOSPX", False),
        (f"feed_date={FEED}/source=SHYB", True),
    ]
    assert sorted(found.ignored) == sorted(
        [
            "discharges/feed_date=2026-13-01",
            "discharges/feed_date=27-11-2026",
            f"discharges/feed_date={FEED}/source=shyb",
            f"discharges/feed_date={FEED}/source=X",
            f"discharges/feed_date={FEED}/source=ABCDEFGHIJKLMNOPQ",
            f"discharges/feed_date={FEED}/SHYB",
            "discharges/notes",
        ]
    )


def test_dot_and_underscore_files_in_a_partition_are_ignored(landing: Path) -> None:
    partition = deliver(landing)
    (partition.path / ".part-0002.csv.tmp").write_bytes(b"half a file")
    (partition.path / "_SUCCESS").write_bytes(b"")
    (partition.path / "_manifest.json.bak").write_text("{not json")

    assert read(partition).rows_read == len(ROWS)


# --- manifest checks ---------------------------------------------------------------------------


def test_listed_file_missing_fails(landing: Path) -> None:
    partition = deliver(landing, files=2)
    (partition.path / "part-0002.csv").unlink()

    error = failure(partition)

    assert error.check == "missing_file"
    assert "part-0002.csv" in error.message


def test_unlisted_file_fails(landing: Path) -> None:
    partition = deliver(landing)
    (partition.path / "part-0009.csv").write_bytes(b"settlement_id\n")

    error = failure(partition)

    assert error.check == "unlisted_file"
    assert "part-0009.csv" in error.message


def test_sha256_mismatch_fails_naming_both_digests(landing: Path) -> None:
    partition = deliver(landing)
    data_file = partition.path / "part-0001.csv"
    listed = manifest(partition)["files"][0]["sha256"]
    data_file.write_bytes(data_file.read_bytes().replace(b"100.00", b"100.01"))
    actual = hashlib.sha256(data_file.read_bytes()).hexdigest()

    error = failure(partition)

    assert error.check == "sha256"
    assert actual[:12] in error.message and listed[:12] in error.message


def test_rows_of_a_file_mismatch_fails_naming_both_counts(landing: Path) -> None:
    partition = deliver(landing, files=2)
    files = manifest(partition)["files"]
    files[1]["rows"] = 7
    amend_manifest(partition, files=files, row_count=8)

    error = failure(partition)

    assert error.check == "rows"
    assert "part-0002.csv" in error.message
    assert "read 1 rows" in error.message and "says 7" in error.message


def test_row_count_mismatch_fails_naming_both_counts(landing: Path) -> None:
    partition = deliver(landing)
    amend_manifest(partition, row_count=4)

    error = failure(partition)

    assert error.check == "row_count"
    assert "read 3 rows" in error.message and "row_count is 4" in error.message


def test_total_cost_sum_mismatch_fails_naming_both_sums(landing: Path) -> None:
    partition = deliver(landing)
    assert manifest(partition)["total_cost_sum"] == "48212042.47"
    amend_manifest(partition, total_cost_sum="48212042.48")

    error = failure(partition)

    assert error.check == "total_cost_sum"
    assert "48212042.47" in error.message and "48212042.48" in error.message


@pytest.mark.parametrize("declared", ["48212042.470", "48212042.4700", "48212042.47"])
def test_total_cost_sum_compares_as_exact_decimals(landing: Path, declared: str) -> None:
    partition = deliver(landing)
    amend_manifest(partition, total_cost_sum=declared)

    assert read(partition).rows_read == 3


def test_total_cost_sum_12_3_equals_12_30(landing: Path) -> None:
    partition = deliver(landing, [ROWS[1]])  # total_cost "12.3"
    amend_manifest(partition, total_cost_sum="12.30")
    assert read(partition).rows_read == 1

    partition = deliver(landing, [ROWS[1] | {"total_cost": "12.30"}])
    amend_manifest(partition, total_cost_sum="12.3")
    assert read(partition).rows_read == 1


def test_total_cost_sum_counts_rows_that_will_be_quarantined(landing: Path) -> None:
    costs = ["100.00", "-5.00", "1.005", "1e5", "1,234.00", "NaN", "１００", ""]
    partition = deliver(landing, [row(f"S{i}", total_cost=c) for i, c in enumerate(costs)])
    # Decimal literals count, bad or not: 100.00 - 5.00 + 1.005; the others are not literals.
    assert manifest(partition)["total_cost_sum"] == "96.005"
    assert read(partition).rows_read == len(costs)

    # A sender who left out the rows we will quarantine does not match.
    amend_manifest(partition, total_cost_sum="100.00")
    error = failure(partition)
    assert error.check == "total_cost_sum"
    assert "96.005" in error.message


@pytest.mark.parametrize("text", ["{not json", "", '["feed_date"]', "\x00\x01"])
def test_manifest_that_is_not_a_json_object_fails(landing: Path, text: str) -> None:
    partition = deliver(landing)
    partition.manifest_path.write_text(text)

    error = failure(partition)

    assert error.check == "manifest_json"
    assert "_manifest.json" in error.message


@pytest.mark.parametrize("name", ["../x.csv", "/etc/passwd", "sub/part-0001.csv", "..\\x.csv"])
def test_manifest_listing_a_path_fails(landing: Path, name: str) -> None:
    partition = deliver(landing)
    doc = manifest(partition)
    doc["files"].append({"name": name, "rows": 0, "sha256": "0" * 64})
    lay_manifest(partition, doc)

    error = failure(partition)

    assert error.check == "file_path"
    assert "outside the partition folder" in error.message


@pytest.mark.parametrize(
    ("name", "check"),
    [("part-0001.xlsx", "file_type"), ("_part-0001.csv", "file_name"), (".part.csv", "file_name")],
)
def test_manifest_listing_an_unreadable_name_fails(landing: Path, name: str, check: str) -> None:
    partition = deliver(landing)
    doc = manifest(partition)
    doc["files"].append({"name": name, "rows": 0, "sha256": "0" * 64})
    lay_manifest(partition, doc)

    assert failure(partition).check == check


def bad_fields(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """Manifests with one field the wrong shape: (case, manifest, what the message names)."""
    listed = doc["files"][0]
    return [
        ("no_total_cost_sum", {k: v for k, v in doc.items() if k != "total_cost_sum"},
         "total_cost_sum"),
        ("total_cost_sum_with_separator", doc | {"total_cost_sum": "48,212,042.47"},
         "total_cost_sum"),
        ("row_count_as_text", doc | {"row_count": "3"}, "row_count"),
        ("negative_rows", doc | {"files": [listed | {"rows": -3}]}, "rows"),
        ("short_sha256", doc | {"files": [listed | {"sha256": "abc"}]}, "sha256"),
        ("files_not_a_list", doc | {"files": listed}, "files"),
        ("file_listed_twice", doc | {"files": [listed, listed]}, "twice"),
        ("encoding_not_known", doc | {"encoding": "latin-1"}, "utf-8 or gb18030"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", [c for c, _, _ in bad_fields({"files": [{}]})])
def test_manifest_field_of_the_wrong_shape_fails(landing: Path, case: str) -> None:
    partition = deliver(landing)
    _, doc, named = next(c for c in bad_fields(manifest(partition)) if c[0] == case)
    lay_manifest(partition, doc)

    error = failure(partition)

    assert error.check == "manifest_field"
    assert named in error.message


def test_symlinked_data_file_fails(landing: Path, tmp_path: Path) -> None:
    partition = deliver(landing)
    data_file = partition.path / "part-0001.csv"
    outside = tmp_path / "outside.csv"
    outside.write_bytes(data_file.read_bytes())
    data_file.unlink()
    data_file.symlink_to(outside)  # same bytes, same sha256: only the link is wrong

    error = failure(partition)

    assert error.check == "symlink"
    assert "part-0001.csv" in error.message


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("feed_date", "2026-11-26", str(FEED)),
        ("feed_date", None, str(FEED)),
        ("source", "HOSPX", SOURCE),
        ("source", "shyb", SOURCE),
    ],
)
def test_manifest_key_must_match_the_folder(
    landing: Path, field: str, value: str | None, named: str
) -> None:
    partition = deliver(landing)
    amend_manifest(partition, **{field: value})

    error = failure(partition)

    assert error.check == "manifest_key"
    assert field in error.message and named in error.message


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_raw_values(
    landing: Path, fmt: str, csv_values: pl.DataFrame
) -> None:
    partition = deliver(landing, fmt=fmt, files=2)

    assert_frame_equal(contract_values(read(partition)), csv_values)


def test_typed_parquet_stages_the_same_values_as_csv(landing: Path, tmp_path: Path) -> None:
    registry = synth.write_registry(landing, HOSPITALS)
    as_csv = deliver(landing, source="CSV")
    as_parquet = deliver(landing, source="TYPED", fmt="parquet", typed=True)
    types = pq.read_schema(as_parquet.path / "part-0001.parquet")
    assert types.field("version").type == pa.int64()
    assert types.field("admission_date").type == pa.date32()
    assert pa.types.is_decimal128(types.field("total_cost").type)
    assert pa.types.is_timestamp(types.field("settled_at").type)

    staged = []
    for partition in (as_csv, as_parquet):
        outcome = validate_partition(
            partition, work_dir=str(tmp_path / "work"), registry_file=str(registry)
        )
        assert (outcome.status, outcome.rows_read, outcome.rows_quarantined) == ("validated", 3, 0)
        assert outcome.staged_path is not None
        staged.append(pl.read_parquet(outcome.staged_path).drop("source", "raw"))

    assert_frame_equal(staged[1], staged[0])
    assert staged[0]["total_cost_fen"].to_list() == [10000, 1230, 4821193017]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_parquet_timestamps_of_any_unit_are_read(landing: Path, unit: str) -> None:
    partition = deliver(landing, fmt="parquet")
    path = partition.path / "part-0001.parquet"
    table = pq.read_table(path)
    # 2026-11-12T10:30:00 in Shanghai, plus as many fractional digits as the unit holds.
    fraction = {"s": 0, "ms": 123, "us": 123_456, "ns": 123_456_789}[unit]
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    instant = pa.array([1794450600 * scale + fraction] * 3, pa.timestamp(unit, tz="Asia/Shanghai"))
    table = table.set_column(table.schema.get_field_index("settled_at"), "settled_at", instant)
    pq.write_table(table, path)
    amend_manifest(partition, files=[entry(path, 3)])

    settled = read(partition).frame["settled_at"].to_list()

    # Microseconds are what the warehouse keeps; a CSV value with nanoseconds is cut the same way.
    digits = {"s": "", "ms": ".123000", "us": ".123456", "ns": ".123456"}[unit]
    assert settled == [f"2026-11-12T10:30:00{digits}+08:00"] * 3


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("birth_date", pa.array([2**31 - 1] * 3, pa.date32())),  # year 5 881 580
        ("settled_at", pa.array([253_402_300_800 * 10**6] * 3, pa.timestamp("us"))),  # 10000
        ("settled_at", pa.array([-62_135_596_801 * 10**3] * 3, pa.timestamp("ms"))),  # year 0
    ],
    ids=["date", "timestamp", "timestamp-ms"],
)
def test_parquet_date_or_time_outside_the_calendar_fails(
    landing: Path, column: str, values: pa.Array
) -> None:
    partition = deliver(landing, fmt="parquet")
    path = partition.path / "part-0001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), path)
    amend_manifest(partition, files=[entry(path, 3)])

    error = failure(partition)

    assert error.check == "column_value"
    assert f"column {column!r}" in error.message


def test_parquet_extra_columns_of_any_type_are_ignored(
    landing: Path, csv_values: pl.DataFrame
) -> None:
    partition = deliver(landing, fmt="parquet")
    path = partition.path / "part-0001.parquet"
    table = pq.read_table(path)
    table = table.append_column("is_emergency", pa.array([True, False, True]))
    table = table.append_column("weight_kg", pa.array([61.5, 48.0, 70.25]))
    table = table.append_column("procedures", pa.array([["x"], [], ["y", "z"]]))
    pq.write_table(table, path)
    amend_manifest(partition, files=[entry(path, 3)])

    assert_frame_equal(contract_values(read(partition)), csv_values)


def test_parquet_with_a_column_twice_fails(landing: Path) -> None:
    partition = deliver(landing, fmt="parquet")
    path = partition.path / "part-0001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("gender", table.column("gender")), path)
    amend_manifest(partition, files=[entry(path, 3)])

    error = failure(partition)

    # pyarrow refuses to read such a file before the reader's own duplicate check can name it.
    assert error.check in ("duplicate_column", "parquet")
    assert "part-0001.parquet" in error.message


def test_float_money_column_in_parquet_fails(landing: Path) -> None:
    partition = deliver(landing, fmt="parquet")
    path = partition.path / "part-0001.parquet"
    table = pq.read_table(path)
    floats = pa.array([float(v) for v in table.column("total_cost").to_pylist()], pa.float64())
    pq.write_table(table.set_column(table.schema.get_field_index("total_cost"), "total_cost",
                                    floats), path)  # fmt: skip
    amend_manifest(partition, files=[entry(path, 3)])

    error = failure(partition)

    assert error.check == "column_type"
    assert "total_cost" in error.message and "double" in error.message


# --- encodings and line ends -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"encoding": "utf-8", "bom": True},
        {"encoding": "gb18030"},
        {"crlf": True},
        {"encoding": "utf-8", "bom": True, "crlf": True, "fmt": "csv.gz"},
        {"encoding": "gb18030", "crlf": True, "fmt": "jsonl"},
    ],
    ids=["utf8-bom", "gb18030", "crlf", "bom-crlf-gz", "gb18030-jsonl-crlf"],
)
def test_encodings_and_line_ends_read_the_same_values(
    landing: Path, options: dict[str, Any], csv_values: pl.DataFrame
) -> None:
    partition = deliver(landing, **options)
    data = next(partition.path.glob("part-*")).read_bytes()
    data = gzip.decompress(data) if options.get("fmt") == "csv.gz" else data
    assert data.startswith(b"\xef\xbb\xbf") == bool(options.get("bom"))
    assert (b"\r\n" in data) == bool(options.get("crlf"))

    values = contract_values(read(partition))

    assert_frame_equal(values, csv_values)
    # Names outside GB2312 survive, and no \r or BOM is glued onto a value or a column name.
    assert values["patient_name"].to_list() == ["张三", "欧阳娜娜", "王𠮷"]
    assert values["settled_at"][0] == "2026-11-12T10:30:00+08:00"


def test_gb18030_file_declared_utf8_fails_with_a_clear_reason(landing: Path) -> None:
    partition = deliver(landing, encoding="gb18030")
    amend_manifest(partition, encoding="utf-8")

    error = failure(partition)

    assert error.check == "encoding"
    assert "part-0001.csv is not valid utf-8" in error.message
    assert "manifest's encoding" in error.message


def test_utf8_file_declared_gb18030_fails(landing: Path) -> None:
    partition = deliver(landing, [row("S1"), row("S2", patient_name="李四")])
    amend_manifest(partition, encoding="gb18030")

    error = failure(partition)

    assert error.check == "encoding"


# --- hostile files -----------------------------------------------------------------------------


def replace_file(partition: Partition, name: str, data: bytes, rows: int) -> Path:
    """Put ``data`` in the partition as ``name``; the manifest lists exactly that file."""
    for old in partition.path.glob("part-*"):
        old.unlink()
    path = partition.path / name
    path.write_bytes(data)
    amend_manifest(partition, files=[entry(path, rows)], row_count=rows)
    return path


def csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    frame(rows).write_csv(buffer)
    return buffer.getvalue()


def test_empty_file_fails(landing: Path) -> None:
    partition = deliver(landing)
    replace_file(partition, "part-0001.csv", b"", 0)
    amend_manifest(partition, total_cost_sum="0")

    error = failure(partition)

    assert error.check == "empty_file"
    assert "part-0001.csv" in error.message


def test_header_only_file_reads_zero_rows(landing: Path) -> None:
    partition = deliver(landing)
    header = ",".join(COLUMNS) + "\n"
    replace_file(partition, "part-0001.csv", header.encode(), 0)
    amend_manifest(partition, total_cost_sum="0.00")

    delivery = read(partition)

    assert delivery.rows_read == 0
    assert set(COLUMNS) <= set(delivery.frame.columns)


def test_header_only_gzip_reads_zero_rows(landing: Path) -> None:
    partition = deliver(landing)
    header = ",".join(COLUMNS) + "\r\n"
    replace_file(partition, "part-0001.csv.gz", gzip.compress(header.encode()), 0)
    amend_manifest(partition, total_cost_sum="0")

    assert read(partition).rows_read == 0


def test_truncated_gzip_fails(landing: Path) -> None:
    partition = deliver(landing, fmt="csv.gz")
    data = (partition.path / "part-0001.csv.gz").read_bytes()
    replace_file(partition, "part-0001.csv.gz", data[: len(data) // 2], 3)

    error = failure(partition)

    assert error.check == "gzip"
    assert "part-0001.csv.gz" in error.message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_parquet_fails(landing: Path, damage: str) -> None:
    partition = deliver(landing, fmt="parquet")
    data = (partition.path / "part-0001.parquet").read_bytes()
    bad = data[: len(data) // 2] if damage == "truncated" else b"PAR1" + os.urandom(64) + b"PAR1"
    replace_file(partition, "part-0001.parquet", bad, 3)

    error = failure(partition)

    assert error.check == "parquet"
    assert "part-0001.parquet is not a readable Parquet file" in error.message


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_missing_required_column_fails_naming_it(landing: Path, fmt: str) -> None:
    partition = deliver(landing, frame(ROWS).drop("gender", "settled_at"), fmt=fmt)

    error = failure(partition)

    assert error.check == "missing_column"
    assert "gender" in error.message and "settled_at" in error.message


def test_missing_optional_national_id_column_is_read_as_empty(landing: Path) -> None:
    partition = deliver(landing, frame(ROWS).drop("national_id"))

    assert read(partition).frame["national_id"].to_list() == [None, None, None]


def test_extra_columns_are_ignored(landing: Path, csv_values: pl.DataFrame) -> None:
    partition = deliver(landing, frame(ROWS).with_columns(ward=pl.lit("7B")))

    assert_frame_equal(contract_values(read(partition)), csv_values)


def test_duplicated_header_fails(landing: Path) -> None:
    partition = deliver(landing)
    text = csv_text(ROWS).replace("patient_name,", "gender,", 1)
    replace_file(partition, "part-0001.csv", text.encode(), 3)

    error = failure(partition)

    assert error.check == "duplicate_column"
    assert "'gender'" in error.message


def test_line_with_more_fields_than_the_header_fails(landing: Path) -> None:
    partition = deliver(landing)
    lines = csv_text(ROWS).splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\n") + ",surplus\n"
    replace_file(partition, "part-0001.csv", "".join(lines).encode(), 3)

    error = failure(partition)

    assert error.check == "csv_format"
    assert "more fields than the header" in error.message


def test_lone_carriage_return_line_ends_fail(landing: Path) -> None:
    partition = deliver(landing)
    replace_file(partition, "part-0001.csv", csv_text(ROWS).replace("\n", "\r").encode(), 3)

    error = failure(partition)

    assert error.check == "csv_format"
    assert "part-0001.csv is not well-formed CSV" in error.message


def test_nul_byte_in_a_field_is_read_and_the_row_quarantined(landing: Path, tmp_path: Path) -> None:
    registry = synth.write_registry(landing, HOSPITALS)
    partition = deliver(landing)
    text = csv_text(ROWS).replace("张三", "张\x00三")
    replace_file(partition, "part-0001.csv", text.encode(), 3)

    assert read(partition).rows_read == 3
    outcome = validate_partition(
        partition, work_dir=str(tmp_path / "work"), registry_file=str(registry)
    )

    assert (outcome.status, outcome.rows_read, outcome.rows_quarantined) == ("validated", 3, 1)
    assert outcome.quarantine_path is not None
    quarantine = pl.read_parquet(outcome.quarantine_path)
    assert quarantine.select("row_number", "rule").rows() == [(1, "invalid_value")]
    assert "patient_name" in quarantine["message"][0]


# --- one night end to end ----------------------------------------------------------------------


def test_failing_partitions_do_not_stop_the_rest_of_the_night(tmp_path: Path) -> None:
    settings = Settings.build(tmp_path / "landing", tmp_path / "w.duckdb", tmp_path / "outbox")
    landing = settings.landing
    synth.write_registry(landing, HOSPITALS)
    deliver(landing, source="GOOD", fmt="csv.gz", encoding="utf-8", bom=True, crlf=True)
    liar = deliver(landing, [row(f"L{i}") for i in range(3)], source="LIAR")
    amend_manifest(liar, row_count=4)
    wide = deliver(landing, [row(f"W{i}") for i in range(3)], source="WIDE")
    lines = csv_text([row(f"W{i}") for i in range(3)]).splitlines(keepends=True)
    lines[-1] = lines[-1].rstrip("\n") + ",surplus\n"
    replace_file(wide, "part-0001.csv", "".join(lines).encode(), 3)
    empty = deliver(landing, [row("E1")], source="EMPTY")
    replace_file(empty, "part-0001.csv", (",".join(COLUMNS) + "\n").encode(), 0)
    amend_manifest(empty, total_cost_sum="0")
    deliver(landing, [row("P1")], source="PENDING", manifest=False)
    # JSON lines with one line cut short: that row is quarantined, 1 in 20 is within 5 %.
    good = [row(f"J{n:02d}") for n in range(19)]
    lines = [json.dumps(r, ensure_ascii=False) for r in good]
    lines.insert(9, '{"settlement_id": "J99", "version": 1,')
    jsonl = deliver(landing, good, source="JSONL", fmt="jsonl")
    replace_file(jsonl, "part-0001.jsonl", ("\n".join(lines) + "\n").encode(), 20)
    amend_manifest(jsonl, total_cost_sum="1900.00")

    result = run_local(settings, as_of=FEED)

    key = f"feed_date={FEED}/source="
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        runs = {
            r[0].removeprefix(key): r[1:]
            for r in con.execute(
                "SELECT partition_key, status, rows_read, rows_quarantined, error, attempts "
                "FROM partition_runs WHERE kind = 'discharges'"
            ).fetchall()
        }
        stays = [r[0] for r in con.execute("SELECT settlement_id FROM claim_outcomes").fetchall()]
        quarantine = con.execute(
            "SELECT partition_key, row_number, rule, raw FROM quarantine_rows"
        ).fetchall()
    assert runs["GOOD"] == ("succeeded", 3, 0, "", 1)
    assert runs["EMPTY"] == ("succeeded", 0, 0, "", 1)
    assert runs["PENDING"][:2] == ("waiting", 0)
    assert runs["LIAR"][:2] == ("failed", 0)
    assert runs["LIAR"][3] == "row_count: read 3 rows, the manifest's row_count is 4"
    assert runs["WIDE"][0] == "failed"
    assert runs["WIDE"][3].startswith("csv_format: part-0001.csv is not well-formed CSV")
    assert runs["JSONL"] == ("succeeded", 20, 1, "", 1)
    assert [q[:3] for q in quarantine] == [(f"{key}JSONL", 10, "invalid_value")]
    assert json.loads(quarantine[0][3]) == {"line": lines[9]}
    assert sorted(stays) == sorted(["S1", "S2", "S3", *(r["settlement_id"] for r in good)])
    assert sorted(result.partitions["failed"]) == [f"{key}LIAR", f"{key}WIDE"]
    assert result.errors[f"{key}LIAR"].startswith("row_count:")


# A large file is hashed on a thread while it is decoded (``_HASH_BESIDE_DECODE_BYTES``); the
# tests below lower the threshold to 0 so that every file takes that road.
@pytest.fixture
def hashed_beside_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "_HASH_BESIDE_DECODE_BYTES", 0)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_hashed_beside_decode_reads_the_same_rows(
    landing: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition = deliver(landing, fmt=fmt)
    first = read(partition).frame
    monkeypatch.setattr(delivery_module, "_HASH_BESIDE_DECODE_BYTES", 0)

    assert_frame_equal(read(partition).frame, first)


@pytest.mark.usefixtures("hashed_beside_decode")
def test_hashed_beside_decode_a_wrong_digest_still_fails_the_file(landing: Path) -> None:
    partition = deliver(landing, fmt="parquet")
    listed = manifest(partition)["files"][0]["sha256"]
    amend_manifest(partition, files=[{**manifest(partition)["files"][0], "sha256": "ab" * 32}])

    error = failure(partition)

    assert error.check == "sha256"
    assert listed[:12] in error.message and "abababababab" in error.message


@pytest.mark.usefixtures("hashed_beside_decode")
def test_hashed_beside_decode_an_unreadable_file_with_a_wrong_digest_fails_its_digest(
    landing: Path,
) -> None:
    partition = deliver(landing, fmt="parquet")
    path = replace_file(partition, "part-0001.parquet", b"PAR1" + os.urandom(64) + b"PAR1", 3)
    path.write_bytes(b"PAR1" + os.urandom(64) + b"PAR1")  # other bytes than the manifest's

    assert failure(partition).check == "sha256"


@pytest.mark.usefixtures("hashed_beside_decode")
def test_hashed_beside_decode_an_unreadable_file_with_its_digest_fails_as_unreadable(
    landing: Path,
) -> None:
    partition = deliver(landing, fmt="parquet")
    replace_file(partition, "part-0001.parquet", b"PAR1" + os.urandom(64) + b"PAR1", 3)

    assert failure(partition).check == "parquet"
