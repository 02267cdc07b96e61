"""Run reports: a self-contained HTML page under ``<outbox>/reports/`` and a markdown summary.

Built only from ``CommitResult`` figures, which carry no personal data: partition keys, counts,
rule names, plan codes and money totals.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def summarize(results: Sequence[CommitResult]) -> dict[str, Any]:
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
    # A partition that failed and then succeeded in a later commit of the same run is fixed.
    partitions["failed"] = [k for k in partitions["failed"] if k not in partitions["succeeded"]]
    errors = {k: v for k, v in errors.items() if k in partitions["failed"]}
    last = results[-1] if results else None
    return {
        "partitions": partitions,
        "errors": errors,
        "rows_read": sum(r.rows_read for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "quarantined_by_rule": _sum(results, "quarantined_by_rule"),
        "warnings": _sum(results, "warnings"),
        "stays_by_status": last.stays_by_status if last else {},
        "paid_by_plan": _sum(results, "paid_by_plan"),
        "recovered_by_plan": _sum(results, "recovered_by_plan"),
        "paid_fen": sum(r.paid_fen for r in results),
        "recovered_fen": sum(r.recovered_fen for r in results),
        "carried_fen": sum(r.recovery_carried_fen for r in results),
        "netted_fen": sum(r.recovery_netted_fen for r in results),
        "batch_fen": sum(r.batch_fen for r in results),
        "batches": [(r.batch_id, r.batch_instructions, r.batch_fen) for r in results if r.batch_id],
        "notes": [n for r in results for n in r.notes],
        "run_ids": [r.run_id for r in results],
        "waiting": last.waiting if last else {},
        "trend": last.trend if last else [],
    }


def headline(s: dict[str, Any]) -> tuple[bool, str]:
    """(passed, the sentence): whether the night passed, first thing on the page."""
    failed = len(s["partitions"].get("failed", []))
    if failed:
        return False, f"{failed} partition{'s' if failed > 1 else ''} failed"
    return True, "Passed: every partition processed"


def reconciliation_line(s: dict[str, Any]) -> str:
    """paid − recovered + carried forward − netted = batch total, in yuan."""
    return (
        f"paid {fen_to_yuan(s['paid_fen'])} − recovered {fen_to_yuan(s['recovered_fen'])} "
        f"+ recoveries carried forward to later payouts {fen_to_yuan(s['carried_fen'])} "
        f"− earlier recoveries netted now {fen_to_yuan(s['netted_fen'])} "
        f"= batch total {fen_to_yuan(s['batch_fen'])} CNY"
    )


def reconciles(s: dict[str, Any]) -> bool:
    total = s["paid_fen"] - s["recovered_fen"] + s["carried_fen"] - s["netted_fen"]
    return bool(total == s["batch_fen"])


def next_step(key: str) -> str:
    """The command a data engineer types next for a failed partition."""
    if key.startswith("snapshot_date="):
        return (
            f"claims quarantine --partition {key}   (then deliver a corrected snapshot; "
            "the next run loads it)"
        )
    return f"claims quarantine --partition {key}   then, data fixed: claims rerun --partition {key}"


def waiting_lines(s: dict[str, Any]) -> list[str]:
    """What waits for a person, one sentence a line (counts and money only)."""
    w = s["waiting"]
    if not w:
        return []
    reasons = ", ".join(f"{k} {v}" for k, v in w.get("review_by_reason", {}).items())
    oldest = w.get("review_oldest_hours")
    age = "" if oldest is None else f"; oldest {oldest // 24} d {oldest % 24} h"
    lines = [
        f"Review: {w.get('review_pending', 0)} stays pending"
        + (f" ({reasons})" if reasons else "")
        + f", {w.get('review_opened', 0)} opened by this run{age}; "
        f"at stake {fen_to_yuan(w.get('review_at_stake_fen', 0))} CNY of self-pay in scope. "
        "Next: claims review list",
        f"Unmatched: {w.get('unmatched_pending', 0)} stays wait for an enrolment "
        "(tried again with every new snapshot)",
    ]
    by_plan = w.get("recoveries_by_plan", {})
    total = sum(by_plan.values())
    lines.append(
        f"Recoveries outstanding: {fen_to_yuan(total)} CNY owed back by "
        f"{w.get('recovery_members', 0)} member(s)"
        + (
            " (" + ", ".join(f"{p} {fen_to_yuan(v)}" for p, v in by_plan.items()) + ")"
            if by_plan
            else ""
        )
        + "; netted against their next payouts"
    )
    return lines


def render_markdown(
    results: Sequence[CommitResult], *, title: str, report_path: str | None = None
) -> str:
    """The summary as markdown (the Prefect artifact and the terminal's closing words)."""
    s = summarize(results)
    parts = s["partitions"]
    passed, said = headline(s)
    lines = [f"# {title}", "", f"## {'✅' if passed else '❌'} {said}", ""]
    errors = s["errors"]
    if errors:
        lines += ["**Failed partitions: what to do next**", ""]
        # Reasons are written scrubbed; scrubbed again here, as the last door out.
        for k, v in sorted(errors.items()):
            lines += [f"- `{k}`: {scrub(v)}", f"  - next: `{next_step(k)}`"]
        lines.append("")
    waits = waiting_lines(s)
    if waits:
        lines += ["## Waits for a person", "", *[f"- {w}" for w in waits], ""]
    lines += ["## This run", ""]
    lines.append("| partitions | count |")
    lines.append("|---|---|")
    for status in STATUSES:
        lines.append(f"| {status} | {len(parts.get(status, []))} |")
    lines += ["", f"Rows read: {s['rows_read']}, quarantined: {s['rows_quarantined']}", ""]
    by_rule = s["quarantined_by_rule"]
    if by_rule:
        lines += ["| quarantine rule | rows |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in by_rule.items()]
        lines.append("")
    paid, recovered = s["paid_by_plan"], s["recovered_by_plan"]
    if paid or recovered:
        lines += ["| plan | paid (CNY) | recovered (CNY) |", "|---|---|---|"]
        for plan in sorted(set(paid) | set(recovered)):
            lines.append(
                f"| {plan} | {fen_to_yuan(paid.get(plan, 0))} | "
                f"{fen_to_yuan(recovered.get(plan, 0))} |"
            )
        lines.append("")
    lines += [f"Reconciliation: {reconciliation_line(s)}", ""]
    batches = s["batches"]
    if batches:
        lines += [
            f"- Payment batch `{batch_id}`: {n} instruction(s), {fen_to_yuan(fen)} CNY"
            for batch_id, n, fen in batches
        ]
    else:
        lines.append("No payment batch: nothing to pay.")
    stays = s["stays_by_status"]
    if stays:
        lines += ["", "## Warehouse running totals (all nights so far)", ""]
        lines += ["| stays by status | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(stays.items())]
    trend = s["trend"]
    if trend:
        lines += ["", f"## Last {len(trend)} night(s)", ""]
        lines += ["| night | paid (CNY) | recovered (CNY) | paid stays | in review |"]
        lines += ["|---|---|---|---|---|"]
        for t in trend:
            st = t.get("stays_by_status", {})
            lines.append(
                f"| {t['night']} | {fen_to_yuan(t['paid_fen'])} | "
                f"{fen_to_yuan(t['recovered_fen'])} | {st.get('paid', 0)} | "
                f"{st.get('review', 0)} |"
            )
    notes = s["notes"]
    if notes:
        lines += ["", *[f"> {scrub(n)}" for n in notes]]
    if report_path:
        lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines) + "\n"


def partition_table(results: Sequence[CommitResult]) -> list[dict[str, str]]:
    """The partitions of this run by state, for a Prefect table artifact (skipped: a count)."""
    s = summarize(results)
    rows = []
    for status in ("failed", "succeeded", "waiting"):
        for key in s["partitions"].get(status, []):
            reason = scrub(s["errors"].get(key, "")) if status == "failed" else ""
            rows.append(
                {
                    "partition": key,
                    "state": status,
                    "reason": reason,
                    "next": next_step(key) if status == "failed" else "",
                }
            )
    skipped = len(s["partitions"].get("skipped", []))
    if skipped:
        rows.append(
            {
                "partition": f"{skipped} partition(s)",
                "state": "skipped",
                "reason": "same content already succeeded",
                "next": "",
            }
        )
    return rows


STATUS_COLOURS = {
    "paid": "#2e7d32",
    "zero_benefit": "#8bc34a",
    "not_covered": "#b0bec5",
    "review": "#f9a825",
    "rejected": "#6d4c41",
    "unmatched": "#ef6c00",
    "void": "#757575",
    "not_in_network": "#90a4ae",
}


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
        colour = STATUS_COLOURS.get(label, "#4a7ab5")
        y = i * row_h
        rows.append(
            f'<text x="0" y="{y + 16}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w}" height="{row_h - 8}" fill="{colour}"/>'
            f'<text x="{label_w + w + 6}" y="{y + 16}" font-size="13">{html.escape(shown)}</text>'
        )
    height = row_h * len(values)
    return (
        f"<h3>{html.escape(title)}</h3>"
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(rows)}</svg>'
    )


def _trend_charts(trend: list[dict[str, Any]]) -> str:
    """Money paid per night and stays by status per night, as plain SVG columns."""
    if not trend:
        return ""
    width, height, gap = 640, 140, 2
    col = max(4, (width - 60) // max(1, len(trend)) - gap)
    top = max((t["paid_fen"] for t in trend), default=0) or 1
    paid_bars = []
    for i, t in enumerate(trend):
        h = int((height - 20) * t["paid_fen"] / top)
        x = 50 + i * (col + gap)
        paid_bars.append(
            f'<rect x="{x}" y="{height - h}" width="{col}" height="{h}" fill="#2e7d32">'
            f"<title>{html.escape(t['night'])}: {fen_to_yuan(t['paid_fen'])} CNY</title></rect>"
        )
    label = (
        f'<text x="0" y="12" font-size="11">{fen_to_yuan(top)}</text>'
        f'<text x="0" y="{height}" font-size="11">0</text>'
    )
    stack_h = 140
    top_stays = max((sum(t["stays_by_status"].values()) for t in trend), default=0) or 1
    stacks = []
    for i, t in enumerate(trend):
        x, y = 50 + i * (col + gap), stack_h
        for status in STATUS_COLOURS:
            n = int(t["stays_by_status"].get(status, 0))
            h = int((stack_h - 10) * n / top_stays)
            if h <= 0:
                continue
            y -= h
            stacks.append(
                f'<rect x="{x}" y="{y}" width="{col}" height="{h}" '
                f'fill="{STATUS_COLOURS[status]}"><title>{html.escape(t["night"])}: '
                f"{status} {n}</title></rect>"
            )
    legend = " ".join(
        f'<span class="key" style="background:{c}"></span>{html.escape(s)}'
        for s, c in STATUS_COLOURS.items()
    )
    first, last = html.escape(trend[0]["night"]), html.escape(trend[-1]["night"])
    return f"""<h2>Last {len(trend)} night(s): {first} to {last}</h2>
<h3>Money paid per night (CNY)</h3>
<svg role="img" aria-label="Money paid per night" width="{width}" height="{height}"
viewBox="0 0 {width} {height}">{label}{"".join(paid_bars)}</svg>
<h3>Stays by status after each night (warehouse totals)</h3>
<svg role="img" aria-label="Stays by status per night" width="{width}" height="{stack_h}"
viewBox="0 0 {width} {stack_h}">{"".join(stacks)}</svg>
<p class="legend">{legend}</p>"""


def render_html(results: Sequence[CommitResult], *, title: str) -> str:
    """The report page: headline, what waits, this run, running totals, the last 30 nights."""
    s = summarize(results)
    parts = s["partitions"]
    errors = s["errors"]
    passed, said = headline(s)
    counts = {status: len(parts.get(status, [])) for status in STATUSES}
    table = "".join(
        f"<tr><td>{html.escape(status)}</td><td>{counts[status]}</td>"
        f"<td>{html.escape(', '.join(parts.get(status, [])[:10])) if status != 'skipped' else ''}"
        "</td></tr>"
        for status in STATUSES
    )
    failures = "".join(
        f"<li><code>{html.escape(k)}</code>: {html.escape(scrub(v))}<br>"
        f"next: <code>{html.escape(next_step(k))}</code></li>"
        for k, v in sorted(errors.items())
    )
    batches = s["batches"]
    batch_text = (
        "".join(
            f"<li><code>{html.escape(b)}</code>: {n} instruction(s), {fen_to_yuan(f)} CNY</li>"
            for b, n, f in batches
        )
        or "<li>none: nothing to pay</li>"
    )
    paid, recovered = s["paid_by_plan"], s["recovered_by_plan"]
    money_rows = "".join(
        f"<tr><td>{html.escape(plan)}</td><td class=n>{fen_to_yuan(paid.get(plan, 0))}</td>"
        f"<td class=n>{fen_to_yuan(recovered.get(plan, 0))}</td></tr>"
        for plan in sorted(set(paid) | set(recovered))
    )
    money_table = (
        f"<table><tr><th>plan</th><th>paid (CNY)</th><th>recovered (CNY)</th></tr>{money_rows}"
        "</table>"
        if money_rows
        else ""
    )
    notes = s["notes"]
    notes_html = (
        "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(scrub(n))}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    waits = waiting_lines(s)
    waits_html = (
        '<section class="waits"><h2>Waits for a person</h2><ul>'
        + "".join(f"<li>{html.escape(w)}</li>" for w in waits)
        + "</ul></section>"
        if waits
        else ""
    )
    colour = "#1b5e20" if passed else "#b71c1c"
    background = "#e8f5e9" if passed else "#ffebee"
    rec_ok = "" if reconciles(s) else " <strong>(does not add up: run claims verify)</strong>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:1.5em auto;color:#222;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
td.n{{text-align:right}}.headline{{font-size:1.8em;font-weight:bold;padding:.5em .8em;
border-radius:.3em;color:{colour};background:{background};border-left:.4em solid {colour}}}
.waits{{background:#fff8e1;border-left:.4em solid #f9a825;padding:.2em 1em;margin:1em 0}}
.run{{border-top:3px solid #4a7ab5;margin-top:1.5em}}.totals{{border-top:3px solid #888;
margin-top:1.5em}}.key{{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .8em;
vertical-align:middle}}.small{{color:#555;font-size:.9em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="headline">{"✔" if passed else "✖"} {html.escape(said)}</p>
{f"<h2>Failed partitions: what to do next</h2><ul>{failures}</ul>" if failures else ""}
{waits_html}
<section class="run"><h2>This run</h2>
<p class="small">Runs: {html.escape(", ".join(s["run_ids"]))}</p>
<table><tr><th>partitions</th><th>count</th><th>keys</th></tr>{table}</table>
<p>Rows read {s["rows_read"]}, quarantined {s["rows_quarantined"]}.</p>
{_bars("Quarantined rows by rule", s["quarantined_by_rule"])}
<h3>Money of this run</h3>
{money_table}
<p><strong>Reconciliation:</strong> {html.escape(reconciliation_line(s))}{rec_ok}</p>
{_bars("Paid by plan (CNY)", paid, money=True)}
{_bars("Recovered by plan (CNY)", recovered, money=True)}
<h3>Payment batch</h3><ul>{batch_text}</ul>
</section>
<section class="totals"><h2>Warehouse running totals (all nights so far)</h2>
{_bars("Stays by status", s["stays_by_status"])}
</section>
{_trend_charts(s["trend"])}
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
