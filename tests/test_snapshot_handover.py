"""A snapshot validated in the committing process hands its staged slices over in memory
(``pipeline.held``, ADR 0028): the warehouse it leaves is the one the staged files leave, bad
rows quarantined alike; a snapshot that fails whole holds nothing and loads nothing; a commit
that fails leaves nothing held."""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import pipeline
import pipeline.sequence as sequence
import synth
from config.settings import Settings
from landing.partitions import discover
from pipeline import held
from storage.members import fingerprints
from transforms import enrollments

DAY = date(2026, 10, 31)
SLICE = 700  # several slices, the last one short


def _broken(frame: pl.DataFrame, every: int) -> pl.DataFrame:
    """Every ``every``-th row's identity number spoiled, and one enrolment id repeated."""
    i = pl.int_range(pl.len())
    spoiled = frame.with_columns(
        national_id=pl.when(i % every == 3)
        .then(pl.lit("11010519491231002Y"))
        .otherwise(pl.col("national_id"))
    )
    return pl.concat([spoiled, spoiled.slice(5, 1)])


def _landing(root: Path, rows: pl.DataFrame) -> None:
    synth.write_registry(root, synth.make_hospitals(5, seed=3))
    synth.write_snapshot(root, DAY, rows, fmt="parquet", typed=True)


def _settings(tmp_path: Path, name: str, landing: Path) -> Settings:
    folder = tmp_path / name
    return Settings.build(landing, folder / "warehouse.duckdb", folder / "outbox")


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        enrollments,
        "validate_in_slices",
        functools.partial(enrollments.validate_in_slices, slice_rows=SLICE),
    )


class FileSteps(sequence.LocalSteps):
    """The run's steps with the staged slices written to files, as on a Dask worker."""

    def validate_snapshot(self, settings, snapshot, work_dir):  # type: ignore[no-untyped-def]
        return pipeline.validate_snapshot(
            snapshot, work_dir=work_dir, threshold=settings.snapshot_reject_threshold
        )


_TABLES = {
    "enrollments": "*",
    "members": "*",
    "quarantine": "*",
    "current_snapshot": "snapshot_date, content_hash, row_count",
    "partition_state": "partition_key, status, rows_read, rows_quarantined, error",
}


def _differences(a: Path, b: Path) -> dict[str, tuple[int, int, int]]:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    found = {}
    for table, columns in _TABLES.items():
        rows = con.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0]  # type: ignore[index]
        one = f"SELECT {columns} FROM a.{table} EXCEPT ALL SELECT {columns} FROM b.{table}"
        two = f"SELECT {columns} FROM b.{table} EXCEPT ALL SELECT {columns} FROM a.{table}"
        found[table] = (
            rows,
            con.execute(f"SELECT count(*) FROM ({one})").fetchone()[0],  # type: ignore[index]
            con.execute(f"SELECT count(*) FROM ({two})").fetchone()[0],  # type: ignore[index]
        )
    con.close()
    return found


@pytest.mark.usefixtures("small_slices")
def test_held_slices_load_what_the_staged_files_load(tmp_path: Path) -> None:
    rows = _broken(synth.make_population(1_500, seed=7, as_of=DAY).enrollments, every=400)
    _landing(tmp_path / "landing", rows)
    in_memory = _settings(tmp_path, "held", tmp_path / "landing")
    on_disk = _settings(tmp_path, "files", tmp_path / "landing")
    for s in (in_memory, on_disk):
        pipeline.init_warehouse(s)

    a = pipeline.run_local(in_memory, as_of=DAY)
    b = sequence.run_steps(on_disk, FileSteps(), sequence.Request("run", DAY))

    assert a.snapshot_rows == b.snapshot_rows == rows.height - a.rows_quarantined > 0
    assert a.rows_quarantined == b.rows_quarantined > 0
    found = _differences(in_memory.warehouse, on_disk.warehouse)
    assert found["quarantine"][0] > 0 and found["members"][0] > 0
    assert all(one == two == 0 for _, one, two in found.values()), found
    assert not held._HELD  # taken by the commit


@pytest.mark.usefixtures("small_slices")
def test_a_held_snapshot_writes_no_slice_and_carries_the_loads_fingerprints(
    tmp_path: Path,
) -> None:
    rows = _broken(synth.make_population(1_000, seed=8, as_of=DAY).enrollments, every=300)
    _landing(tmp_path / "landing", rows)
    (snapshot,) = discover(tmp_path / "landing").snapshots
    kept = pipeline.validate_snapshot(
        snapshot, work_dir=str(tmp_path / "held"), threshold=0.01, hold=True
    )
    written = pipeline.validate_snapshot(snapshot, work_dir=str(tmp_path / "files"), threshold=0.01)
    assert kept.status == written.status == "validated"
    assert kept.staged_path is not None and written.staged_path is not None
    assert not list(Path(kept.staged_path).iterdir())  # nothing written
    slices = held.take(Path(kept.staged_path))
    assert slices is not None and len(slices) == -(-rows.height // SLICE)
    assert held.take(Path(kept.staged_path)) is None  # once
    table = pa.concat_tables(slices)
    files = sorted(Path(written.staged_path).glob("part-*.arrow"))
    on_disk = pa.concat_tables(pa.ipc.open_file(pa.memory_map(str(f))).read_all() for f in files)
    assert table.drop_columns(["fingerprint"]).equals(on_disk)
    # Hashed slice by slice, the fingerprints the load computes on the whole table.
    whole = fingerprints(on_disk).column("fingerprint")
    assert table.column("fingerprint").to_pylist() == whole.to_pylist()
    assert kept.rows_quarantined == written.rows_quarantined > 0


def test_a_snapshot_that_fails_whole_holds_nothing_and_loads_nothing(tmp_path: Path) -> None:
    rows = _broken(synth.make_population(300, seed=9, as_of=DAY).enrollments, every=10)
    _landing(tmp_path / "landing", rows)
    settings = _settings(tmp_path, "w", tmp_path / "landing")
    pipeline.init_warehouse(settings)

    result = pipeline.run_local(settings, as_of=DAY)

    assert result.partitions["failed"] == [f"snapshot_date={DAY.isoformat()}"]
    assert not held._HELD
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM enrollments").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM members").fetchone() == (0,)
    # Its bad rows are quarantined with their reasons all the same.
    assert con.execute("SELECT count(DISTINCT row_number) FROM quarantine_rows").fetchone()[0] > 0  # type: ignore[index]
    con.close()


def test_a_commit_that_fails_leaves_nothing_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _landing(tmp_path / "landing", synth.make_population(200, seed=4, as_of=DAY).enrollments)
    settings = _settings(tmp_path, "w", tmp_path / "landing")
    pipeline.init_warehouse(settings)
    seen: list[int] = []

    def failing(*args: object, **kwargs: object) -> None:
        seen.append(len(held._HELD))
        raise RuntimeError("the commit failed")

    monkeypatch.setattr(sequence, "commit", failing)
    with pytest.raises(RuntimeError, match="the commit failed"):
        pipeline.run_local(settings, as_of=DAY)
    assert seen == [1]  # validation held the slices for the commit
    assert not held._HELD
