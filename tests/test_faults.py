"""Crash the pipeline at every commit point and prove payouts.md and operations.md still hold.

A deterministic multi-night scenario (two enrolment snapshots, corrections and voids, a few bad
rows, a partition that fails and is re-delivered fixed, a re-delivery that drops rows, a rerun)
is played by real ``claims`` subprocesses: ``python -c`` calling ``pipeline.run_local``
for speed, and the real ``claims run`` command (Prefect ephemeral mode) for the CLI cases and
the random ``kill -9`` cases. A process killed by ``config/faults.py`` dies with ``os._exit(137)``,
as under ``kill -9``; the same command is then run again without the fault.

After every crash, and at the end, the warehouse and outbox are compared with a reference run
that never crashed:

* all five views equal (``partition_runs`` without timestamps, attempts and error text);
* no partition is left ``running``;
* the outbox pays every member exactly ``ledger − recovery_due`` (each fen once), every batch
  matches its manifest, and a batch rewritten after a crash has the same bytes.

See docs/reliability.md for what each point proves.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import synth
from config.faults import POINTS
from config.settings import Settings
from pipeline.audit import verify

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = PROJECT / ".venv" / "bin" / "python"
CLAIMS = PROJECT / ".venv" / "bin" / "claims"

SEED = 23
START = date(2026, 3, 2)
NIGHTS = [START + timedelta(days=i) for i in range(4)]
SNAP1 = START - timedelta(days=1)
SNAP2 = NIGHTS[2]
FAILING_SOURCE = "LABX"

# ---------------------------------------------------------------------------------------------
# The scenario: deliveries (what the senders put in the landing folder) and commands
# ---------------------------------------------------------------------------------------------


def _key(day: date, source: str) -> str:
    return f"feed_date={day.isoformat()}/source={source}"


def _strip_labels(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.drop([c for c in ("defect", "identity", "name_form") if c in rows.columns])


def build_scenario(root: Path) -> list[dict[str, Any]]:
    """Write one folder per delivery under ``root`` and return the steps of the scenario.

    A step is ``{"op": "deliver", "src": folder}`` (copy a delivery into the landing folder, as
    the senders would) or ``{"op": "run"|"rerun", "as_of": D, "keys": [...]}`` (one command).
    """
    pop = synth.make_population(400, seed=SEED, as_of=SNAP1)
    hospitals = synth.make_hospitals(20, seed=0)

    def night(i: int, n: int = 90, **kw: Any) -> dict[str, pl.DataFrame]:
        return synth.make_stays(
            pop,
            hospitals,
            feed_date=NIGHTS[i],
            n=n,
            seed=SEED,
            bad_rate=0.02,  # one bad row in most partitions, under the 5 % threshold
            correction_rate=0.08,
            void_rate=0.04,
            history_start=START,
            labels=True,
            **kw,
        )

    nights = [night(i) for i in range(4)]
    early = pl.concat([nights[0]["SHYB"], nights[0]["HOSPX"], nights[1]["SHYB"]])
    exact = early.filter(
        (pl.col("identity") == "exact")
        & (pl.col("name_form") == "exact")
        & pl.col("defect").is_null()
        & (pl.col("record_type") == "N")
    )
    paid_ids = exact.get_column("national_id").unique().sort().to_list()
    leavers, retro, renamed = paid_ids[:4], paid_ids[4:7], paid_ids[7]
    stranger = (
        early.filter(
            (pl.col("identity") == "unknown")
            & pl.col("defect").is_null()
            & (pl.col("record_type") == "N")
            & (pl.col("name_form") == "exact")
        )
        .sort("settlement_id")
        .row(0, named=True)
    )

    enrol = pop.enrollments
    # Snapshot 1 misspells one member's name (their stays go to review); snapshot 2 fixes it.
    first = enrol.with_columns(
        member_name=pl.when(pl.col("national_id") == renamed)
        .then(pl.col("member_name").str.slice(0, 1) + pl.lit("错字"))
        .otherwise("member_name")
    )
    # Snapshot 2: four people leave (recoveries), three enrolments end retroactively, and the
    # patient of an unmatched stay is enrolled (re-tried stays get paid).
    new_row = pl.DataFrame(
        {
            "enrollment_id": ["E900000001"],
            "national_id": [stranger["national_id"]],
            "member_name": [stranger["patient_name"]],
            "gender": [stranger["gender"]],
            "birth_date": [date.fromisoformat(stranger["birth_date"])],
            "plan_code": ["UNION_BASIC"],
            "coverage_start": [date.fromisoformat(stranger["admission_date"]) - timedelta(180)],
            "coverage_end": [None],
            "payee_account": ["6222020000000000017"],
        },
        schema=enrol.schema,
    )
    second = pl.concat(
        [
            enrol.filter(~pl.col("national_id").is_in(leavers)).with_columns(
                coverage_end=pl.when(pl.col("national_id").is_in(retro))
                .then(pl.col("coverage_start") + timedelta(days=10))
                .otherwise("coverage_end")
            ),
            new_row,
        ]
    )

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir(parents=True)
        return path

    def partition(dest: Path, i: int, source: str, rows: pl.DataFrame, **opts: Any) -> None:
        synth.write_partition(dest, NIGHTS[i], source, _strip_labels(rows), **opts)

    d1 = folder("deliver-1")
    synth.write_registry(d1, hospitals)
    synth.write_snapshot(d1, SNAP1, first)
    partition(d1, 0, "SHYB", nights[0]["SHYB"], bom=True, crlf=True, files=2)
    partition(d1, 0, "HOSPX", nights[0]["HOSPX"], fmt="parquet")

    d2 = folder("deliver-2")
    partition(d2, 1, "SHYB", nights[1]["SHYB"], encoding="gb18030")
    partition(d2, 1, "HOSPX", nights[1]["HOSPX"], fmt="jsonl")

    # The lab's extract is broken on night 3 (too many bad rows) and re-delivered fixed on night 4.
    lab = synth.make_stays(
        pop,
        hospitals,
        feed_date=NIGHTS[2],
        n=40,
        seed=SEED + 1,
        sources=(FAILING_SOURCE,),
        bad_rate=0.0,
        correction_rate=0.0,
        void_rate=0.0,
        labels=True,
    )[FAILING_SOURCE].with_columns(pl.col("settlement_id").str.replace("^ZY", "LB"))
    lab_broken = lab.with_columns(
        total_cost=pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(pl.col("total_cost") + "5")
        .otherwise("total_cost")
    )
    d3 = folder("deliver-3")
    synth.write_snapshot(d3, SNAP2, second, fmt="parquet")
    partition(d3, 2, "SHYB", nights[2]["SHYB"], fmt="csv.gz")
    partition(d3, 2, "HOSPX", nights[2]["HOSPX"])
    partition(d3, 2, FAILING_SOURCE, lab_broken)

    d4 = folder("deliver-4")
    partition(d4, 3, "SHYB", nights[3]["SHYB"])
    partition(d4, 3, "HOSPX", nights[3]["HOSPX"], fmt="parquet")
    partition(d4, 2, FAILING_SOURCE, lab)
    # Night 1's HOSPX is re-delivered without its last two rows: their stays lose their money.
    partition(d4, 0, "HOSPX", nights[0]["HOSPX"].head(-2), fmt="parquet")

    return [
        {"op": "deliver", "src": str(d1)},
        {"op": "run", "as_of": NIGHTS[0].isoformat()},
        {"op": "deliver", "src": str(d2)},
        {"op": "run", "as_of": NIGHTS[1].isoformat()},
        {"op": "deliver", "src": str(d3)},
        {"op": "run", "as_of": NIGHTS[2].isoformat()},
        {"op": "deliver", "src": str(d4)},
        {"op": "run", "as_of": NIGHTS[3].isoformat()},
        # Re-running a succeeded partition posts nothing new.
        {"op": "rerun", "as_of": NIGHTS[1].isoformat(), "keys": [_key(NIGHTS[1], "SHYB")]},
    ]


# ---------------------------------------------------------------------------------------------
# Driving real processes
# ---------------------------------------------------------------------------------------------

# What one ``claims`` process does: deliver and run the given steps with the pipeline functions
# (no Prefect), arming CLAIMS_FAULT only for the step that should crash. Keeps a copy of the
# warehouse after each run step when asked, so the reference's every night can be compared.
DRIVER = """
import json, os, shutil, sys, time
from datetime import date
from pathlib import Path
from config.settings import Settings
from pipeline import backfill_local, run_local

spec = json.loads(sys.argv[1])
settings = Settings.build(Path(spec["landing"]), Path(spec["warehouse"]), Path(spec["outbox"]))
for n, step in enumerate(spec["steps"]):
    if step["op"] == "deliver":
        shutil.copytree(step["src"], spec["landing"], dirs_exist_ok=True, symlinks=True)
        continue
    t0 = time.monotonic()
    if n == spec.get("fault_step"):
        os.environ["CLAIMS_FAULT"] = spec["fault"]
        os.environ["CLAIMS_FAULT_SKIP"] = str(spec.get("fault_skip") or 0)
    if step["op"] == "backfill":
        # What flows/nightly.py's backfill does: one commit per chunk of feed dates, in order.
        first, last = date.fromisoformat(step["from"]), date.fromisoformat(step["to"])
        result = backfill_local(
            settings, first, last, chunk_days=step.get("chunk_days", 31)
        )[-1]
    else:
        result = run_local(
            settings,
            command=step["op"],
            as_of=date.fromisoformat(step["as_of"]),
            rerun_keys=step.get("keys"),
        )
    os.environ.pop("CLAIMS_FAULT", None)
    print(json.dumps({"step": step.get("index", n), "seconds": time.monotonic() - t0,
                      "result": json.loads(result.to_json())}))
    if spec.get("keep"):
        shutil.copy(spec["warehouse"], Path(spec["keep"]) / f"after-{step.get('index', n)}.duckdb")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        CLAIMS_LOCK_TIMEOUT="30",
    )
    env.update(extra)
    return env


@dataclass
class Done:
    """A finished process."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def results(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


@dataclass
class Proc:
    """A started ``claims`` process, its output going to files.

    Files, not pipes: a killed ``claims run`` leaves Prefect's ephemeral API server behind
    (a child that outlives it), and that child would hold a pipe open for ever.
    """

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float = 300) -> Done:
        try:
            self.popen.wait(timeout=timeout)
        finally:
            self.kill_group()
        return Done(
            self.popen.returncode,
            self.out.read_text(errors="replace"),
            self.err.read_text(errors="replace"),
            time.monotonic() - self.started,
        )

    def kill_group(self) -> None:
        """Whatever the process left (Prefect's ephemeral server) goes with it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


_counter = iter(range(1_000_000))


def start(args: list[str], env: dict[str, str], logs: Path) -> Proc:
    """A process in its own session, so that it and its children can be killed together."""
    logs.mkdir(parents=True, exist_ok=True)
    n = next(_counter)
    out, err = logs / f"{n:03d}.out", logs / f"{n:03d}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        popen = subprocess.Popen(
            args, cwd=PROJECT, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return Proc(popen, out, err, time.monotonic())


@dataclass
class Place:
    """One landing / warehouse / outbox triple."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def flags(self) -> list[str]:
        return [
            "--landing", str(self.landing),
            "--warehouse", str(self.warehouse),
            "--outbox", str(self.outbox),
        ]  # fmt: skip


def drive(
    place: Place,
    steps: list[dict[str, Any]],
    *,
    fault: str | None = None,
    fault_step: int | None = None,
    fault_skip: int = 0,
    keep: Path | None = None,
    timeout: float = 300,
) -> Done:
    """Play ``steps`` in one ``python -c`` process calling ``run_local``."""
    spec = {
        "landing": str(place.landing),
        "warehouse": str(place.warehouse),
        "outbox": str(place.outbox),
        "steps": steps,
        "fault": fault,
        "fault_step": fault_step,
        "fault_skip": fault_skip,
        "keep": str(keep) if keep else None,
    }
    proc = start([str(PYTHON), "-c", DRIVER, json.dumps(spec)], _env(), place.root / "logs")
    return proc.wait(timeout)


def claims_cli(
    place: Place, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> Done:
    """Run the real ``claims`` command to its end."""
    proc = start([str(CLAIMS), *args, *place.flags()], env or _env(), place.root / "logs")
    return proc.wait(timeout)


# ---------------------------------------------------------------------------------------------
# What is checked
# ---------------------------------------------------------------------------------------------

VIEWS = {
    "claim_outcomes": "SELECT hospital_code, settlement_id, current_version, status, reason, "
    "national_id, match_method, paid_fen FROM claim_outcomes",
    "claim_plan_payouts": "SELECT hospital_code, settlement_id, plan_code, national_id, paid_fen "
    "FROM claim_plan_payouts",
    "member_accounts": "SELECT national_id, ledger_fen, paid_out_fen, recovery_due_fen "
    "FROM member_accounts",
    # Without updated_at, attempts and error: they say when and how often, not what.
    "partition_runs": "SELECT kind, partition_key, status, rows_read, rows_quarantined "
    "FROM partition_runs",
    "quarantine_rows": "SELECT partition_key, row_number, rule, message, raw FROM quarantine_rows",
}
MONEY_VIEWS = ("claim_outcomes", "claim_plan_payouts", "member_accounts", "quarantine_rows")


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


def query(warehouse: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def views(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The five views of payouts.md, rows sorted (an empty dict for a missing warehouse)."""
    if not warehouse.exists():
        return {name: [] for name in VIEWS}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {name: _sorted(con.execute(sql).fetchall()) for name, sql in VIEWS.items()}
    finally:
        con.close()


def assert_same(got: dict[str, list[Any]], want: dict[str, list[Any]], names: Any = VIEWS) -> None:
    """Equal views, or a readable account of the rows that differ."""
    problems = []
    for name in names:
        g, w = Counter(got[name]), Counter(want[name])
        if g != w:
            extra, missing = list((g - w).elements()), list((w - g).elements())
            problems.append(
                f"{name}: {len(extra)} row(s) not in the reference, e.g. {extra[:3]}; "
                f"{len(missing)} reference row(s) missing, e.g. {missing[:3]}"
            )
    assert not problems, "\n".join(problems)


def running(warehouse: Path) -> list[str]:
    return [r[0] for r in query(warehouse, "SELECT partition_key FROM partition_runs "
                                           "WHERE status = 'running'")]  # fmt: skip


@dataclass
class Batch:
    batch_id: str
    folder: Path
    csv_bytes: bytes
    rows: list[dict[str, str]]


def outbox_batches(outbox: Path) -> tuple[list[Batch], list[Path]]:
    """Complete batches (those with a manifest), each checked against its manifest; and the
    incomplete folders."""
    batches, incomplete = [], []
    for folder in sorted((outbox / "payments").glob("batch_id=*")):
        manifest_path = folder / "_manifest.json"
        if not manifest_path.is_file():
            incomplete.append(folder)
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        data = (folder / "payments.csv").read_bytes()
        batch_id = folder.name.split("=", 1)[1]
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
        assert manifest["batch_id"] == batch_id, folder
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), f"{folder}: sha256"
        assert manifest["row_count"] == len(rows), f"{folder}: row_count"
        amounts = [Decimal(r["amount"]) for r in rows]
        assert all(r["amount"] == f"{a:.2f}" for r, a in zip(rows, amounts, strict=True))
        assert Decimal(manifest["amount_sum"]) == sum(amounts, Decimal(0)), f"{folder}: sum"
        assert f"{Decimal(manifest['amount_sum']):.2f}" == manifest["amount_sum"]
        assert {r["batch_id"] for r in rows} <= {batch_id}, folder
        assert {r["currency"] for r in rows} <= {"CNY"}, folder
        assert all(a > 0 for a in amounts), f"{folder}: an instruction that pays nothing"
        assert len({r["instruction_id"] for r in rows}) == len(rows), folder
        assert len({r["national_id"] for r in rows}) == len(rows), f"{folder}: member twice"
        batches.append(Batch(batch_id, folder, data, rows))
    return batches, incomplete


def paid_by_member(batches: list[Batch]) -> dict[str, int]:
    """Fen paid to each member by every batch file in the outbox."""
    paid: Counter[str] = Counter()
    for b in batches:
        for r in b.rows:
            paid[r["national_id"]] += int(Decimal(r["amount"]) * 100)
    return dict(paid)


def assert_paid_exactly_once(place: Place) -> dict[str, int]:
    """The outbox pays each member exactly once: what the files pay, less what the member owes
    back, is the member's ledger (payouts.md: sum(instructions) − recovery_due = sum(ledger)).
    No batch is incomplete, left unissued or missing from the outbox."""
    batches, incomplete = outbox_batches(place.outbox)
    assert not incomplete, f"batch folders without a manifest: {incomplete}"
    paid = paid_by_member(batches)
    accounts = query(
        place.warehouse,
        "SELECT national_id, ledger_fen, recovery_due_fen, paid_out_fen FROM member_accounts",
    )
    ledger = {nid: fen for nid, fen, _, _ in accounts}
    due = {nid: fen for nid, _, fen, _ in accounts}
    wrong = {
        nid: (paid.get(nid, 0), due.get(nid, 0), ledger.get(nid, 0))
        for nid in set(paid) | set(ledger)
        if paid.get(nid, 0) - due.get(nid, 0) != ledger.get(nid, 0)
    }
    assert not wrong, (
        "members whose payment files less recovery_due ≠ ledger (paid, due, ledger): "
        f"{list(wrong.items())[:5]}"
    )
    assert all(fen >= 0 for fen in due.values()), "a negative recovery_due (a payout held back)"
    # Every committed batch is in the outbox and issued; nothing else is.
    committed = query(
        place.warehouse,
        "SELECT batch_id, row_count, amount_sum_fen, issued_at IS NOT NULL FROM payment_batches",
    )
    assert sorted(b.batch_id for b in batches) == sorted(r[0] for r in committed)
    assert all(r[3] for r in committed), "a committed batch was never marked issued"
    return paid


def money_rows(warehouse: Path) -> dict[str, int]:
    """How many rows of money a warehouse holds: a crash before the commit adds none."""
    tables = ("ledger_entries", "payment_instructions", "payment_batches", "recovery_balances",
              "runs")  # fmt: skip
    if not warehouse.exists():
        return dict.fromkeys(tables, 0)
    return {table: query(warehouse, f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def unissued(warehouse: Path) -> list[str]:
    return [r[0] for r in query(warehouse, "SELECT batch_id FROM payment_batches "
                                           "WHERE issued_at IS NULL")]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The reference run, once per session
# ---------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """The scenario played without faults, with the warehouse kept after every command."""

    steps: list[dict[str, Any]]
    place: Place
    keep: Path
    results: dict[int, dict[str, Any]]
    seconds: float
    _views: dict[int, dict[str, list[Any]]] = field(default_factory=dict)

    def after(self, index: int) -> dict[str, list[Any]]:
        """The views after step ``index`` (a command) of the reference."""
        if index not in self._views:
            self._views[index] = views(self.keep / f"after-{index}.duckdb")
        return self._views[index]

    def before(self, index: int) -> dict[str, list[Any]]:
        """The views after the last command before step ``index``."""
        earlier = [i for i in self.results if i < index]
        return self.after(max(earlier)) if earlier else views(self.keep / "none.duckdb")

    def money_before(self, index: int) -> dict[str, int]:
        earlier = [i for i in self.results if i < index]
        return money_rows(self.keep / (f"after-{max(earlier)}.duckdb" if earlier else "none"))

    def commands(self) -> list[int]:
        return sorted(self.results)

    def reaching(self, point: str) -> list[int]:
        """The commands of the scenario that pass ``point``."""
        if point in ("batch_file_half", "after_batch_file"):
            return [i for i, r in self.results.items() if r["batch_id"]]
        if point == "snapshot_load":
            return [i for i, r in self.results.items() if r["snapshot"]]
        return self.commands()

    def processed(self, index: int) -> set[str]:
        """The partitions command ``index`` worked on (marked running until its commit)."""
        parts = self.results[index]["partitions"]
        return set(parts.get("succeeded", [])) | set(parts.get("failed", []))


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("fault-reference")
    steps = build_scenario(root / "deliveries")
    for index, step in enumerate(steps):
        step["index"] = index
    place = Place(root / "run")
    keep = root / "keep"
    keep.mkdir()
    done = drive(place, steps, keep=keep)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["step"]: r["result"] for r in done.results()}
    ref = Reference(steps, place, keep, results, done.seconds)
    # The scenario is worth crashing only if it has what it claims to have.
    final = ref.after(ref.commands()[-1])
    statuses = Counter(r[3] for r in final["claim_outcomes"])
    assert {"paid", "void", "unmatched", "not_covered"} <= set(statuses), statuses
    assert any(r[3] > 0 for r in final["member_accounts"]), "no member owes a recovery"
    assert final["quarantine_rows"], "no bad rows"
    assert ref.results[5]["partitions"].get("failed") == [_key(NIGHTS[2], FAILING_SOURCE)]
    assert all(ref.results[i]["batch_id"] for i in (1, 3, 5, 7))
    assert_paid_exactly_once(place)
    return ref


# ---------------------------------------------------------------------------------------------
# Checks after a crash, after the command is run again, and at the end
# ---------------------------------------------------------------------------------------------

BEFORE_COMMIT = ("after_validation", "after_staging", "in_ledger", "snapshot_load")


@dataclass
class Crash:
    """What a crash left, to compare with what the next run makes of it."""

    point: str
    index: int
    pending: list[str]
    files: dict[str, bytes]  # batch file bytes (or a half-written temporary) found after it


def check_crashed(point: str, place: Place, ref: Reference, index: int) -> Crash:
    """The state a crash at ``point`` during command ``index`` must leave."""
    got = views(place.warehouse)
    pending = unissued(place.warehouse) if place.warehouse.exists() else []
    files: dict[str, bytes] = {}
    if point in BEFORE_COMMIT:
        # No trace of the run's money: the warehouse is the previous command's, the outbox
        # holds exactly the batches committed before, and the partitions wait to be retried.
        assert_same(got, ref.before(index), MONEY_VIEWS)
        assert money_rows(place.warehouse) == ref.money_before(index)
        assert not pending
        if place.warehouse.exists():
            assert_paid_exactly_once(place)
        assert set(running(place.warehouse)) == ref.processed(index)
        return Crash(point, index, pending, files)

    # After the commit: everything is committed, the batch is not (or not fully) in the outbox.
    assert_same(got, ref.after(index))
    assert not running(place.warehouse)
    expected_batch = ref.results[index]["batch_id"]
    assert len(pending) == (1 if expected_batch else 0), pending
    for batch_id in pending:
        folder = place.outbox / "payments" / f"batch_id={batch_id}"
        if point == "after_commit":
            assert not folder.exists()
        elif point == "batch_file_half":
            assert sorted(p.name for p in folder.iterdir()) == [".payments.csv.tmp"]
            files[batch_id] = (folder / ".payments.csv.tmp").read_bytes()
        elif point == "after_batch_file":
            assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "payments.csv"]
            files[batch_id] = (folder / "payments.csv").read_bytes()
    return Crash(point, index, pending, files)


def check_retried(crash: Crash, place: Place, ref: Reference, kept: Path) -> None:
    """The same command, run again without the fault, ends where the reference's did."""
    assert_same(views(kept), ref.after(crash.index))
    assert not running(kept)
    assert not unissued(kept)
    batches = {b.batch_id: b for b in outbox_batches(place.outbox)[0]}
    for batch_id in crash.pending:
        # The batch the crash left unissued was written first, under the same batch id ...
        assert batch_id in batches, f"batch {batch_id} was never written"
        if batch_id in crash.files:
            # ... and a batch written (or half written) before the crash is the same bytes.
            assert batches[batch_id].csv_bytes == crash.files[batch_id]


def check_final(place: Place, ref: Reference) -> None:
    assert_same(views(place.warehouse), ref.after(ref.commands()[-1]))
    assert not running(place.warehouse)
    paid = assert_paid_exactly_once(place)
    assert paid == paid_by_member(outbox_batches(ref.place.outbox)[0])
    leftovers = [p for p in (place.outbox / "payments").rglob(".*") if p.is_file()]
    assert not leftovers, f"temporary files left in the outbox: {leftovers}"
    # `claims verify` agrees: every promise of payouts.md holds after the crashes (issue 17).
    verified = verify(Settings.build(place.landing, place.warehouse, place.outbox))
    assert verified.ok, verified.findings[:5]


# ---------------------------------------------------------------------------------------------
# Every fault point, at every command that passes it, through run_local processes
# ---------------------------------------------------------------------------------------------


def crash_and_recover(place: Place, ref: Reference, crashes: list[tuple[int, str]]) -> list[Done]:
    """Play the scenario, crashing at (command, point) for each of ``crashes``; after each crash
    the same command runs again without the fault, then the scenario goes on."""
    keep = place.root / "keep"
    keep.mkdir(parents=True, exist_ok=True)
    processes = []
    position, crash = 0, None
    for target, point in [*crashes, (None, None)]:
        todo = [ref.steps[crash.index]] if crash else []
        todo += ref.steps[position : (target + 1 if target is not None else len(ref.steps))]
        done = drive(
            place,
            todo,
            fault=point,
            fault_step=len(todo) - 1 if target is not None else None,
            keep=keep,
        )
        processes.append(done)
        if target is None:
            assert done.returncode == 0, done.stderr[-3000:]
        else:
            assert done.returncode == 137, (
                f"{point} did not fire in command {target}: exit {done.returncode}\n"
                + done.stderr[-3000:]
            )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        if crash:
            check_retried(crash, place, ref, keep / f"after-{crash.index}.duckdb")
        if target is not None and point is not None:
            crash = check_crashed(point, place, ref, target)
            position = target + 1
    check_final(place, ref)
    return processes


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_every_command(point: str, reference: Reference, tmp_path: Path) -> None:
    """A crash at ``point`` in every command of the scenario that reaches it, each followed by
    the same command without the fault: the end is the reference, every fen paid once."""
    targets = reference.reaching(point)
    assert targets
    crash_and_recover(Place(tmp_path), reference, [(t, point) for t in targets])


@pytest.fixture(scope="session")
def short_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The first two nights of the scenario, without faults (for the quick test)."""
    root = tmp_path_factory.mktemp("fault-short")
    steps = build_scenario(root / "deliveries")[:4]
    for index, step in enumerate(steps):
        step["index"] = index
    place, keep = Place(root / "run"), root / "keep"
    keep.mkdir()
    done = drive(place, steps, keep=keep)
    assert done.returncode == 0, done.stderr[-3000:]
    return Reference(steps, place, keep, {r["step"]: r["result"] for r in done.results()},
                     done.seconds)  # fmt: skip


def test_crash_before_and_after_the_commit(short_reference: Reference, tmp_path: Path) -> None:
    """The quick version: night 1 dies in the ledger transaction (no trace of its money), night
    2 dies right after its commit (a committed batch the next run writes first)."""
    assert short_reference.reaching("after_commit") == [1, 3]
    crash_and_recover(Place(tmp_path), short_reference, [(1, "in_ledger"), (3, "after_commit")])


@pytest.mark.slow
@pytest.mark.parametrize("point", ["in_ledger", "after_commit"])
def test_backfill_killed_on_its_third_date_resumes(
    point: str, reference: Reference, tmp_path: Path
) -> None:
    """``claims backfill --chunk-days 1`` commits once per feed date: killed on the third date
    (the fault passes twice first, CLAIMS_FAULT_SKIP=2), the same backfill again finishes the
    job and ends where an uninterrupted backfill ends (chunks: tests/test_backfill_chunks.py)."""
    deliveries = [s for s in reference.steps if s["op"] == "deliver"]
    backfill = {
        "op": "backfill",
        "from": NIGHTS[0].isoformat(),
        "to": NIGHTS[-1].isoformat(),
        "chunk_days": 1,
    }
    steps = [*deliveries, backfill]

    alone = Place(tmp_path / "alone")
    assert drive(alone, steps).returncode == 0

    place = Place(tmp_path / "killed")
    crashed = drive(place, steps, fault=point, fault_step=len(steps) - 1, fault_skip=2)
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    dates_done = {r[0] for r in query(place.warehouse, "SELECT partition_key FROM partition_runs "
                                                       "WHERE status = 'succeeded'")}  # fmt: skip
    assert _key(NIGHTS[1], "SHYB") in dates_done and _key(NIGHTS[3], "SHYB") not in dates_done
    again = drive(place, [backfill])
    assert again.returncode == 0, again.stderr[-3000:]

    assert_same(views(place.warehouse), views(alone.warehouse))
    assert not running(place.warehouse)
    assert assert_paid_exactly_once(place) == paid_by_member(outbox_batches(alone.outbox)[0])


# ---------------------------------------------------------------------------------------------
# Through the real `claims run` command (Prefect ephemeral mode)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("point", ["after_commit", "in_ledger"])
def test_crash_through_claims_run(point: str, reference: Reference, tmp_path: Path) -> None:
    """Night 3 (the second snapshot, a failing partition) crashes inside ``claims run``; the
    same ``claims run`` again issues what was committed, and the scenario ends as the
    reference did."""
    steps = reference.steps
    place = Place(tmp_path)
    assert drive(place, steps[:4]).returncode == 0
    shutil.copytree(steps[4]["src"], place.landing, dirs_exist_ok=True)
    command = ["run", "--date", steps[5]["as_of"]]

    crashed = claims_cli(place, command, env=_env(CLAIMS_FAULT=point))
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    crash = check_crashed(point, place, reference, 5)

    again = claims_cli(place, command)
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert "Traceback" not in again.stderr + again.stdout
    check_retried(crash, place, reference, place.warehouse)

    assert drive(place, steps[6:]).returncode == 0
    check_final(place, reference)


# ---------------------------------------------------------------------------------------------
# kill -9 of a real `claims run` at a random moment
# ---------------------------------------------------------------------------------------------


def lock_holder(place: Place) -> int | None:
    """The pid a run wrote into the warehouse's lock file once it held the lock."""
    path = place.warehouse.with_name(place.warehouse.name + ".lock")
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def wait_for_lock(place: Place, proc: Proc, timeout: float = 300) -> float:
    """Seconds from the start of ``proc`` until it holds the run lock."""
    deadline = time.monotonic() + timeout
    while lock_holder(place) != proc.pid:
        assert proc.popen.poll() is None, "the run ended before it took the lock"
        assert time.monotonic() < deadline, "the run never took the lock"
        time.sleep(0.01)
    return time.monotonic() - proc.started


def staging_runs(place: Place) -> set[str]:
    """The per-run staging folders beside the warehouse (plan_run makes one per run)."""
    folder = place.warehouse.parent / (place.warehouse.stem + ".staging")
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def wait_for_work(place: Place, proc: Proc, timeout: float = 300) -> float:
    """Seconds from the start of ``proc`` until it starts planning (its staging folder appears):
    Prefect's start-up before that touches nothing of the pipeline's."""
    before = staging_runs(place)
    deadline = time.monotonic() + timeout
    while not staging_runs(place) - before:
        assert proc.popen.poll() is None, "the run ended before it started planning"
        assert time.monotonic() < deadline, "the run never started planning"
        time.sleep(0.005)
    return time.monotonic() - proc.started


@dataclass
class KillBase:
    """Nights 1 and 2 committed, nights 3 and 4 delivered; and what one clean run makes of it."""

    base: Place
    command: list[str]
    to_work: float  # seconds from start to planning, in the clean run
    total: float  # seconds of the whole clean run
    views: dict[str, list[Any]]
    paid: dict[str, int]
    money: dict[str, int]


@pytest.fixture(scope="session")
def kill_base(reference: Reference, tmp_path_factory: pytest.TempPathFactory) -> KillBase:
    root = tmp_path_factory.mktemp("kill-base")
    steps = reference.steps
    base = Place(root / "base")
    assert drive(base, steps[:4]).returncode == 0
    for delivery in (steps[4], steps[6]):
        shutil.copytree(delivery["src"], base.landing, dirs_exist_ok=True)
    command = ["run", "--date", steps[7]["as_of"]]

    clean = Place(root / "clean")
    shutil.copytree(base.root, clean.root, symlinks=True)
    proc = start([str(CLAIMS), *command, *clean.flags()], _env(), clean.root / "logs")
    to_work = wait_for_work(clean, proc)
    done = proc.wait()
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert not running(clean.warehouse)
    paid = assert_paid_exactly_once(clean)
    # Nights 3 and 4 in one run end in the same stays and money as one run per night.
    final = reference.after(reference.commands()[-2])
    assert_same(views(clean.warehouse), final, ("claim_outcomes", "claim_plan_payouts"))
    return KillBase(
        base, command, to_work, done.seconds, views(clean.warehouse), paid,
        money_rows(clean.warehouse),
    )  # fmt: skip


def where_it_died(place: Place, pid: int, base_runs: int, base_staging: set[str]) -> str:
    """Which stage a killed run had reached, read from what it left."""
    if lock_holder(place) != pid:
        return "starting (before the run lock)"
    if list((place.outbox / "payments").glob("batch_id=*/.*.tmp")):
        return "writing the batch file"
    if running(place.warehouse):
        return "validating or committing (partitions running, nothing committed)"
    if unissued(place.warehouse):
        return "after the commit, before the batch was issued"
    if money_rows(place.warehouse)["runs"] > base_runs:
        return "after the batch was issued (clean-up, report)"
    if staging_runs(place) - base_staging:
        return "planning (nothing committed)"
    return "holding the run lock, Prefect starting (nothing planned)"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("seed", range(1, 7))
def test_kill_9_at_a_random_moment(
    seed: int, kill_base: KillBase, tmp_path: Path, record_property: Any
) -> None:
    """``kill -9`` of ``claims run`` a random time into it, then a clean ``claims run``: the
    same views as an uninterrupted run, no partition running, every fen paid once.

    Odd seeds kill a random fraction of the measured work time after the run started planning
    (the start of Prefect's ephemeral server is most of the wall time, and touches nothing of
    the pipeline's); even seeds a random fraction of 80 % of the whole measured run time."""
    rnd = random.Random(seed)
    place = Place(tmp_path / "run")
    shutil.copytree(kill_base.base.root, place.root, symlinks=True)
    base_runs, base_staging = money_rows(place.warehouse)["runs"], staging_runs(place)
    proc = start([str(CLAIMS), *kill_base.command, *place.flags()], _env(), place.root / "logs")
    if seed % 2:
        wait_for_work(place, proc)
        delay = rnd.random() * (kill_base.total - kill_base.to_work)
    else:
        # Not quite all of it: a run that ends before the kill proves less.
        delay = rnd.random() * 0.8 * kill_base.total
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.popen.poll() is None:
        time.sleep(0.005)
    finished_first = proc.popen.poll() is not None
    if not finished_first:
        os.kill(proc.pid, signal.SIGKILL)  # the run only: its Prefect server lives on, orphaned
    proc.popen.wait()
    stage = (
        "finished before the kill"
        if finished_first
        else where_it_died(place, proc.pid, base_runs, base_staging)
    )
    record_property("killed_after_s", round(delay, 2))
    record_property("stage", stage)
    print(f"seed {seed}: killed {delay:.2f} s in, {stage}")

    try:
        # The orphaned server must not hold anything the next run needs (lock, warehouse).
        again = claims_cli(place, kill_base.command)
    finally:
        proc.kill_group()
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert "Traceback" not in again.stderr + again.stdout
    assert_same(views(place.warehouse), kill_base.views)
    assert not running(place.warehouse)
    assert assert_paid_exactly_once(place) == kill_base.paid
