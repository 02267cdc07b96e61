"""The ledger's seals: each committed run's entries hashed, chained to the previous run's seal.

``seal = sha256(prev_seal || chr(10) || lines)``, where ``lines`` are the run's entries ordered by
``entry_id``, one line each (``ENTRY_LINE``), joined by ``chr(10)``; the first run's
``prev_seal`` is 64 zeros (migration 007 documents it for auditors). Sealing is in the run's
transaction, so a run's money and its seal are committed together or not at all.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

GENESIS = "0" * 64

# One entry as text: every column, posted_at as microseconds since the epoch (UTC).
ENTRY_LINE = (
    "concat_ws('|', entry_id, run_id, hospital_code, settlement_id, version, plan_code, "
    "national_id, amount_fen, reason, epoch_us(posted_at))"
)
LINES = f"coalesce(string_agg({ENTRY_LINE}, chr(10) ORDER BY entry_id), '')"

SEAL_SQL = f"""
INSERT INTO ledger_seals
WITH prev AS (
    SELECT coalesce(max(seq), 0) AS seq,
           coalesce(arg_max(seal, seq), '{GENESIS}') AS seal
    FROM ledger_seals
), mine AS (
    SELECT count(*) AS entry_count, coalesce(sum(amount_fen), 0)::BIGINT AS amount_sum_fen,
           {LINES} AS lines
    FROM ledger_entries WHERE run_id = $run_id
)
SELECT $run_id, prev.seq + 1, mine.entry_count, mine.amount_sum_fen, prev.seal,
       sha256(prev.seal || chr(10) || mine.lines), $at
FROM prev, mine
RETURNING seal
"""


def seal_run(con: duckdb.DuckDBPyConnection, *, run_id: str, at: datetime) -> str:
    """Seal one run's entries (inside its transaction); returns the seal."""
    row = con.execute(SEAL_SQL, {"run_id": run_id, "at": at}).fetchone()
    assert row is not None
    return str(row[0])


def run_seal(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """The seal of a run, if it has one."""
    row = con.execute("SELECT seal FROM ledger_seals WHERE run_id = ?", [run_id]).fetchone()
    return str(row[0]) if row else None
