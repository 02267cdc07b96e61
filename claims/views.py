"""What the read-only commands print: status, quarantine, explain. Personal data masked."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config.masking import mask_account, mask_id, mask_name, scrub
from config.settings import ConfigError, Settings
from storage import queries
from transforms.money import fen_to_yuan

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "running": "yellow",
    "waiting": "cyan",
    "skipped": "dim",
}
# Raw fields that are personal data, and how each is masked on a terminal.
_MASKS = {
    "national_id": mask_id,
    "patient_name": mask_name,
    "member_name": mask_name,
    "payee_account": mask_account,
}


def _no_warehouse(settings: Settings) -> bool:
    return not settings.warehouse.exists()


def print_status(console: Console, settings: Settings, day: date | None) -> bool:
    """The partition table and the last runs; returns whether anything failed."""
    if _no_warehouse(settings):
        console.print(f"No warehouse at {settings.warehouse} yet: nothing has run.")
        return False
    from storage.lock import is_locked, lock_holder

    in_progress = is_locked(settings.warehouse)
    if in_progress:
        pid = lock_holder(settings.warehouse)
        console.print(
            f"[yellow]A run is in progress[/yellow] on {escape(settings.warehouse.name)}"
            + (f" (process {pid})" if pid else "")
            + ": partitions it works on show as running until it commits.",
            highlight=False,
        )
    runs = queries.partition_runs(settings.warehouse, day)  # busy while it writes: exit 3
    # `running` with no run holding the warehouse: a run was killed; the next one redoes it.
    interrupted = not in_progress
    table = Table(title="Partitions" + (f" of {day}" if day else ""), box=box.SIMPLE_HEAD)
    table.add_column("partition", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for col in ("rows", "quarantined", "attempts"):
        table.add_column(col, justify="right")
    errors = []
    for r in runs.iter_rows(named=True):
        status = r["status"]
        style = _STATUS_STYLE.get(status, "")
        shown = f"[{style}]{status}[/{style}]" if style else status
        if status == "running" and interrupted:
            shown = "[yellow]interrupted[/yellow]"
            errors.append((r["partition_key"], "killed while running: the next run redoes it"))
        table.add_row(
            r["partition_key"],
            shown,
            str(r["rows_read"]),
            str(r["rows_quarantined"]),
            str(r["attempts"]),
        )
        if r["error"]:
            errors.append((r["partition_key"], scrub(r["error"])))
    console.print(table)
    # Errors under the table, one a line: long reasons stay readable on a narrow terminal.
    for partition_key, error in errors:
        console.print(f"  [bold]{escape(partition_key)}[/bold]: {escape(error)}", highlight=False)
    counts = runs.group_by("status").len().sort("status").rows()
    console.print("  ".join(f"{s}: {n}" for s, n in counts) or "no partitions yet")
    last = queries.last_runs(settings.warehouse)
    if last.height:
        t = Table(title="Last runs")
        for col in ("run", "command", "date", "started", "status", "batch"):
            t.add_column(col)
        for r in last.iter_rows(named=True):
            t.add_row(
                r["run_id"],
                r["command"],
                str(r["as_of_date"] or ""),
                f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                r["status"],
                r["batch_id"] or "",
            )
        console.print(t)
    failed = runs.filter(pl.col("status") == "failed")
    if failed.height:
        console.print(
            f"[bold red]{failed.height} partition(s) failed.[/bold red] See why with "
            "`claims quarantine --partition KEY`; fix or re-request the data, then "
            "`claims rerun --partition KEY` (or `claims rerun --failed`)."
        )
    return bool(failed.height)


def mask_raw(raw: str) -> str:
    """A quarantined row's raw values with its personal fields masked."""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        return "(unreadable)"
    if not isinstance(values, dict):
        return "(unreadable)"
    # Known personal fields by their masks; any other text scrubbed too, since a shifted or
    # malformed row can carry a name or an identity number in the wrong column.
    masked = {
        k: (_MASKS[k](v) if k in _MASKS else scrub(v)) if isinstance(v, str) else v
        for k, v in values.items()
    }
    if "line" in masked and isinstance(masked["line"], str):
        masked["line"] = f"({len(masked['line'])} characters, not shown)"
    return json.dumps(masked, ensure_ascii=False)


def print_quarantine(
    console: Console, settings: Settings, partition: str, *, limit: int, output: Path | None
) -> None:
    """A partition's quarantined rows, rule by rule, masked; optionally all of it to a file."""
    from landing.partitions import SNAPSHOT_KEY_RE, parse_discharge_key

    if not SNAPSHOT_KEY_RE.fullmatch(partition):
        parse_discharge_key(partition)
    if _no_warehouse(settings):
        raise ConfigError(f"no warehouse at {settings.warehouse}: run `claims run` first")
    state = queries.partition_state(settings.warehouse, partition)
    if state.height == 0:
        raise ConfigError(f"the warehouse knows no partition {partition}")
    s = state.row(0, named=True)
    console.print(
        f"{partition}: {s['status']}, {s['rows_read']} rows read, "
        f"{s['rows_quarantined']} quarantined"
        + (f"\n  error: {scrub(s['error'])}" if s["error"] else "")
    )
    rows = queries.quarantine_rows(settings.warehouse, partition)
    if rows.height == 0:
        console.print("No quarantined rows.")
        return
    by_rule = rows.group_by("rule").len().sort(["len", "rule"], descending=[True, False])
    console.print("  ".join(f"{rule}: {n}" for rule, n in by_rule.rows()))
    table = Table(title=f"Quarantined rows (first {min(limit, rows.height)} of {rows.height})")
    for col in ("row", "rule", "message", "raw (masked)"):
        table.add_column(col, overflow="fold")
    for r in rows.head(limit).iter_rows(named=True):
        shown = mask_raw(r["raw"])
        if len(shown) > 160:
            shown = shown[:157] + "…"
        table.add_row(str(r["row_number"]), r["rule"], scrub(r["message"] or ""), shown)
    console.print(table)
    if output is not None:
        rows.insert_column(0, pl.lit(partition).alias("partition_key")).write_csv(output)
        console.print(f"All {rows.height} rows, unmasked, written to {output}")


def print_explanation(console: Console, settings: Settings, stay: str) -> None:
    """Explain one stay: version, match, covering plans and parameters, caps, ledger."""
    hospital, _, settlement = stay.partition("/")
    if not hospital or not settlement:
        raise ConfigError("--stay takes HOSPITAL_CODE/SETTLEMENT_ID")
    if _no_warehouse(settings):
        raise ConfigError(f"no warehouse at {settings.warehouse}: run `claims run` first")
    parts = queries.stay_explanation(settings.warehouse, hospital, settlement)
    if parts["outcome"].height == 0:
        raise ConfigError(f"no stay {stay} in the warehouse")
    o = parts["outcome"].row(0, named=True)
    console.print(
        f"[bold]Stay {stay}[/bold]: current version {o['current_version']}, "
        f"status [bold]{o['status']}[/bold]" + (f" ({o['reason']})" if o["reason"] else "")
    )
    if o["national_id"]:
        console.print(f"  matched to {mask_id(o['national_id'])} by {o['match_method']}")
    if parts["stay"].height:
        s = parts["stay"].row(0, named=True)
        los = max(1, (s["discharge_date"] - s["admission_date"]).days)
        console.print(
            f"  admitted {s['admission_date']}, discharged {s['discharge_date']} "
            f"({los} day(s)), self-pay in scope {fen_to_yuan(s['self_pay_in_scope_fen'])} CNY"
        )
    versions = parts["versions"]
    if versions.height:
        console.print(
            "  records received: "
            + "; ".join(
                f"v{r['version']} {r['record_type']} in {r['partition_key']} row {r['row_number']}"
                for r in versions.iter_rows(named=True)
            )
        )
    plans = parts["plans"]
    if plans.height:
        t = Table(title="Covering plans, in priority order")
        for col in (
            "plan",
            "rules",
            "enrolment",
            "left",
            "deductible",
            "base",
            "rate",
            "stay cap",
            "reimb.",
            "allowance",
            "raw",
            "cap used before",
            "annual cap",
            "paid",
        ):
            t.add_column(col, justify="right")
        for r in plans.iter_rows(named=True):
            t.add_row(
                r["plan_code"],
                f"from {r['rule_year']}",
                f"{r['enrollment_id']} (chain from {r['chain_start']})",
                fen_to_yuan(r["remaining_before_fen"]),
                fen_to_yuan(r["deductible_fen"]),
                fen_to_yuan(r["base_fen"]),
                f"{r['rate_bp'] / 10000:.4f}".rstrip("0").rstrip("."),
                fen_to_yuan(r["per_stay_cap_fen"]) if r["per_stay_cap_fen"] is not None else "none",
                fen_to_yuan(r["reimbursement_fen"]),
                fen_to_yuan(r["allowance_fen"]),
                fen_to_yuan(r["raw_fen"]),
                fen_to_yuan(r["cap_used_before_fen"]),
                fen_to_yuan(r["annual_cap_fen"]),
                fen_to_yuan(r["target_fen"]),
            )
        console.print(t)
    elif o["status"] in ("not_covered",):
        console.print("  no plan covers the admission date (enrolment, chain and waiting period)")
    ledger = parts["ledger"]
    if ledger.height:
        t = Table(title="Ledger entries")
        for col in ("entry", "run", "version", "plan", "member", "amount", "reason"):
            t.add_column(col)
        for r in ledger.iter_rows(named=True):
            t.add_row(
                r["entry_id"],
                r["run_id"],
                str(r["version"]),
                r["plan_code"],
                mask_id(r["national_id"]),
                fen_to_yuan(r["amount_fen"]),
                r["reason"],
            )
        console.print(t)
    console.print(f"  net paid for this stay: {fen_to_yuan(o['paid_fen'])} CNY")
