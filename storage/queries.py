"""Read-only questions the command line asks the warehouse (status, quarantine, explain)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from storage.lock import is_locked
from storage.sql import frame
from storage.warehouse import WarehouseBusy, open_warehouse


def _read(path: Path, sql: str, params: list[object] | None = None) -> pl.DataFrame:
    try:
        with open_warehouse(path, read_only=True) as con:
            return frame(con, sql, params)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower() or is_locked(path):
            raise WarehouseBusy(
                f"the warehouse {path.name} is being written by a run; try again when it ends"
            ) from None
        raise


def partition_runs(path: Path, day: date | None = None) -> pl.DataFrame:
    """The partition table, optionally for one date."""
    sql = """
        SELECT r.kind, r.partition_key, r.status, r.rows_read, r.rows_quarantined, r.error,
               r.attempts, r.updated_at
        FROM partition_runs r JOIN partition_state s USING (kind, partition_key)
    """
    if day is None:
        return _read(path, sql + " ORDER BY s.day, r.kind, r.partition_key")
    return _read(path, sql + " WHERE s.day = ? ORDER BY r.kind, r.partition_key", [day])


def last_runs(path: Path, limit: int = 5) -> pl.DataFrame:
    return _read(
        path,
        "SELECT run_id, command, as_of_date, started_at, finished_at, status, batch_id "
        "FROM runs ORDER BY started_at DESC LIMIT ?",
        [limit],
    )


def quarantine_rows(path: Path, partition_key: str) -> pl.DataFrame:
    return _read(
        path,
        "SELECT row_number, rule, message, raw FROM quarantine_rows "
        "WHERE partition_key = ? ORDER BY row_number, rule",
        [partition_key],
    )


def partition_state(path: Path, partition_key: str) -> pl.DataFrame:
    return _read(path, "SELECT * FROM partition_runs WHERE partition_key = ?", [partition_key])


def stay_explanation(path: Path, hospital_code: str, settlement_id: str) -> dict[str, pl.DataFrame]:
    """Everything that explains one stay's money, one frame per part."""
    key = [hospital_code, settlement_id]
    where = "WHERE hospital_code = ? AND settlement_id = ?"
    with open_warehouse(path, read_only=True) as con:
        return {
            "outcome": frame(con, f"SELECT * FROM claim_outcomes {where}", key),
            "stay": frame(con, f"SELECT * FROM stays {where}", key),
            "versions": frame(
                con,
                "SELECT version, record_type, partition_key, row_number, total_cost_fen, "
                "self_pay_in_scope_fen, admission_date, discharge_date "
                f"FROM discharge_rows {where} ORDER BY version, feed_date, source, row_number",
                key,
            ),
            "plans": frame(con, f"SELECT * FROM stay_plan_targets {where} ORDER BY priority", key),
            "ledger": frame(
                con,
                "SELECT entry_id, run_id, version, plan_code, national_id, amount_fen, reason, "
                f"posted_at FROM ledger_entries {where} ORDER BY posted_at, entry_id",
                key,
            ),
        }
