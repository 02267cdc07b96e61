"""``claims demo``: a synthetic landing folder, run night by night, then the morning-after fix.

Everything lives under one folder (default ``data/demo``): ``landing/``, ``warehouse.duckdb``,
``outbox/``. The same flows as ``claims run`` and ``claims rerun`` run it, in Prefect's local
ephemeral mode.
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import date
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from claims import review_cli, views
from config.settings import ConfigError, Settings
from flows.progress import progress
from outbox.summary import CommitResult
from outbox.sustainability_report import write_sustainability
from pipeline.guard import init_warehouse
from synth import build_demo_landing
from transforms.money import fen_to_yuan


def _line(day: str, result: CommitResult, *, batch: bool = True) -> list[str]:
    p = result.partitions
    return [
        day,
        str(len(p.get("succeeded", []))),
        str(len(p.get("failed", []))),
        str(len(p.get("waiting", []))),
        str(result.rows_quarantined),
        fen_to_yuan(result.paid_fen),
        fen_to_yuan(result.recovered_fen),
        *([result.batch_id or "-"] if batch else []),
    ]


def _deliver(sender: Path, landing: Path, *, up_to: date | None) -> None:
    """Move the deliveries due by ``up_to`` (the registry always) from the sender to landing."""
    for src in sorted(sender.rglob("*")):
        if not src.is_dir():
            continue
        rel = src.relative_to(sender)
        day = _folder_day(rel)
        if day is None or (up_to is not None and day <= up_to):
            target = landing / rel
            target.mkdir(parents=True, exist_ok=True)
    # Data files first, manifests last: a partition is ready only once its manifest is there.
    files = sorted(sender.rglob("*"), key=lambda f: (f.name == "_manifest.json", str(f)))
    for src in files:
        if src.is_file():
            rel = src.relative_to(sender)
            day = _folder_day(rel.parent)
            if (day is None and up_to is None) or (
                day is not None and up_to is not None and day <= up_to
            ):
                dst = landing / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    shutil.copy2(src, dst)


def _folder_day(rel: Path) -> date | None:
    for part in rel.parts:
        for prefix in ("feed_date=", "snapshot_date="):
            if part.startswith(prefix):
                return date.fromisoformat(part[len(prefix) :])
    return None


# Marks a folder the demo made, so that it only ever deletes its own.
MARKER = ".claims-demo"
# What a demo folder holds; a folder with anything else is not deleted.
_DEMO_ENTRIES = {MARKER, "landing", "sender", "outbox", "warehouse.staging"}


def _fresh_folder(folder: Path) -> None:
    """Empty the demo folder, refusing any folder the demo did not make."""
    if folder.exists():
        foreign = [
            p.name
            for p in folder.iterdir()
            if p.name not in _DEMO_ENTRIES and not p.name.startswith("warehouse.duckdb")
        ]
        if foreign:
            raise ConfigError(
                f"{folder} is not a claims demo folder (it holds {sorted(foreign)[0]!r}): "
                "choose another --folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `claims demo`; deleted by the next one\n")


def _start_prefect() -> threading.Thread:
    """Import Prefect and start its local API in the background (together 10-20 s) while the
    landing folder is generated: the generator is polars, which runs outside the GIL."""

    def start() -> None:
        try:
            from flows.nightly import connect_api

            connect_api()
        except Exception:  # the import is repeated in the foreground and reports any problem
            pass

    thread = threading.Thread(target=start, name="prefect-start", daemon=True)
    thread.start()
    return thread


def run_demo(console: Console, folder: Path, *, nights: int, seed: int) -> int:
    """Build, run and explain the demo; returns the exit status."""
    if nights < 2:
        raise ConfigError("the demo needs at least 2 nights (--nights)")
    _fresh_folder(folder)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    prefect_ready = _start_prefect()
    landing = folder / "landing"
    settings = Settings.build(landing, folder / "warehouse.duckdb", folder / "outbox")
    paths: dict[str, Any] = {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
    }
    # The sender's side: everything the hospitals and the enrolment system will deliver. Each
    # night, what is due by then is moved into the landing folder, as transfers would.
    sender = folder / "sender"
    plan = build_demo_landing(sender, seed=seed, nights=nights)
    plan.landing = landing
    for p in plan.partitions:
        p.path = landing / p.path.relative_to(sender)
    _deliver(sender, landing, up_to=None)
    init_warehouse(settings)  # the demo's own warehouse, paired with its own outbox
    console.print(
        f"[bold]Landing folder[/bold] {landing}: {plan.people} people, {plan.enrollments} "
        f"enrolments in {len(plan.snapshot_dates)} snapshots, {plan.stays} stays over "
        f"{len(plan.feed_dates)} nights from 2 sources ({plan.bad_rows} bad rows, "
        f"{plan.corrections} corrections, {plan.voids} voids)."
    )
    console.print(
        f"  One delivery is still arriving ({plan.waiting_partition}, no manifest yet) and one "
        f"will fail ({plan.failing_partition}: {plan.failing_reason})."
    )

    # Fits 80 columns: the batch ids are in `claims status` and the reports.
    table = Table(title="Night by night: claims run --date D (CNY)", box=box.SIMPLE_HEAD)
    table.add_column("date", no_wrap=True)
    for col in ("ok", "failed", "waiting", "quarantined", "paid", "recovered"):
        table.add_column(col, justify="right", no_wrap=True)
    prefect_ready.join()
    from flows.nightly import nightly, run_nightly

    last = None
    with progress("nights", len(plan.feed_dates)) as advance:
        for day in plan.feed_dates:
            _deliver(sender, landing, up_to=day)
            last = run_nightly(nightly, as_of=day, command="run", **paths)
            table.add_row(*_line(day.isoformat(), last, batch=False))
            advance()
    console.print(table)
    if last is None:
        return 1

    console.print("\n[bold]The morning after[/bold]: `claims status` shows what failed and why.")
    views.print_status(console, settings, None)
    console.print(f"\n`claims quarantine --partition {plan.failing_partition}` (masked):")
    views.print_quarantine(console, settings, plan.failing_partition, limit=5, output=None)

    decided = review_cli.demo_decide(console, settings)  # approved by two, paid next run

    console.print("\nThe hospital re-delivers the partition fixed; `claims rerun --failed`:")
    plan.fix_failing_partition()
    fixed = run_nightly(
        nightly, as_of=plan.feed_dates[-1], command="rerun", rerun_failed=True, **paths
    )
    console.print("  " + " | ".join(_line("rerun", fixed)))
    if decided:
        review_cli.demo_paid(console, settings, decided)
    console.print("The late delivery gets its manifest; the next `claims run` picks it up:")
    plan.complete_waiting_partition()
    late = run_nightly(nightly, as_of=plan.feed_dates[-1], command="run", **paths)
    console.print("  " + " | ".join(_line("run", late)))

    console.print("\n[bold]Where things are[/bold]")
    console.print(
        f"  warehouse: {settings.warehouse} (views claim_outcomes, claim_plan_payouts, "
        "member_accounts, partition_runs, quarantine_rows)"
    )
    console.print(f"  payment batches: {settings.outbox / 'payments'}")
    reports = sorted((settings.outbox / "reports").glob("*.html"))
    if reports:
        console.print(f"  latest report: {reports[-1]}")
    year = plan.feed_dates[-1].year  # the demo year's plan-by-plan sustainability report
    console.print(f"  sustainability: {write_sustainability(settings, year, None).html}")
    console.print(
        f"  try: claims status --warehouse {settings.warehouse}\n"
        f"       claims explain --stay HOSPITAL/SETTLEMENT --warehouse {settings.warehouse}"
    )
    with open(os.devnull, "w") as quiet:
        failed_now = views.print_status(Console(file=quiet), settings, None)
    return 1 if failed_now else 0
