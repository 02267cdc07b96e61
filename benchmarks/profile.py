"""Where the time and memory go: the breakdowns behind "Misses and plans" in docs/benchmarks.md.

    python -m benchmarks.profile dates --landing L --warehouse W --from D [--days N]
    python -m benchmarks.profile partitions --landing L [--limit N]
    python -m benchmarks.profile snapshot-memory --landing L --work DIR
    python -m benchmarks.profile snapshot-phases --landing L --warehouse NEW --outbox O --date D
    python -m benchmarks.profile chains --staged FILE
    python -m benchmarks.profile flow-gaps --landing L --warehouse W --from D1 --to D2
    python -m benchmarks.profile chunk-statements --landing L --warehouse W --from D1 --to D2

``dates`` runs ``run_local`` per feed date (as ``claims backfill`` commits) and splits each date's
CPU and wall time over the pipeline's stages; ``partitions`` splits the validation of discharge
partitions; ``snapshot-memory`` samples RSS through the snapshot's read, validation, Parquet
write and warehouse load; ``snapshot-phases`` splits a snapshot run's wall and CPU time over
its phases (the read, the repeated ids, each slice's screen and staging, the load's polars
steps, the commit); ``flow-gaps`` times what ``claims backfill``'s flow spends outside
the dates' work; ``chains`` times ``storage.members``'s coverage-chain SQL against the
rewrite proposed in the analysis, on a staged snapshot, and checks they give the same rows;
``chunk-statements`` runs ``backfill_local`` and counts, for every DuckDB statement and every
chunk's commit, what the process spent: wall, user and system CPU, minor page faults and bytes
read and written through system calls (``/proc/self/io``: a block the buffer pool evicted and
reads again shows there), with the warehouse's memory by tag after each commit (ADR 0027).
Production functions are wrapped for timing, never changed. For a call tree, use pyinstrument:
``python -m pyinstrument -r text -m benchmarks.steps local --landing … --date …``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

Totals = defaultdict[str, list[float]]


def _timed(acc: Totals, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[label][0] += time.perf_counter() - wall
            acc[label][1] += time.process_time() - cpu

    return wrapper


def dates(args: argparse.Namespace) -> None:
    """Per feed date: wall/CPU seconds of each stage of a commit."""
    import pipeline
    import pipeline.local as local
    import pipeline.pay as pay
    import pipeline.plan as plan
    import pipeline.sequence as sequence
    import pipeline.write as write
    import storage.staging as staging
    from config.settings import Settings

    acc: Totals = defaultdict(lambda: [0.0, 0.0])
    for name in ("plan_run", "issue"):
        setattr(sequence, name, _timed(acc, name, getattr(sequence, name)))
    pipeline.validate_partitions = _timed(acc, "validate", pipeline.validate_partitions)
    for name in ("adjudicate", "post"):
        setattr(write, name, _timed(acc, name, getattr(write, name)))
    for name in ("stage_discharge_set", "refresh_touched_stays"):
        setattr(staging, name, _timed(acc, name, getattr(staging, name)))
    opener = write.open_warehouse

    label = "open + migrate + close (checkpoint)"

    @contextlib.contextmanager
    def open_warehouse(path: Path, **kw: Any) -> Iterator[Any]:
        manager = opener(path, **kw)
        con = _timed(acc, label, manager.__enter__)()
        try:
            yield con
        finally:
            _timed(acc, label, manager.__exit__)(None, None, None)

    @contextlib.contextmanager
    def transaction(con: Any) -> Iterator[None]:
        con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _timed(acc, "COMMIT", con.execute)("COMMIT")

    # the layout moved the openers: time every module that opens the warehouse for a night
    for module in (sequence, plan, pay, write):
        module.open_warehouse = open_warehouse  # type: ignore[attr-defined]
    write.transaction = transaction
    settings = Settings.build(Path(args.landing), Path(args.warehouse), Path(args.outbox))
    first = date.fromisoformat(args.date_from)
    print("date        wall   CPU | stage wall/CPU seconds, by CPU")
    for i in range(args.days):
        day = first + timedelta(days=i)
        acc.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        local.run_local(settings, command="backfill", as_of=day, feed_dates=(day, day))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        parts = sorted(acc.items(), key=lambda kv: -kv[1][1])
        print(
            f"{day} {wall:6.2f} {cpu:5.2f} | "
            + "  ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in parts),
            flush=True,
        )


def partitions(args: argparse.Namespace) -> None:
    """Per discharge partition: reading and each part of validation, CPU milliseconds."""
    import polars as pl

    import transforms.discharges as td
    from landing.delivery import read_delivery
    from landing.partitions import discover
    from schemas import discharge as schema

    acc: Totals = defaultdict(lambda: [0.0, 0.0])
    for name in ("_trimmed", "_validate", "_parsed", "_staged"):
        if hasattr(td, name):
            setattr(td, name, _timed(acc, name, getattr(td, name)))
    landing = Path(args.landing)
    found = discover(landing).discharges[: args.limit]
    codes = pl.read_csv(landing / "reference" / "hospitals.csv", infer_schema=False)
    read = validate = 0.0
    rows = 0
    for p in found:
        cpu = time.process_time()
        delivery = read_delivery(p, schema.REQUIRED, optional=schema.OPTIONAL)
        read += time.process_time() - cpu
        cpu = time.process_time()
        td.validate_discharges(
            delivery.frame, feed_date=p.day, source=p.source, hospital_codes=codes["hospital_code"]
        )
        validate += time.process_time() - cpu
        rows += delivery.frame.height
    n = max(1, len(found))
    print(f"{len(found)} partitions, {rows} rows ({rows // n} a partition), CPU per partition:")
    print(f"  read_delivery          {read / n * 1000:6.0f} ms")
    print(f"  validate_discharges    {validate / n * 1000:6.0f} ms, of which")
    for name, (_, c) in acc.items():
        print(f"    {name:<20} {c / n * 1000:6.0f} ms")


def snapshot_memory(args: argparse.Namespace) -> None:
    """Peak RSS of each phase of a snapshot load (sampled every 10 ms)."""
    from datetime import date as _date

    import psutil

    from landing.partitions import discover
    from pipeline import validate_snapshot
    from storage.members import load_snapshot
    from storage.warehouse import open_warehouse, transaction

    proc = psutil.Process()
    peaks: dict[str, int] = {}
    phase = ["start"]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks[phase[0]] = max(peaks.get(phase[0], 0), proc.memory_info().rss)
            done.wait(0.01)

    threading.Thread(target=sample, daemon=True).start()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    snap = discover(Path(args.landing)).snapshots[-1]
    time.sleep(0.05)
    phase[0] = "read + validate + write staged Parquet"
    validated = validate_snapshot(snap, work_dir=str(work), threshold=0.01)
    assert validated.staged_path is not None
    phase[0] = "load into the warehouse (chains, members)"
    with open_warehouse(work / "probe.duckdb") as con, transaction(con):
        load_snapshot(
            con,
            staged=Path(validated.staged_path),
            snapshot_date=_date.fromisoformat(str(snap.day)),
            content_hash="probe",
            run_id="probe",
        )
    time.sleep(0.05)
    done.set()
    for name, rss in peaks.items():
        print(f"{name:<44} peak RSS {rss / 2**30:5.2f} GB")


def snapshot_phases(args: argparse.Namespace) -> None:
    """Wall and CPU seconds of each phase of ``run_local`` loading a snapshot into a new
    warehouse (what the snapshot benchmark measures). Phases nest (a slice holds its screen);
    with slices checked at once, a slice's figures overlap the others'."""
    import pipeline
    import pipeline.sequence as sequence
    import pipeline.validate as validate
    import storage.members as members
    import transforms.enrollments as enrollments
    from config.settings import Settings

    acc: Totals = defaultdict(lambda: [0.0, 0.0])
    validate.read_delivery = _timed(
        acc, "read the snapshot (read_delivery)", validate.read_delivery
    )
    for name, label in (
        ("mark_repeated_ids", "repeated ids (whole snapshot)"),
        ("validate_enrollments", "slices: validate_enrollments"),
        ("_screen", "  slices: screen"),
        ("_staged", "  slices: staged rows"),
        ("_judge", "  slices: judge suspects"),
    ):
        setattr(enrollments, name, _timed(acc, label, getattr(enrollments, name)))
    pipeline.validate_snapshot = _timed(
        acc, "validate_snapshot (all of the above, the writes)", pipeline.validate_snapshot
    )
    for name in ("staged_snapshot", "repeat_flags", "derive"):
        if hasattr(members, name):  # the load's polars steps, as far as they exist
            setattr(members, name, _timed(acc, f"  load: {name}", getattr(members, name)))
    members.load_snapshot = _timed(
        acc, "load_snapshot (inserts, members, diff)", members.load_snapshot
    )
    sequence.commit = _timed(acc, "commit (the load and the rest)", sequence.commit)
    settings = Settings.build(Path(args.landing), Path(args.warehouse), Path(args.outbox))
    with open("/proc/loadavg") as f:
        before = f.read().split()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    pipeline.run_local(settings, as_of=date.fromisoformat(args.date))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with open("/proc/loadavg") as f:
        after = f.read().split()[0]
    print(f"run_local: wall {wall:.2f} s, CPU {cpu:.2f} s; load average {before} -> {after}")
    print(f"{'phase':<52} {'wall':>6} {'CPU':>6}")
    for label, (w, c) in acc.items():
        print(f"{label:<52} {w:6.2f} {c:6.2f}")


# The rewrite proposed in docs/benchmarks.md, "Misses and plans", 1.1: the chains as windows in
# DuckDB, against which the starts computed before the load (``derive``) are compared.
CHAINS_PROPOSED = """
WITH multi AS (
    SELECT national_id, plan_code FROM staged_enrollments GROUP BY ALL HAVING count(*) > 1
), ordered AS (
    SELECT s.* EXCLUDE (chain_start), max(coalesce(coverage_end, DATE '9999-12-31')) OVER (
        PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_until
    FROM staged_enrollments s SEMI JOIN multi USING (national_id, plan_code)
)
SELECT s.* EXCLUDE (chain_start), s.coverage_start AS chain_start
FROM staged_enrollments s ANTI JOIN multi USING (national_id, plan_code)
UNION ALL BY NAME
SELECT * EXCLUDE (covered_until),
    max(CASE WHEN covered_until IS NULL OR coverage_start > covered_until + 1
             THEN coverage_start END) OVER (
        PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
        ROWS UNBOUNDED PRECEDING) AS chain_start
FROM ordered
"""


def chains(args: argparse.Namespace) -> None:
    """The coverage-chain SQL as it is and as proposed: seconds, and whether rows agree."""
    import duckdb
    import pyarrow.parquet as pq

    from storage.members import _CHAINS, derive, repeat_flags

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    # The staged rows as the load registers them: with their repeat flags and chain starts
    # (storage.members); "current" is then the plain insert the load makes.
    con.register("staged_enrollments", derive(repeat_flags(pq.read_table(args.staged))))
    con.execute("CREATE TABLE warm AS SELECT * FROM staged_enrollments")  # page cache, once
    timings: dict[str, list[float]] = {"current": [], "proposed": []}
    for _ in range(args.repeats):
        for name, sql in (("current", _CHAINS), ("proposed", CHAINS_PROPOSED)):
            t = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TABLE chains_{name} AS {sql}")
            timings[name].append(time.perf_counter() - t)
    cols = "enrollment_id, national_id, plan_code, coverage_start, coverage_end, chain_start"
    differ = 0
    for a, b in (("current", "proposed"), ("proposed", "current")):
        row = con.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM chains_{a} EXCEPT ALL "
            f"SELECT {cols} FROM chains_{b})"
        ).fetchone()
        differ += int(row[0]) if row else 0
    rows = con.execute("SELECT count(*) FROM chains_current").fetchone()
    for name, values in timings.items():
        print(f"{name:<9} best {min(values):.2f} s of {', '.join(f'{v:.2f}' for v in values)}")
    print(f"{rows[0] if rows else 0} rows; rows differing: {differ}")


def flow_gaps(args: argparse.Namespace) -> None:
    """Prefect's share of ``claims backfill``: time before the first date, between dates, after.

    Runs the real backfill flow in this process (ephemeral mode) with timestamps taken where
    each date's work starts (``plan_run``) and ends (``cleanup``): whatever lies outside is
    orchestration.
    """
    import pipeline
    from flows.nightly import backfill

    marks: list[tuple[str, float]] = []
    plan_run, cleanup = pipeline.plan_run, pipeline.cleanup

    def timed_plan(*a: Any, **k: Any) -> Any:
        marks.append(("start", time.perf_counter()))
        return plan_run(*a, **k)

    def timed_cleanup(*a: Any, **k: Any) -> Any:
        result = cleanup(*a, **k)
        marks.append(("end", time.perf_counter()))
        return result

    pipeline.plan_run = timed_plan
    pipeline.cleanup = timed_cleanup
    began = time.perf_counter()
    backfill(
        date_from=date.fromisoformat(args.date_from),
        date_to=date.fromisoformat(args.date_to),
        landing=args.landing,
        warehouse=args.warehouse,
        outbox=args.outbox,
    )
    finished = time.perf_counter()
    starts = [t for kind, t in marks if kind == "start"]
    ends = [t for kind, t in marks if kind == "end"]
    gaps = [b - a for a, b in zip(ends, starts[1:], strict=False)]
    work = sum(b - a for a, b in zip(starts, ends, strict=False))
    print(f"flow call {finished - began:.1f} s: dates' work {work:.1f} s")
    print(f"before the first date (API server start, flow run) {starts[0] - began:.1f} s")
    if gaps:
        gaps.sort()
        print(
            f"between dates ({len(gaps)}): median {gaps[len(gaps) // 2] * 1000:.0f} ms, "
            f"max {gaps[-1] * 1000:.0f} ms"
        )
    print(f"after the last date (report, flow end) {finished - ends[-1]:.1f} s")


_COUNTS = ("wall", "user", "sys", "minflt", "rchar", "wchar")


def _counts() -> tuple[float, ...]:
    """This process's (wall, user, sys, minor faults, rchar, wchar) so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    io = dict(line.split(":") for line in Path("/proc/self/io").read_text().splitlines())
    return (
        time.perf_counter(),
        usage.ru_utime,
        usage.ru_stime,
        float(usage.ru_minflt),
        float(io["rchar"]),
        float(io["wchar"]),
    )


def _delta(before: tuple[float, ...]) -> dict[str, float]:
    return {name: now - then for name, now, then in zip(_COUNTS, _counts(), before, strict=True)}


def _caller(repo: str) -> str:
    """The project's function (module.function:line) that ran the statement; a script's
    statements are named after the line that ran the script, not ``sql.run_script``."""
    frame: FrameType | None = sys._getframe(2)
    skip = ("/.venv/", "/benchmarks/", "/storage/sql.py")
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(repo) and not any(part in name for part in skip):
            return f"{Path(name).stem}.{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


class _Counted:
    """A DuckDB connection whose statements are counted into ``records``."""

    def __init__(self, con: Any, records: list[dict[str, Any]], repo: str) -> None:
        self._con, self._records, self._repo = con, records, repo

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._con, name)
        if name not in ("execute", "sql", "executemany"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            before = _counts()
            result = attr(*args, **kwargs)
            sql = args[0] if args and isinstance(args[0], str) else ""
            self._records.append(
                {"at": _caller(self._repo), "sql": " ".join(sql.split())[:80], **_delta(before)}
            )
            return result

        return counted


def chunk_statements(args: argparse.Namespace) -> None:
    """Per statement and per commit: CPU, page faults and I/O of a chunked backfill."""
    import duckdb

    import pipeline
    import pipeline.sequence as sequence
    import storage.warehouse as warehouse
    from config.settings import Settings

    repo = str(Path(__file__).resolve().parent.parent) + "/"
    records: list[dict[str, Any]] = []
    commits: list[dict[str, Any]] = []
    connect = duckdb.connect

    def counted_connect(*a: Any, **k: Any) -> Any:
        return _Counted(connect(*a, **k), records, repo)

    warehouse.duckdb.connect = counted_connect
    commit = sequence.commit

    def counted_commit(*a: Any, **k: Any) -> Any:
        first, before = len(records), _counts()
        result = commit(*a, **k)
        done = _delta(before)
        session = next(iter(warehouse._sessions.values()), None)
        memory = []
        if session is not None and session.con is not None:
            memory = session.con.sql(
                "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0"
            ).fetchall()
        commits.append({"statements": (first, len(records)), **done, "memory": memory})
        print(
            f"commit {len(commits)}: CPU {done['user'] + done['sys']:.2f} s "
            f"(sys {done['sys']:.2f}), {done['minflt'] / 1e3:.0f}k faults, "
            f"{done['rchar'] / 1e6:.0f} MB read, wall {done['wall']:.2f} s",
            flush=True,
        )
        return result

    sequence.commit = counted_commit
    settings = Settings.build(Path(args.landing), Path(args.warehouse), Path(args.outbox))
    before = _counts()
    pipeline.backfill_local(
        settings,
        date.fromisoformat(args.date_from),
        date.fromisoformat(args.date_to),
        chunk_days=args.chunk_days,
    )
    total = _delta(before)
    by_caller: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for record in records:
        by_caller[record["at"]][0] += record["user"] + record["sys"]
        by_caller[record["at"]][1] += record["minflt"]
    cpu_s = total["user"] + total["sys"]
    print(f"whole run: CPU {cpu_s:.2f} s, {total['minflt'] / 1e3:.0f}k faults")
    for at, (cpu, faults) in sorted(by_caller.items(), key=lambda kv: -kv[1][0])[:15]:
        print(f"  {at:<48} {cpu:6.2f} s  {faults / 1e3:5.0f}k faults")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"total": total, "commits": commits, "statements": records}, default=str)
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("dates")
    p.set_defaults(fn=dates)
    p.add_argument("--landing", required=True)
    p.add_argument("--warehouse", required=True, help="a copy of a warehouse with the snapshot")
    p.add_argument("--outbox", default="/tmp/claims-profile-outbox")
    p.add_argument("--from", dest="date_from", required=True)
    p.add_argument("--days", type=int, default=10)
    p = sub.add_parser("partitions")
    p.set_defaults(fn=partitions)
    p.add_argument("--landing", required=True)
    p.add_argument("--limit", type=int, default=30)
    p = sub.add_parser("snapshot-memory")
    p.set_defaults(fn=snapshot_memory)
    p.add_argument("--landing", required=True, help="a landing folder with the snapshot")
    p.add_argument("--work", required=True, help="a scratch folder")
    p = sub.add_parser("snapshot-phases")
    p.set_defaults(fn=snapshot_phases)
    p.add_argument("--landing", required=True, help="a landing folder with the snapshot")
    p.add_argument("--warehouse", required=True, help="a new warehouse path")
    p.add_argument("--outbox", required=True)
    p.add_argument("--date", required=True)
    p = sub.add_parser("flow-gaps")
    p.set_defaults(fn=flow_gaps)
    p.add_argument("--landing", required=True)
    p.add_argument("--warehouse", required=True, help="a copy of a warehouse with the snapshot")
    p.add_argument("--outbox", default="/tmp/claims-profile-outbox")
    p.add_argument("--from", dest="date_from", required=True)
    p.add_argument("--to", dest="date_to", required=True)
    p = sub.add_parser("chains")
    p.set_defaults(fn=chains)
    p.add_argument("--staged", required=True, help="a staged snapshot Parquet file")
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("chunk-statements")
    p.set_defaults(fn=chunk_statements)
    p.add_argument("--landing", required=True)
    p.add_argument("--warehouse", required=True, help="a copy of a warehouse with the snapshot")
    p.add_argument("--outbox", required=True, help="the copy's outbox")
    p.add_argument("--from", dest="date_from", required=True)
    p.add_argument("--to", dest="date_to", required=True)
    p.add_argument("--chunk-days", type=int, default=31)
    p.add_argument("--json", help="write every statement's counts here")
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
