"""The run log and the figures a run report needs (no personal data)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb


def record_run(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    command: str,
    as_of: date,
    started_at: datetime,
    batch_id: str | None,
    summary_json: str,
) -> None:
    """A committed run, in the same transaction as its money."""
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'committed', ?, ?)",
        [run_id, command, as_of, started_at, datetime.now(UTC), batch_id, summary_json],
    )


def has_outcomes(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any stay was ever adjudicated (a fresh warehouse computes everything)."""
    row = con.execute("SELECT count(*) > 0 FROM stay_outcomes").fetchone()
    return bool(row and row[0])


def stays_by_status(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        str(s): int(n)
        for s, n in con.execute(
            "SELECT status, count(*) FROM stay_outcomes GROUP BY ALL ORDER BY 1"
        ).fetchall()
    }


def money_by_plan(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> tuple[dict[str, int], dict[str, int]]:
    """(paid, recovered) fen by plan for one run's ledger entries."""
    rows = con.execute(
        """
        SELECT plan_code,
               coalesce(sum(amount_fen) FILTER (WHERE amount_fen > 0), 0),
               coalesce(-sum(amount_fen) FILTER (WHERE amount_fen < 0), 0)
        FROM ledger_entries WHERE run_id = ? GROUP BY ALL ORDER BY 1
        """,
        [run_id],
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows if r[1]}, {r[0]: int(r[2]) for r in rows if r[2]}
