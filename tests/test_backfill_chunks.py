"""A backfill in chunks of feed dates (operations.md, ``claims backfill --chunk-days N``).

The contract: each chunk is one transaction and one payment batch, a re-run after a kill commits
only what is not yet committed, and the ledger a backfill ends with equals, for every
(stay, plan, member), the one that date-by-date runs give. Here random chunkings and random kill
points (``config/faults.py``, a real ``os._exit`` in a real subprocess, like ``kill -9``) are
played on real DuckDB files against one date-by-date backfill of the same landing folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from test_faults import (
    PYTHON,
    Place,
    _env,
    assert_paid_exactly_once,
    query,
    running,
    start,
)

import synth
from config.faults import POINTS
from config.settings import ConfigError, Settings
from pipeline import backfill_local, chunk_dates

SEED = 41
START = date(2026, 5, 4)
NIGHTS = [START + timedelta(days=i) for i in range(8)]
GAP = START + timedelta(days=8)  # no feed on this date: chunks are calendar days, not folders
LAST = START + timedelta(days=9)
DATES = [*NIGHTS, LAST]
FAILING = (NIGHTS[4], "HOSPX")


def build_landing(landing: Path) -> None:
    """Registry, two enrolment snapshots (the second drops a few members and ends coverage for
    others), nine feed dates of two sources with corrections and voids across dates, a few
    quarantined rows, and one partition too broken to load."""
    pop = synth.make_population(250, seed=SEED, as_of=START - timedelta(days=1))
    hospitals = synth.make_hospitals(12, seed=0)
    synth.write_registry(landing, hospitals)
    enrol = pop.enrollments
    synth.write_snapshot(landing, START - timedelta(days=1), enrol)
    ids = enrol.get_column("national_id").unique().sort().to_list()
    second = enrol.filter(~pl.col("national_id").is_in(ids[:5])).with_columns(
        coverage_end=pl.when(pl.col("national_id").is_in(ids[5:9]))
        .then(pl.col("coverage_start") + timedelta(days=20))
        .otherwise("coverage_end")
    )
    synth.write_snapshot(landing, NIGHTS[3], second, fmt="parquet")
    for day in DATES:
        night = synth.make_stays(
            pop,
            hospitals,
            feed_date=day,
            n=30,
            seed=SEED,
            bad_rate=0.02,
            correction_rate=0.1,
            void_rate=0.05,
            history_start=START,
        )
        for source, rows in night.items():
            if (day, source) == FAILING:
                rows = rows.with_columns(
                    total_cost=pl.when(pl.int_range(pl.len()) % 2 == 0)
                    .then(pl.col("total_cost") + "x")
                    .otherwise("total_cost")
                )
            synth.write_partition(landing, day, source, rows)


def settings_of(place: Place) -> Settings:
    return Settings.build(place.landing, place.warehouse, place.outbox)


def ledger(warehouse: Path) -> Counter[tuple[str, ...]]:
    """The ledger per (stay, plan, member): what the contract says must not depend on chunks."""
    rows = query(
        warehouse,
        "SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen) "
        "FROM ledger_entries GROUP BY ALL HAVING sum(amount_fen) <> 0",
    )
    return Counter({tuple(r[:4]): int(r[4]) for r in rows})


def outcomes(warehouse: Path) -> list[tuple[Any, ...]]:
    return query(
        warehouse,
        "SELECT hospital_code, settlement_id, current_version, status, reason, national_id, "
        "paid_fen FROM claim_outcomes ORDER BY ALL",
    )


def partitions(warehouse: Path) -> list[tuple[Any, ...]]:
    return query(
        warehouse,
        "SELECT kind, partition_key, status, rows_read, rows_quarantined FROM partition_runs "
        "ORDER BY ALL",
    )


class DateByDate:
    """The landing folder, and the warehouse that one commit per date makes of it."""

    def __init__(self, root: Path) -> None:
        self.landing = root / "landing"
        build_landing(self.landing)
        self.place = Place(root / "by-date")
        shutil.copytree(self.landing, self.place.landing)
        results = backfill_local(settings_of(self.place), DATES[0], DATES[-1], chunk_days=1)
        assert [(r.as_of, r.batch_id is not None) for r in results][:2] == [
            (NIGHTS[0].isoformat(), True),
            (NIGHTS[1].isoformat(), True),
        ]
        assert len(results) == len(DATES)
        self.ledger = ledger(self.place.warehouse)
        self.outcomes = outcomes(self.place.warehouse)
        self.partitions = partitions(self.place.warehouse)
        statuses = Counter(r[3] for r in self.outcomes)
        # Worth comparing only if it holds what it claims to hold.
        assert {"paid", "void", "unmatched"} <= set(statuses), statuses
        assert ("discharges", f"feed_date={FAILING[0]}/source={FAILING[1]}", "failed") in {
            r[:3] for r in self.partitions
        }
        assert any(r[4] for r in self.partitions), "no quarantined rows"
        assert (
            query(self.place.warehouse, "SELECT count(*) FROM ledger_entries WHERE amount_fen < 0")[
                0
            ][0]
            > 0
        ), "no recoveries"
        assert_paid_exactly_once(self.place)


@pytest.fixture(scope="module")
def by_date(tmp_path_factory: pytest.TempPathFactory) -> DateByDate:
    return DateByDate(tmp_path_factory.mktemp("backfill-by-date"))


DRIVER = """
import json, sys
from datetime import date
from pathlib import Path
from config.settings import Settings
from pipeline import backfill_local

spec = json.loads(sys.argv[1])
settings = Settings.build(Path(spec["landing"]), Path(spec["warehouse"]), Path(spec["outbox"]))
results = backfill_local(
    settings, date.fromisoformat(spec["from"]), date.fromisoformat(spec["to"]),
    chunk_days=spec["chunk_days"],
)
print(json.dumps([[r.as_of, r.batch_id] for r in results]))
"""


def backfill_spec(place: Place, chunk_days: int) -> str:
    """What ``DRIVER`` reads: a backfill of the whole range into ``place``, as JSON."""
    return json.dumps(
        {
            "landing": str(place.landing),
            "warehouse": str(place.warehouse),
            "outbox": str(place.outbox),
            "from": DATES[0].isoformat(),
            "to": DATES[-1].isoformat(),
            "chunk_days": chunk_days,
        }
    )


def backfill_process(place: Place, chunk_days: int, fault: tuple[str, int] | None) -> int:
    """One backfill of the whole range in its own process; with ``fault``, it dies there
    (``os._exit(137)``) after passing that point ``skip`` times. Returns the exit status."""
    spec = backfill_spec(place, chunk_days)
    extra = {"CLAIMS_FAULT": fault[0], "CLAIMS_FAULT_SKIP": str(fault[1])} if fault else {}
    done = start([str(PYTHON), "-c", DRIVER, spec], _env(**extra), place.root / "logs")
    finished = done.wait(300)
    assert finished.returncode in (0, 137), finished.stderr[-3000:]
    if not fault:
        assert finished.returncode == 0
        batches = [b for _, b in json.loads(finished.stdout.splitlines()[-1])]
        # One commit per chunk of the plan, and at most one batch each.
        assert len(batches) == len(chunk_dates(DATES, chunk_days))
    return finished.returncode


attempts = st.lists(
    st.tuples(
        st.integers(1, 10),  # chunk days of this attempt
        st.sampled_from(POINTS),  # where it is killed
        st.integers(0, 3),  # after passing that point this many times
    ),
    min_size=0,
    max_size=2,
)


def check_killed_then_finished(
    by_date: DateByDate, killed: list[tuple[int, str, int]], chunk_days: int
) -> list[int]:
    """Backfills killed at ``killed`` points, each with its own chunking, then one with
    ``chunk_days`` that runs to its end, compared with date-by-date runs. Returns the exit
    statuses of the killed attempts."""
    with tempfile.TemporaryDirectory(prefix="claims-chunks-") as tmp:
        place = Place(Path(tmp))
        shutil.copytree(by_date.landing, place.landing)
        codes = [backfill_process(place, days, (point, skip)) for days, point, skip in killed]
        backfill_process(place, chunk_days, None)

        assert ledger(place.warehouse) == by_date.ledger
        assert outcomes(place.warehouse) == by_date.outcomes
        assert partitions(place.warehouse) == by_date.partitions
        assert not running(place.warehouse)
        assert_paid_exactly_once(place)
        # Run again: everything is committed, so nothing new is posted or paid.
        entries = query(place.warehouse, "SELECT count(*) FROM ledger_entries")[0][0]
        backfill_process(place, chunk_days, None)
        assert query(place.warehouse, "SELECT count(*) FROM ledger_entries")[0][0] == entries
        return codes


def test_killed_in_its_second_chunk_then_rechunked(by_date: DateByDate) -> None:
    """Chunks of 3 days, killed inside the second chunk's ledger transaction, then finished in
    chunks of 2 days: the date-by-date ledger, outcomes and partition states, paid once."""
    assert check_killed_then_finished(by_date, [(3, "in_ledger", 1)], 2) == [137]


attempts = st.lists(
    st.tuples(
        st.integers(1, 10),  # chunk days of this attempt
        st.sampled_from(POINTS),  # where it is killed
        st.integers(0, 3),  # after passing that point this many times
    ),
    min_size=0,
    max_size=2,
)


@pytest.mark.slow
@hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(killed=attempts, chunk_days=st.integers(1, 10))
@example(killed=[(31, "after_commit", 0), (2, "batch_file_half", 1)], chunk_days=4)
@example(killed=[(1, "snapshot_load", 0), (4, "after_batch_file", 1)], chunk_days=31)
def test_any_chunking_killed_anywhere_ends_in_the_date_by_date_ledger(
    by_date: DateByDate, killed: list[tuple[int, str, int]], chunk_days: int
) -> None:
    """Random chunkings killed at random points (a real ``os._exit`` in a real process), then
    a backfill to its end: the ledger per (stay, plan, member), the outcomes and the partition
    states are those of date-by-date runs, no partition is left running, and the outbox pays
    every member exactly their ledger less what they owe back."""
    check_killed_then_finished(by_date, killed, chunk_days)


def test_one_transaction_and_one_batch_per_chunk(by_date: DateByDate, tmp_path: Path) -> None:
    """Chunks of 4 calendar days over nine feed dates with a gap: three commits, three batches,
    each batch paying what its chunk's ledger entries net to per member."""
    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    results = backfill_local(settings_of(place), DATES[0], DATES[-1], chunk_days=4)
    assert [r.as_of for r in results] == [d.isoformat() for d in (NIGHTS[3], NIGHTS[7], LAST)]
    runs = query(place.warehouse, "SELECT run_id, as_of_date, batch_id FROM runs ORDER BY 2")
    assert [r[1] for r in runs] == [NIGHTS[3], NIGHTS[7], LAST]
    assert query(place.warehouse, "SELECT count(DISTINCT run_id) FROM ledger_entries")[0][0] == 3
    batches = query(place.warehouse, "SELECT batch_id, run_id FROM payment_batches ORDER BY 1")
    assert len(batches) == 3 and {b[1] for b in batches} == {r[0] for r in runs}
    assert ledger(place.warehouse) == by_date.ledger
    assert_paid_exactly_once(place)


def test_chunks_are_runs_of_calendar_days() -> None:
    days = [date(2026, 1, d) for d in (1, 2, 3, 5, 9, 10)]
    assert [c.feed_dates for c in chunk_dates(days, 3)] == [
        (days[0], days[1], days[2]),
        (days[3],),
        (days[4], days[5]),
    ]
    assert [len(c.feed_dates) for c in chunk_dates(days, 1)] == [1] * 6
    assert [c.label for c in chunk_dates(days, 31)] == ["feed_date=2026-01-01..2026-01-10"]
    assert chunk_dates(days[:1], 31)[0].label == "feed_date=2026-01-01"
    assert chunk_dates([], 5) == []
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="chunk-days"):
            chunk_dates(days, bad)
