"""A chunked backfill against one commit per date and the bare DuckDB floor, at a scale that
fits a shared machine in minutes: ``python -m benchmarks.chunks [--nights 62] [--people N]``.

Not the full-scale benchmark (``benchmarks.run``): a partial measurement of issue 16's first
point. On a copy of the warehouse holding the snapshot, the same feed dates go through

* ``claims backfill`` (Prefect ephemeral mode) with the default chunk (31 days) and with
  ``--chunk-days 1``, and
* ``backfill_local`` (the same steps without Prefect, ``benchmarks.steps local-chunks``) with
  each chunk size;

against the floor (``benchmarks.floor``: one DuckDB statement over the same files). Each run's
money (stays, (stay, plan) targets, fen) is compared with the floor's, to the fen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import data as bdata
from benchmarks.run import (
    DEFAULT_OUT,
    Bench,
    claims_cmd,
    cross_check,
    load_avg,
    log,
    machine,
    step_cmd,
    summarize,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nights", type=int, default=62, help="feed dates in the backfill")
    p.add_argument("--people", type=int, default=72_500, help="~1.38 enrolments each")
    p.add_argument("--stays", type=int, default=2_000, help="new stays per night")
    p.add_argument("--chunk-days", type=int, default=31)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-cli", action="store_true", help="skip the two `claims backfill` runs")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    out: Path = args.out.resolve()
    scale = replace(
        bdata.SCALES["small"],
        name="chunks",
        people=args.people,
        night_stays=args.stays,
        year_stays=args.stays,
        year_nights=args.nights,
        sources=("SHYB", "HOSPX", "MEDIX"),
        repeats=args.repeats,
    )
    started = datetime.now(UTC)
    log(f"chunked backfill at scale {scale.data_params()} (load {load_avg()})")
    ds = bdata.ensure_dataset(scale, out)
    bench = Bench(argparse.Namespace(timeout=args.timeout), ds, out)
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.work.mkdir(parents=True)
    first, last = str(ds.year_first), str(ds.year_last)
    results: dict[str, Any] = {}
    try:
        if not bench.ensure_base():
            log("the snapshot could not be loaded")
            return 1
        bench.warm(ds.year_landing)
        floors = [bench.floor(ds.year_landing, f"floor-{r}") for r in range(args.repeats)]
        results["floor"] = summarize(floors)
        runs: list[tuple[str, int, bool]] = [
            (f"local, chunks of {args.chunk_days}", args.chunk_days, False),
            ("local, one commit per date", 1, False),
        ]
        if not args.no_cli:
            bench.run("prefect-warm-up", step_cmd("prefect-trivial"))
            runs += [
                (
                    f"claims backfill (default --chunk-days {args.chunk_days})",
                    args.chunk_days,
                    True,
                ),
                ("claims backfill --chunk-days 1", 1, True),
            ]
        for label, chunk_days, cli in runs:
            samples, checks = [], []
            for r in range(args.repeats):
                folder = bench.copy_base(f"run-{chunk_days}-{int(cli)}-{r}")
                paths = [
                    "--landing",
                    str(ds.year_landing),
                    "--warehouse",
                    str(folder / "warehouse.duckdb"),
                    "--outbox",
                    str(folder / "outbox"),
                ]
                if cli:
                    cmd = claims_cmd(
                        "backfill",
                        "--from",
                        first,
                        "--to",
                        last,
                        *paths,
                        *(["--chunk-days", "1"] if chunk_days == 1 else []),
                    )
                else:
                    cmd = step_cmd(
                        "local-chunks",
                        "--from",
                        first,
                        "--to",
                        last,
                        *paths,
                        "--chunk-days",
                        str(chunk_days),
                    )
                name = f"{'cli' if cli else 'local'}-chunk{chunk_days}-{r}"
                sample = bench.run(name, cmd)
                samples.append(sample)
                if sample.returncode in (0, 1):
                    totals = bench.warehouse_totals(folder / "warehouse.duckdb")
                    totals["batches"] = len(
                        list((folder / "outbox" / "payments").glob("batch_id=*"))
                    )
                    checks.append(totals)
                shutil.rmtree(folder, ignore_errors=True)
            results[label] = {**summarize(samples), "check": cross_check(checks, floors)}
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    floor_s = results["floor"]["wall_s"]
    log("")
    log(
        f"{ds.year_rows:,} rows in {ds.year_partitions} partitions, {args.nights} feed dates, "
        f"{ds.enrollments:,} enrolments; floor {floor_s:.1f} s"
    )
    for label, entry in results.items():
        if label == "floor":
            continue
        wall, check = entry["wall_s"], entry["check"]
        pipe = check["pipeline"] or {}
        log(
            f"  {label:<45} {wall:8.1f} s  {wall / floor_s:6.1f}× floor  "
            f"{pipe.get('batches', '?')} batch(es)  "
            f"{'same money as the floor' if check['same'] else 'MONEY DIFFERS'} "
            f"({pipe.get('target_fen', '?')} fen in targets, {pipe.get('ledger_fen', '?')} "
            f"posted)"
        )
    record = {
        "started_at": started.isoformat(timespec="seconds"),
        "scale": scale.data_params(),
        "dataset": {
            "enrollments": ds.enrollments,
            "rows": ds.year_rows,
            "partitions": ds.year_partitions,
        },
        "machine": machine(),
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    path = out / "results-chunks.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    log(f"figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
