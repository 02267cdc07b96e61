"""Validating a chunk's (or a night's) discharge partitions in one pass gives each partition
exactly what validating it alone gives: the same staged rows, quarantine rows, counts and
warnings; and a partition whose file cannot be read fails alone.

The landing folder spreads hostile rows (every crafted case of ``test_validation``, a broken
JSON line, generated defects) over several feed dates, sources and file formats, with the same
row numbers and settlement ids in several partitions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from samples import HOSPITALS
from samples import discharge_row as row
from test_validation import CASES

import pipeline
import synth
from config.settings import Settings
from landing.delivery import read_delivery
from landing.partitions import DISCHARGES, Partition
from pipeline import run_local, validate_partition, validate_partitions
from schemas.discharge import OPTIONAL, REQUIRED
from schemas.quarantine import RULES
from synth.contract import MANIFEST_NAME
from transforms.discharges import RawRows, validate_discharge_batch, validate_discharges

FIRST = date(2026, 11, 27)
DAYS = [FIRST + timedelta(days=i) for i in range(3)]
# (source, format): the formats a chunk mixes; JSON lines can carry an unreadable line.
SOURCES = [("SHYB", "csv"), ("HOSPX", "csv.gz"), ("MEDIX", "parquet"), ("JSONX", "jsonl")]
CODES = HOSPITALS["hospital_code"]


def _crafted_rows(day: date, k: int) -> list[dict[str, str]]:
    """The crafted cases, shifted to ``day`` (their dates are relative to 2026-11-27), a
    different slice in each partition, some valid rows sharing settlement ids across them."""
    shift = (day - DAYS[0]).days
    rows = []
    for n, (_, values, _) in enumerate(CASES):
        if n % 3 != k % 3 and n % 5:
            continue
        r = row(f"R{n}") | values
        for c in ("discharge_date",):
            if r[c] and r[c][:4] == "2026":
                r[c] = (date.fromisoformat(r[c]) + timedelta(days=shift)).isoformat()
        rows.append(r)
    return rows


def _landing(root: Path) -> list[Partition]:
    landing = root / "landing"
    synth.write_registry(landing, HOSPITALS)
    partitions = []
    for d, day in enumerate(DAYS):
        for s, (source, fmt) in enumerate(SOURCES):
            rows = _crafted_rows(day, d + s)
            frame = pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))
            if s == 2 and d == 1:
                frame = frame.drop("national_id")  # a feed without the optional column
            path = synth.write_partition(landing, day, source, frame, fmt=fmt)
            if fmt == "jsonl":
                data = path / next(f.name for f in path.iterdir() if f.suffix == ".jsonl")
                with data.open("a", encoding="utf-8") as out:
                    out.write('{"settlement_id": "R900", not json\n')
                _count_extra_line(path, data)
            partitions.append(Partition(DISCHARGES, day, source, path))
    return partitions


def _count_extra_line(path: Path, data: Path) -> None:
    """The manifest of a file that gained one (unreadable) line."""
    manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    (entry,) = manifest["files"]
    entry["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    entry["rows"] += 1
    manifest["row_count"] += 1
    (path / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture(scope="module")
def partitions(tmp_path_factory: pytest.TempPathFactory) -> list[Partition]:
    return _landing(tmp_path_factory.mktemp("batch"))


def test_the_landing_is_hostile_enough(partitions: list[Partition]) -> None:
    alone = [
        validate_discharges(
            read_delivery(p, REQUIRED, optional=OPTIONAL).frame,
            feed_date=p.day,
            source=p.source,
            hospital_codes=CODES,
        )
        for p in partitions
    ]
    rules = {r for v in alone for r in v.quarantine.get_column("rule").to_list()}
    # every rule a model checks (version_conflict is the warehouse's), in several partitions
    assert rules == set(RULES) - {"version_conflict"}
    assert sum(1 for v in alone if v.quarantine.height) >= len(partitions) - 1
    assert all(v.staged.height for v in alone)


def test_one_pass_gives_each_delivery_what_it_gets_alone(partitions: list[Partition]) -> None:
    deliveries = [
        RawRows(read_delivery(p, REQUIRED, optional=OPTIONAL).frame, p.day, p.source)
        for p in partitions
    ]
    together = validate_discharge_batch(deliveries, CODES)
    assert len(together) == len(partitions)
    for d, batch in zip(deliveries, together, strict=True):
        alone = validate_discharges(
            d.frame, feed_date=d.feed_date, source=d.source, hospital_codes=CODES
        )
        assert_frame_equal(batch.staged, alone.staged)
        assert_frame_equal(batch.quarantine, alone.quarantine)
        assert batch.rows_read == alone.rows_read == d.frame.height
        assert batch.rows_quarantined == alone.rows_quarantined
        assert batch.warnings == alone.warnings
        assert batch.staged.get_column("feed_date").unique().to_list() == [d.feed_date]
        assert batch.staged.get_column("source").unique().to_list() == [d.source]
    # and in any order
    backwards = validate_discharge_batch(deliveries[::-1], CODES)[::-1]
    for a, b in zip(together, backwards, strict=True):
        assert_frame_equal(a.staged, b.staged)
        assert_frame_equal(a.quarantine, b.quarantine)


def _frames(v: pipeline.Validated) -> tuple[pl.DataFrame, pl.DataFrame]:
    assert v.staged_path and v.quarantine_path
    return pl.read_parquet(v.staged_path), pl.read_parquet(v.quarantine_path)


def test_validate_partitions_equals_validate_partition_one_by_one(
    partitions: list[Partition], tmp_path: Path
) -> None:
    registry = str(partitions[0].path.parents[2] / "reference" / "hospitals.csv")
    assert Path(registry).exists()
    together = validate_partitions(
        partitions, work_dir=str(tmp_path / "together"), registry_file=registry
    )
    for p, t in zip(partitions, together, strict=True):
        alone = validate_partition(p, work_dir=str(tmp_path / "alone"), registry_file=registry)
        assert (t.partition, t.content_hash, t.status) == (p, alone.content_hash, "validated")
        assert (t.rows_read, t.rows_quarantined, t.warnings, t.error) == (
            alone.rows_read,
            alone.rows_quarantined,
            alone.warnings,
            alone.error,
        )
        for a, b in zip(_frames(t), _frames(alone), strict=True):
            assert_frame_equal(a, b)


def test_an_unreadable_file_fails_only_its_partition(tmp_path: Path) -> None:
    partitions = _landing(tmp_path)
    broken = partitions[5]
    data = next(f for f in broken.path.iterdir() if not f.name.startswith("_"))
    assert data.name.endswith(".csv.gz")
    data.write_bytes(b"\x1f\x8b\x08 truncated, not gzip at all")  # its manifest says so too
    manifest = json.loads((broken.path / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["files"][0]["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    (broken.path / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    registry = str(tmp_path / "landing" / "reference" / "hospitals.csv")
    validated = validate_partitions(
        partitions, work_dir=str(tmp_path / "work"), registry_file=registry
    )
    by_key = {v.key: v for v in validated}
    assert by_key[broken.key].status == "failed"
    error = by_key[broken.key].error
    assert error and not error.startswith("unexpected"), error
    assert all(v.status == "validated" for k, v in by_key.items() if k != broken.key)

    # Through a whole run: the rest is staged and paid, that partition alone failed.
    # (a threshold of 100%: the crafted partitions are mostly bad rows, and are used anyway)
    settings = replace(
        Settings.build(tmp_path / "landing", tmp_path / "wh.duckdb", tmp_path / "outbox"),
        reject_threshold=1.0,
    )
    result = run_local(settings, as_of=DAYS[-1])
    assert result.partitions["failed"] == [broken.key]
    assert result.errors[broken.key] == error
    assert sorted(result.partitions["succeeded"]) == sorted(
        p.key for p in partitions if p.key != broken.key
    )


def _conflicting(landing: Path) -> Partition:
    """A partition sending one stay version twice with different content, another twice the
    same (a conflict within, and a plain repeat)."""
    rows = [
        row("D1"),
        row("D1", total_cost="110.00", fund_paid="70.00"),
        row("D2"),
        row("D2"),
        row("D3", version="2", record_type="C"),
    ]
    frame = pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))
    return Partition(
        DISCHARGES, DAYS[0], "DUPX", synth.write_partition(landing, DAYS[0], "DUPX", frame)
    )


def _warehouse_tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return {
            "discharge_rows": con.sql("SELECT * FROM discharge_rows ORDER BY ALL").fetchall(),
            "quarantine": con.sql("SELECT * FROM quarantine ORDER BY ALL").fetchall(),
            "partition_state": con.sql(
                "SELECT * EXCLUDE (updated_at) FROM partition_state ORDER BY ALL"
            ).fetchall(),
        }


def test_staging_a_set_equals_staging_partition_by_partition(
    partitions: list[Partition], tmp_path: Path
) -> None:
    from storage import staging
    from storage.warehouse import open_warehouse, transaction

    landing = partitions[0].path.parents[2]
    every = [*partitions, _conflicting(tmp_path / "extra")]
    validated = validate_partitions(
        every,
        work_dir=str(tmp_path / "work"),
        registry_file=str(landing / "reference/hospitals.csv"),
    )
    items = [
        staging.StageInput(
            v.key,
            v.partition.day,
            v.partition.source,
            v.content_hash or "",
            pl.read_parquet(v.staged_path or ""),
            pl.read_parquet(v.quarantine_path or ""),
            v.rows_read,
            v.warnings,
        )
        for v in validated
    ]
    # a threshold some partitions pass and some fail
    shares = sorted(v.rows_quarantined / v.rows_read for v in validated)
    threshold = shares[len(shares) // 2]
    outcomes: dict[str, list[list[staging.StageResult]]] = {"set": [], "one": []}
    touched: dict[str, list[tuple[object, ...]]] = {}
    for way in ("set", "one"):
        path = tmp_path / f"{way}.duckdb"
        for _ in range(2):  # the same contents again: rows replaced, attempts counted
            with open_warehouse(path) as con, transaction(con):
                staging.begin_commit(con)
                if way == "set":
                    results = staging.stage_discharge_set(
                        con, items, threshold=threshold, run_id="r1"
                    )
                else:
                    results = [
                        staging.stage_discharges(
                            con,
                            key=i.key,
                            day=i.day,
                            source=i.source,
                            content_hash=i.content_hash,
                            staged=i.staged,
                            quarantine=i.quarantine,
                            rows_read=i.rows_read,
                            warnings=i.warnings,
                            threshold=threshold,
                            run_id="r1",
                        )
                        for i in items
                    ]
                outcomes[way].append(results)
                touched[way] = con.sql(
                    "SELECT DISTINCT * FROM touched_stays ORDER BY ALL"
                ).fetchall()
                staging.refresh_touched_stays(con)
    assert outcomes["set"] == outcomes["one"]
    statuses = {r.status for r in outcomes["set"][0]}
    assert statuses == {"succeeded", "failed"}, statuses
    dupx = next(r for i, r in zip(items, outcomes["set"][0], strict=True) if i.key.endswith("DUPX"))
    assert dupx == staging.StageResult("succeeded", 5, 1, None)  # the conflict within counted
    assert touched["set"] == touched["one"] and touched["set"]
    assert _warehouse_tables(tmp_path / "set.duckdb") == _warehouse_tables(tmp_path / "one.duckdb")
