"""The figures of the morning report that only the warehouse knows (no personal data).

What waits for a person (review items, unmatched stays, recoveries outstanding), how this run's
batch reconciles with its ledger entries, and the last 30 nights. Called inside the run's
transaction, after the ledger is posted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb


def reconciliation(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How recovery balances moved: batch = paid − recovered + carried forward − netted.

    For each member with entries in a run, the instruction is ``entries − owed before + owed
    after`` (payouts.md), so the batch differs from paid − recovered by what members owe more
    (a recovery carried forward to later payouts) or less (an earlier recovery netted now).
    Only the members with entries in this run have a balance that moved, and ``member_net``
    (``storage.ledger.post``) holds both sides for each of them: what they owed before and what
    they owe now. Nothing else of the balances is read.
    """
    row = con.execute(
        """
        SELECT coalesce(sum(greatest(0, owed_after_fen - owed_before_fen)), 0),
               coalesce(sum(greatest(0, owed_before_fen - owed_after_fen)), 0)
        FROM member_net
        """
    ).fetchone()
    carried, netted = (int(row[0]), int(row[1])) if row else (0, 0)
    return {"carried_forward_fen": carried, "netted_fen": netted}


def waiting(
    con: duckdb.DuckDBPyConnection, at: datetime, stays_by_status: dict[str, int]
) -> dict[str, Any]:
    """What waits for a person after this run. ``stays_by_status``: every outcome counted by
    status in the same transaction (``runs.stays_by_status``), which gives the unmatched stays
    without another scan of every outcome."""
    # items this run opened carry its transaction's timestamp (now() is the transaction start)
    opened = con.execute("SELECT count(*) FROM review_items WHERE opened_at = now()").fetchone()
    # one pass over the queue (a view over every stay's outcome): per reason, then summed
    by_reason = con.execute(
        "SELECT reason, count(*), min(opened_at), coalesce(sum(self_pay_in_scope_fen), 0) "
        "FROM review_queue GROUP BY ALL ORDER BY 1"
    ).fetchall()
    opened_times = [r[2] for r in by_reason if r[2] is not None]
    queue = (
        sum(int(r[1]) for r in by_reason),
        min(opened_times) if opened_times else None,
        sum(int(r[3]) for r in by_reason),
    )
    # A member's recovery due is one balance across plans; it is shown under the plan that
    # recovered most from that member (kept beside the balance, migration 020), so that the
    # plans add up to the total.
    outstanding = con.execute(
        """
        SELECT coalesce(plan_code, 'unknown'), count(*), sum(recovery_due_fen)
        FROM recovery_balances WHERE recovery_due_fen > 0
        GROUP BY ALL ORDER BY 1
        """
    ).fetchall()
    oldest = queue[1]
    age_hours = None
    if oldest is not None:
        age_hours = max(0, int((at - oldest).total_seconds() // 3600))
    return {
        "review_opened": int(opened[0]) if opened else 0,
        "review_pending": queue[0],
        "review_by_reason": {str(r[0]): int(r[1]) for r in by_reason},
        "review_oldest_hours": age_hours,
        "review_at_stake_fen": queue[2],
        "unmatched_pending": stays_by_status.get("unmatched", 0),
        "recoveries_by_plan": {str(p): int(f) for p, _, f in outstanding},
        "recovery_members": sum(int(n) for _, n, _ in outstanding),
    }


def trend(con: duckdb.DuckDBPyConnection, nights: int = 30) -> list[dict[str, Any]]:
    """Per night (as-of date) of the last ``nights``: money paid and stays by status after it."""
    rows = con.execute(
        """
        SELECT as_of_date, list(summary ORDER BY started_at) AS summaries
        FROM runs WHERE status = 'committed' AND as_of_date IS NOT NULL
        GROUP BY ALL ORDER BY as_of_date DESC LIMIT ?
        """,
        [nights],
    ).fetchall()
    out = []
    for day, summaries in reversed(rows):
        docs = [json.loads(s) for s in summaries if s]
        out.append(
            {
                "night": day.isoformat(),
                "paid_fen": sum(int(d.get("paid_fen", 0)) for d in docs),
                "recovered_fen": sum(int(d.get("recovered_fen", 0)) for d in docs),
                "stays_by_status": docs[-1].get("stays_by_status", {}) if docs else {},
            }
        )
    return out
