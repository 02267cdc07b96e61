"""``claims demo``: a synthetic landing folder, run night by night, then the morning-after fix.

Everything lives under one folder (default ``data/demo``): ``landing/``, ``warehouse.duckdb``,
``outbox/``. The same flows as ``claims run`` and ``claims rerun`` run it, in Prefect's local
ephemeral mode.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from claims import views
from claims.config import Settings
from claims.pipeline import CommitResult
from claims.synth import build_demo_landing
from transforms.money import fen_to_yuan


def _line(day: str, result: CommitResult) -> list[str]:
    p = result.partitions
    return [
        day,
        str(len(p.get("succeeded", []))),
        str(len(p.get("failed", []))),
        str(len(p.get("waiting", []))),
        str(result.rows_quarantined),
        fen_to_yuan(result.paid_fen),
        fen_to_yuan(result.recovered_fen),
        result.batch_id or "-",
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


def run_demo(console: Console, folder: Path, *, nights: int, seed: int) -> int:
    """Build, run and explain the demo; returns the exit status."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.nightly import nightly

    if folder.exists():
        shutil.rmtree(folder)
    landing = folder / "landing"
    settings = Settings.build(landing, folder / "warehouse.duckdb", folder / "outbox")
    paths = {
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

    table = Table(title="Night by night: claims run --date D")
    for col in (
        "date",
        "ok",
        "failed",
        "waiting",
        "quarantined",
        "paid CNY",
        "recovered CNY",
        "batch",
    ):
        table.add_column(col, justify="right")
    last = None
    for day in plan.feed_dates:
        _deliver(sender, landing, up_to=day)
        last = nightly(as_of=day, command="run", **paths)
        table.add_row(*_line(day.isoformat(), last))
    console.print(table)
    if last is None:
        return 1

    console.print("\n[bold]The morning after[/bold]: `claims status` shows what failed and why.")
    views.print_status(console, settings, None)
    console.print(f"\n`claims quarantine --partition {plan.failing_partition}` (masked):")
    views.print_quarantine(console, settings, plan.failing_partition, limit=5, output=None)

    console.print("\nThe hospital re-delivers the partition fixed; `claims rerun --failed`:")
    plan.fix_failing_partition()
    fixed = nightly(as_of=plan.feed_dates[-1], command="rerun", rerun_failed=True, **paths)
    console.print("  " + " | ".join(_line("rerun", fixed)))
    console.print("The late delivery gets its manifest; the next `claims run` picks it up:")
    plan.complete_waiting_partition()
    late = nightly(as_of=plan.feed_dates[-1], command="run", **paths)
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
    console.print(
        f"  try: claims status --warehouse {settings.warehouse}\n"
        f"       claims explain --stay HOSPITAL/SETTLEMENT --warehouse {settings.warehouse}"
    )
    with open(os.devnull, "w") as quiet:
        failed_now = views.print_status(Console(file=quiet), settings, None)
    return 1 if failed_now else 0
