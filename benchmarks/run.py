"""Benchmarks at scale against a bare DuckDB floor: ``python -m benchmarks.run --scale full``.

One run measures, each in fresh processes (median of the scale's repeats):

1. ``snapshot``  loading the 10 M-row enrolment snapshot with ``run_local`` (only the snapshot
   and registry in the landing folder) against bare DuckDB reading the same file into a table;
2. ``night``     a 20 k-stay night through ``claims run --date D`` (Prefect ephemeral mode) on a
   warehouse holding the snapshot, against the floor (one SQL statement, ``benchmarks.floor``)
   and Prefect's own start-up (a trivial flow in a fresh process);
3. ``backfill``  a year (365 feed dates) through ``claims backfill --from --to``, against the
   same floor over the year's files;
4. ``overhead``  the same year via ``run_local`` per feed date, without Prefect: Prefect's cost
   per partition and per task run is the difference; and, directly, a flow of as many empty
   task runs as feed dates (``benchmarks.steps prefect-tasks``).

``benchmarks.profile`` holds the breakdowns behind the report's "Misses and plans".

It prints a table of medians and ratios and writes a markdown report (``docs/benchmarks.md`` at
full scale). Targets are checked here, never in tests. Generated data is cached under
``benchmarks/out/``; scratch warehouses are deleted when done (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import data as bdata
from benchmarks.measure import Sample, measure
from benchmarks.report import fmt_gb as _gb
from benchmarks.report import fmt_s as _s
from benchmarks.report import verdict

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT / "benchmarks" / "out"
BENCHMARKS = ("snapshot", "night", "backfill", "overhead")
GB = 1024**3

# The targets of issue 6 (held here, never in tests).
TARGET_NIGHT_FACTOR = 2.0  # night ≤ 2 × (floor + Prefect start)
TARGET_BACKFILL_FACTOR, TARGET_BACKFILL_EXTRA_S = 3.0, 20.0  # backfill ≤ 3 × floor + 20 s
TARGET_SNAPSHOT_FACTOR = 2.0  # snapshot load ≤ 2 × bare DuckDB
TARGET_PEAK_BYTES = 6 * GB  # peak memory ≤ 6 GB throughout
TARGET_OVERHEAD_S = 0.050  # Prefect per partition ≤ 50 ms


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Environment of the measured processes
# ---------------------------------------------------------------------------------------------


def child_env(out: Path) -> dict[str, str]:
    """Prefect in ephemeral mode with its own home; quiet; the project importable."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # ephemeral mode, as `claims run` has by default
    env.update(
        PREFECT_HOME=str(out / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PYTHONPATH=str(PROJECT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def step_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.steps", *args]


def claims_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "claims"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from claims.cli import main; main()", *args]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import duckdb
    import polars
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "polars": polars.__version__,
        "duckdb": duckdb.__version__,
    }
    for name in ("prefect", "pandera", "pyarrow"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # a missing package is just not listed
            pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


class Bench:
    """One run of the benchmarks: where things go, how to measure, what was found."""

    def __init__(self, args: argparse.Namespace, dataset: bdata.Dataset, out: Path) -> None:
        self.args = args
        self.ds = dataset
        self.scale = dataset.scale
        self.out = out
        self.work = out / f"work-{self.scale.name}"
        self.logs = out / f"logs-{self.scale.name}"
        self.env = child_env(out)
        self.timeout = args.timeout
        self.results: dict[str, dict[str, Any]] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def run(self, label: str, cmd: list[str]) -> Sample:
        load = load_avg()
        sample = measure(
            cmd,
            log_path=self.logs / f"{label}.log",
            env=self.env,
            cwd=PROJECT,
            timeout_s=self.timeout,
        )
        state = "TIMEOUT" if sample.timed_out else f"exit {sample.returncode}"
        log(
            f"  {label:<28} {sample.wall_s:8.2f} s  {sample.peak_rss / GB:6.2f} GB  "
            f"{state}  (load {load})"
        )
        if sample.returncode not in (0, 1) and not sample.timed_out:
            tail = "\n".join(Path(sample.log).read_text(errors="replace").splitlines()[-25:])
            log(f"    failed; last lines of {sample.log}:\n{tail}")
        return sample

    def fresh(self, name: str) -> Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def copy_base(self, name: str) -> Path:
        """A fresh run folder with a copy of the warehouse that holds the snapshot."""
        folder = self.fresh(name)
        shutil.copy2(self.work / "base.duckdb", folder / "warehouse.duckdb")
        return folder

    @staticmethod
    def warm(*folders: Path) -> None:
        """Read the inputs once so that no measured run pays a cold page cache alone."""
        for folder in folders:
            for path in folder.rglob("*"):
                if path.is_file():
                    with path.open("rb") as fh:
                        while fh.read(16 * 1024 * 1024):
                            pass

    def pipeline_local(self, folder: Path, landing: Path, day: str, label: str) -> Sample:
        return self.run(
            label,
            step_cmd(
                "local",
                "--landing",
                str(landing),
                "--warehouse",
                str(folder / "warehouse.duckdb"),
                "--outbox",
                str(folder / "outbox"),
                "--date",
                day,
            ),
        )

    def bare_load(self, db: Path, label: str) -> Sample:
        db.unlink(missing_ok=True)
        return self.run(
            label, step_cmd("bare-load", "--file", str(self.ds.snapshot_file), "--db", str(db))
        )

    def floor(self, landing: Path, label: str) -> Sample:
        out = self.work / f"{label}.parquet"
        sample = self.run(
            label,
            step_cmd(
                "floor",
                "--landing",
                str(landing),
                "--db",
                str(self.work / "bare.duckdb"),
                "--out",
                str(out),
            ),
        )
        out.unlink(missing_ok=True)
        return sample

    @staticmethod
    def warehouse_totals(db: Path) -> dict[str, int]:
        """What the pipeline computed, to compare with the floor (read-only, after the run)."""
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        try:
            row = con.execute(
                "SELECT count(DISTINCT (hospital_code, settlement_id)), count(*), "
                "coalesce(sum(target_fen), 0) FROM stay_plan_targets"
            ).fetchone()
            posted = con.execute("SELECT coalesce(sum(amount_fen), 0) FROM ledger_entries")
            ledger = posted.fetchone()
        finally:
            con.close()
        assert row is not None and ledger is not None
        stays, plans, target = row
        return {
            "stays": int(stays),
            "stay_plans": int(plans),
            "target_fen": int(target),
            "ledger_fen": int(ledger[0]),
        }

    # -- the base warehouse and the bare table, needed by every later benchmark -------------

    def ensure_base(self) -> bool:
        if (self.work / "base.duckdb").exists() and (self.work / "bare.duckdb").exists():
            return True
        log("preparing: snapshot into a warehouse and a bare table (not measured)")
        folder = self.fresh("base-build")
        s = self.pipeline_local(
            folder, self.ds.snapshot_landing, str(bdata.SNAPSHOT_DATE), "prepare-snapshot-pipeline"
        )
        if s.returncode != 0:
            return False
        shutil.move(str(folder / "warehouse.duckdb"), self.work / "base.duckdb")
        shutil.rmtree(folder, ignore_errors=True)
        return self.bare_load(self.work / "bare.duckdb", "prepare-snapshot-bare").returncode == 0

    # -- the four benchmarks ----------------------------------------------------------------

    def snapshot(self) -> None:
        log(f"snapshot: {self.ds.enrollments:,} enrolments ({self.scale.snapshot_format})")
        self.warm(self.ds.snapshot_landing)
        pipe, bare = [], []
        for r in range(self.scale.repeats):
            folder = self.fresh(f"snapshot-{r}")
            s = self.pipeline_local(
                folder, self.ds.snapshot_landing, str(bdata.SNAPSHOT_DATE), f"snapshot-pipeline-{r}"
            )
            pipe.append(s)
            if s.returncode == 0:
                (self.work / "base.duckdb").unlink(missing_ok=True)
                shutil.move(str(folder / "warehouse.duckdb"), self.work / "base.duckdb")
            shutil.rmtree(folder, ignore_errors=True)
            bare.append(self.bare_load(self.work / "bare.duckdb", f"snapshot-bare-{r}"))
        self.results["snapshot"] = {
            "pipeline": summarize(pipe),
            "floor": summarize(bare),
            "rows": self.ds.enrollments,
        }

    def prefect_start(self) -> dict[str, Any]:
        if "prefect_start" not in self.results:
            log("prefect start-up: a trivial flow in a fresh process (ephemeral mode)")
            samples = [
                self.run(f"prefect-trivial-{r}", step_cmd("prefect-trivial"))
                for r in range(self.scale.repeats)
            ]
            self.results["prefect_start"] = {"pipeline": summarize(samples)}
        return self.results["prefect_start"]

    def night(self) -> None:
        log(f"night: {self.ds.night_rows:,} rows on {bdata.NIGHT_DATE} through `claims run`")
        self.warm(self.ds.night_landing)
        pipe, floor, checks = [], [], []
        for r in range(self.scale.repeats):
            folder = self.copy_base(f"night-{r}")
            s = self.run(
                f"night-cli-{r}",
                claims_cmd(
                    "run",
                    "--date",
                    str(bdata.NIGHT_DATE),
                    "--landing",
                    str(self.ds.night_landing),
                    "--warehouse",
                    str(folder / "warehouse.duckdb"),
                    "--outbox",
                    str(folder / "outbox"),
                ),
            )
            pipe.append(s)
            if s.returncode in (0, 1):
                checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
            shutil.rmtree(folder, ignore_errors=True)
            floor.append(self.floor(self.ds.night_landing, f"night-floor-{r}"))
        self.results["night"] = {
            "pipeline": summarize(pipe),
            "floor": summarize(floor),
            "rows": self.ds.night_rows,
            "check": cross_check(checks, floor),
        }

    def backfill(self) -> None:
        first, last = str(self.ds.year_first), str(self.ds.year_last)
        log(
            f"backfill: {self.ds.year_rows:,} rows, {self.ds.year_partitions} partitions, "
            f"{first} to {last}, through `claims backfill`"
        )
        self.warm(self.ds.year_landing)
        pipe, floor, checks = [], [], []
        for r in range(self.scale.backfill_repeats):
            folder = self.copy_base(f"backfill-{r}")
            s = self.run(
                f"backfill-cli-{r}",
                claims_cmd(
                    "backfill",
                    "--from",
                    first,
                    "--to",
                    last,
                    "--landing",
                    str(self.ds.year_landing),
                    "--warehouse",
                    str(folder / "warehouse.duckdb"),
                    "--outbox",
                    str(folder / "outbox"),
                ),
            )
            pipe.append(s)
            if s.returncode in (0, 1):
                checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
            shutil.rmtree(folder, ignore_errors=True)
        for r in range(self.scale.repeats):
            floor.append(self.floor(self.ds.year_landing, f"backfill-floor-{r}"))
        self.results["backfill"] = {
            "pipeline": summarize(pipe),
            "floor": summarize(floor),
            "rows": self.ds.year_rows,
            "partitions": self.ds.year_partitions,
            "dates": self.scale.year_nights,
            "check": cross_check(checks, floor),
        }

    def overhead(self) -> None:
        first, last = str(self.ds.year_first), str(self.ds.year_last)
        log("overhead: the same year via run_local per feed date, without Prefect")
        self.warm(self.ds.year_landing)
        local, checks = [], []
        for r in range(self.scale.backfill_repeats):
            folder = self.copy_base(f"overhead-{r}")
            s = self.run(
                f"backfill-local-{r}",
                step_cmd(
                    "local-dates",
                    "--landing",
                    str(self.ds.year_landing),
                    "--warehouse",
                    str(folder / "warehouse.duckdb"),
                    "--outbox",
                    str(folder / "outbox"),
                    "--from",
                    first,
                    "--to",
                    last,
                ),
            )
            local.append(s)
            if s.returncode == 0:
                checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
            shutil.rmtree(folder, ignore_errors=True)
        log(f"overhead, directly: a flow of {self.scale.year_nights} task runs that do nothing")
        tasks = [
            self.run(
                f"prefect-tasks-{r}", step_cmd("prefect-tasks", "--n", str(self.scale.year_nights))
            )
            for r in range(self.scale.repeats)
        ]
        self.results["overhead"] = {
            "local": summarize(local),
            "tasks": summarize(tasks),
            "partitions": self.ds.year_partitions,
            "dates": self.scale.year_nights,
            "check": checks[-1] if checks else None,
        }


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Median wall time and peak memory of the runs that finished; every run's figures."""
    ok = [s for s in samples if s.returncode in (0, 1) and not s.timed_out]
    return {
        "wall_s": statistics.median(s.wall_s for s in ok) if ok else None,
        "peak_rss": max(s.peak_rss for s in samples) if samples else None,
        "runs": [
            {
                "wall_s": round(s.wall_s, 3),
                "peak_rss": s.peak_rss,
                "returncode": s.returncode,
                "timed_out": s.timed_out,
                "result": s.result,
            }
            for s in samples
        ],
        "ok": len(ok),
        "n": len(samples),
    }


def cross_check(pipeline: list[dict[str, int]], floors: list[Sample]) -> dict[str, Any]:
    """Did the floor compute the same money as the pipeline? (It should, to the fen.)"""
    floor = next((f.result for f in floors if f.result), None)
    pipe = pipeline[-1] if pipeline else None
    same = bool(
        pipe
        and floor
        and all(pipe[k] == floor.get(k) for k in ("stays", "stay_plans", "target_fen"))
    )
    return {"pipeline": pipe, "floor": floor, "same": same}


# ---------------------------------------------------------------------------------------------
# Figures, targets, table
# ---------------------------------------------------------------------------------------------


def _wall(entry: dict[str, Any] | None, side: str) -> float | None:
    if not entry or side not in entry:
        return None
    return entry[side]["wall_s"]


def _peak(entry: dict[str, Any] | None, side: str) -> int | None:
    if not entry or side not in entry:
        return None
    return entry[side]["peak_rss"]


def figures(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per benchmark: pipeline, floor, ratio, target, met."""
    rows: list[dict[str, Any]] = []
    snap = results.get("snapshot")
    if snap:
        p, f = _wall(snap, "pipeline"), _wall(snap, "floor")
        limit = TARGET_SNAPSHOT_FACTOR * f if f else None
        rows.append(
            _row(
                "snapshot load",
                p,
                f,
                _peak(snap, "pipeline"),
                _peak(snap, "floor"),
                limit,
                f"≤ {TARGET_SNAPSHOT_FACTOR:g} × bare DuckDB",
            )
        )
    start = _wall(results.get("prefect_start"), "pipeline")
    if start is not None:
        rows.append(
            _row(
                "Prefect start (trivial flow)",
                start,
                None,
                _peak(results["prefect_start"], "pipeline"),
                None,
                None,
                "—",
            )
        )
    night = results.get("night")
    if night:
        p, f = _wall(night, "pipeline"), _wall(night, "floor")
        limit = TARGET_NIGHT_FACTOR * (f + start) if f is not None and start is not None else None
        rows.append(
            _row(
                "night (claims run)",
                p,
                f,
                _peak(night, "pipeline"),
                _peak(night, "floor"),
                limit,
                f"≤ {TARGET_NIGHT_FACTOR:g} × (floor + Prefect start)",
            )
        )
    back = results.get("backfill")
    if back:
        p, f = _wall(back, "pipeline"), _wall(back, "floor")
        limit = TARGET_BACKFILL_FACTOR * f + TARGET_BACKFILL_EXTRA_S if f is not None else None
        rows.append(
            _row(
                "backfill (claims backfill)",
                p,
                f,
                _peak(back, "pipeline"),
                _peak(back, "floor"),
                limit,
                f"≤ {TARGET_BACKFILL_FACTOR:g} × floor + {TARGET_BACKFILL_EXTRA_S:g} s",
            )
        )
    over = results.get("overhead")
    if over:
        local = _wall(over, "local")
        rows.append(
            _row(
                "backfill via run_local",
                local,
                _wall(back, "floor"),
                _peak(over, "local"),
                _peak(back, "floor"),
                None,
                "—",
            )
        )
        pipe = _wall(back, "pipeline")
        if pipe is not None and local is not None:
            per_partition = (pipe - local) / int(over["partitions"])
            per_date = (pipe - local) / int(over["dates"])
            note = f"{per_date * 1000:.0f} ms per task run (one per feed date)"
            if start is not None:
                after = (pipe - local - start) / int(over["partitions"])
                note += f"; {after * 1000:.0f} ms per partition beyond Prefect's start-up"
            rows.append(
                {
                    "name": "Prefect per partition, by difference",
                    "pipeline_s": per_partition,
                    "floor_s": None,
                    "ratio": None,
                    "peak": None,
                    "floor_peak": None,
                    # Not judged: the two runs differ in more than Prefect (run_local opens
                    # and closes the warehouse per date; the flow keeps one session), and
                    # they are taken at different times. The direct row below is judged.
                    "target": "— (see direct)",
                    "limit": None,
                    "met": None,
                    "note": note,
                }
            )
    per_tasks = [
        float(run["result"]["per_task_s"])
        for run in (over or {}).get("tasks", {}).get("runs", [])
        if run.get("result", {}).get("per_task_s") is not None
    ]
    if over and per_tasks:
        per_task = statistics.median(per_tasks)
        per_partition = per_task * int(over["dates"]) / int(over["partitions"])
        rows.append(
            {
                "name": "Prefect per partition, direct",
                "pipeline_s": per_partition,
                "floor_s": None,
                "ratio": None,
                "peak": None,
                "floor_peak": None,
                "target": f"≤ {TARGET_OVERHEAD_S * 1000:g} ms",
                "limit": TARGET_OVERHEAD_S,
                "met": per_partition <= TARGET_OVERHEAD_S,
                "note": f"{per_task * 1000:.0f} ms per task run: a flow of "
                f"{int(over['dates'])} empty task runs less an empty flow, one process",
            }
        )
    peaks = [r["peak"] for r in rows if r.get("peak")]
    if peaks:
        top = max(peaks)
        rows.append(
            {
                "name": "peak memory, any pipeline run",
                "pipeline_s": None,
                "floor_s": None,
                "ratio": None,
                "peak": top,
                "floor_peak": None,
                "target": "≤ 6 GB",
                "limit": None,
                "met": top <= TARGET_PEAK_BYTES,
                "note": "",
            }
        )
    return rows


def _row(
    name: str,
    p: float | None,
    f: float | None,
    peak: int | None,
    fpeak: int | None,
    limit: float | None,
    target: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "pipeline_s": p,
        "floor_s": f,
        "ratio": p / f if p is not None and f else None,
        "peak": peak,
        "floor_peak": fpeak,
        "target": target,
        "limit": limit,
        "met": None if limit is None or p is None else p <= limit,
        "note": "" if p is not None else "did not finish (see logs)",
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The medians as a plain-text table."""
    head = ("benchmark", "pipeline", "floor", "ratio", "peak RSS", "floor RSS", "target", "result")
    body = [
        (
            str(r["name"]),
            _s(r["pipeline_s"]),
            _s(r["floor_s"]),
            "—" if r["ratio"] is None else f"{float(r['ratio']):.2f}×",
            _gb(r["peak"]),
            _gb(r["floor_peak"]),
            str(r["target"]),
            verdict(r),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=sorted(bdata.SCALES), default="full")
    p.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cache and scratch folder")
    p.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="markdown report [docs/benchmarks.md at full scale, else in --out]",
    )
    p.add_argument("--repeats", type=int, default=None, help="override the scale's repeats")
    p.add_argument("--snapshot-format", choices=("parquet", "csv"), default=None)
    p.add_argument("--timeout", type=float, default=None, help="seconds per measured process")
    p.add_argument("--keep", action="store_true", help="keep the scratch warehouses")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the report from the last figures of this scale",
    )
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {','.join(BENCHMARKS)}")
    args.only = only
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        record = json.loads((out / f"results-{args.scale}.json").read_text())
        record["figures"] = figures(record["results"])
        log(table(record["figures"]))
        write_report(args, record)
        return 0
    scale = bdata.scale_named(
        args.scale, repeats=args.repeats, snapshot_format=args.snapshot_format
    )
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    log(
        f"benchmarks at scale {scale.name}: {', '.join(args.only)} "
        f"(load {load_before[0]:.2f}, {os.cpu_count()} cores)"
    )
    t0 = time.perf_counter()
    ds = bdata.ensure_dataset(scale, out)
    bench = Bench(args, ds, out)
    results_path = out / f"results-{scale.name}.json"
    previous: dict[str, Any] = {}
    if results_path.exists():
        previous = json.loads(results_path.read_text())
        same_data = previous.get("data_key") == bdata.data_key(scale)
        if same_data and set(args.only) != set(BENCHMARKS):
            # A partial run keeps the other benchmarks' last figures (each says when it ran).
            bench.results.update(previous.get("results", {}))
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.work.mkdir(parents=True)
    try:
        fresh: set[str] = set()
        commit = machine()["commit"]
        log("warm-up: Prefect's database (not measured)")
        bench.run("prefect-warm-up", step_cmd("prefect-trivial"))
        for name in args.only:
            if name != "snapshot" and not bench.ensure_base():
                log("the snapshot could not be loaded: nothing else can run")
                break
            if name in ("night", "backfill") and "prefect_start" not in fresh:
                # Measured once per run, next to the benchmarks that need it.
                bench.results.pop("prefect_start", None)
                bench.prefect_start()
                fresh.add("prefect_start")
            getattr(bench, name)()
            bench.results[name]["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            bench.results[name]["load"] = load_avg()
            bench.results[name]["commit"] = commit
            if name == "backfill" and "overhead" not in args.only:
                bench.results.pop("overhead", None)  # its difference would mix two runs
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    rows = figures(bench.results)
    record = {
        "scale": scale.name,
        "data_key": bdata.data_key(scale),
        "dataset": {
            "enrollments": ds.enrollments,
            "night_rows": ds.night_rows,
            "year_rows": ds.year_rows,
            "year_partitions": ds.year_partitions,
            "params": scale.data_params(),
        },
        "repeats": scale.repeats,
        "backfill_repeats": scale.backfill_repeats,
        "started_at": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "command": " ".join(
            ["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "results": bench.results,
        "figures": rows,
    }
    results_path.write_text(json.dumps(record, indent=2, default=str))
    log("")
    log(table(rows))
    write_report(args, record)
    log(f"figures: {results_path}")
    return 0


def write_report(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """The markdown report: docs/benchmarks.md at full scale, else next to the figures."""
    from benchmarks.report import write_markdown

    scale = record["scale"]
    default = PROJECT / "docs" / "benchmarks.md"
    docs = args.docs or (default if scale == "full" else args.out / f"benchmarks-{scale}.md")
    write_markdown(docs, record)
    log(f"\nreport: {docs}")


if __name__ == "__main__":
    sys.exit(main())
