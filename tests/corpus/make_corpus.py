"""Generate the hostile-input corpus under ``tests/corpus/``: ``python tests/corpus/make_corpus.py``.

Layout (everything here is written by this script; do not edit the files by hand):

```
tests/corpus/
  baseline/landing/          registry and enrolment snapshot every case runs against
  baseline/night1/           a good partition, run (and committed) before any hostile night
  baseline/night2/           the good partition delivered next to each hostile case
  cases/<case>/landing/      what the case adds to the landing folder (a partition, mostly)
  cases/<case>/outside/      files outside the landing folder (targets of symbolic links)
  cases/<case>/expected.json the contract's outcome (see below)
```

``expected.json``::

    {"case": ..., "description": ..., "partition": "feed_date=…/source=…" | null,
     "status": "succeeded" | "failed" | "waiting" | "absent",
     "check": "<failing check>",            # failed: the error starts with "<check>: "
     "error_contains": "…",                  # optional substring of the error
     "rows_read": n, "rows_quarantined": n,  # optional
     "quarantine": {"<row_number>": ["rule", …]},       # exactly these rules on these rows
     "quarantine_include": {"<row_number>": ["rule"]},  # at least these rules
     "stays": {"<hospital>/<settlement>": {"status": …, "match_method": …}},
     "absent_stays": ["<hospital>/<settlement>", …]}    # stays that must not exist

With ``"quarantine"`` given, no other row of the partition may be quarantined. ``"absent"``
means the folder is never read: no partition state, no stay, nothing quarantined.

``--check`` regenerates into a temporary folder and exits 1 if the committed corpus differs.
"""

from __future__ import annotations

import csv
import filecmp
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import synth  # noqa: E402

SEED = 41
SNAPSHOT = date(2026, 5, 31)
NIGHT1 = date(2026, 6, 1)
NIGHT2 = date(2026, 6, 2)
GOOD_SOURCE = "SHYB"
CASE_SOURCE = "CASE"
CASE_KEY = f"feed_date={NIGHT2.isoformat()}/source={CASE_SOURCE}"
PARTITION = Path("landing", "discharges", f"feed_date={NIGHT2.isoformat()}", f"source={CASE_SOURCE}")
COLUMNS = synth.DISCHARGE_COLUMNS
ADMISSION = "2026-05-20"
DISCHARGE = "2026-05-25"
SETTLED = "2026-06-01T10:00:00+08:00"
DIAGNOSIS = "I10.x00"  # essential hypertension, in the dictionary


# ---------------------------------------------------------------------------------------------
# The baseline: registry, snapshot, one good night before and one good partition beside the case
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    national_id: str
    name: str
    gender: str
    birth_date: str


@dataclass(frozen=True)
class World:
    hospital: str  # in network
    other_hospital: str  # in network
    out_of_network: str
    members: list[Member]  # covered, no baseline stays, unique by (name, birth date, gender)
    legacy: Member  # a member born before 2000 (a 15-digit number exists)
    with_x: Member  # a member whose number ends in X


def _strip(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.drop([c for c in ("defect", "identity", "name_form") if c in rows.columns])


def make_baseline(dest: Path) -> World:
    """Write ``dest/landing``, ``dest/night1``, ``dest/night2``; say who the cases may use."""
    pop = synth.make_population(300, seed=SEED, as_of=SNAPSHOT)
    hospitals = synth.make_hospitals(12, seed=0).with_columns(
        # One hospital leaves the network before the cases' admissions.
        in_network_to=pl.when(pl.int_range(pl.len()) == 11)
        .then(pl.lit(date(2026, 1, 31)))
        .otherwise("in_network_to")
    )
    synth.write_registry(dest / "landing", hospitals)
    synth.write_snapshot(dest / "landing", SNAPSHOT, pop.enrollments)
    options = dict(
        n=30, seed=SEED, sources=(GOOD_SOURCE,), bad_rate=0.0, correction_rate=0.0,
        void_rate=0.0, unmatched_rate=0.0, labels=True,
    )  # fmt: skip
    night1 = synth.make_stays(pop, hospitals, feed_date=NIGHT1, **options)[GOOD_SOURCE]
    night2 = synth.make_stays(pop, hospitals, feed_date=NIGHT2, **options)[GOOD_SOURCE]
    # Night 2 keeps to people without a night-1 stay, so that nothing it adds can move
    # night 1's money (annual caps are shared by a person's stays).
    seen = night1.select("birth_date", "gender").unique()
    night2 = night2.join(seen, on=["birth_date", "gender"], how="anti")
    synth.write_partition(dest / "night1", NIGHT1, GOOD_SOURCE, _strip(night1))
    synth.write_partition(dest / "night2", NIGHT2, GOOD_SOURCE, _strip(night2))

    used = pl.concat([night1, night2]).select("birth_date", "gender").unique()
    people = pop.people.with_columns(pl.col("birth_date").cast(pl.String))
    demographic = people.group_by("member_name", "birth_date", "gender").len()
    waiting = {"RETIREE_INPATIENT": 0, "WORKER_MUTUAL": 90, "GIG_WORKER": 30, "UNION_BASIC": 0}
    admitted = date.fromisoformat(ADMISSION)
    covered = (
        pop.enrollments.with_columns(
            ready=pl.col("coverage_start")
            + pl.duration(days=pl.col("plan_code").replace_strict(waiting, return_dtype=pl.Int64))
        )
        .filter(
            (pl.col("ready") <= admitted)
            & (pl.col("coverage_end").is_null() | (pl.col("coverage_end") >= admitted))
        )
        .get_column("national_id")
        .unique()
    )
    pool = (
        people.join(used, on=["birth_date", "gender"], how="anti")
        .join(demographic.filter(pl.col("len") == 1), on=["member_name", "birth_date", "gender"])
        .filter(pl.col("national_id").is_in(covered.implode()))
        .sort("national_id")
    )
    members = [
        Member(r["national_id"], r["member_name"], r["gender"], r["birth_date"])
        for r in pool.iter_rows(named=True)
    ]
    legacy = next(m for m in members if m.birth_date < "1999")
    with_x = next(m for m in members if m.national_id.endswith("X"))
    codes = hospitals.get_column("hospital_code").to_list()
    return World(codes[0], codes[1], codes[11], members, legacy, with_x)


# ---------------------------------------------------------------------------------------------
# Rows, files and manifests
# ---------------------------------------------------------------------------------------------


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def decimal_sum(values: list[str | None]) -> str:
    total = sum(
        (Decimal(v) for v in values if v is not None and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v)),
        Decimal("0.00"),
    )
    return f"{total:f}"


class Case:
    """One case being written: files under ``<case>/landing/…/source=CASE/`` and its outcome."""

    def __init__(self, root: Path, world: World, name: str, description: str) -> None:
        self.root = root / name
        self.world = world
        self.name = name
        self.description = description
        self.dir = self.root / PARTITION
        self.expected: dict[str, Any] = {"case": name, "description": description}

    # rows -------------------------------------------------------------------------------------

    def row(self, i: int, member: Member | None = None, **values: str | None) -> dict[str, Any]:
        """A good row (its own stay, its own member), with some values replaced."""
        m = member or self.world.members[i % len(self.world.members)]
        total = 150_000 + 1_013 * i
        fund, in_scope = total * 6 // 10, total * 3 // 10
        row: dict[str, Any] = {
            "settlement_id": f"CS{i:06d}",
            "version": "1",
            "record_type": "N",
            "hospital_code": self.world.hospital,
            "national_id": m.national_id,
            "patient_name": m.name,
            "gender": m.gender,
            "birth_date": m.birth_date,
            "admission_date": ADMISSION,
            "discharge_date": DISCHARGE,
            "primary_diagnosis": DIAGNOSIS,
            "total_cost": yuan(total),
            "fund_paid": yuan(fund),
            "self_pay_in_scope": yuan(in_scope),
            "self_pay_out_of_scope": yuan(total - fund - in_scope),
            "settled_at": SETTLED,
        }
        row.update(values)
        return row

    def rows(self, n: int, start: int = 1) -> list[dict[str, Any]]:
        return [self.row(i) for i in range(start, start + n)]

    def stay(self, i: int) -> str:
        return f"{self.world.hospital}/CS{i:06d}"

    # files ------------------------------------------------------------------------------------

    def write(self, name: str, data: bytes, folder: Path | None = None) -> Path:
        path = (folder or self.dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    @staticmethod
    def csv_text(
        rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str] = COLUMNS, end: str = "\n"
    ) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=end)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
        return buffer.getvalue()

    def csv(self, name: str, rows: list[dict[str, Any]], *, encoding: str = "utf-8", **kw: Any) -> bytes:
        data = self.csv_text(rows, **kw).encode(encoding)
        self.write(name, data)
        return data

    def jsonl(self, name: str, lines: list[str]) -> bytes:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        self.write(name, data)
        return data

    def parquet(self, name: str, table: pa.Table) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        self.write(name, data)
        return data

    @staticmethod
    def string_table(rows: list[dict[str, Any]]) -> pa.Table:
        return pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in COLUMNS})

    def manifest(
        self,
        entries: list[tuple[str, int]],
        costs: list[str | None],
        *,
        encoding: str = "utf-8",
        raw: bytes | None = None,
        **overrides: Any,
    ) -> None:
        """The sender's manifest: sha256 of the files as written, rows as given."""
        if raw is not None:
            self.write("_manifest.json", raw)
            return
        doc: dict[str, Any] = {
            "feed_date": NIGHT2.isoformat(),
            "source": CASE_SOURCE,
            "encoding": encoding,
            "files": [
                {"name": name, "rows": rows, "sha256": _sha(self.dir / name)}
                for name, rows in entries
            ],
            "row_count": sum(rows for _, rows in entries),
            "total_cost_sum": decimal_sum(costs),
        }
        for key, value in overrides.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        self.write("_manifest.json", (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode())

    def deliver_csv(self, rows: list[dict[str, Any]], name: str = "part-0001.csv", **kw: Any) -> None:
        """A CSV partition with an honest manifest."""
        encoding = kw.pop("manifest_encoding", kw.get("encoding", "utf-8"))
        self.csv(name, rows, **kw)
        self.manifest([(name, len(rows))], [r.get("total_cost") for r in rows], encoding=encoding)

    # outcome ----------------------------------------------------------------------------------

    def expect(self, status: str, **fields: Any) -> None:
        self.expected["partition"] = None if status == "absent" else CASE_KEY
        self.expected["status"] = status
        self.expected.update({k: v for k, v in fields.items() if v is not None})

    def failed(self, check: str, contains: str | None = None, **fields: Any) -> None:
        self.expect("failed", check=check, error_contains=contains, **fields)

    def save(self) -> None:
        assert "status" in self.expected, f"{self.name}: no expected outcome"
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.expected, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        (self.root / "expected.json").write_text(text, encoding="utf-8")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def valid_id(body17: str) -> str:
    return body17 + synth.id_check_char(body17)


CASES: dict[str, tuple[str, Callable[[Case], None]]] = {}


def case(name: str, description: str) -> Callable[[Callable[[Case], None]], Callable[[Case], None]]:
    def register(fn: Callable[[Case], None]) -> Callable[[Case], None]:
        assert name not in CASES, name
        CASES[name] = (description, fn)
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Empty and unreadable files
# ---------------------------------------------------------------------------------------------


@case("zero_byte_csv", "a CSV file of 0 bytes: no header, so no required column")
def _(c: Case) -> None:
    c.write("part-0001.csv", b"")
    c.manifest([("part-0001.csv", 0)], [])
    c.failed("empty_file")


@case("header_only_csv", "a CSV file with its header and no rows: an empty delivery, not an error")
def _(c: Case) -> None:
    c.deliver_csv([])
    c.expect("succeeded", rows_read=0, rows_quarantined=0, quarantine={})


@case("zero_byte_jsonl", "a JSON-lines file of 0 bytes: no rows")
def _(c: Case) -> None:
    c.write("part-0001.jsonl", b"")
    c.manifest([("part-0001.jsonl", 0)], [])
    c.expect("succeeded", rows_read=0, rows_quarantined=0, quarantine={})


@case("zero_byte_parquet", "a Parquet file of 0 bytes")
def _(c: Case) -> None:
    c.write("part-0001.parquet", b"")
    c.manifest([("part-0001.parquet", 0)], [])
    c.failed("parquet")


@case("truncated_parquet", "the first half of a good Parquet file (a transfer cut short)")
def _(c: Case) -> None:
    rows = c.rows(20)
    data = c.parquet("part-0001.parquet", c.string_table(rows))
    c.write("part-0001.parquet", data[: len(data) // 2])
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.failed("parquet")


@case("garbage_parquet", "random bytes between Parquet magic numbers")
def _(c: Case) -> None:
    noise = hashlib.sha512(b"garbage").digest() * 64
    c.write("part-0001.parquet", b"PAR1" + noise + b"PAR1")
    c.manifest([("part-0001.parquet", 20)], [])
    c.failed("parquet")


@case("truncated_csv_gz", "a .csv.gz file cut short")
def _(c: Case) -> None:
    rows = c.rows(20)
    data = gzip.compress(c.csv_text(rows).encode(), mtime=0)
    c.write("part-0001.csv.gz", data[: len(data) - 40])
    c.manifest([("part-0001.csv.gz", 20)], [r["total_cost"] for r in rows])
    c.failed("gzip")


# ---------------------------------------------------------------------------------------------
# Parquet with the wrong types
# ---------------------------------------------------------------------------------------------


def _typed(rows: list[dict[str, Any]], **columns: pa.Array) -> pa.Table:
    table = Case.string_table(rows)
    for name, array in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


@case("parquet_float_money", "money as float64 in Parquet: never read through a float")
def _(c: Case) -> None:
    rows = c.rows(20)
    floats = pa.array([float(r["total_cost"]) for r in rows], pa.float64())
    c.parquet("part-0001.parquet", _typed(rows, total_cost=floats))
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.failed("column_type", "total_cost")


@case("parquet_bool_column", "a required column (version) as booleans")
def _(c: Case) -> None:
    rows = c.rows(20)
    c.parquet("part-0001.parquet", _typed(rows, version=pa.array([True] * 20, pa.bool_())))
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.failed("column_type", "version")


@case(
    "parquet_extra_columns_odd_types",
    "extra columns (bool, float, list) beside the contract's: extra columns are ignored",
)
def _(c: Case) -> None:
    rows = c.rows(20)
    table = _typed(
        rows,
        is_emergency=pa.array([i % 2 == 0 for i in range(20)], pa.bool_()),
        weight_kg=pa.array([60.5] * 20, pa.float64()),
        procedures=pa.array([["a", "b"]] * 20, pa.list_(pa.string())),
    )
    c.parquet("part-0001.parquet", table)
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case("parquet_typed_amounts", "integer yuan and decimal(14,4) amounts; 12.3456 has 4 places")
def _(c: Case) -> None:
    rows = [c.row(i, total_cost=f"{1000 + i}.00", fund_paid=f"{600 + i}.00",
                  self_pay_in_scope="300.00", self_pay_out_of_scope="100.00")
            for i in range(1, 21)]  # fmt: skip
    rows[4].update(total_cost="1012.3456", fund_paid="612.3456")
    decimals = pa.array([Decimal(r["total_cost"]).quantize(Decimal("0.0001")) for r in rows],
                        pa.decimal128(14, 4))  # fmt: skip
    fund = pa.array([Decimal(r["fund_paid"]).quantize(Decimal("0.0001")) for r in rows],
                    pa.decimal128(14, 4))  # fmt: skip
    ints = pa.array([300] * 20, pa.int64())
    table = _typed(rows, total_cost=decimals, fund_paid=fund, self_pay_in_scope=ints,
                   self_pay_out_of_scope=pa.array([100] * 20, pa.int32()))  # fmt: skip
    c.parquet("part-0001.parquet", table)
    # The sender's sum is of the values as it wrote them (decimals with 4 places).
    c.manifest([("part-0001.parquet", 20)], [str(v) for v in decimals.to_pylist()])
    c.expect("succeeded", rows_read=20, rows_quarantined=1,
             quarantine={"5": ["invalid_amount"]}, stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case("parquet_dictionary_strings", "string columns dictionary-encoded (pandas categoricals)")
def _(c: Case) -> None:
    rows = c.rows(20)
    table = c.string_table(rows)
    for name in ("hospital_code", "gender", "record_type"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, table.column(name).dictionary_encode())
    c.parquet("part-0001.parquet", table)
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case("parquet_dates_out_of_range", "a typed birth_date in the year 19 765")
def _(c: Case) -> None:
    rows = c.rows(20)
    days = [(date.fromisoformat(r["birth_date"]) - date(1970, 1, 1)).days for r in rows]
    days[3] = 6_500_000
    table = _typed(rows, birth_date=pa.array(days, pa.date32()))
    c.parquet("part-0001.parquet", table)
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.expect("failed", error_contains="birth_date")


@case("parquet_timestamps", "settled_at typed as timestamps: in nanoseconds, and without a zone")
def _(c: Case) -> None:
    rows = c.rows(20)
    stamps = [1_780_279_200_123_456_789 + n for n in range(20)]  # 2026-06-01T02:00:00.123456789Z
    table = _typed(rows, settled_at=pa.array(stamps, pa.timestamp("ns", tz="UTC")))
    table = table.append_column("received_at", pa.array(stamps, pa.timestamp("ns")))
    c.parquet("part-0001.parquet", table)
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case(
    "parquet_duplicate_column",
    "a Parquet file with the column total_cost twice (pyarrow refuses to read it)",
)
def _(c: Case) -> None:
    rows = c.rows(20)
    table = c.string_table(rows)
    table = table.append_column("total_cost", table.column("total_cost"))
    c.parquet("part-0001.parquet", table)
    c.manifest([("part-0001.parquet", 20)], [r["total_cost"] for r in rows] * 2)
    c.failed("parquet")


# ---------------------------------------------------------------------------------------------
# CSV: encodings, line ends, quotes, bytes that should not be there
# ---------------------------------------------------------------------------------------------


@case("gb18030_declared_utf8", "GB18030 bytes under a manifest that says utf-8")
def _(c: Case) -> None:
    c.deliver_csv(c.rows(20), encoding="gb18030", manifest_encoding="utf-8")
    c.failed("encoding", "utf-8")


@case(
    "utf8_declared_gb18030",
    "UTF-8 bytes under a manifest that says gb18030: these bytes are not all GB18030 (were they, "
    "the names would read as other characters and go to review, never be paid)",
)
def _(c: Case) -> None:
    c.deliver_csv(c.rows(20), encoding="utf-8", manifest_encoding="gb18030")
    c.failed("encoding", "gb18030")


@case("encoding_spelled_differently", "encoding 'UTF8' in capitals: the same encoding")
def _(c: Case) -> None:
    c.deliver_csv(c.rows(20), manifest_encoding="UTF8")
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("mixed_line_ends", "\\n and \\r\\n line ends mixed in one file")
def _(c: Case) -> None:
    rows = c.rows(20)
    lines = c.csv_text(rows).split("\n")
    text = "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines[:-1]))
    c.write("part-0001.csv", text.encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("cr_only_line_ends", "old Mac \\r line ends: not a contract line end")
def _(c: Case) -> None:
    rows = c.rows(20)
    c.write("part-0001.csv", c.csv_text(rows, end="\r").encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("csv_format")


@case("unbalanced_quote", "a field opens a quote that never closes")
def _(c: Case) -> None:
    rows = c.rows(20)
    lines = c.csv_text(rows).split("\n")
    lines[5] = lines[5].replace(",N,", ',"N,', 1)
    c.write("part-0001.csv", "\n".join(lines).encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("csv_format")


@case("more_fields_than_header", "a line with one field more than the header")
def _(c: Case) -> None:
    rows = c.rows(20)
    lines = c.csv_text(rows).split("\n")
    lines[3] += ",surplus"
    c.write("part-0001.csv", "\n".join(lines).encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("csv_format")


@case("nul_bytes", "NUL bytes inside a name and inside an amount")
def _(c: Case) -> None:
    rows = c.rows(40)
    rows[2]["patient_name"] = rows[2]["patient_name"][:1] + "\x00" + rows[2]["patient_name"][1:]
    rows[7]["self_pay_out_of_scope"] = "1\x0000.00"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=40, rows_quarantined=2,
             quarantine={"3": ["invalid_value"], "8": ["invalid_value"]},
             absent_stays=[c.stay(3), c.stay(8)])  # fmt: skip


@case(
    "ten_thousand_character_fields",
    "10 000-character values in patient_name, settlement_id and an extra column",
)
def _(c: Case) -> None:
    rows = c.rows(60)
    rows[4]["patient_name"] = "张" * 10_000
    rows[9]["settlement_id"] = "S" * 10_000
    for r in rows[:3]:
        r["remarks"] = "备" * 10_000
    c.deliver_csv(rows, columns=(*COLUMNS, "remarks"))
    c.expect("succeeded", rows_read=60, rows_quarantined=2,
             quarantine={"5": ["invalid_value"], "10": ["invalid_value"]},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case("duplicated_header", "the header names total_cost twice")
def _(c: Case) -> None:
    rows = c.rows(20)
    columns = (*COLUMNS, "total_cost")
    c.deliver_csv(rows, columns=columns)
    c.failed("duplicate_column", "total_cost")


@case("header_with_spaces_and_reordered", "header names padded with spaces, columns reordered")
def _(c: Case) -> None:
    rows = c.rows(20)
    columns = list(reversed(COLUMNS))
    text = c.csv_text(rows, columns=columns)
    header, rest = text.split("\n", 1)
    header = ",".join(f" {h} " for h in header.split(","))
    c.write("part-0001.csv", (header + "\n" + rest).encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("bom_in_a_field", "a byte-order mark inside a row (the start of a settlement_id)")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[5]["settlement_id"] = "\ufeff" + rows[5]["settlement_id"]
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"6": ["invalid_value"]})  # fmt: skip


@case(
    "bom_and_header_in_the_middle",
    "two exports concatenated: a BOM and a second header line in the middle of the file",
)
def _(c: Case) -> None:
    first, second = c.rows(20), c.rows(20, start=21)
    text = "\ufeff" + c.csv_text(first) + "\ufeff" + c.csv_text(second)
    c.write("part-0001.csv", text.encode())
    # The sender counted what a CSV reader sees: 41 rows, one of them a header.
    c.manifest([("part-0001.csv", 41)], [r["total_cost"] for r in first + second])
    c.expect("succeeded", rows_read=41, rows_quarantined=1,
             quarantine_include={"21": ["invalid_value"]})  # fmt: skip


@case("two_boms", "a file that starts with two BOMs: the header's first name is not settlement_id")
def _(c: Case) -> None:
    rows = c.rows(20)
    c.write("part-0001.csv", b"\xef\xbb\xbf\xef\xbb\xbf" + c.csv_text(rows).encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("missing_column", "settlement_id")


@case("missing_required_column", "no patient_name column at all")
def _(c: Case) -> None:
    rows = c.rows(20)
    c.deliver_csv(rows, columns=tuple(x for x in COLUMNS if x != "patient_name"))
    c.failed("missing_column", "patient_name")


@case("without_national_id_column", "no national_id column: it is optional, matching falls back")
def _(c: Case) -> None:
    rows = c.rows(20)
    c.deliver_csv(rows, columns=tuple(x for x in COLUMNS if x != "national_id"))
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             stays={c.stay(1): {"status": "paid", "match_method": "demographic"}})  # fmt: skip


@case("quoted_newline_in_name", "a quoted name with a line break inside: one row, not two")
def _(c: Case) -> None:
    rows = c.rows(20)
    rows[3]["patient_name"] = rows[3]["patient_name"][:1] + "\n" + rows[3]["patient_name"][1:]
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=20, rows_quarantined=1,
             quarantine={"4": ["invalid_value"]})  # fmt: skip


@case("header_longer_than_64k", "3 000 extra columns: a header line of 70 000 characters")
def _(c: Case) -> None:
    rows = c.rows(20)
    extra = [f"extra_{n:06d}_column" for n in range(3_000)]
    for r in rows:
        r.update(dict.fromkeys(extra, "x"))
    c.deliver_csv(rows, columns=(*COLUMNS, *extra))
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


@case("nul_in_header", "a NUL byte inside the header line")
def _(c: Case) -> None:
    rows = c.rows(20)
    text = c.csv_text(rows).replace("gender", "gen\x00der", 1)
    c.write("part-0001.csv", text.encode())
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("missing_column", "gender")


# ---------------------------------------------------------------------------------------------
# Amounts
# ---------------------------------------------------------------------------------------------


def _amount_case(c: Case, column: str, value: str, rules: list[str] | None) -> None:
    rows = c.rows(30)
    rows[3][column] = value
    c.deliver_csv(rows)
    if rules is None:
        c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={},
                 stays={c.stay(4): {"status": "paid"}})  # fmt: skip
    else:
        c.expect("succeeded", rows_read=30, rows_quarantined=1, quarantine={"4": rules},
                 absent_stays=[c.stay(4)])  # fmt: skip


@case("amount_exponent", "total_cost written 1e5: exponents are rejected, never rounded")
def _(c: Case) -> None:
    _amount_case(c, "total_cost", "1e5", ["invalid_amount"])


@case("amount_fullwidth_digits", "fund_paid written in full-width digits １２３")
def _(c: Case) -> None:
    _amount_case(c, "fund_paid", "１２３", ["invalid_amount"])


@case("amount_negative_zero", "self_pay_out_of_scope -0.00: accepted as 0 (project decision)")
def _(c: Case) -> None:
    rows = c.rows(30)
    r = rows[3]
    total = Decimal(r["fund_paid"]) + Decimal(r["self_pay_in_scope"])
    r.update(self_pay_out_of_scope="-0.00", total_cost=f"{total:.2f}")
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={},
             stays={c.stay(4): {"status": "paid"}})  # fmt: skip


@case("amount_largest", "99999999999999.99 yuan (14 integer digits): exact, paid up to the caps")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3].update(total_cost="99999999999999.99", fund_paid="0.00",
                   self_pay_in_scope="99999999999999.99", self_pay_out_of_scope="0.00")  # fmt: skip
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={},
             stays={c.stay(4): {"status": "paid"}})  # fmt: skip


@case("amount_too_large", "9999999999999999.99 yuan (16 integer digits): too large for fen sums")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3].update(total_cost="9999999999999999.99", fund_paid="0.00",
                   self_pay_in_scope="9999999999999999.99", self_pay_out_of_scope="0.00")  # fmt: skip
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["invalid_amount"]})  # fmt: skip


@case(
    "amount_notations",
    "one bad notation per row: 12.345, +12.00, NaN, 1,234.00, -5.00, 0x10, ' 12.5 ' (trimmed, good)",
)
def _(c: Case) -> None:
    rows = c.rows(120)
    bad = {10: "12.345", 20: "+12.00", 30: "NaN", 40: "1,234.00", 50: "-5.00", 60: "0x10"}
    for n, value in bad.items():
        rows[n - 1]["self_pay_out_of_scope"] = value
    r = rows[69]
    r["self_pay_out_of_scope"] = f" {r['self_pay_out_of_scope']} "
    c.deliver_csv(rows)
    # An amount that cannot be read has no sum to compare; -5.00 can, and does not add up.
    rules = {str(n): ["invalid_amount"] for n in (10, 20, 30, 40)}
    rules["50"] = ["amount_mismatch", "invalid_amount"]
    rules["60"] = ["invalid_value"]  # not a number at all
    c.expect("succeeded", rows_read=120, rows_quarantined=6, quarantine=rules,
             stays={c.stay(70): {"status": "paid"}})  # fmt: skip


@case("amount_mismatch_one_fen", "total_cost one fen more than its three parts")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3]["total_cost"] = f"{Decimal(rows[3]['total_cost']) + Decimal('0.01'):.2f}"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["amount_mismatch"]})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Dates and other row rules
# ---------------------------------------------------------------------------------------------


@case("date_2025_02_29", "admitted on 2025-02-29, a day that does not exist")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3]["admission_date"] = "2025-02-29"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["invalid_value"]})  # fmt: skip


@case("date_shapes", "dates as 2026/05/20, 20260520, 2026-5-20 and a timestamp; a leap day is fine")
def _(c: Case) -> None:
    rows = c.rows(100)
    for n, value in {10: "2026/05/20", 20: "20260520", 30: "2026-5-20",
                     40: "2026-05-20T00:00:00"}.items():  # fmt: skip
        rows[n - 1]["admission_date"] = value
    rows[49]["admission_date"] = "2024-02-29"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=100, rows_quarantined=4,
             quarantine={str(n): ["invalid_value"] for n in (10, 20, 30, 40)},
             stays={c.stay(50): {"status": "paid"}})  # fmt: skip


@case("date_rules", "discharged before admission, admitted in 1989, discharged after the feed date")
def _(c: Case) -> None:
    rows = c.rows(80)
    rows[9]["discharge_date"] = "2026-05-19"
    rows[19]["admission_date"] = "1989-12-31"
    rows[29]["discharge_date"] = "2026-06-03"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=80, rows_quarantined=3,
             quarantine={"10": ["date_order"], "20": ["date_order"],
                         "30": ["future_discharge"]})  # fmt: skip


@case("hospitals", "a hospital not in the registry (quarantined) and one out of network (not paid)")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3]["hospital_code"] = "H999999999"
    rows[4]["hospital_code"] = c.world.out_of_network
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["unknown_hospital"]},
             stays={f"{c.world.out_of_network}/CS000005": {"status": "not_in_network"}})  # fmt: skip


@case("diagnosis_codes", "a malformed diagnosis (quarantined) and a well-formed unknown one (paid)")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3]["primary_diagnosis"] = "i10"
    rows[4]["primary_diagnosis"] = "Z99.999x999"
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["invalid_diagnosis"]},
             stays={c.stay(5): {"status": "paid"}})  # fmt: skip


@case("versions_and_record_types", "versions 0, -1, 1.0 and record type 'n'; ' 2 ' is trimmed")
def _(c: Case) -> None:
    rows = c.rows(100)
    rows[9]["version"] = "0"
    rows[19]["version"] = "-1"
    rows[29]["version"] = "1.0"
    rows[39]["record_type"] = "n"
    rows[49]["version"] = " 2 "
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=100, rows_quarantined=4,
             quarantine={str(n): ["invalid_value"] for n in (10, 20, 30, 40)},
             stays={c.stay(50): {"status": "paid"}})  # fmt: skip


@case(
    "duplicates_and_conflicts",
    "a row repeated exactly (a no-op) and a stay version repeated with other content "
    "(the later row is a version_conflict)",
)
def _(c: Case) -> None:
    rows = c.rows(40)
    rows.insert(10, dict(rows[5]))  # row 11 repeats row 6
    changed = dict(rows[20])
    changed["settled_at"] = "2026-06-01T11:00:00+08:00"
    rows.insert(30, changed)  # row 31 conflicts with row 21
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=42, rows_quarantined=1,
             quarantine={"31": ["version_conflict"]},
             stays={c.stay(6): {"status": "paid"}, c.stay(20): {"status": "paid"}})  # fmt: skip


@case("void_of_unknown_stay", "a void (V) for a stay never delivered: the stay is void")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3].update(record_type="V", version="2")
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={},
             stays={c.stay(4): {"status": "void"}})  # fmt: skip


@case(
    "sql_in_values",
    "SQL in a settlement_id (quarantined: not the pattern) and in a name (a name like any other)",
)
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[3]["settlement_id"] = "x'; DROP TABLE stays; --"
    rows[4]["patient_name"] = "Robert'); DROP TABLE members;--"
    rows[4]["national_id"] = ""
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"4": ["invalid_value"]},
             stays={c.stay(5): {"status": "unmatched"}, c.stay(6): {"status": "paid"}})  # fmt: skip


@case("reject_threshold", "6 bad rows of 30 (20 %): over the 5 % threshold, nothing of it is used")
def _(c: Case) -> None:
    rows = c.rows(30)
    for n in range(6):
        rows[n * 5]["gender"] = "X"
    c.deliver_csv(rows)
    c.failed("reject_threshold", rows_read=30, rows_quarantined=6,
             quarantine={str(n * 5 + 1): ["invalid_value"] for n in range(6)},
             absent_stays=[c.stay(2)])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Identity numbers: never a quarantine reason; matching falls back to name, birth date, gender
# ---------------------------------------------------------------------------------------------


@case(
    "identity_numbers_malformed",
    "every kind of malformed identity number: none is quarantined; numbers that normalise are "
    "matched by id, the others by name, birth date and gender",
)
def _(c: Case) -> None:
    w = c.world
    fw = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
    ar = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    wrong_check = "10X98765432"

    def flip(nid: str) -> str:
        return nid[:17] + wrong_check[(wrong_check.index(nid[17]) + 1) % 11]

    kinds: list[tuple[str, Any, str]] = [
        # (what, national_id given a member, expected match)
        ("wrong check character", flip, "demographic"),
        ("17 digits", lambda n: n[:17], "demographic"),
        ("a letter inside", lambda n: n[:10] + "A" + n[11:], "demographic"),
        ("full-width digits", lambda n: n.translate(fw), "id"),
        ("spaces inside", lambda n: f"{n[:6]} {n[6:14]} {n[14:]}", "id"),
        ("ideographic space inside", lambda n: n[:6] + "\u3000" + n[6:], "id"),
        ("zero-width space inside", lambda n: n[:6] + "\u200b" + n[6:], "demographic"),
        ("Arabic-Indic digits", lambda n: n[:17].translate(ar) + n[17], "demographic"),
        ("all zeros", lambda n: "0" * 18, "demographic"),
        ("19 digits", lambda n: n + "1", "demographic"),
        ("an emoji", lambda n: "\U0001f600", "demographic"),
        ("the word NULL", lambda n: "NULL", "demographic"),
        ("SQL", lambda n: "' OR '1'='1", "demographic"),
        ("only white space", lambda n: "   ", "demographic"),
        ("empty", lambda n: "", "demographic"),
        ("born in the future", lambda n: valid_id(n[:6] + "20300101" + "123"), "demographic"),
        ("born in 1899", lambda n: valid_id(n[:6] + "18991231" + "123"), "demographic"),
        ("a line break at the end", lambda n: n + "\n", "id"),
    ]
    rows = []
    stays: dict[str, Any] = {}
    for i, (_, make, method) in enumerate(kinds, start=1):
        m = w.members[i]
        rows.append(c.row(i, m, national_id=make(m.national_id)))
        stays[c.stay(i)] = {"status": "paid", "match_method": method, "national_id": m.national_id}
    # A 15-digit legacy number is upgraded; a lower-case x is upper-cased.
    legacy = w.legacy.national_id
    rows.append(c.row(19, w.legacy, national_id=legacy[:6] + legacy[8:17]))
    stays[c.stay(19)] = {"status": "paid", "match_method": "id", "national_id": legacy}
    rows.append(c.row(20, w.with_x, national_id=w.with_x.national_id.lower()))
    stays[c.stay(20)] = {"status": "paid", "match_method": "id",
                         "national_id": w.with_x.national_id}  # fmt: skip
    # A valid number of nobody enrolled, carrying a member's name: unmatched, no fallback.
    stranger = valid_id("11010519800101" + "555")
    rows.append(c.row(21, w.members[30], national_id=stranger))
    stays[c.stay(21)] = {"status": "unmatched"}
    rows += c.rows(9, start=22)
    c.deliver_csv(rows)
    c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={}, stays=stays)


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------


def _good_files(c: Case, n: int = 20) -> list[dict[str, Any]]:
    rows = c.rows(n)
    c.csv("part-0001.csv", rows)
    return rows


@case("manifest_not_json", "a manifest that is not JSON")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], raw=b"feed_date: 2026-06-02\nfiles: part-0001.csv\n")
    c.failed("manifest_json")


@case("manifest_empty", "a manifest of 0 bytes")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], raw=b"")
    c.failed("manifest_json")


@case("manifest_json_array", "a manifest that is a JSON array, not an object")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], raw=b'[{"name": "part-0001.csv"}]')
    c.failed("manifest_json")


@case("manifest_deeply_nested", "a manifest nested 20 000 levels deep")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], raw=b"[" * 20_000 + b"]" * 20_000)
    c.failed("manifest_json")


@case("manifest_utf16", "a manifest encoded as UTF-16")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    text = (c.dir / "_manifest.json").read_text(encoding="utf-8")
    c.write("_manifest.json", text.encode("utf-16"))
    c.failed("manifest_json")


@case("manifest_huge_number", "a manifest whose row_count is a 5 000-digit number")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    text = (c.dir / "_manifest.json").read_text(encoding="utf-8")
    c.write("_manifest.json", text.replace('"row_count": 20', '"row_count": ' + "9" * 5_000).encode())
    c.expect("failed")


@case("manifest_name_too_long", "the manifest lists a file name of 300 characters")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([], [r["total_cost"] for r in rows], row_count=20,
               files=[{"name": "part-0001.csv", "rows": 20, "sha256": _sha(c.dir / "part-0001.csv")},
                      {"name": "p" * 296 + ".csv", "rows": 0, "sha256": "0" * 64}])  # fmt: skip
    c.failed("file_name")


@case("manifest_with_bom", "a UTF-8 manifest with a BOM: still the same JSON")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.write("_manifest.json", b"\xef\xbb\xbf" + (c.dir / "_manifest.json").read_bytes())
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("manifest_parent_path", "the manifest lists ../source=SHYB/part-0001.csv (the good partition)")
def _(c: Case) -> None:
    _good_files(c)
    good = "../source=SHYB/part-0001.csv"
    c.manifest([], [], files=[{"name": good, "rows": 20, "sha256": "0" * 64}], row_count=20)
    c.failed("file_path")


@case("manifest_absolute_path", "the manifest lists /etc/passwd")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], files=[{"name": "/etc/passwd", "rows": 1, "sha256": "0" * 64}])
    c.failed("file_path")


@case("manifest_backslash_and_nul", "the manifest lists ..\\\\x.csv and a name with a NUL")
def _(c: Case) -> None:
    _good_files(c)
    c.manifest([], [], files=[{"name": "..\\x.csv", "rows": 1, "sha256": "0" * 64},
                              {"name": "part\u0000.csv", "rows": 1, "sha256": "0" * 64}])  # fmt: skip
    c.failed("file_path")


@case("manifest_lies_sha256", "a sha256 that is not the file's")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    doc = json.loads((c.dir / "_manifest.json").read_text())
    doc["files"][0]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    c.manifest([], [], raw=json.dumps(doc).encode())
    c.failed("sha256")


@case("manifest_lies_file_rows", "a file's rows one more than it has")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 21)], [r["total_cost"] for r in rows], row_count=20)
    c.failed("rows")


@case("manifest_lies_row_count", "row_count one more than the files have")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows], row_count=21)
    c.failed("row_count")


@case("manifest_lies_total_cost_sum", "total_cost_sum one fen off")
def _(c: Case) -> None:
    rows = _good_files(c)
    total = Decimal(decimal_sum([r["total_cost"] for r in rows])) + Decimal("0.01")
    c.manifest([("part-0001.csv", 20)], [], total_cost_sum=f"{total:f}")
    c.failed("total_cost_sum")


@case("manifest_total_cost_sum_forms", "total_cost_sum as a JSON number with one decimal: equal")
def _(c: Case) -> None:
    rows = c.rows(20)
    for r in rows:  # make the exact sum end in a 0: 1234.50 and 1234.5 are equal
        r.update(total_cost=f"{Decimal(r['total_cost']) + Decimal('0.10'):.2f}",
                 self_pay_out_of_scope=f"{Decimal(r['self_pay_out_of_scope']) + Decimal('0.10'):.2f}")
    c.csv("part-0001.csv", rows)
    total = Decimal(decimal_sum([r["total_cost"] for r in rows]))
    assert total == total.quantize(Decimal("0.1"))
    text = json.dumps({"feed_date": NIGHT2.isoformat(), "source": CASE_SOURCE,
                       "files": [{"name": "part-0001.csv", "rows": 20,
                                  "sha256": _sha(c.dir / "part-0001.csv")}],
                       "row_count": 20, "total_cost_sum": "@"})  # fmt: skip
    c.manifest([], [], raw=text.replace('"@"', f"{total.normalize():f}").encode())
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("manifest_total_cost_sum_exponent", "total_cost_sum written as 1.2e3")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows], total_cost_sum="1.2e3")
    c.failed("manifest_field", "total_cost_sum")


@case("manifest_without_total_cost_sum", "no total_cost_sum")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows], total_cost_sum=None)
    c.failed("manifest_field", "total_cost_sum")


@case("manifest_wrong_partition", "a manifest for another feed date (copied from another folder)")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows], feed_date="2026-06-01")
    c.failed("manifest_key")


@case("manifest_odd_values", "rows as the string \"20\" and an unknown encoding")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([], [r["total_cost"] for r in rows], encoding="latin-1",
               files=[{"name": "part-0001.csv", "rows": "20",
                       "sha256": _sha(c.dir / "part-0001.csv")}], row_count=20)  # fmt: skip
    c.failed("manifest_field")


@case("manifest_sha256_upper_case", "sha256 in upper-case hex: the same digest")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([], [r["total_cost"] for r in rows],
               files=[{"name": "part-0001.csv", "rows": 20,
                       "sha256": _sha(c.dir / "part-0001.csv").upper()}], row_count=20)  # fmt: skip
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={})


@case("manifest_lists_missing_file", "the manifest lists part-0002.csv, which is not there")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([], [r["total_cost"] for r in rows],
               files=[{"name": "part-0001.csv", "rows": 20, "sha256": _sha(c.dir / "part-0001.csv")},
                      {"name": "part-0002.csv", "rows": 0, "sha256": "0" * 64}],
               row_count=20)  # fmt: skip
    c.failed("missing_file", "part-0002.csv")


@case("manifest_lists_file_twice", "the same file listed twice (its rows would count double)")
def _(c: Case) -> None:
    rows = _good_files(c)
    entry = {"name": "part-0001.csv", "rows": 20, "sha256": _sha(c.dir / "part-0001.csv")}
    c.manifest([], [r["total_cost"] for r in rows] * 2, files=[entry, entry], row_count=40)
    c.failed("manifest_field", "twice")


@case("manifest_is_a_folder", "_manifest.json is a folder: the delivery is not ready")
def _(c: Case) -> None:
    _good_files(c)
    (c.dir / "_manifest.json").mkdir(parents=True)
    (c.dir / "_manifest.json" / ".keep").write_bytes(b"")
    c.expect("waiting")


@case("no_manifest", "data files without a manifest: a delivery in progress, left alone")
def _(c: Case) -> None:
    _good_files(c)
    c.expect("waiting")


# ---------------------------------------------------------------------------------------------
# Files in the partition folder
# ---------------------------------------------------------------------------------------------


@case("unlisted_extra_file", "a data file in the folder that the manifest does not list")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.csv("part-0002.csv", c.rows(5, start=30))
    c.failed("unlisted_file", "part-0002.csv")


@case("temporary_files_ignored", "names starting with . or _ (transfer tools' files) are ignored")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.csv(".part-0002.csv.tmp", c.rows(5, start=30))
    c.write("_SUCCESS", b"")
    c.write("_part-0003.csv", b"garbage")
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=20, rows_quarantined=0, quarantine={},
             absent_stays=[c.stay(30)])  # fmt: skip


@case("xlsx_listed", "an .xlsx workbook listed in the manifest")
def _(c: Case) -> None:
    c.write("part-0001.xlsx", b"PK\x03\x04" + b"\x00" * 200)
    c.manifest([("part-0001.xlsx", 20)], [])
    c.failed("file_type", "xlsx")


@case("xlsx_unlisted", "an .xlsx workbook beside a good CSV, not in the manifest")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.write("claims.xlsx", b"PK\x03\x04" + b"\x00" * 200)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("unlisted_file", "claims.xlsx")


@case("subfolder_in_partition", "a folder inside the partition folder, named like a data file")
def _(c: Case) -> None:
    rows = _good_files(c)
    (c.dir / "part-0002.csv").mkdir()
    (c.dir / "part-0002.csv" / "x.csv").write_bytes(b"a,b\n")
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows],
               files=[{"name": "part-0001.csv", "rows": 20, "sha256": _sha(c.dir / "part-0001.csv")},
                      {"name": "part-0002.csv", "rows": 0, "sha256": "0" * 64}])  # fmt: skip
    c.failed("not_a_file", "part-0002.csv")


# ---------------------------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------------------------


def _jsonl(rows: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in rows]


@case("jsonl_non_object_lines", "JSON lines with an array line, a string line and a broken line")
def _(c: Case) -> None:
    rows = c.rows(60)
    lines = _jsonl(rows)
    lines[9] = "[1, 2, 3]"
    lines[19] = '"just text"'
    lines[29] = '{"settlement_id": "CS000030", "version": '
    c.jsonl("part-0001.jsonl", lines)
    costs = [r["total_cost"] for n, r in enumerate(rows) if n not in (9, 19, 29)]
    c.manifest([("part-0001.jsonl", 60)], costs)
    c.expect("succeeded", rows_read=60, rows_quarantined=3,
             quarantine={"10": ["invalid_value"], "20": ["invalid_value"],
                         "30": ["invalid_value"]})  # fmt: skip


@case("jsonl_line_separator_in_value", "a value holding U+2028 and U+0085: one JSON line each")
def _(c: Case) -> None:
    rows = c.rows(30)
    rows[4]["remarks"] = "first\u2028second"
    rows[5]["remarks"] = "first\u0085second"
    c.jsonl("part-0001.jsonl", _jsonl(rows))
    c.manifest([("part-0001.jsonl", 30)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=30, rows_quarantined=0, quarantine={},
             stays={c.stay(5): {"status": "paid"}, c.stay(6): {"status": "paid"}})  # fmt: skip


@case("jsonl_huge_number", "a JSON number of 5 000 digits (over Python's int-to-str limit)")
def _(c: Case) -> None:
    rows = c.rows(30)
    lines = _jsonl(rows)
    lines[4] = lines[4].replace('"version": "1"', '"version": ' + "9" * 5_000)
    c.jsonl("part-0001.jsonl", lines)
    c.manifest([("part-0001.jsonl", 30)], [r["total_cost"] for r in rows])
    c.expect("succeeded", rows_read=30, rows_quarantined=1,
             quarantine={"5": ["invalid_value"]})  # fmt: skip


@case("jsonl_all_lines_bad", "a JSON-lines file none of whose lines is an object")
def _(c: Case) -> None:
    c.jsonl("part-0001.jsonl", ["[]", "1", "null", "true", '"x"'])
    c.manifest([("part-0001.jsonl", 5)], [])
    c.failed("reject_threshold", rows_quarantined=5)


@case(
    "jsonl_typed_values",
    "JSON numbers for money (123.4 is exact, 1E+5 is an exponent), true and 2.0 as versions",
)
def _(c: Case) -> None:
    rows: list[dict[str, Any]] = c.rows(80)
    lines = []
    for n, r in enumerate(rows, start=1):
        values: dict[str, Any] = dict(r)
        if n <= 40:
            for m in ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope"):
                values[m] = "@" + r[m] + "@"
        if n == 10:
            values["total_cost"] = "@1E+5@"
        if n == 20:
            values["version"] = True
        if n == 30:
            values["version"] = "@2.0@"
        lines.append(re.sub(r'"@([^@]*)@"', r"\1", json.dumps(values, ensure_ascii=False)))
    c.jsonl("part-0001.jsonl", lines)
    costs = [r["total_cost"] for n, r in enumerate(rows, start=1) if n != 10]
    c.manifest([("part-0001.jsonl", 80)], costs)
    c.expect("succeeded", rows_read=80, rows_quarantined=3,
             quarantine={"10": ["invalid_amount"], "20": ["invalid_value"],
                         "30": ["invalid_value"]},
             stays={c.stay(1): {"status": "paid"}})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Folder names and symbolic links: never read
# ---------------------------------------------------------------------------------------------


def _partition_at(c: Case, folder: Path, feed_date: str, source: str, start: int) -> None:
    """A complete, valid-looking partition in ``folder`` (relative to the case root)."""
    rows = c.rows(20, start=start)
    target = c.root / folder
    data = c.csv_text(rows).encode()
    c.write("part-0001.csv", data, target)
    doc = {"feed_date": feed_date, "source": source, "encoding": "utf-8",
           "files": [{"name": "part-0001.csv", "rows": 20,
                      "sha256": hashlib.sha256(data).hexdigest()}],
           "row_count": 20, "total_cost_sum": decimal_sum([r["total_cost"] for r in rows])}  # fmt: skip
    c.write("_manifest.json", json.dumps(doc).encode(), target)


DISCHARGES = Path("landing", "discharges")


@case("folder_source_off_pattern", "source=shyb, source=S and a 17-character source: not partitions")
def _(c: Case) -> None:
    day = f"feed_date={NIGHT2.isoformat()}"
    for n, source in enumerate(("shyb", "S", "ABCDEFGHIJKLMNOPQ", "SH-YB")):
        _partition_at(c, DISCHARGES / day / f"source={source}", NIGHT2.isoformat(), source,
                      100 + 20 * n)  # fmt: skip
    c.expect("absent", ignored=4, absent_stays=[c.stay(100), c.stay(120)])


@case("folder_feed_date_off_pattern", "feed_date=2026-02-30, feed_date=20260602, a bare date")
def _(c: Case) -> None:
    for n, day in enumerate(("feed_date=2026-02-30", "feed_date=20260602", "2026-06-02")):
        _partition_at(c, DISCHARGES / day / f"source={CASE_SOURCE}", NIGHT2.isoformat(),
                      CASE_SOURCE, 100 + 20 * n)  # fmt: skip
    c.expect("absent", ignored=3, absent_stays=[c.stay(100), c.stay(140)])


@case("folder_hidden", "a partition under .feed_date=… and one under source=… named _tmp: ignored")
def _(c: Case) -> None:
    _partition_at(c, DISCHARGES / f".feed_date={NIGHT2.isoformat()}" / f"source={CASE_SOURCE}",
                  NIGHT2.isoformat(), CASE_SOURCE, 100)  # fmt: skip
    _partition_at(c, DISCHARGES / f"feed_date={NIGHT2.isoformat()}" / "_source=TMP",
                  NIGHT2.isoformat(), "TMP", 120)  # fmt: skip
    c.expect("absent", ignored=0, absent_stays=[c.stay(100), c.stay(120)])


@case("symlink_data_file_outside", "the data file is a symbolic link to a file outside the landing")
def _(c: Case) -> None:
    rows = c.rows(20)
    data = c.csv_text(rows).encode()
    c.write("part-0001.csv", data, c.root / "outside")
    c.dir.mkdir(parents=True, exist_ok=True)
    os.symlink("../../../../outside/part-0001.csv", c.dir / "part-0001.csv")
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    c.failed("symlink", "part-0001.csv", absent_stays=[c.stay(1)])


@case("symlink_data_file_absolute", "the data file is a symbolic link to /etc/hostname")
def _(c: Case) -> None:
    c.dir.mkdir(parents=True, exist_ok=True)
    os.symlink("/etc/hostname", c.dir / "part-0001.csv")
    c.manifest([], [], files=[{"name": "part-0001.csv", "rows": 1, "sha256": "0" * 64}],
               row_count=1)  # fmt: skip
    c.failed("symlink")


@case("symlink_partition_folder", "the partition folder is a symbolic link to a folder outside")
def _(c: Case) -> None:
    _partition_at(c, Path("outside", f"source={CASE_SOURCE}"), NIGHT2.isoformat(),
                  CASE_SOURCE, 100)  # fmt: skip
    c.dir.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../../outside/source={CASE_SOURCE}", c.dir)
    c.expect("absent", absent_stays=[c.stay(100)])


@case("symlink_feed_date_folder", "a feed_date folder that is a symbolic link to a folder outside")
def _(c: Case) -> None:
    day = "feed_date=2026-05-30"
    _partition_at(c, Path("outside", day, f"source={CASE_SOURCE}"), "2026-05-30", CASE_SOURCE, 100)
    (c.root / DISCHARGES).mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../outside/{day}", c.root / DISCHARGES / day)
    c.expect("absent", absent_stays=[c.stay(100)])


@case("symlink_manifest", "the manifest is a symbolic link (to a good manifest outside)")
def _(c: Case) -> None:
    rows = _good_files(c)
    c.manifest([("part-0001.csv", 20)], [r["total_cost"] for r in rows])
    (c.root / "outside").mkdir(parents=True, exist_ok=True)
    os.replace(c.dir / "_manifest.json", c.root / "outside" / "_manifest.json")
    os.symlink("../../../../outside/_manifest.json", c.dir / "_manifest.json")
    c.expect("waiting", absent_stays=[c.stay(1)])


# ---------------------------------------------------------------------------------------------
# Writing it all
# ---------------------------------------------------------------------------------------------


def generate(dest: Path) -> list[str]:
    """Write the baseline and every case under ``dest``; returns the case names."""
    if dest.exists():
        shutil.rmtree(dest)
    world = make_baseline(dest / "baseline")
    assert len(world.members) >= 40, "the baseline population has too few spare members"
    for name, (description, build) in CASES.items():
        c = Case(dest / "cases", world, name, description)
        build(c)
        c.save()
    return list(CASES)


def _same_tree(a: Path, b: Path) -> list[str]:
    """Paths that differ between two trees (files by content, links by target)."""
    diffs = []
    names = {p.relative_to(a) for p in a.rglob("*")} | {p.relative_to(b) for p in b.rglob("*")}
    for rel in sorted(names):
        pa_, pb = a / rel, b / rel
        if pa_.is_symlink() or pb.is_symlink():
            if not (pa_.is_symlink() and pb.is_symlink() and os.readlink(pa_) == os.readlink(pb)):
                diffs.append(str(rel))
        elif pa_.is_dir() or pb.is_dir():
            if not (pa_.is_dir() and pb.is_dir()):
                diffs.append(str(rel))
        elif not (pa_.is_file() and pb.is_file() and filecmp.cmp(pa_, pb, shallow=False)):
            diffs.append(str(rel))
    return diffs


def outcome_text(expected: dict[str, Any]) -> str:
    """One cell of the docs' table: what the contract says happens to the case."""
    status = expected["status"]
    if status == "absent":
        return "never read: no partition state, no stay"
    if status == "waiting":
        return "`waiting` (not ready, nothing read)"
    if status == "failed":
        text = "partition `failed`" + (f": `{expected['check']}`" if "check" in expected else "")
        if expected.get("error_contains"):
            text += f" (names {expected['error_contains']!r})"
        return text
    parts = ["`succeeded`"]
    rules = expected.get("quarantine", expected.get("quarantine_include", {}))
    if rules:
        parts.append(
            "; ".join(f"row {row}: {', '.join(r)}" for row, r in sorted(rules.items(),
                                                                       key=lambda x: int(x[0])))
        )
    elif "quarantine" in expected:
        parts.append("nothing quarantined")
    stays = expected.get("stays", {})
    if stays:
        statuses = sorted({s.get("status", "?") for s in stays.values()})
        methods = sorted({s["match_method"] for s in stays.values() if "match_method" in s})
        parts.append(f"stays {'/'.join(statuses)}" + (f" by {'/'.join(methods)}" if methods else ""))
    return "; ".join(parts)


def table() -> str:
    """The corpus as a markdown table, from the committed expected.json files."""
    lines = ["| case | input | expected outcome |", "|---|---|---|"]
    for path in sorted((HERE / "cases").glob("*/expected.json")):
        expected = json.loads(path.read_text(encoding="utf-8"))
        desc = expected["description"].replace("|", "\\|")
        lines.append(f"| `{expected['case']}` | {desc} | {outcome_text(expected)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--table"]:
        print(table())
        return 0
    if argv[1:] == ["--check"]:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp) / "corpus")
            diffs = [
                d
                for sub in ("baseline", "cases")
                for d in _same_tree(Path(tmp) / "corpus" / sub, HERE / sub)
            ]
        if diffs:
            print(f"the corpus differs from its generator: {diffs[:10]}")
            return 1
        print("the corpus is what make_corpus.py generates")
        return 0
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        names = generate(Path(tmp) / "corpus")
        for sub in ("baseline", "cases"):
            shutil.rmtree(HERE / sub, ignore_errors=True)
            os.replace(Path(tmp) / "corpus" / sub, HERE / sub)
    print(f"wrote {len(names)} cases and the baseline under {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
