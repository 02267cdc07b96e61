"""Read-only questions the command line asks the warehouse (status, quarantine, explain).

Answers are plain rows (a dict per row), not frames: a read-only command answers without
loading polars (or pyarrow), which costs more than the query.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from storage.lock import is_locked
from storage.warehouse import WarehouseBusy, open_warehouse

Rows = list[dict[str, Any]]


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Rows:
    """A query's rows, each a dict by column name."""
    result = con.execute(sql, params or [])
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def _read(path: Path, sql: str, params: list[object] | None = None) -> Rows:
    try:
        with open_warehouse(path, read_only=True) as con:
            return rows(con, sql, params)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower() or is_locked(path):
            raise WarehouseBusy(
                f"the warehouse {path.name} is being written by a run; try again when it ends"
            ) from None
        raise


def partition_runs(path: Path, day: date | None = None) -> Rows:
    """The partition table, optionally for one date."""
    sql = """
        SELECT r.kind, r.partition_key, r.status, r.rows_read, r.rows_quarantined, r.error,
               r.attempts, r.updated_at
        FROM partition_runs r JOIN partition_state s USING (kind, partition_key)
    """
    if day is None:
        return _read(path, sql + " ORDER BY s.day, r.kind, r.partition_key")
    return _read(path, sql + " WHERE s.day = ? ORDER BY r.kind, r.partition_key", [day])


def last_runs(path: Path, limit: int = 5) -> Rows:
    return _read(
        path,
        "SELECT run_id, command, as_of_date, started_at, finished_at, status, batch_id "
        "FROM runs ORDER BY started_at DESC LIMIT ?",
        [limit],
    )


def quarantine_rows(path: Path, partition_key: str) -> Rows:
    return _read(
        path,
        "SELECT row_number, rule, message, raw FROM quarantine_rows "
        "WHERE partition_key = ? ORDER BY row_number, rule",
        [partition_key],
    )


def partition_state(path: Path, partition_key: str) -> Rows:
    return _read(path, "SELECT * FROM partition_runs WHERE partition_key = ?", [partition_key])


def stay_explanation(path: Path, hospital_code: str, settlement_id: str) -> dict[str, Rows]:
    """Everything that explains one stay's money, the rows of each part."""
    key = [hospital_code, settlement_id]
    where = "WHERE hospital_code = ? AND settlement_id = ?"
    with open_warehouse(path, read_only=True) as con:
        return {
            "outcome": rows(con, f"SELECT * FROM claim_outcomes {where}", key),
            "stay": rows(con, f"SELECT * FROM stays {where}", key),
            "versions": rows(
                con,
                "SELECT version, record_type, partition_key, row_number, total_cost_fen, "
                "self_pay_in_scope_fen, admission_date, discharge_date "
                f"FROM discharge_rows {where} ORDER BY version, feed_date, source, row_number",
                key,
            ),
            "plans": rows(con, f"SELECT * FROM stay_plan_targets {where} ORDER BY priority", key),
            # internal columns the view hides: the member a held stay belongs to, its overlap
            "held": rows(
                con,
                f"SELECT national_id, overlapped_stay FROM stay_outcomes {where}",
                key,
            ),
            # why an unmatched stay matched nothing: who comes close in the current snapshot
            "near": rows(
                con,
                """
                SELECT (SELECT max(snapshot_date) FROM current_snapshot) AS snapshot_date,
                       count(*) FILTER (WHERE m.member_name_norm = s.patient_name_norm)
                           AS same_name,
                       count(*) FILTER (WHERE m.member_name_norm = s.patient_name_norm
                                        AND m.birth_date = s.birth_date) AS same_name_birth,
                       count(*) FILTER (WHERE m.birth_date = s.birth_date
                                        AND m.gender = s.gender) AS same_birth_gender
                FROM stays s, members m
                WHERE s.hospital_code = ? AND s.settlement_id = ?
                """,
                key,
            ),
            "decisions": rows(
                con,
                "SELECT version, decision, enrollment_id, operator, decided_at FROM review_log "
                f"{where} ORDER BY decided_at",
                key,
            ),
            "ledger": rows(
                con,
                "SELECT entry_id, run_id, version, plan_code, national_id, amount_fen, reason, "
                f"posted_at FROM ledger_entries {where} ORDER BY posted_at, entry_id",
                key,
            ),
        }
