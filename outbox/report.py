"""Run reports: a self-contained HTML page under ``<outbox>/reports/`` and a markdown summary.

Built only from ``CommitResult`` figures, which carry no personal data: partition keys, counts,
rule names, plan codes and money totals.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from config.masking import scrub
from outbox.summary import CommitResult
from transforms.money import fen_to_yuan

STATUSES = ("succeeded", "failed", "skipped", "waiting")


def _sum(results: Sequence[CommitResult], attr: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for k, v in getattr(r, attr).items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items()))


def summarize(results: Sequence[CommitResult]) -> dict[str, object]:
    """The figures of one or more commits, added up (stays by status: the latest commit's)."""
    partitions: dict[str, list[str]] = {s: [] for s in STATUSES}
    errors: dict[str, str] = {}
    for r in results:
        for status, keys in r.partitions.items():
            partitions.setdefault(status, []).extend(keys)
        errors.update(r.errors)
    # A key skipped in one commit and processed in a later one shows once, as processed.
    done = set(partitions["succeeded"]) | set(partitions["failed"])
    partitions["skipped"] = sorted(set(partitions["skipped"]) - done)
    partitions["waiting"] = sorted(set(partitions["waiting"]) - done)
    return {
        "partitions": partitions,
        "errors": errors,
        "rows_read": sum(r.rows_read for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "quarantined_by_rule": _sum(results, "quarantined_by_rule"),
        "warnings": _sum(results, "warnings"),
        "stays_by_status": results[-1].stays_by_status if results else {},
        "paid_by_plan": _sum(results, "paid_by_plan"),
        "recovered_by_plan": _sum(results, "recovered_by_plan"),
        "paid_fen": sum(r.paid_fen for r in results),
        "recovered_fen": sum(r.recovered_fen for r in results),
        "batches": [(r.batch_id, r.batch_instructions, r.batch_fen) for r in results if r.batch_id],
        "notes": [n for r in results for n in r.notes],
        "run_ids": [r.run_id for r in results],
    }


def render_markdown(
    results: Sequence[CommitResult], *, title: str, report_path: str | None = None
) -> str:
    """The summary as markdown (the Prefect artifact and the terminal's closing words)."""
    s = summarize(results)
    parts = s["partitions"]
    assert isinstance(parts, dict)
    lines = [f"# {title}", ""]
    lines.append("| partitions | count |")
    lines.append("|---|---|")
    for status in STATUSES:
        lines.append(f"| {status} | {len(parts.get(status, []))} |")
    errors = s["errors"]
    assert isinstance(errors, dict)
    if errors:
        lines += ["", "**Failed partitions**", ""]
        # Reasons are written scrubbed; scrubbed again here, as the last door out.
        lines += [f"- `{k}`: {scrub(v)}" for k, v in sorted(errors.items())]
    lines += ["", f"Rows read: {s['rows_read']}, quarantined: {s['rows_quarantined']}", ""]
    by_rule = s["quarantined_by_rule"]
    assert isinstance(by_rule, dict)
    if by_rule:
        lines += ["| quarantine rule | rows |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in by_rule.items()]
        lines.append("")
    stays = s["stays_by_status"]
    assert isinstance(stays, dict)
    if stays:
        lines += ["| stays by status | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(stays.items())]
        lines.append("")
    paid, recovered = s["paid_by_plan"], s["recovered_by_plan"]
    assert isinstance(paid, dict) and isinstance(recovered, dict)
    if paid or recovered:
        lines += ["| plan | paid (CNY) | recovered (CNY) |", "|---|---|---|"]
        for plan in sorted(set(paid) | set(recovered)):
            lines.append(
                f"| {plan} | {fen_to_yuan(paid.get(plan, 0))} | "
                f"{fen_to_yuan(recovered.get(plan, 0))} |"
            )
        lines.append("")
    batches = s["batches"]
    assert isinstance(batches, list)
    if batches:
        lines += [
            f"- Payment batch `{batch_id}`: {n} instruction(s), {fen_to_yuan(fen)} CNY"
            for batch_id, n, fen in batches
        ]
    else:
        lines.append("No payment batch: nothing to pay.")
    notes = s["notes"]
    assert isinstance(notes, list)
    if notes:
        lines += ["", *[f"> {scrub(n)}" for n in notes]]
    if report_path:
        lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines) + "\n"


def _bars(title: str, values: dict[str, int], *, money: bool = False) -> str:
    """A horizontal bar chart as inline SVG: no scripts, no network, no external fonts."""
    if not values:
        return f"<h3>{html.escape(title)}</h3><p>none</p>"
    width, row_h, label_w = 640, 24, 200
    top = max(values.values()) or 1
    rows = []
    for i, (label, value) in enumerate(values.items()):
        w = int((width - label_w - 120) * value / top) if value > 0 else 0
        shown = fen_to_yuan(value) if money else str(value)
        y = i * row_h
        rows.append(
            f'<text x="0" y="{y + 16}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w}" height="{row_h - 8}" fill="#4a7ab5"/>'
            f'<text x="{label_w + w + 6}" y="{y + 16}" font-size="13">{html.escape(shown)}</text>'
        )
    height = row_h * len(values)
    return (
        f"<h3>{html.escape(title)}</h3>"
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(rows)}</svg>'
    )


def render_html(results: Sequence[CommitResult], *, title: str) -> str:
    """The report page: tables and inline-SVG charts, one file that opens offline."""
    s = summarize(results)
    parts = s["partitions"]
    assert isinstance(parts, dict)
    errors = s["errors"]
    assert isinstance(errors, dict)
    table = "".join(
        f"<tr><td>{html.escape(status)}</td><td>{len(parts.get(status, []))}</td>"
        f"<td>{html.escape(', '.join(parts.get(status, [])[:20]))}</td></tr>"
        for status in STATUSES
    )
    failures = "".join(
        f"<li><code>{html.escape(k)}</code>: {html.escape(scrub(v))}</li>"
        for k, v in sorted(errors.items())
    )
    batches = s["batches"]
    assert isinstance(batches, list)
    batch_text = (
        "".join(
            f"<li><code>{html.escape(b)}</code>: {n} instruction(s), {fen_to_yuan(f)} CNY</li>"
            for b, n, f in batches
        )
        or "<li>none: nothing to pay</li>"
    )
    by_rule, stays = s["quarantined_by_rule"], s["stays_by_status"]
    paid = s["paid_by_plan"]
    recovered = s["recovered_by_plan"]
    assert isinstance(by_rule, dict) and isinstance(stays, dict)
    assert isinstance(paid, dict) and isinstance(recovered, dict)
    notes = s["notes"]
    assert isinstance(notes, list)
    money_rows = "".join(
        f"<tr><td>{html.escape(plan)}</td><td>{fen_to_yuan(paid.get(plan, 0))}</td>"
        f"<td>{fen_to_yuan(recovered.get(plan, 0))}</td></tr>"
        for plan in sorted(set(paid) | set(recovered))
    )
    money_table = (
        f"<table><tr><th>plan</th><th>paid (CNY)</th><th>recovered (CNY)</th></tr>{money_rows}"
        "</table>"
        if money_rows
        else ""
    )
    notes_html = (
        "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(scrub(n))}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    counts = {status: len(parts.get(status, [])) for status in STATUSES}
    run_ids = s["run_ids"]
    assert isinstance(run_ids, list)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Runs: {html.escape(", ".join(run_ids))}</p>
<h2>Partitions</h2>
<table><tr><th>status</th><th>count</th><th>partitions</th></tr>{table}</table>
{_bars("Partitions by status", {k: v for k, v in counts.items() if v})}
{f"<h3>Failed</h3><ul>{failures}</ul>" if failures else ""}
<h2>Rows</h2>
<p>Read {s["rows_read"]}, quarantined {s["rows_quarantined"]}.</p>
{_bars("Quarantined rows by rule", by_rule)}
<h2>Stays</h2>
{_bars("Stays by status", stays)}
<h2>Money</h2>
<p>Paid {fen_to_yuan(int(str(s["paid_fen"])))} CNY, recovered
{fen_to_yuan(int(str(s["recovered_fen"])))} CNY.</p>
{money_table}
{_bars("Paid by plan (CNY)", paid, money=True)}
{_bars("Recovered by plan (CNY)", recovered, money=True)}
<h2>Payment batch</h2><ul>{batch_text}</ul>
{notes_html}
</body></html>
"""


def write_report(outbox: Path, results: Sequence[CommitResult], *, title: str) -> Path:
    """Write ``<outbox>/reports/<run>.html`` atomically; returns its path."""
    folder = outbox / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    name = results[-1].run_id if results else "empty"
    path = folder / f"{name}.html"
    tmp = folder / f".{name}.html.tmp"
    tmp.write_text(render_html(results, title=title), encoding="utf-8")
    os.replace(tmp, path)
    return path
