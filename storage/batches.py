"""Committed payment batches: what the outbox writer needs, and marking a batch issued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from storage.warehouse import now

# payouts.md: the columns of a batch's payments.csv, in order.
PAYMENT_COLUMNS = (
    "instruction_id",
    "batch_id",
    "national_id",
    "payee_name",
    "payee_account",
    "amount",
    "currency",
    "entry_count",
    "created_at",
)


@dataclass(frozen=True)
class Instruction:
    instruction_id: str
    batch_id: str
    national_id: str
    payee_name: str
    payee_account: str
    amount_fen: int
    entry_count: int
    created_at: datetime


def unissued_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Batches committed but not yet written to the outbox (a crash after the commit)."""
    return [
        str(r[0])
        for r in con.execute(
            "SELECT batch_id FROM payment_batches WHERE issued_at IS NULL ORDER BY batch_id"
        ).fetchall()
    ]


def batch_instructions(con: duckdb.DuckDBPyConnection, batch_id: str) -> list[Instruction]:
    """A batch's instructions in a fixed order, so its file is the same bytes every time."""
    rows = con.execute(
        """
        SELECT instruction_id, batch_id, national_id, payee_name, payee_account, amount_fen,
               entry_count, created_at
        FROM payment_instructions WHERE batch_id = ? ORDER BY instruction_id
        """,
        [batch_id],
    ).fetchall()
    return [Instruction(*row) for row in rows]


def mark_issued(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    con.execute(
        "UPDATE payment_batches SET issued_at = ? WHERE batch_id = ? AND issued_at IS NULL",
        [now(), batch_id],
    )


def batch_seal(con: duckdb.DuckDBPyConnection, batch_id: str) -> str | None:
    """The seal of the run that made a batch (its manifest carries it)."""
    row = con.execute(
        "SELECT s.seal FROM payment_batches b JOIN ledger_seals s USING (run_id) "
        "WHERE b.batch_id = ?",
        [batch_id],
    ).fetchone()
    return str(row[0]) if row else None
