"""The benchmark harness's own logic, without timing anything.

The new snapshot of the year-end night is a valid delivery that the pipeline loads, with the
share of people changed that the benchmark claims; the table judges every target of issue 16
from the figures it is given (the figures here are made up: nothing is measured).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

import synth
from benchmarks import newsnap
from benchmarks.run import TARGET_PEAK_BYTES, figures
from config.settings import Settings
from pipeline import run_local


def _population(people: int = 4_000) -> pl.DataFrame:
    return synth.make_population(people, seed=5, as_of=date(2026, 10, 31)).enrollments


def test_the_new_snapshot_changes_one_percent_of_people_in_each_of_four_ways() -> None:
    old = _population(20_000)
    new, counts = newsnap.change_people(old)

    changed = sum(counts[k] for k in newsnap.KINDS)
    assert counts["people"] == old["national_id"].n_unique()
    assert 0.007 * counts["people"] <= changed <= 0.013 * counts["people"]
    assert all(counts[k] > 0 for k in newsnap.KINDS)
    assert new.columns == old.columns
    assert new.height == old.height + counts["renewals"]
    assert new["enrollment_id"].n_unique() == new.height
    assert new.filter(pl.col("coverage_end") < pl.col("coverage_start")).is_empty()

    joined = old.join(new, on="enrollment_id", suffix="_new")
    differs = {
        column: joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_new")))[
            "national_id"
        ].n_unique()
        for column in ("payee_account", "member_name", "coverage_end")
    }
    assert differs["payee_account"] == counts["payee"]
    assert differs["member_name"] == counts["name"]
    # Ended, or ended for a renewal: every such person's latest enrolment ends earlier.
    assert differs["coverage_end"] >= counts["ended"]
    renewals = new.join(old, on="enrollment_id", how="anti")
    assert (renewals["coverage_start"] == newsnap.NEW_DATE).all()
    assert renewals.height == counts["renewals"] > 0
    assert renewals["coverage_end"].null_count() == renewals.height
    # Nobody else changed.
    untouched = joined.filter(
        pl.all_horizontal(
            pl.col(c).eq_missing(pl.col(f"{c}_new"))
            for c in ("payee_account", "member_name", "coverage_end")
        )
    )
    assert untouched["national_id"].n_unique() >= counts["people"] - changed


def test_the_derived_landing_folders_hold_the_year_the_night_and_a_loadable_new_snapshot(
    tmp_path: Path,
) -> None:
    # A tiny dataset laid out as benchmarks.data writes one.
    root = tmp_path / "data"
    pop = synth.make_population(3_000, seed=5, as_of=date(2026, 10, 31))
    hospitals = synth.make_hospitals(10, seed=5)
    snap = root / "snapshot"
    synth.write_registry(snap, hospitals)
    synth.write_snapshot(snap, date(2026, 10, 31), pop.enrollments, fmt="parquet", typed=True)
    for name, day in (("year", date(2026, 10, 30)), ("night", date(2026, 11, 2))):
        synth.write_registry(root / name, hospitals)
        synth.write_snapshot(
            root / name, date(2026, 10, 31), pop.enrollments, fmt="parquet", typed=True
        )
        for source, rows in synth.make_stays(pop, hospitals, feed_date=day, n=200, seed=5).items():
            synth.write_partition(root / name, day, source, rows)

    info = newsnap.generate(root, tmp_path / "derived", "parquet")

    yearnight, landing = tmp_path / "derived" / "yearnight", tmp_path / "derived" / "newsnap"
    feed_dates = {p.name for p in (yearnight / "discharges").iterdir()}
    assert feed_dates == {"feed_date=2026-10-30", "feed_date=2026-11-02"}
    snapshots = sorted(p.name for p in (landing / "enrollments").iterdir())
    assert snapshots == ["snapshot_date=2026-10-31", f"snapshot_date={newsnap.NEW_DATE}"]
    assert info["rows"] > pop.enrollments.height

    settings = Settings.build(landing, tmp_path / "warehouse.duckdb", tmp_path / "outbox")
    run_local(settings, as_of=date(2026, 11, 2))
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        snapshot_rows = con.execute("SELECT count(*) FROM enrollments").fetchone()
        renewed = con.execute(
            "SELECT count(*) FROM enrollments WHERE enrollment_id LIKE 'N%'"
        ).fetchone()
    finally:
        con.close()
    # The warehouse holds the new snapshot, renewals included: the delivery was accepted.
    assert snapshot_rows == (info["rows"],)
    assert renewed == (info["changed"]["renewals"],)


def _part(wall: float, peak: int = 1 << 30, result: dict[str, int] | None = None) -> dict:
    return {
        "wall_s": wall,
        "peak_rss": peak,
        "runs": [
            {
                "wall_s": wall,
                "peak_rss": peak,
                "returncode": 0,
                "timed_out": False,
                "result": result or {},
            }
        ],
        "ok": 1,
        "n": 1,
    }


def _results() -> dict[str, dict]:
    """Made-up figures: some targets met, some missed, on purpose."""
    return {
        "snapshot": {"pipeline": _part(30.0), "floor": _part(10.0)},  # 3× > 2×: missed
        "night": {"pipeline": _part(25.0), "local": _part(5.0), "floor": _part(2.0)},
        "prefect_start": {"pipeline": _part(20.0)},
        "server": {
            "pipeline": _part(7.0),
            "floor": _part(2.0),
            "split": {"import_s": 1.0, "api_s": 1.5, "data_s": 4.5},
            "server_start_s": 5.0,
        },
        "backfill": {
            "pipeline": _part(200.0, peak=7 << 30),
            "local": _part(150.0),
            "floor": _part(30.0),
        },
        "yearend": {"pipeline": _part(27.0), "local": _part(6.5)},  # 1.08 met, 1.3 missed
        "newsnap": {
            "pipeline": _part(40.0),
            "bare": _part(10.0),
            "snapshot": {"changed": {"payee": 1, "name": 1, "ended": 1, "renewed": 1}},
        },
        "readonly": {"status": _part(1.2), "explain": _part(1.8)},
        "verify": {"pipeline": _part(50.0), "exit": [0]},
        "sustainability": {"pipeline": _part(7.0)},
    }


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


def test_the_table_judges_every_target_of_issue_16() -> None:
    rows = figures(_results())
    targets = " ".join(r["target"] for r in rows)
    for words in (
        "year backfill",
        "year-end warehouse",
        "new snapshot",
        "data work",
        "running Prefect server",
        "snapshot load",
        "read-only",
        "peak memory",
    ):
        assert words in targets, words
    row = _by_name(rows)
    assert row["`claims backfill` (chunks of 31 dates)"]["limit"] == 3 * 30.0 + 20
    assert row["`claims backfill` (chunks of 31 dates)"]["met"] is False
    assert "Prefect's share 50.0 s" in row["`claims backfill` (chunks of 31 dates)"]["note"]
    assert row["night `claims run`, year-end warehouse"]["met"] is True
    assert row["night `run_local`, year-end warehouse"]["met"] is False
    assert row["`claims run`, new snapshot, year-end warehouse"]["limit"] == 2 * 10.0 + 27.0
    assert row["`claims run`, new snapshot, year-end warehouse"]["met"] is True
    assert row["night `run_local` (no Prefect), snapshot-only warehouse"]["met"] is False
    assert row["`claims run` with `PREFECT_API_URL`"]["limit"] == 8.0
    assert row["`claims run` with `PREFECT_API_URL`"]["met"] is True
    assert "API 1.5 s" in row["`claims run` with `PREFECT_API_URL`"]["note"]
    assert row["`run_local`, registry + snapshot, new warehouse"]["met"] is False
    assert row["`claims status`, year-end warehouse"]["met"] is True
    assert row["`claims explain`, year-end warehouse"]["met"] is False
    peak = row["every pipeline run above"]
    assert peak["peak"] == 7 << 30 > TARGET_PEAK_BYTES and peak["met"] is False
    assert "claims backfill" in peak["note"]


def test_the_year_end_ratio_is_taken_against_the_twin_measured_beside_it() -> None:
    results = _results()
    # benchmark 2's night was measured before the machine slowed; the twins beside the
    # year-end nights were not
    results["yearend"] |= {"twin_pipeline": _part(24.0), "twin_local": _part(6.0)}
    row = _by_name(figures(results))
    local = row["night `run_local`, year-end warehouse"]
    assert local["met"] is True and "beside it" in local["basis"]
    assert local["ratio"] == 6.5 / 6.0
    assert row["night `claims run`, year-end warehouse"]["ratio"] == 27.0 / 24.0


def test_an_absent_server_benchmark_is_a_row_that_says_not_measured() -> None:
    results = _results()
    results["server"] = {"missing": True}
    row = _by_name(figures(results))["`claims run` with `PREFECT_API_URL`"]
    assert row["met"] is None and row["pipeline_s"] is None
    assert "not measured" in row["note"]


def test_a_failed_verify_is_a_miss_whatever_its_time() -> None:
    results = _results()
    results["verify"]["exit"] = [1]
    assert _by_name(figures(results))["`claims verify`, year-end warehouse"]["met"] is False
