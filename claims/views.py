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
    shown_rows = min(limit, len(rows))
    console.print(f"Quarantined rows (first {shown_rows} of {len(rows)}), values masked:")
    for r in rows[: max(limit, 0)]:
        for line in offending_values(r["rule"], r["message"] or "", r["raw"]):
            console.print(f"  row {r['row_number']:<6}{r['rule']:<18}{line}", highlight=False)
    if output is not None:
        _write_private_csv(partition, rows, output)
        console.print(f"All {len(rows)} rows, unmasked, written to {output} (mode 0600)")


# Fields a rule is about when its message names no column (a check across columns).
_RULE_FIELDS = {
    "date_order": ("admission_date", "discharge_date", "coverage_start", "coverage_end"),
    "future_discharge": ("discharge_date",),
    "amount_mismatch": ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope"),
    "version_conflict": ("version",),
}


def _shown(field: str, value: object) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, str):
        return json.dumps(
            _MASKS[field](value) if field in _MASKS else scrub(value), ensure_ascii=False
        )
    return json.dumps(value)


def offending_values(rule: str, message: str, raw: str) -> list[str]:
    """Per broken rule, the field and its value (masked where personal) and what is wrong."""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        return [f"{scrub(message)} (the line could not be read as fields)"]
    if "line" in values and isinstance(values["line"], str):
        return [f"{scrub(message)} (a line of {len(values['line'])} characters, not shown)"]
    lines = []
    for part in message.split("; "):
        field, sep, text = part.partition(": ")
        if sep and field in values:
            lines.append(f"{field} = {_shown(field, values[field])}: {scrub(text)}")
        else:
            fields = [f for f in _RULE_FIELDS.get(rule, ()) if f in values]
            shown = ", ".join(f"{f} = {_shown(f, values[f])}" for f in fields)
            lines.append(f"{shown}: {scrub(part)}" if shown else scrub(part))
    return lines


def _write_private_csv(partition: str, rows: queries.Rows, output: Path) -> None:
    """The unmasked rows, readable by their owner only (mode 0600), written atomically."""
    import os

    tmp = output.with_name(f".{output.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["partition_key", "row_number", "rule", "message", "raw"])
        for r in rows:
            writer.writerow(
                [partition, r["row_number"], r["rule"], r["message"] or "", r["raw"] or ""]
            )
    os.chmod(tmp, 0o600)
    os.replace(tmp, output)


_NEEDS = {
    "name_mismatch": "the name on the stay differs from the enrolled name of the ID's holder: "
    "a person confirms it is the same person (approve) or rejects it",
    "ambiguous": "several members share the name, birth date and gender: a person names the "
    "enrolment of the right one (approve --enrollment E) or rejects it",
    "overlap": "the member lay in another bed on the same nights: a person approves it if "
    "both stays are real, or rejects it",
}


def _why_unmatched(console: Console, stay: dict[str, object], near: dict[str, object]) -> None:
    """Say why nothing matched: the identity number, then who comes close by demographics."""
    snapshot = near.get("snapshot_date") or "none loaded"
    if stay["is_valid_id"]:
        console.print(
            f"  why unmatched: the ID {mask_id(str(stay['national_id']))} is valid but nobody "
            f"holds it in the current snapshot ({snapshot}); tried again with every new one",
            highlight=False,
        )
        return
    console.print(
        "  why unmatched: no usable ID number (empty or invalid), and no member has the same "
        f"name, birth date and gender in the snapshot of {snapshot}",
        highlight=False,
    )
    console.print(
        f"    members with the same name: {near.get('same_name', 0)}; same name and birth "
        f"date: {near.get('same_name_birth', 0)}; same birth date and gender: "
        f"{near.get('same_birth_gender', 0)}",
        highlight=False,
    )


def _plan_block(console: Console, r: dict[str, object]) -> None:
    """One covering plan's figures stacked vertically: readable on a narrow terminal."""

    def money(key: str) -> str:
        value = r[key]
        return "none" if value is None else fen_to_yuan(int(str(value)))

    rate = f"{int(str(r['rate_bp'])) / 10000:.4f}".rstrip("0").rstrip(".")
    console.print(
        f"  [bold]{r['plan_code']}[/bold]  rules from {r['rule_year']}, enrolment "
        f"{escape(str(r['enrollment_id']))} (chain from {r['chain_start']})",
        highlight=False,
    )
    rows = [
        ("left before this plan", money("remaining_before_fen")),
        ("deductible", money("deductible_fen")),
        ("base", money("base_fen")),
        ("rate", rate),
        ("per-stay cap", money("per_stay_cap_fen")),
        ("reimbursement", money("reimbursement_fen")),
        ("allowance", money("allowance_fen")),
        ("raw (before the annual cap)", money("raw_fen")),
        ("annual cap", money("annual_cap_fen")),
        ("cap used by earlier stays", money("cap_used_before_fen")),
        ("paid by this plan", money("target_fen")),
    ]
    for label, value in rows:
        console.print(f"    {label:<30}{value:>14}", highlight=False)


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
        f"[bold]Stay {escape(stay)}[/bold]: current version {o['current_version']}, "
        f"status [bold]{o['status']}[/bold]" + (f" ({o['reason']})" if o["reason"] else ""),
        highlight=False,
    )
    if o["national_id"]:
        console.print(f"  matched to {mask_id(o['national_id'])} by {o['match_method']}")
    s = parts["stay"][0] if parts["stay"] else None
    if s is not None:
        los = max(1, (s["discharge_date"] - s["admission_date"]).days)
        console.print(
            f"  admitted {s['admission_date']}, discharged {s['discharge_date']} "
            f"({los} day(s)), self-pay in scope {fen_to_yuan(s['self_pay_in_scope_fen'])} CNY",
            highlight=False,
        )
    held = parts["held"][0] if parts["held"] else {}
    if o["status"] == "unmatched" and s is not None:
        near = parts["near"][0] if parts["near"] else {}
        _why_unmatched(console, s, near)
    elif o["status"] == "review":
        if o["reason"] == "overlap":
            console.print(
                f"  overlaps {escape(held.get('overlapped_stay') or '?')} of the same member "
                f"({mask_id(held.get('national_id'))}), which comes first and is paid",
                highlight=False,
            )
        console.print(f"  needs a person: {_NEEDS.get(o['reason'], o['reason'])}")
        console.print(
            f"  `claims review list` shows the evidence; then `claims review approve|reject "
            f"--stay {escape(stay)} --by OPERATOR --note TEXT`",
            highlight=False,
        )
    elif o["status"] == "rejected":
        console.print(
            "  a person rejected this version: it pays nothing; a new version re-opens it"
        )
    elif o["status"] == "not_covered":
        console.print("  no plan covers the admission date (enrolment, chain and waiting period)")
    decisions = parts["decisions"]
    for d in decisions:
        chosen = f" enrolment {d['enrollment_id']}" if d["enrollment_id"] else ""
        console.print(
            f"  decision on v{d['version']}: {d['decision']}{escape(chosen)} by "
            f"{escape(scrub(d['operator']))} at {d['decided_at']:%Y-%m-%d %H:%M}",
            highlight=False,
        )
    versions = parts["versions"]
    if versions:
        console.print("  records received:")
        for r in versions:
            console.print(
                f"    v{r['version']} {r['record_type']} in {r['partition_key']} "
                f"row {r['row_number']}",
                highlight=False,
            )
    plans = parts["plans"]
    if plans:
        console.print("Covering plans, in priority order:")
        for r in plans:
            _plan_block(console, r)
    ledger = parts["ledger"]
    if ledger:
        console.print("Ledger entries:")
        for r in ledger:
            console.print(
                f"  {r['posted_at']:%Y-%m-%d %H:%M}  v{r['version']}  {r['plan_code']:<18}"
                f"{fen_to_yuan(r['amount_fen']):>12}  {r['reason']:<13}"
                f"{mask_id(r['national_id'])}  run {r['run_id']}",
                highlight=False,
            )
    console.print(f"  net paid for this stay: {fen_to_yuan(o['paid_fen'])} CNY")
