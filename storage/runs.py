"""The run log and the figures a run report needs (no personal data)."""

from __future__ import annotations

import json
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
    flow_run_id: str | None = None,
) -> None:
    """A committed run, in the same transaction as its money."""
    con.execute(
        """
        INSERT INTO runs (run_id, command, as_of_date, started_at, finished_at, status,
            batch_id, summary, flow_run_id)
        VALUES (?, ?, ?, ?, ?, 'committed', ?, ?, ?)
        """,
        [
            run_id,
            command,
            as_of,
            started_at,
            datetime.now(UTC),
            batch_id,
            summary_json,
            flow_run_id,
        ],
    )


def failed_in_flow_run(con: duckdb.DuckDBPyConnection, flow_run_id: str) -> list[str] | None:
    """The partitions that failed in the last commit of a Prefect flow run (None: it never
    committed), from the run's own figures."""
    row = con.execute(
        "SELECT summary FROM runs WHERE flow_run_id = ? ORDER BY finished_at DESC LIMIT 1",
        [flow_run_id],
    ).fetchone()
    if row is None:
        return None
    return list(json.loads(row[0]).get("partitions", {}).get("failed", []))


def warehouse_id(con: duckdb.DuckDBPyConnection) -> str:
    """This warehouse file's identity (made when it was created; the outbox records it)."""
    row = con.execute("SELECT warehouse_id FROM warehouse_identity").fetchone()
    assert row is not None, "migration 008 makes the warehouse's identity"
    return str(row[0])


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
