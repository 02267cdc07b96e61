"""Committed payment batches: what the outbox writer needs, and marking a batch issued."""

from __future__ import annotations

import duckdb
import polars as pl

from storage.sql import frame
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


def unissued_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Batches committed but not yet written to the outbox (a crash after the commit)."""
    return [
        str(r[0])
        for r in con.execute(
            "SELECT batch_id FROM payment_batches WHERE issued_at IS NULL ORDER BY batch_id"
        ).fetchall()
    ]


def batch_frame(con: duckdb.DuckDBPyConnection, batch_id: str) -> pl.DataFrame:
    """A batch's instructions in a fixed order, so its file is the same bytes every time.

    ``created_at`` comes as microseconds since the epoch (``created_at_us``): the file shows it
    in UTC whatever the connection's time zone.
    """
    return frame(
        con,
        """
        SELECT instruction_id, batch_id, national_id, payee_name, payee_account, amount_fen,
               entry_count, epoch_us(created_at) AS created_at_us
        FROM payment_instructions WHERE batch_id = ? ORDER BY instruction_id
        """,
        [batch_id],
    )


def mark_issued(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    con.execute(
        "UPDATE payment_batches SET issued_at = ? WHERE batch_id = ? AND issued_at IS NULL",
        [now(), batch_id],
    )


def batch_seal(con: duckdb.DuckDBPyConnection, batch_id: str) -> str | None:
    """The seal of the run that made a batch (its manifest carries it)."""
    # fetchall: a result left unfinished would stop the next batch's ``con.sql`` (DuckDB 2).
    rows = con.execute(
        "SELECT s.seal FROM payment_batches b JOIN ledger_seals s USING (run_id) "
        "WHERE b.batch_id = ?",
        [batch_id],
    ).fetchall()
    return str(rows[0][0]) if rows else None
