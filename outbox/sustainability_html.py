"""The sustainability report as a self-contained HTML page: a headline table and four charts.

Charts are drawn with matplotlib's Agg backend and embedded as inline SVG: no browser, no network,
no file beside the page. Only the report's figures go in (plan codes, months, age bands, money
totals): no person.
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from outbox.sustainability import BANDS, Sustainability, decimal_text, div_half_up, headline

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_THOUSAND_YUAN = 100_000  # fen
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _figure(width: float, height: float) -> Figure:
    # The object-oriented API with no pyplot: no global state, no GUI backend, thread-safe.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=96, layout="constrained")


def _svg(fig: Figure) -> str:
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, crisp, selectable
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _monthly(report: Sustainability, plan: str) -> pl.DataFrame:
    return report.counts.filter(
        (pl.col("plan_code") == plan)
        & (pl.col("age_band") == "all")
        & (pl.col("period") != str(report.year))
    ).sort("month")


def _year_row(report: Sustainability, plan: str) -> dict[str, int]:
    return (
        report.counts.filter(
            (pl.col("plan_code") == plan)
            & (pl.col("age_band") == "all")
            & (pl.col("period") == str(report.year))
        )
        .select("member_months", "paid_fen", "stays_paid")
        .row(0, named=True)
    )


def _ratio_text(numerator: int, denominator: int) -> str:
    text = decimal_text(numerator * 100, denominator, 1)
    return "no contributions" if text is None else f"{text} %"


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    # Display only: the CSV's exact decimals come from outbox/sustainability.py.
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def loss_ratio_chart(report: Sustainability) -> str:
    """Loss ratio by month per plan, against the 100 % line where paid equals contributions."""
    fig = _figure(12.5, 4.2)
    ax = fig.add_subplot()
    for plan in report.plans:
        m = _monthly(report, plan).with_columns(
            lr=_ratio(pl.col("paid_fen"), pl.col("member_months") * report.contribution_fen[plan])
            * 100
        )
        year = _year_row(report, plan)
        so_far = _ratio_text(
            year["paid_fen"], year["member_months"] * report.contribution_fen[plan]
        )
        ax.plot(m["month"], m["lr"], marker="o", label=f"{plan} (year so far {so_far})")
    ax.axhline(100, color="black", linestyle="--", linewidth=1)
    ax.annotate("100 %: paid = contributions", (12.4, 100), xytext=(0, 4),
                textcoords="offset points", fontsize=9, ha="right")  # fmt: skip
    ax.set_xticks(range(1, 13), _MONTHS)
    ax.set_xlim(0.5, 12.5)
    ax.set_ylabel("loss ratio, %")
    ax.set_title(f"Loss ratio by month of discharge, {report.year}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, fontsize=9, frameon=False)
    return _svg(fig)


def cumulative_chart(report: Sustainability) -> str:
    """Paid against contributions, cumulative over the year, one panel per plan."""
    n = len(report.plans)
    fig = _figure(12.5, 3.2 * ((n + 1) // 2))
    axes = fig.subplots((n + 1) // 2, 2, squeeze=False).flatten()
    for ax, plan in zip(axes, report.plans, strict=False):
        m = _monthly(report, plan).with_columns(
            paid=pl.col("paid_fen").cum_sum() / _THOUSAND_YUAN,
            contributions=(pl.col("member_months") * report.contribution_fen[plan]).cum_sum()
            / _THOUSAND_YUAN,
        )
        ax.plot(m["month"], m["contributions"], label="contributions", color="tab:green")
        ax.plot(m["month"], m["paid"], label="paid", color="tab:red")
        # The run-rate projection, drawn as what it is: a straight line to 31 December.
        last = m["month"][-1]
        projected = div_half_up(
            _year_row(report, plan)["paid_fen"] * report.days_in_year, report.days_elapsed
        )
        ax.plot(
            [last, 12],
            [m["paid"][-1], projected / _THOUSAND_YUAN],
            color="tab:red",
            linestyle=":",
            label="paid, run-rate projection",
        )
        ax.set_title(plan, fontsize=10)
        ax.set_xticks(range(1, 13), [s[0] for s in _MONTHS])
        ax.set_xlim(0.5, 12.5)
        ax.set_ylabel("thousand CNY, cumulative")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"Paid and contributions, cumulative, {report.year}")
    return _svg(fig)


def utilisation_chart(report: Sustainability) -> str:
    """Stays per 1 000 member-months by age band (year so far), bars grouped by plan."""
    year = report.counts.filter(pl.col("period") == str(report.year))
    fig = _figure(12.5, 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(BANDS)
    for i, band in enumerate(BANDS):
        rows = (
            year.filter(pl.col("age_band") == band)
            .with_columns(u=_ratio(pl.col("stays_paid") * 1000, pl.col("member_months")))
            .select("plan_code", "u")
        )
        by_plan = dict(zip(rows["plan_code"], rows["u"], strict=True))
        xs = [p + (i - 1.5) * width for p in range(len(report.plans))]
        ax.bar(xs, [by_plan.get(p) or 0 for p in report.plans], width, label=band)
    ax.set_xticks(range(len(report.plans)), report.plans)
    ax.set_ylabel("stays paid per 1 000 member-months")
    ax.set_title(f"Utilisation by age band on 1 January, {report.year} so far")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="age", fontsize=9)
    return _svg(fig)


def cap_chart(report: Sustainability) -> str:
    """Share of the members paid so far who reached the annual cap, month by month."""
    fig = _figure(12.5, 3.6)
    ax = fig.add_subplot()
    for plan in report.plans:
        m = _monthly(report, plan).with_columns(
            s=_ratio(pl.col("capped_members"), pl.col("paid_members")) * 100
        )
        ax.plot(m["month"], m["s"], marker="o", label=plan)
    ax.set_xticks(range(1, 13), _MONTHS)
    ax.set_xlim(0.5, 12.5)
    ax.set_ylabel("% of members paid")
    ax.set_title(f"Members at the annual cap, {report.year} to date at each month's end")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return _svg(fig)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1240px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.note { color: #555; font-size: 13px; }
figure { margin: 1.5em 0; }
"""


def render(report: Sustainability) -> str:
    """The whole page."""
    import matplotlib

    matplotlib.use("Agg")
    rows = headline(report)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    charts = (loss_ratio_chart, cumulative_chart, utilisation_chart, cap_chart)
    figures = "".join(f"<figure>{chart(report)}</figure>" for chart in charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Sustainability {report.year}</title><style>{_CSS}</style></head><body>
<h1>Plan sustainability, benefit year {report.year}</h1>
<p class="note">Stays discharged from 1 January to {report.latest_discharge.isoformat()}
({report.days_elapsed} of {report.days_in_year} days); money is net of recoveries, by month of
discharge. Contributions = member-months &times; the plan's monthly contribution in the rules file.
The <b>run-rate projection</b> is paid so far &divide; days elapsed &times; days in the year: a
projection, not a forecast (no seasonality, no late deliveries).</p>
<h2>The year so far</h2>
<table><tr>{head}</tr>{body}</table>
{figures}
<p class="note">Figures per plan, month, age band and measure: sustainability-{report.year}.csv
beside this page.</p>
</body></html>
"""


def write_html(folder: Path, report: Sustainability) -> Path:
    """``sustainability-<year>.html``, written to a temporary name and renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sustainability-{report.year}.html"
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(render(report), encoding="utf-8")
    os.replace(tmp, path)
    return path
