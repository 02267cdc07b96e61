"""Every target of issue 16 in one run, against floors measured beside them:
``python -m benchmarks.run --scale full`` (``make bench``).

Each figure is a fresh process (median of the scale's repeats; one run for the year-long ones):

1. ``snapshot``  the enrolment snapshot through ``run_local`` (registry + snapshot only) against
   bare DuckDB reading the same file into a table;
2. ``night``     a 20 k-stay night through ``claims run`` (Prefect ephemeral) and through
   ``run_local`` (the data work, no Prefect) on the snapshot-only warehouse, against the floor
   (one SQL statement, ``benchmarks.floor``); Prefect's start-up as a trivial flow;
3. ``server``    the same night with ``PREFECT_API_URL`` set to a running ``prefect server``
   (``benchmarks.server_night``: import, API and data time apart), against the floor;
4. ``backfill``  the year through ``claims backfill`` (default chunks) and ``backfill_local``
   (chunks, no Prefect), against the floor over the year's files; the claims run's warehouse
   is kept as the year-end warehouse for what follows;
5. ``yearend``   the same night on copies of the year-end warehouse (``claims run`` and
   ``run_local``): each ÷ its snapshot-only twin of benchmark 2;
6. ``newsnap``   the night bringing a new snapshot (1 % of people changed,
   ``benchmarks.newsnap``) on the year-end warehouse, against bare DuckDB loading that file;
7. ``readonly``  ``claims status`` and ``claims explain`` on the year-end warehouse;
8. ``verify``, ``sustainability``  ``claims verify`` and ``claims report sustainability`` on it.

``overhead`` (the year date by date through ``run_local``, the old ``--chunk-days 1`` shape) is
not in the default set; ``--only overhead`` runs it. Money is cross-checked against the floor to
the fen wherever a run computes money. ``--only`` runs a subset; what it needs and this run did
not make (the snapshot-only or the year-end warehouse) is built first, unmeasured
(``--yearend W`` copies an existing year-end warehouse instead).

It prints a table of the targets and writes a markdown report (``docs/benchmarks.md`` at full
scale). Targets are checked here, never in tests. Generated data is cached under ``--out``;
scratch warehouses are deleted when done (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import importlib.util
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
from benchmarks import newsnap
from benchmarks.measure import Sample, measure
from benchmarks.report import fmt_gb as _gb
from benchmarks.report import fmt_s as _s
from benchmarks.report import verdict

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT / "benchmarks" / "out"
BENCHMARKS = (
    "snapshot",
    "night",
    "server",
    "backfill",
    "yearend",
    "newsnap",
    "readonly",
    "verify",
    "sustainability",
)
OPTIONAL = ("overhead",)  # reachable with --only, not in the default set
USES_PREFECT = {"night", "server", "backfill", "yearend", "newsnap"}
NEEDS_YEAREND = ("yearend", "newsnap", "readonly", "verify", "sustainability")
GB = 1024**3

# The targets of issue 16 (held here, never in tests).
TARGET_BACKFILL_FACTOR, TARGET_BACKFILL_EXTRA_S = 3.0, 20.0  # year ≤ 3 × floor + 20 s
TARGET_YEAREND_RATIO = 1.2  # night on the year-end warehouse ≤ 1.2 × on the snapshot-only one
TARGET_NEWSNAP_FACTOR = 2.0  # new-snapshot night ≤ 2 × bare snapshot load + the night
TARGET_DATA_FACTOR = 2.0  # the night's data work ≤ 2 × floor
TARGET_SERVER_EXTRA_S = 6.0  # night against a running Prefect server ≤ floor + 6 s
TARGET_SNAPSHOT_FACTOR = 2.0  # snapshot load ≤ 2 × bare DuckDB
TARGET_READONLY_S = 1.5  # status, explain
TARGET_PEAK_BYTES = 6 * GB  # peak memory of any pipeline run
# Issue 17's, shown beside them.
TARGET_VERIFY_S = 60.0
TARGET_SUSTAINABILITY_S = 30.0


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Environment of the measured processes
# ---------------------------------------------------------------------------------------------


def child_env(out: Path) -> dict[str, str]:
    """Prefect in ephemeral mode with its own home; quiet; the project importable; compiled
    bytecode kept under ``out`` (as an installed program has it)."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # ephemeral mode, as `claims run` has by default
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PREFECT_HOME=str(out / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PYTHONPYCACHEPREFIX=str(out / "pycache"),
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
        self._derived: tuple[Path, Path, dict[str, Any]] | None = None

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

    def copy_of(self, source: Path, name: str) -> Path:
        """A fresh run folder holding a copy of the warehouse file ``source``."""
        folder = self.fresh(name)
        shutil.copy2(source, folder / "warehouse.duckdb")
        # On disk before the run starts: else the run's first checkpoint (its fsync) waits for
        # the copy's dirty pages, which costs the 3.6 GB year-end copy ~1 s and the snapshot-only
        # one little, and the year-end night paid it in its plan and its close.
        with (folder / "warehouse.duckdb").open("rb+") as fh:
            os.fsync(fh.fileno())
        return folder

    def copy_base(self, name: str) -> Path:
        """A fresh run folder with a copy of the warehouse that holds the snapshot."""
        return self.copy_of(self.work / "base.duckdb", name)

    @property
    def yearend(self) -> Path:
        """The folder of the year-end warehouse: ``warehouse.duckdb`` and its ``outbox``."""
        return self.work / "yearend"

    @staticmethod
    def warm(*folders: Path) -> None:
        """Read the inputs once so that no measured run pays a cold page cache alone."""
        for folder in folders:
            for path in folder.rglob("*"):
                if path.is_file():
                    with path.open("rb") as fh:
                        while fh.read(16 * 1024 * 1024):
                            pass

    @staticmethod
    def paths(folder: Path, landing: Path) -> list[str]:
        return [
            "--landing",
            str(landing),
            "--warehouse",
            str(folder / "warehouse.duckdb"),
            "--outbox",
            str(folder / "outbox"),
        ]

    def pipeline_local(self, folder: Path, landing: Path, day: str, label: str) -> Sample:
        return self.run(label, step_cmd("local", *self.paths(folder, landing), "--date", day))

    def claims_run(self, folder: Path, landing: Path, day: str, label: str) -> Sample:
        return self.run(label, claims_cmd("run", "--date", day, *self.paths(folder, landing)))

    def bare_load(self, db: Path, label: str, file: Path | None = None) -> Sample:
        db.unlink(missing_ok=True)
        source = file or self.ds.snapshot_file
        return self.run(label, step_cmd("bare-load", "--file", str(source), "--db", str(db)))

    def floor(self, landing: Path, label: str, bare: Path | None = None) -> Sample:
        out = self.work / f"{label}.parquet"
        sample = self.run(
            label,
            step_cmd(
                "floor",
                "--landing",
                str(landing),
                "--db",
                str(bare or self.work / "bare.duckdb"),
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

    def night_runs(
        self, kind: str, source: Path, landing: Path, prefix: str, repeats: int, first: int = 0
    ) -> tuple[list[Sample], list[dict[str, int]]]:
        """The night ``repeats`` times on fresh copies of ``source``: ``claims`` or ``local``
        (samples named ``prefix-first`` onwards)."""
        samples, checks = [], []
        day = str(bdata.NIGHT_DATE)
        for r in range(first, first + repeats):
            folder = self.copy_of(source, f"{prefix}-{r}")
            if kind == "claims":
                s = self.claims_run(folder, landing, day, f"{prefix}-{r}")
            else:
                s = self.pipeline_local(folder, landing, day, f"{prefix}-{r}")
            samples.append(s)
            if s.returncode in (0, 1):
                checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
            shutil.rmtree(folder, ignore_errors=True)
        return samples, checks

    # -- what later benchmarks need: built unmeasured when this run did not make it ----------

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

    def ensure_yearend(self) -> bool:
        target = self.yearend / "warehouse.duckdb"
        if target.exists():
            return True
        given: Path | None = self.args.yearend
        if given is not None:
            log(f"preparing: a copy of the year-end warehouse {given.name} (not measured)")
            self.copy_of(given, "yearend")
            outbox = given.parent / "outbox"
            if outbox.is_dir():
                shutil.copytree(outbox, self.yearend / "outbox")
            return True
        if not self.ensure_base():
            return False
        log("preparing: the year through backfill_local into the year-end warehouse (not measured)")
        folder = self.copy_base("yearend")
        s = self.run("prepare-yearend", self.local_chunks_cmd(folder))
        return s.returncode in (0, 1)

    def derived(self) -> tuple[Path, Path, dict[str, Any]]:
        """The year + night landing folder and the one with the new snapshot (cached)."""
        if self._derived is None:
            log("preparing: the year-end landing folders and the new snapshot (cached)")
            self._derived = newsnap.ensure(self.scale, self.ds.root, self.out)
        return self._derived

    def local_chunks_cmd(self, folder: Path) -> list[str]:
        first, last = str(self.ds.year_first), str(self.ds.year_last)
        return step_cmd(
            "local-chunks", *self.paths(folder, self.ds.year_landing), "--from", first, "--to", last
        )

    # -- the benchmarks ---------------------------------------------------------------------

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

    def prefect_start(self) -> None:
        log("prefect start-up: a trivial flow in a fresh process (ephemeral mode)")
        samples = [
            self.run(f"prefect-trivial-{r}", step_cmd("prefect-trivial"))
            for r in range(self.scale.repeats)
        ]
        self.results["prefect_start"] = {"pipeline": summarize(samples)}

    def night(self) -> None:
        log(f"night: {self.ds.night_rows:,} rows on {bdata.NIGHT_DATE}, snapshot-only warehouse")
        self.warm(self.ds.night_landing)
        base, landing, n = self.work / "base.duckdb", self.ds.night_landing, self.scale.repeats
        # The command, its data work and the floor in turn, each repeat: the ratio's sides
        # measured at the same moment (the machine's speed drifts over a run; see yearend_night).
        cli: list[Sample] = []
        local: list[Sample] = []
        floor: list[Sample] = []
        cli_checks: list[dict[str, int]] = []
        local_checks: list[dict[str, int]] = []
        for r in range(n):
            got, sums = self.night_runs("claims", base, landing, "night-cli", 1, r)
            cli, cli_checks = cli + got, cli_checks + sums
            got, sums = self.night_runs("local", base, landing, "night-local", 1, r)
            local, local_checks = local + got, local_checks + sums
            floor.append(self.floor(landing, f"night-floor-{r}"))
        self.results["night"] = {
            "pipeline": summarize(cli),
            "local": summarize(local),
            "floor": summarize(floor),
            "rows": self.ds.night_rows,
            "check": cross_check(cli_checks, floor),
            "check_local": cross_check(local_checks, floor),
        }
        self.prefect_start()

    def server(self) -> None:
        log("night against a running Prefect server (benchmarks.server_night)")
        if importlib.util.find_spec("benchmarks.server_night") is None:
            log("  benchmarks/server_night.py is absent: not measured")
            self.results["server"] = {"missing": True}
            return
        landing = self.ds.night_landing
        scratch = self.fresh("server")
        report = scratch / "server.json"
        # One server, N nights: the module copies the warehouse for each run into
        # ``scratch/night-<i>/`` and keeps them, for the money check below.
        sample = self.run(
            "server-night",
            [
                sys.executable,
                "-m",
                "benchmarks.server_night",
                "--warehouse",
                str(self.work / "base.duckdb"),
                "--landing",
                str(landing),
                "--date",
                str(bdata.NIGHT_DATE),
                "--repeats",
                str(self.scale.repeats),
                "--json",
                str(report),
                "--scratch",
                str(scratch),
                "--keep",
            ],
        )
        samples = [sample]
        runs: list[dict[str, Any]] = []
        checks, starts = [], []
        if sample.returncode == 0 and report.exists():
            found = json.loads(report.read_text())
            runs = list(found.get("runs", []))
            if found.get("server_start_s") is not None:
                starts.append(float(found["server_start_s"]))
            for i in range(len(runs)):
                db = scratch / f"night-{i}" / "warehouse.duckdb"
                if db.exists():
                    checks.append(self.warehouse_totals(db))
        shutil.rmtree(scratch, ignore_errors=True)
        floor = self.results.get("night", {}).get("floor")
        floor_samples: list[Sample] = []
        if floor is None:
            floor_samples = [
                self.floor(landing, f"server-floor-{r}") for r in range(self.scale.repeats)
            ]
            floor = summarize(floor_samples)
        split = {
            key: statistics.median(float(x[key]) for x in runs if x.get(key) is not None)
            if any(x.get(key) is not None for x in runs)
            else None
            for key in ("wall_s", "import_s", "api_s", "data_s", "exit_s")
        }
        self.results["server"] = {
            "pipeline": {
                "wall_s": split["wall_s"],
                # The command's own peak if the module gives it, else its whole tree's
                # (server included: an upper bound).
                "peak_rss": max((int(x.get("peak_rss") or 0) for x in runs), default=0)
                or max((s.peak_rss for s in samples), default=None),
                "runs": [
                    {
                        "wall_s": round(float(x["wall_s"]), 3),
                        "peak_rss": int(x.get("peak_rss") or 0),
                        "returncode": 0,
                        "timed_out": False,
                        "result": {k: x.get(k) for k in ("import_s", "api_s", "data_s", "exit_s")},
                    }
                    for x in runs
                ],
                "ok": len(runs),
                "n": self.scale.repeats,
            },
            "process": summarize(samples),
            "floor": floor,
            "split": split,
            "server_start_s": statistics.median(starts) if starts else None,
            "check": cross_check_summary(checks, floor),
        }

    def backfill(self) -> None:
        first, last = str(self.ds.year_first), str(self.ds.year_last)
        log(
            f"backfill: {self.ds.year_rows:,} rows, {self.ds.year_partitions} partitions, "
            f"{first} to {last}: `claims backfill` and backfill_local (chunks)"
        )
        self.warm(self.ds.year_landing)
        floor = [
            self.floor(self.ds.year_landing, f"backfill-floor-{r}")
            for r in range(self.scale.repeats)
        ]
        local, local_checks = [], []
        for r in range(self.scale.backfill_repeats):
            folder = self.copy_base(f"backfill-local-{r}")
            s = self.run(f"backfill-local-{r}", self.local_chunks_cmd(folder))
            local.append(s)
            if s.returncode in (0, 1):
                local_checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
            shutil.rmtree(folder, ignore_errors=True)
        pipe, checks = [], []
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
                    *self.paths(folder, self.ds.year_landing),
                ),
            )
            pipe.append(s)
            if s.returncode in (0, 1):
                checks.append(self.warehouse_totals(folder / "warehouse.duckdb"))
                # The last one is the year-end warehouse of the benchmarks that follow.
                shutil.rmtree(self.yearend, ignore_errors=True)
                shutil.move(str(folder), self.yearend)
            shutil.rmtree(folder, ignore_errors=True)
        self.results["backfill"] = {
            "pipeline": summarize(pipe),
            "local": summarize(local),
            "floor": summarize(floor),
            "rows": self.ds.year_rows,
            "partitions": self.ds.year_partitions,
            "dates": self.scale.year_nights,
            "check": cross_check(checks, floor),
            "check_local": cross_check(local_checks, floor),
        }

    def yearend_night(self) -> None:
        yearnight, _, _ = self.derived()
        log("yearend: the night on copies of the year-end warehouse (landing: year + night)")
        self.warm(self.ds.night_landing)
        source, n = self.yearend / "warehouse.duckdb", self.scale.repeats
        base, night = self.work / "base.duckdb", self.ds.night_landing
        # Each year-end night beside its twin on the snapshot-only warehouse, in turn (the
        # order swapped every repeat): the ratio's two sides at the same moment. A shared
        # machine's speed drifts over a run: at 083097b the year's floor took 29.3 s and, twelve
        # minutes later, the same statement with one night more 43.0 s, while the twins of
        # benchmark 2 had been measured before the drift.
        runs: dict[str, list[Sample]] = {}
        checks: dict[str, list[dict[str, int]]] = {}
        for r in range(n):
            sides = [("yearend", source, yearnight), ("yearend-twin", base, night)]
            for prefix, warehouse, landing in sides if r % 2 == 0 else sides[::-1]:
                for kind, name in (("claims", "cli"), ("local", "local")):
                    got, sums = self.night_runs(kind, warehouse, landing, f"{prefix}-{name}", 1, r)
                    runs.setdefault(f"{prefix}-{name}", []).extend(got)
                    checks.setdefault(f"{prefix}-{name}", []).extend(sums)
        floor = [self.floor(yearnight, "yearend-floor-0")]
        self.results["yearend"] = {
            "pipeline": summarize(runs["yearend-cli"]),
            "local": summarize(runs["yearend-local"]),
            "twin_pipeline": summarize(runs["yearend-twin-cli"]),
            "twin_local": summarize(runs["yearend-twin-local"]),
            "floor": summarize(floor),
            "check": cross_check(checks["yearend-cli"], floor),
            "check_local": cross_check(checks["yearend-local"], floor),
        }

    def newsnap(self) -> None:
        _, landing, info = self.derived()
        changed = info["changed"]
        log(
            f"newsnap: the night with a new snapshot ({info['rows']:,} rows, "
            f"{sum(changed[k] for k in newsnap.KINDS):,} of {changed['people']:,} people changed) "
            "on the year-end warehouse"
        )
        new_dir = landing / "enrollments" / f"snapshot_date={newsnap.NEW_DATE}"
        new_file = next(p for p in sorted(new_dir.iterdir()) if p.name.startswith("part-"))
        self.warm(new_dir, self.ds.night_landing)
        bare_new = self.work / "bare-new.duckdb"
        source = self.yearend / "warehouse.duckdb"
        # The bare load and the night in turn, each repeat: the limit (twice the bare load) and
        # the figure taken at the same moment. Measured once each, the verdict turned on one
        # sample's spread (1f49c5b and 80d072a, the same code: 21.9 s met, 24.7 s missed).
        bare: list[Sample] = []
        cli: list[Sample] = []
        checks: list[dict[str, int]] = []
        for r in range(self.scale.repeats):
            bare.append(self.bare_load(bare_new, f"newsnap-bare-{r}", new_file))
            got, sums = self.night_runs("claims", source, landing, "newsnap-cli", 1, r)
            cli, checks = cli + got, checks + sums
        floor = [self.floor(landing, "newsnap-floor-0", bare_new)]
        bare_new.unlink(missing_ok=True)
        self.results["newsnap"] = {
            "pipeline": summarize(cli),
            "bare": summarize(bare),
            "floor": summarize(floor),
            "snapshot": info,
            "check": cross_check(checks, floor),
        }

    def readonly(self) -> None:
        log("readonly: `claims status` and `claims explain` on the year-end warehouse")
        import duckdb

        db = self.yearend / "warehouse.duckdb"
        con = duckdb.connect(str(db), read_only=True)
        try:
            row = con.execute(
                "SELECT hospital_code || '/' || settlement_id FROM claim_outcomes "
                "WHERE status = 'paid' ORDER BY 1 LIMIT 1"
            ).fetchone()
        finally:
            con.close()
        flags = self.paths(self.yearend, self.ds.year_landing)
        commands = {"status": ["status", *flags]}
        if row is not None:
            commands["explain"] = ["explain", "--stay", str(row[0]), *flags]
        # Once, unmeasured: the bytecode cache is filled as an installed program has it.
        self.run("readonly-warm-up", claims_cmd("status", *flags))
        entry: dict[str, Any] = {}
        for name, cmd in commands.items():
            samples = [
                self.run(f"readonly-{name}-{r}", claims_cmd(*cmd))
                for r in range(self.scale.repeats)
            ]
            entry[name] = summarize(samples)
        self.results["readonly"] = entry

    def verify(self) -> None:
        log("verify: `claims verify` on the year-end warehouse")
        flags = self.paths(self.yearend, self.ds.year_landing)
        samples = [
            self.run(f"verify-{r}", claims_cmd("verify", *flags)) for r in range(self.scale.repeats)
        ]
        self.results["verify"] = {
            "pipeline": summarize(samples),
            "exit": sorted({s.returncode for s in samples}),
        }

    def sustainability(self) -> None:
        year = str(self.ds.year_last.year)
        log(
            f"sustainability: `claims report sustainability --year {year}` "
            "on the year-end warehouse"
        )
        flags = self.paths(self.yearend, self.ds.year_landing)
        samples = [
            self.run(
                f"sustainability-{r}",
                claims_cmd("report", "sustainability", "--year", year, *flags),
            )
            for r in range(self.scale.repeats)
        ]
        self.results["sustainability"] = {"pipeline": summarize(samples)}

    def overhead(self) -> None:
        first, last = str(self.ds.year_first), str(self.ds.year_last)
        log("overhead: the year via run_local date by date (the old shape), without Prefect")
        self.warm(self.ds.year_landing)
        local, checks = [], []
        for r in range(self.scale.backfill_repeats):
            folder = self.copy_base(f"overhead-{r}")
            s = self.run(
                f"backfill-dates-{r}",
                step_cmd(
                    "local-dates",
                    *self.paths(folder, self.ds.year_landing),
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
        self.results["overhead"] = {
            "local": summarize(local),
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


MONEY_KEYS = ("stays", "stay_plans", "target_fen")


def _compare(pipeline: list[dict[str, int]], floor: dict[str, Any] | None) -> dict[str, Any]:
    pipe = pipeline[-1] if pipeline else None
    # Every run of the side computes the same money (each on its own copy), and the floor's.
    agree = all(p == pipeline[0] for p in pipeline)
    same = bool(pipe and floor and agree and all(pipe[k] == floor.get(k) for k in MONEY_KEYS))
    return {"pipeline": pipe, "floor": floor, "same": same, "runs_agree": agree}


def cross_check(pipeline: list[dict[str, int]], floors: list[Sample]) -> dict[str, Any]:
    """Did the floor compute the same money as the pipeline? (It should, to the fen.)"""
    return _compare(pipeline, next((f.result for f in floors if f.result), None))


def cross_check_summary(
    pipeline: list[dict[str, int]], floor: dict[str, Any] | None
) -> dict[str, Any]:
    """``cross_check`` against a floor already summarized (``summarize``)."""
    found = [r["result"] for r in (floor or {}).get("runs", []) if r.get("result")]
    return _compare(pipeline, found[0] if found else None)


# ---------------------------------------------------------------------------------------------
# Figures, targets, table
# ---------------------------------------------------------------------------------------------


def _wall(entry: dict[str, Any] | None, side: str = "pipeline") -> float | None:
    part = (entry or {}).get(side)
    return part.get("wall_s") if isinstance(part, dict) else None


def _peak(entry: dict[str, Any] | None, side: str = "pipeline") -> int | None:
    part = (entry or {}).get(side)
    return part.get("peak_rss") if isinstance(part, dict) else None


def _row(
    target: str,
    name: str,
    figure: float | None,
    basis: float | None = None,
    basis_name: str = "",
    *,
    limit: float | None = None,
    ratio: float | None = None,
    ratio_limit: float | None = None,
    peak: int | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One line of the table. Judged on ``limit`` (seconds) or ``ratio_limit`` (a ratio)."""
    if ratio is None and figure is not None and basis:
        ratio = figure / basis
    met: bool | None = None
    if ratio_limit is not None and ratio is not None:
        met = ratio <= ratio_limit
    elif limit is not None and figure is not None:
        met = figure <= limit
    if figure is None and not note:
        note = "did not finish (see logs)"
    return {
        "target": target,
        "name": name,
        "pipeline_s": figure,
        "floor_s": basis,
        "basis": basis_name,
        "ratio": ratio,
        "limit": limit,
        "ratio_limit": ratio_limit,
        "peak": peak,
        "met": met,
        "note": note,
    }


def figures(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per issue-16 target (and the figures shown beside them): figure, floor, limit,
    met/missed."""
    rows: list[dict[str, Any]] = []
    back = results.get("backfill")
    if back:
        p, f, loc = _wall(back), _wall(back, "floor"), _wall(back, "local")
        limit = TARGET_BACKFILL_FACTOR * f + TARGET_BACKFILL_EXTRA_S if f is not None else None
        share = f"Prefect's share {_s(p - loc)}" if p is not None and loc is not None else ""
        rows.append(
            _row(
                f"year backfill ≤ {TARGET_BACKFILL_FACTOR:g} × floor + "
                f"{TARGET_BACKFILL_EXTRA_S:g} s",
                "`claims backfill` (chunks of 31 dates)",
                p,
                f,
                "year floor",
                limit=limit,
                peak=_peak(back),
                note=share,
            )
        )
        rows.append(
            _row(
                "— (the year's data work)",
                "`backfill_local` (chunks of 31 dates, no Prefect)",
                loc,
                f,
                "year floor",
                peak=_peak(back, "local"),
            )
        )
    night, year = results.get("night"), results.get("yearend")
    if year:
        for side, name in (("pipeline", "`claims run`"), ("local", "`run_local`")):
            # the twin measured beside it when the run has one, else benchmark 2's night
            twin = _wall(year, f"twin_{side}")
            p, b = _wall(year, side), twin or _wall(night, side)
            rows.append(
                _row(
                    f"night on the year-end warehouse ÷ on the snapshot-only one ≤ "
                    f"{TARGET_YEAREND_RATIO:g}",
                    f"night {name}, year-end warehouse",
                    p,
                    b,
                    "same night, snapshot-only" + (", beside it" if twin else ""),
                    ratio_limit=TARGET_YEAREND_RATIO,
                    peak=_peak(year, side),
                    note="" if b is not None or p is None else "no snapshot-only night in this run",
                )
            )
    snap_new = results.get("newsnap")
    if snap_new:
        p, bare, base = _wall(snap_new), _wall(snap_new, "bare"), _wall(year)
        limit = TARGET_NEWSNAP_FACTOR * bare + base if bare is not None and base else None
        changed = snap_new.get("snapshot", {}).get("changed", {})
        people = sum(int(changed.get(k, 0)) for k in newsnap.KINDS)
        rows.append(
            _row(
                f"night with a new snapshot (1 % changed) ≤ {TARGET_NEWSNAP_FACTOR:g} × bare "
                "snapshot load + the night",
                "`claims run`, new snapshot, year-end warehouse",
                p,
                bare,
                "bare load of the new snapshot",
                limit=limit,
                peak=_peak(snap_new),
                note=f"{people:,} people changed; the night: year-end `claims run` {_s(base)}",
            )
        )
    if night:
        p, f = _wall(night, "local"), _wall(night, "floor")
        rows.append(
            _row(
                f"night's data work ≤ {TARGET_DATA_FACTOR:g} × floor",
                "night `run_local` (no Prefect), snapshot-only warehouse",
                p,
                f,
                "night floor",
                limit=TARGET_DATA_FACTOR * f if f is not None else None,
                peak=_peak(night, "local"),
            )
        )
        start = _wall(results.get("prefect_start"))
        rows.append(
            _row(
                "— (ephemeral Prefect, the default)",
                "night `claims run`, snapshot-only warehouse",
                _wall(night),
                f,
                "night floor",
                peak=_peak(night),
                note=f"a trivial flow takes {_s(start)}" if start is not None else "",
            )
        )
    server = results.get("server")
    if server:
        target = f"night with a running Prefect server ≤ floor + {TARGET_SERVER_EXTRA_S:g} s"
        if server.get("missing"):
            rows.append(
                _row(
                    target,
                    "`claims run` with `PREFECT_API_URL`",
                    None,
                    note="not measured: benchmarks/server_night.py is absent",
                )
            )
        else:
            f = _wall(server, "floor")
            split = server.get("split", {})
            note = ", ".join(
                f"{label} {_s(split.get(key))}"
                for key, label in (
                    ("import_s", "import"),
                    ("api_s", "API"),
                    ("data_s", "data"),
                    ("exit_s", "exit"),
                )
                if split.get(key) is not None
            )
            if server.get("server_start_s") is not None:
                note += f"; the server started in {_s(server['server_start_s'])}"
            rows.append(
                _row(
                    target,
                    "`claims run` with `PREFECT_API_URL`",
                    _wall(server),
                    f,
                    "night floor",
                    limit=f + TARGET_SERVER_EXTRA_S if f is not None else None,
                    peak=_peak(server),
                    note=note,
                )
            )
    snap = results.get("snapshot")
    if snap:
        p, f = _wall(snap), _wall(snap, "floor")
        rows.append(
            _row(
                f"snapshot load ≤ {TARGET_SNAPSHOT_FACTOR:g} × bare DuckDB",
                "`run_local`, registry + snapshot, new warehouse",
                p,
                f,
                "bare DuckDB load",
                limit=TARGET_SNAPSHOT_FACTOR * f if f is not None else None,
                peak=_peak(snap),
            )
        )
    ro = results.get("readonly")
    if ro:
        for name in ("status", "explain"):
            if name in ro:
                rows.append(
                    _row(
                        f"read-only commands ≤ {TARGET_READONLY_S:g} s",
                        f"`claims {name}`, year-end warehouse",
                        ro[name]["wall_s"],
                        limit=TARGET_READONLY_S,
                        peak=ro[name]["peak_rss"],
                    )
                )
    ver = results.get("verify")
    if ver:
        rows.append(
            _row(
                f"— (issue 17: ≤ {TARGET_VERIFY_S:g} s, exit 0)",
                "`claims verify`, year-end warehouse",
                _wall(ver),
                limit=TARGET_VERIFY_S if ver.get("exit") == [0] else None,
                peak=_peak(ver),
                note=f"exit {ver.get('exit')}",
            )
        )
        if ver.get("exit") != [0]:
            rows[-1]["met"] = False
    sus = results.get("sustainability")
    if sus:
        rows.append(
            _row(
                f"— (issue 17: < {TARGET_SUSTAINABILITY_S:g} s)",
                "`claims report sustainability`, year-end warehouse",
                _wall(sus),
                limit=TARGET_SUSTAINABILITY_S,
                peak=_peak(sus),
            )
        )
    over = results.get("overhead")
    if over:
        rows.append(
            _row(
                "— (the old shape, `--only overhead`)",
                "`run_local` date by date, no Prefect",
                _wall(over, "local"),
                _wall(back, "floor"),
                "year floor",
                peak=_peak(over, "local"),
            )
        )
    peaks = [(r["peak"], r["name"]) for r in rows if r.get("peak")]
    if peaks:
        top, where = max(peaks)
        rows.append(
            {
                "target": "peak memory, any run ≤ 6 GB",
                "name": "every pipeline run above",
                "pipeline_s": None,
                "floor_s": None,
                "basis": "",
                "ratio": None,
                "limit": None,
                "ratio_limit": None,
                "peak": top,
                "met": top <= TARGET_PEAK_BYTES,
                "note": f"the largest: {where}",
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The targets as a plain-text table."""
    head = ("target", "benchmark", "figure", "floor", "ratio", "peak RSS", "result")
    body = [
        (
            str(r["target"]),
            str(r["name"]),
            _s(r["pipeline_s"]),
            _s(r["floor_s"]),
            "—" if r["ratio"] is None else f"{float(r['ratio']):.2f}×",
            _gb(r["peak"]),
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
        help=f"comma-separated subset of {','.join(BENCHMARKS + OPTIONAL)}",
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
        "--yearend",
        type=Path,
        default=None,
        help="a year-end warehouse to copy when this run has no backfill (else one is built)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the report from the last figures of this scale",
    )
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in BENCHMARKS + OPTIONAL]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {','.join(BENCHMARKS + OPTIONAL)}")
    # Always in the order above: the year-end benchmarks use the backfill's warehouse.
    order = BENCHMARKS + OPTIONAL
    args.only = sorted(set(only), key=order.index)
    return args


METHODS = {"yearend": "yearend_night"}


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
    timings: dict[str, float] = {}
    try:
        commit = machine()["commit"]
        if set(args.only) & USES_PREFECT:
            log("warm-up: Prefect's database (not measured)")
            bench.run("prefect-warm-up", step_cmd("prefect-trivial"))
        for name in args.only:
            if name != "snapshot" and not bench.ensure_base():
                log("the snapshot could not be loaded: nothing else can run")
                break
            if name in NEEDS_YEAREND and not bench.ensure_yearend():
                log(f"{name}: no year-end warehouse could be built: skipped")
                continue
            t = time.perf_counter()
            getattr(bench, METHODS.get(name, name))()
            timings[name] = round(time.perf_counter() - t, 1)
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            for key in (name, "prefect_start") if name == "night" else (name,):
                bench.results[key].update(measured_at=stamp, load=load_avg(), commit=commit)
                bench.results[key]["elapsed_s"] = timings[name]
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
        "timings": timings,
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
