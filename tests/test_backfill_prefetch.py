"""The next backfill chunk validated in a second process while one commits (``pipeline.prefetch``).

The plan stays authoritative: what the child validated is used only for partitions the plan
chose, with the content they have when it runs; anything else is validated in the backfill's
own process. Played on real files, real DuckDB files and real child processes, against the
date-by-date ledger of ``tests/test_backfill_chunks.py``.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from test_backfill_chunks import (
    DATES,
    DRIVER,
    DateByDate,
    backfill_spec,
    ledger,
    outcomes,
    partitions,
    settings_of,
)
from test_faults import PYTHON, Place, _env, assert_paid_exactly_once, running, start

import synth
from config.settings import Settings
from landing.partitions import discover
from pipeline import backfill_chunks, backfill_local
from pipeline.backfill import run_chunk
from pipeline.prefetch import Prefetcher
from storage.lock import run_lock
from storage.warehouse import warehouse_session

AHEAD = re.compile(r"(feed_date=\S+): (\d+) of (\d+) partition\(s\) validated ahead$")


@pytest.fixture(scope="module")
def by_date(tmp_path_factory: pytest.TempPathFactory) -> DateByDate:
    return DateByDate(tmp_path_factory.mktemp("prefetch-by-date"))


def ahead(log: pytest.LogCaptureFixture | str) -> list[tuple[str, int, int]]:
    """(chunk, partitions taken from the child, partitions the plan chose), chunk by chunk."""
    found = []
    lines = log.splitlines() if isinstance(log, str) else [r.getMessage() for r in log.records]
    for line in lines:
        m = AHEAD.search(line)
        if m:
            found.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return found


def leftovers(settings: Settings) -> list[str]:
    staging = settings.staging_dir
    return sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []


def assert_same_as(place: Place, want: DateByDate | Place) -> None:
    if isinstance(want, DateByDate):
        assert ledger(place.warehouse) == want.ledger
        assert outcomes(place.warehouse) == want.outcomes
        assert partitions(place.warehouse) == want.partitions
    else:
        assert ledger(place.warehouse) == ledger(want.warehouse)
        assert outcomes(place.warehouse) == outcomes(want.warehouse)
        assert partitions(place.warehouse) == partitions(want.warehouse)
    assert not running(place.warehouse)
    assert_paid_exactly_once(place)


def test_a_pipelined_backfill_ends_in_the_date_by_date_ledger(
    by_date: DateByDate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Chunks of 3 days: every chunk after the first takes the partitions the child validated
    while the previous one committed, and the warehouse ends as date-by-date runs leave it,
    with no prefetched file left behind."""
    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    with caplog.at_level(logging.INFO, logger="claims"):
        results = backfill_local(settings_of(place), DATES[0], DATES[-1], chunk_days=3)
    assert len(results) == 4
    seen = ahead(caplog)
    assert len(seen) == 4
    assert seen[0][1] == 0  # nothing runs ahead of the first chunk
    # The later chunks take every partition the child validated: all but the broken one, which
    # is validated again here and fails here, as it would have without a child.
    assert sum(n for _, n, _ in seen[1:]) >= sum(total for _, _, total in seen[1:]) - 1
    assert all(n > 0 for _, n, _ in seen[1:])
    assert_same_as(place, by_date)
    assert leftovers(settings_of(place)) == []
    # Nothing to do: nothing new posted.
    entries = Counter(ledger(place.warehouse))
    backfill_local(settings_of(place), DATES[0], DATES[-1], chunk_days=3)
    assert Counter(ledger(place.warehouse)) == entries


def test_one_chunk_and_chunks_of_one_day(by_date: DateByDate, tmp_path: Path) -> None:
    """A single-chunk backfill starts no child; chunks of one day prefetch the next day."""
    one = Place(tmp_path / "one")
    shutil.copytree(by_date.landing, one.landing)
    assert len(backfill_local(settings_of(one), DATES[0], DATES[-1], chunk_days=31)) == 1
    assert_same_as(one, by_date)
    daily = Place(tmp_path / "daily")
    shutil.copytree(by_date.landing, daily.landing)
    assert len(backfill_local(settings_of(daily), DATES[0], DATES[-1], chunk_days=1)) == 9
    assert_same_as(daily, by_date)
    assert leftovers(settings_of(one)) == leftovers(settings_of(daily)) == []


def redeliver_smaller(landing: Path, day: date, source: str) -> None:
    """The sender delivers the partition again, without its first two rows."""
    folder = landing / "discharges" / f"feed_date={day.isoformat()}" / f"source={source}"
    rows = pl.concat(
        [pl.read_csv(f, infer_schema=False) for f in sorted(folder.glob("part-*.csv"))]
    )
    synth.write_partition(landing, day, source, rows.slice(2))


def test_a_delivery_changed_after_its_prefetch_is_validated_again(
    by_date: DateByDate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A partition of the next chunk delivered again after the child validated it: the plan
    chooses the new content, which is validated here; the other partitions come from the
    child. The ledger is the one date-by-date runs give of the landing as it ends."""
    place = Place(tmp_path / "pipelined")
    shutil.copytree(by_date.landing, place.landing)
    settings = settings_of(place)
    chunks = backfill_chunks(settings, DATES[0], DATES[-1], 3)
    changed = chunks[1].first
    source = sorted(
        p.name.removeprefix("source=")
        for p in (place.landing / "discharges" / f"feed_date={changed}").iterdir()
    )[0]
    with (
        caplog.at_level(logging.INFO, logger="claims"),
        run_lock(settings.warehouse, settings.lock_timeout_s),
        warehouse_session(settings.warehouse),
        Prefetcher(settings.staging_dir) as prefetch,
    ):
        run_chunk(settings, chunks[0], prefetch=prefetch, next_chunk=chunks[1])
        prefetch._jobs[chunks[1]].future.result()  # the child is done with it
        redeliver_smaller(place.landing, changed, source)
        for chunk, following in zip(chunks[1:], [*chunks[2:], None], strict=True):
            run_chunk(settings, chunk, prefetch=prefetch, next_chunk=following)
        assert [p.name for p in settings.staging_dir.iterdir()] == [prefetch.folder_name]
    second = ahead(caplog)[1]
    assert second[0] == chunks[1].label and second[1] == second[2] - 1, second

    # The reference: one single-date backfill per date (no child) of the landing as it ends.
    want = Place(tmp_path / "by-date")
    shutil.copytree(place.landing, want.landing)
    for day in DATES:
        backfill_local(settings_of(want), day, day)
    assert ledger(want.warehouse) != by_date.ledger  # the new delivery did change the money
    assert_same_as(place, want)
    assert leftovers(settings) == []


def test_a_child_that_dies_leaves_its_chunks_to_this_process(
    by_date: DateByDate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The child dies (``os._exit`` at its fault point, like a kill): every chunk is validated
    here, the backfill ends as date-by-date runs, and no prefetched file is left."""
    monkeypatch.setenv("CLAIMS_FAULT", "prefetch_child")
    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    with caplog.at_level(logging.INFO, logger="claims"):
        results = backfill_local(settings_of(place), DATES[0], DATES[-1], chunk_days=3)
    assert len(results) == 4
    assert [n for _, n, _ in ahead(caplog)] == [0, 0, 0, 0]
    assert any("prefetch of a chunk failed (BrokenProcessPool)" in m for m in caplog.messages)
    assert_same_as(place, by_date)
    assert leftovers(settings_of(place)) == []


def test_the_child_loads_neither_prefect_nor_duckdb(by_date: DateByDate, tmp_path: Path) -> None:
    """The child validates with the validation alone, though this process has Prefect loaded."""
    import prefect  # noqa: F401  (the parent has it; the child must not)

    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    settings = settings_of(place)
    chunk = backfill_chunks(settings, DATES[0], DATES[-1], 3)[0]
    chosen = [p for p in discover(place.landing).discharges if p.day in chunk.feed_dates]
    registry = place.landing / "reference" / "hospitals.csv"
    with Prefetcher(settings.staging_dir) as prefetch:
        prefetch.start(chunk, chosen, str(registry))
        usable = prefetch.take(chunk, chosen, str(registry))
        assert len(usable) >= len(chosen) - 1 and usable  # all but a failed one, if any
        probe = "sorted(set(__import__('sys').modules) & {'prefect', 'duckdb', 'distributed'})"
        assert prefetch._executor().submit(eval, probe).result(60) == []
        folder = Path(next(iter(usable.values())).staged_path or "").parent
        assert folder.is_dir() and folder.parent.parent.name == prefetch.folder_name
    assert not folder.exists() and leftovers(settings) == []


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_kill_while_the_child_validates_leaves_no_process_and_no_files(
    by_date: DateByDate, tmp_path: Path
) -> None:
    """A backfill killed (``os._exit``, like ``kill -9``) inside its first chunk's transaction,
    while its child validates the second chunk: the child dies with it, and a rerun ends in the
    date-by-date ledger with nothing left in the staging folder."""
    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    marker = f"CLAIMS_TEST_RUN={uuid.uuid4().hex}"
    spec = backfill_spec(place, 3)
    name, value = marker.split("=")
    env = _env(CLAIMS_FAULT="after_staging", CLAIMS_FAULT_SKIP="1", **{name: value})
    killed = start([str(PYTHON), "-c", DRIVER, spec], env, place.root / "logs")
    assert killed.wait(300).returncode == 137
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []

    done = start([str(PYTHON), "-c", DRIVER, spec], _env(), place.root / "logs")
    finished = done.wait(300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_same_as(place, by_date)
    assert leftovers(settings_of(place)) == []


@pytest.mark.usefixtures("prefect_harness")
def test_the_backfill_flow_prefetches_and_ends_in_the_date_by_date_ledger(
    by_date: DateByDate, tmp_path: Path
) -> None:
    """The Prefect backfill flow (one task run per chunk) with its prefetching child: the
    date-by-date ledger, nothing left in the staging folder."""
    from flows.nightly import run_backfill

    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    # Prefect configures the logging of a flow run: a handler of our own on the logger.
    records: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    claims_log = logging.getLogger("claims")
    claims_log.addHandler(handler)
    level = claims_log.level
    claims_log.setLevel(logging.INFO)
    try:
        results = run_backfill(
            date_from=DATES[0],
            date_to=DATES[-1],
            landing=str(place.landing),
            warehouse=str(place.warehouse),
            outbox=str(place.outbox),
            chunk_days=4,
        )
    finally:
        claims_log.removeHandler(handler)
        claims_log.setLevel(level)
    taken = ahead("\n".join(records))
    assert len(results) == 3
    assert_same_as(place, by_date)
    assert leftovers(settings_of(place)) == []
    assert len(taken) == 3 and taken[0][1] == 0 and all(n > 0 for _, n, _ in taken[1:])


def test_ctrl_c_while_the_child_validates_stops_it_and_removes_its_files(
    by_date: DateByDate, tmp_path: Path
) -> None:
    """Ctrl-C (KeyboardInterrupt) while the child is at work: leaving the prefetcher stops the
    child at once and removes the prefetched files; so does an error after a chunk was taken."""
    place = Place(tmp_path)
    shutil.copytree(by_date.landing, place.landing)
    settings = settings_of(place)
    chunk = backfill_chunks(settings, DATES[0], DATES[-1], 31)[0]
    chosen = discover(place.landing).discharges
    registry = str(place.landing / "reference" / "hospitals.csv")
    with pytest.raises(KeyboardInterrupt), Prefetcher(settings.staging_dir) as prefetch:
        prefetch.start(chunk, chosen, registry)
        processes = list(prefetch._executor()._processes.values())
        assert processes and all(p.is_alive() for p in processes)
        raise KeyboardInterrupt
    assert not any(p.is_alive() for p in processes)
    assert leftovers(settings) == []

    with pytest.raises(RuntimeError), Prefetcher(settings.staging_dir) as prefetch:
        prefetch.start(chunk, chosen, registry)
        assert prefetch.take(chunk, chosen, registry)
        processes = list(prefetch._executor()._processes.values())
        raise RuntimeError("a commit that failed")
    assert not any(p.is_alive() for p in processes)
    assert leftovers(settings) == []
