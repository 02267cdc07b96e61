"""What one measured process does: ``python -m benchmarks.steps STEP [options]``.

Every measured run is a fresh process started by ``benchmarks.run``, so that its wall time
includes start-up and imports the way a nightly job pays them, and its peak memory is its own.
The last line printed is ``BENCH-RESULT {json}``: what the step found (row counts, sums, the
time inside the step), for the figures and the cross-checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

STARTED = time.perf_counter()


def _emit(**fields: object) -> None:
    print("BENCH-RESULT " + json.dumps(fields, default=str), flush=True)


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from config.settings import Settings

    return Settings.build(Path(args.landing), Path(args.warehouse), Path(args.outbox))


def local(args: argparse.Namespace) -> None:
    """``run_local`` once: what ``claims run --date D`` does, without Prefect."""
    from pipeline import run_local

    t0 = time.perf_counter()
    result = run_local(_settings(args), as_of=date.fromisoformat(args.date))
    _emit(
        inner_s=time.perf_counter() - t0,
        snapshot_rows=result.snapshot_rows,
        rows_read=result.rows_read,
        partitions={k: len(v) for k, v in result.partitions.items()},
        paid_fen=result.paid_fen,
    )


def local_dates(args: argparse.Namespace) -> None:
    """A backfill without Prefect: ``run_local`` per feed date, as ``claims backfill`` commits."""
    import pipeline
    from outbox.report import write_report

    settings = _settings(args)
    first, last = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
    t0 = time.perf_counter()
    results = []
    for day in pipeline.feed_dates_between(settings, first, last):
        results.append(
            pipeline.run_local(settings, command="backfill", as_of=day, feed_dates=(day, day))
        )
    if results:
        write_report(settings.outbox, results, title=f"claims backfill {first} to {last}")
    _emit(
        inner_s=time.perf_counter() - t0,
        dates=len(results),
        partitions=sum(len(r.partitions.get("succeeded", [])) for r in results),
        rows_read=sum(r.rows_read for r in results),
        paid_fen=sum(r.paid_fen for r in results),
    )


def local_chunks(args: argparse.Namespace) -> None:
    """``claims backfill --chunk-days N`` without Prefect: ``backfill_local``, one commit per
    chunk on one warehouse connection."""
    import pipeline
    from outbox.report import write_report

    settings = _settings(args)
    first, last = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
    t0 = time.perf_counter()
    results = pipeline.backfill_local(settings, first, last, chunk_days=args.chunk_days)
    if results:
        write_report(settings.outbox, results, title=f"claims backfill {first} to {last}")
    _emit(
        inner_s=time.perf_counter() - t0,
        chunks=len(results),
        batches=sum(1 for r in results if r.batch_id),
        partitions=sum(len(r.partitions.get("succeeded", [])) for r in results),
        rows_read=sum(r.rows_read for r in results),
        paid_fen=sum(r.paid_fen for r in results),
    )


def bare_load(args: argparse.Namespace) -> None:
    """The snapshot floor: the snapshot file into a table of a new DuckDB file."""
    import duckdb

    from benchmarks.floor import bare_load_sql

    t0 = time.perf_counter()
    con = duckdb.connect(args.db)
    con.execute(bare_load_sql(Path(args.file)))
    rows = con.execute("SELECT count(*) FROM enrollments").fetchone()[0]  # type: ignore[index]
    con.close()
    _emit(inner_s=time.perf_counter() - t0, rows=rows)


def floor(args: argparse.Namespace) -> None:
    """The night/backfill floor: one statement over the landing folder's files."""
    import duckdb

    from benchmarks.floor import floor_sql

    out = Path(args.out)
    sql = floor_sql(Path(args.landing), out)
    con = duckdb.connect()
    con.execute(f"ATTACH '{args.db}' AS b (READ_ONLY)")
    # Output order is irrelevant here; keeping it costs time and memory (platform-facts.md).
    con.execute("SET preserve_insertion_order = false")
    t0 = time.perf_counter()
    con.execute(sql)
    inner = time.perf_counter() - t0
    stays, plans, target = con.execute(
        f"SELECT count(DISTINCT (hospital_code, settlement_id)), count(*), "
        f"coalesce(sum(target_fen), 0) FROM read_parquet('{out}')"
    ).fetchone()  # type: ignore[misc]
    con.close()
    _emit(inner_s=inner, stays=stays, stay_plans=plans, target_fen=int(target))


def prefect_trivial(args: argparse.Namespace) -> None:
    """Prefect's start-up cost: a flow with nothing in it, in ephemeral mode."""
    from prefect import flow

    @flow(name="bench-trivial", persist_result=False)
    def trivial() -> int:
        return 1

    t0 = time.perf_counter()
    trivial()
    _emit(inner_s=time.perf_counter() - t0, import_s=t0 - STARTED)


def prefect_tasks(args: argparse.Namespace) -> None:
    """Prefect's cost per task run, directly: a flow of N task runs that do nothing.

    The tasks are declared like ``flows.nightly.backfill_chunk`` (no cache, no persisted result)
    and called the same way (directly, in order). In one process, after a first flow run has
    started the API server: (a flow of N task runs − an empty flow) / N is what each backfill
    task run costs in orchestration alone, without the noise of two long runs.
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(task_run_name="feed_date={day}", cache_policy=NO_CACHE, persist_result=False)
    def nothing(day: int) -> int:
        return day

    loops: list[float] = []

    @flow(name="bench-tasks", persist_result=False, validate_parameters=False)
    def many(n: int) -> int:
        t = time.perf_counter()
        total = sum(nothing(day) for day in range(n))
        loops.append(time.perf_counter() - t)
        return total

    # The first flow run starts the ephemeral API server; time the later ones only.
    t0 = time.perf_counter()
    many(0)
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    many(0)
    empty = time.perf_counter() - t0
    t0 = time.perf_counter()
    many(args.n)
    full = time.perf_counter() - t0
    n = max(1, args.n)
    # Two readings: the flow's wall time beyond an empty flow's (includes waiting for Prefect's
    # background work at the end, ±1 s of slack), and the task calls as the flow body sees them.
    # The larger is reported.
    _emit(
        inner_s=full,
        start_s=start,
        empty_flow_s=empty,
        tasks=args.n,
        per_task_wall_s=(full - empty) / n,
        per_task_body_s=loops[-1] / n,
        per_task_s=max((full - empty) / n, loops[-1] / n),
    )


def _day(text: str) -> str:
    date.fromisoformat(text)
    return text


def main() -> None:
    # As the `claims` command does (claims.cli.main): pandera would import hypothesis, a
    # development tool installed beside the benchmarks, for 0.4-0.7 s that no installed
    # program pays. Without this the steps measured more than the command they stand for.
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steps")
    sub = parser.add_subparsers(dest="step", required=True)
    for name, fn in (("local", local), ("local-dates", local_dates)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--landing", required=True)
        p.add_argument("--warehouse", required=True)
        p.add_argument("--outbox", required=True)
        if name == "local":
            p.add_argument("--date", type=_day, required=True)
        else:
            p.add_argument("--from", dest="date_from", type=_day, required=True)
            p.add_argument("--to", dest="date_to", type=_day, required=True)
    p = sub.add_parser("local-chunks")
    p.set_defaults(fn=local_chunks)
    for flag in ("--landing", "--warehouse", "--outbox"):
        p.add_argument(flag, required=True)
    p.add_argument("--from", dest="date_from", type=_day, required=True)
    p.add_argument("--to", dest="date_to", type=_day, required=True)
    p.add_argument("--chunk-days", type=int, default=31)
    p = sub.add_parser("bare-load")
    p.set_defaults(fn=bare_load)
    p.add_argument("--file", required=True)
    p.add_argument("--db", required=True)
    p = sub.add_parser("floor")
    p.set_defaults(fn=floor)
    p.add_argument("--landing", required=True)
    p.add_argument("--db", required=True, help="the bare DuckDB file holding `enrollments`")
    p.add_argument("--out", required=True)
    p = sub.add_parser("prefect-trivial")
    p.set_defaults(fn=prefect_trivial)
    p = sub.add_parser("prefect-tasks")
    p.set_defaults(fn=prefect_tasks)
    p.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
