"""Enrolment in the warehouse: replace the current snapshot, derive people and coverage chains.

A snapshot is complete: loading one replaces all enrolment (feeds.md). People's name, gender,
birth date and payee account come from their enrolment with the latest ``coverage_start``
(ties: greatest ``enrollment_id``) (benefits.md, *Matching*).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from storage.warehouse import now

# Gaps and islands per (person, plan): an enrolment continues the chain when it starts no later
# than the day after every earlier one has ended; chain_start is the first day of its chain.
_CHAINS = """
WITH ordered AS (
    SELECT *,
        max(coalesce(coverage_end, DATE '9999-12-31')) OVER (
            PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_until
    FROM staged_enrollments
), islands AS (
    SELECT *,
        sum(CASE WHEN covered_until IS NULL OR coverage_start > covered_until + 1 THEN 1 ELSE 0 END)
            OVER (PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
                  ROWS UNBOUNDED PRECEDING) AS chain_no
    FROM ordered
)
SELECT enrollment_id, national_id, member_name, member_name_norm, gender, birth_date, plan_code,
       coverage_start, coverage_end, payee_account,
       min(coverage_start) OVER (PARTITION BY national_id, plan_code, chain_no) AS chain_start
FROM islands
"""


def current_snapshot(con: duckdb.DuckDBPyConnection) -> tuple[date, str] | None:
    """(snapshot_date, content_hash) of the snapshot in effect, if any."""
    row = con.execute("SELECT snapshot_date, content_hash FROM current_snapshot").fetchone()
    return None if row is None else (row[0], str(row[1]))


def load_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    staged_parquet: Path,
    snapshot_date: date,
    content_hash: str,
    run_id: str,
) -> int:
    """Replace enrolment with the staged snapshot (inside the caller's transaction)."""
    con.read_parquet(str(staged_parquet)).create_view("staged_enrollments", replace=True)
    con.execute("DELETE FROM enrollments")
    con.execute(f"INSERT INTO enrollments BY NAME {_CHAINS}")
    con.execute("DELETE FROM members")
    con.execute(
        """
        INSERT INTO members BY NAME
        SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
        FROM enrollments
        QUALIFY row_number() OVER (PARTITION BY national_id
                                   ORDER BY coverage_start DESC, enrollment_id DESC) = 1
        """
    )
    count = con.execute("SELECT count(*) FROM enrollments").fetchone()[0]  # type: ignore[index]
    con.execute("DELETE FROM current_snapshot")
    con.execute(
        "INSERT INTO current_snapshot VALUES (?, ?, ?, ?, ?)",
        [snapshot_date, content_hash, count, now(), run_id],
    )
    con.execute("DROP VIEW staged_enrollments")
    return int(count)
