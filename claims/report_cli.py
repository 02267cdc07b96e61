"""``claims report …``: reports read from the warehouse (operations.md, *Sustainability report*).

``claims report sustainability --year Y [--plan P]`` computes the report in this process, without
Prefect (a second or so at our size); the ``claims-sustainability`` flow runs the same step and
adds Prefect artifacts, for a monthly deployment.
"""

from __future__ import annotations

from typing import Annotated

import typer

from claims import options
from claims.options import Landing, Outbox, Warehouse, exit_codes, settings_from
from config.settings import ConfigError

app = typer.Typer(
    name="report",
    help="Reports from the warehouse, for people who do not write SQL.",
    no_args_is_help=True,
)


def _year(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) != 4:
        raise ConfigError("--year must be a benefit year YYYY, e.g. 2026")
    return int(text)


@app.command()
def sustainability(
    year: Annotated[str, typer.Option("--year", help="Benefit year YYYY.")],
    plan: Annotated[
        str | None, typer.Option("--plan", help="One plan_code (default: every plan).")
    ] = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Per plan and month: member-months, contributions, paid, loss ratio, utilisation, cap."""
    from rich.markup import escape
    from rich.table import Table

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        from outbox.sustainability_report import write_sustainability

        files = write_sustainability(settings, _year(year), plan)
    # The terminal gets the columns that fit 80 characters; the page has them all.
    shown = {
        "plan": "plan",
        "paid (CNY)": "paid",
        "loss ratio": "loss ratio",
        "loss ratio, last 3 months": "last 3 months",
        "members at the annual cap": "at cap",
    }
    table = Table(title=f"Sustainability {year} so far (paid in CNY)")
    for label in shown.values():
        table.add_column(label, justify="left" if label == "plan" else "right", no_wrap=True)
    for row in files.headline:
        table.add_row(*(escape(row[key]) for key in shown))
    options.console.print(table)
    options.console.print(f"CSV ({files.rows} rows): {files.csv}\nHTML: {files.html}")
