"""What the read-only commands print: status, quarantine, explain. Personal data masked."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config.masking import mask_account, mask_id, mask_name, scrub
from config.settings import ConfigError, Settings
from storage import queries
from transforms.yuan import fen_to_yuan

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
    for r in runs:
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
    counts = sorted(Counter(r["status"] for r in runs).items())
    console.print("  ".join(f"{s}: {n}" for s, n in counts) or "no partitions yet")
    last = queries.last_runs(settings.warehouse)
    if last:
        t = Table(title="Last runs")
        for col in ("run", "command", "date", "started", "status", "batch"):
            t.add_column(col)
        for r in last:
            t.add_row(
                r["run_id"],
                r["command"],
                str(r["as_of_date"] or ""),
                f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                r["status"],
                r["batch_id"] or "",
            )
        console.print(t)
    failed = sum(1 for r in runs if r["status"] == "failed")
    if failed:
        console.print(
            f"[bold red]{failed} partition(s) failed.[/bold red] See why with "
            "`claims quarantine --partition KEY`; fix or re-request the data, then "
            "`claims rerun --partition KEY` (or `claims rerun --failed`)."
        )
    return bool(failed)


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
    if not state:
        raise ConfigError(f"the warehouse knows no partition {partition}")
    s = state[0]
    console.print(
        f"{partition}: {s['status']}, {s['rows_read']} rows read, "
        f"{s['rows_quarantined']} quarantined"
        + (f"\n  error: {scrub(s['error'])}" if s["error"] else "")
    )
    rows = queries.quarantine_rows(settings.warehouse, partition)
    if not rows:
        console.print("No quarantined rows.")
        return
    # Most frequent rule first; rules with equal counts in name order (a stable story).
    by_rule = sorted(Counter(r["rule"] for r in rows).items(), key=lambda kv: (-kv[1], kv[0]))
    console.print("  ".join(f"{rule}: {n}" for rule, n in by_rule))
    table = Table(title=f"Quarantined rows (first {min(limit, len(rows))} of {len(rows)})")
    for col in ("row", "rule", "message", "raw (masked)"):
        table.add_column(col, overflow="fold")
    for r in rows[: max(limit, 0)]:
        shown = mask_raw(r["raw"])
        if len(shown) > 160:
            shown = shown[:157] + "…"
        table.add_row(str(r["row_number"]), r["rule"], scrub(r["message"] or ""), shown)
    console.print(table)
    if output is not None:
        with open(output, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["partition_key", "row_number", "rule", "message", "raw"])
            for r in rows:
                writer.writerow(
                    [partition, r["row_number"], r["rule"], r["message"] or "", r["raw"] or ""]
                )
        console.print(f"All {len(rows)} rows, unmasked, written to {output}")


def print_explanation(console: Console, settings: Settings, stay: str) -> None:
    """Explain one stay: version, match, covering plans and parameters, caps, ledger."""
    hospital, _, settlement = stay.partition("/")
    if not hospital or not settlement:
        raise ConfigError("--stay takes HOSPITAL_CODE/SETTLEMENT_ID")
    if _no_warehouse(settings):
        raise ConfigError(f"no warehouse at {settings.warehouse}: run `claims run` first")
    parts = queries.stay_explanation(settings.warehouse, hospital, settlement)
    if not parts["outcome"]:
        raise ConfigError(f"no stay {stay} in the warehouse")
    o = parts["outcome"][0]
    console.print(
        f"[bold]Stay {stay}[/bold]: current version {o['current_version']}, "
        f"status [bold]{o['status']}[/bold]" + (f" ({o['reason']})" if o["reason"] else "")
    )
    if o["national_id"]:
        console.print(f"  matched to {mask_id(o['national_id'])} by {o['match_method']}")
    if parts["stay"]:
        s = parts["stay"][0]
        los = max(1, (s["discharge_date"] - s["admission_date"]).days)
        console.print(
            f"  admitted {s['admission_date']}, discharged {s['discharge_date']} "
            f"({los} day(s)), self-pay in scope {fen_to_yuan(s['self_pay_in_scope_fen'])} CNY"
        )
    versions = parts["versions"]
    if versions:
        console.print(
            "  records received: "
            + "; ".join(
                f"v{r['version']} {r['record_type']} in {r['partition_key']} row {r['row_number']}"
                for r in versions
            )
        )
    plans = parts["plans"]
    if plans:
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
        for r in plans:
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
    if ledger:
        t = Table(title="Ledger entries")
        for col in ("entry", "run", "version", "plan", "member", "amount", "reason"):
            t.add_column(col)
        for r in ledger:
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
