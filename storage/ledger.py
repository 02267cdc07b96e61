"""Post the ledger and the payment instructions of a run (payouts.md), inside its transaction.

For every (stay, plan, member) the adjudication may have changed, one entry of
``target − sum(entries so far)`` when that is not 0. Append-only: nothing here updates or
deletes an entry, so re-running converges on the targets and never pays twice. "So far" is read
from ``ledger_balances`` (one row per key, kept here in the same transaction as the entries;
``claims verify`` checks it against the entries), so a night reads no ledger history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from storage.sql import run_script

# Why an entry moves money, judged against what was posted and computed before.
POST_SQL = """
-- what each key of the recomputed stays has been posted so far (the balances, not the ledger:
-- a night reads no history it does not recompute), with the row ids BALANCES_SQL replaces
CREATE OR REPLACE TEMP TABLE posted AS
SELECT rowid AS balance_rowid, hospital_code, settlement_id, plan_code, national_id, posted_fen,
       last_version, last_posted_at
FROM ledger_balances SEMI JOIN calc_keys USING (hospital_code, settlement_id);

CREATE OR REPLACE TEMP TABLE new_entries AS
WITH keys AS (
    SELECT hospital_code, settlement_id, plan_code, national_id FROM new_targets
    UNION
    SELECT hospital_code, settlement_id, plan_code, national_id FROM posted
), deltas AS (
    SELECT k.*, coalesce(t.target_fen, 0) - coalesce(p.posted_fen, 0) AS amount_fen,
        coalesce(s.current_version, p.last_version) AS version,
        CASE
            WHEN p.posted_fen IS NULL THEN 'initial'
            WHEN s.record_type = 'V' THEN 'void'
            WHEN s.current_version IS DISTINCT FROM p.last_version THEN 'correction'
            WHEN t.national_id IS NOT NULL AND o.raw_fen = t.raw_fen
                 AND o.national_id = t.national_id THEN 'reallocation'
            ELSE 'eligibility'
        END AS reason
    FROM keys k
    LEFT JOIN new_targets t USING (hospital_code, settlement_id, plan_code, national_id)
    LEFT JOIN posted p USING (hospital_code, settlement_id, plan_code, national_id)
    LEFT JOIN old_targets o USING (hospital_code, settlement_id, plan_code, national_id)
    LEFT JOIN calc_stays s USING (hospital_code, settlement_id)  -- the computed stays' rows
)
SELECT * FROM deltas WHERE amount_fen <> 0
"""

INSERT_ENTRIES_SQL = """
INSERT INTO ledger_entries
SELECT $run_id || '-' || lpad(row_number() OVER (
           ORDER BY hospital_code, settlement_id, plan_code, national_id)::VARCHAR, 8, '0'),
       $run_id, hospital_code, settlement_id, version, plan_code, national_id,
       amount_fen::BIGINT, reason, $posted_at
FROM new_entries
"""

# payouts.md, *Payment instructions*: net this run's entries against what the member owes.
# This run's entries are exactly ``new_entries`` (all inserted, under this run's id): summed
# there, the night reads none of the ledger's history to pay.
# The balances of the keys this run posted: old balance + this run's entry, in the same
# transaction as the entries (migration 012). Every key with an entry is a key of the
# recomputed stays, so its old balance, if any, is in ``posted``: the table is not read again.
BALANCES_SQL = """
CREATE OR REPLACE TEMP TABLE new_balances AS
SELECT n.hospital_code, n.settlement_id, n.plan_code, n.national_id,
       (coalesce(b.posted_fen, 0) + n.amount_fen)::BIGINT AS posted_fen,
       CASE WHEN b.last_posted_at > $posted_at THEN b.last_version ELSE n.version END
           AS last_version,
       greatest(coalesce(b.last_posted_at, $posted_at), $posted_at) AS last_posted_at
FROM new_entries n
LEFT JOIN posted b USING (hospital_code, settlement_id, plan_code, national_id);
DELETE FROM ledger_balances
WHERE rowid IN (
    SELECT balance_rowid FROM posted
    SEMI JOIN new_balances USING (hospital_code, settlement_id, plan_code, national_id));
INSERT INTO ledger_balances BY NAME SELECT * FROM new_balances;
"""

# The plan a member's recovery balance is shown under (the morning report): the plan that
# recovered most from the member, the smallest code on a tie (migration 020).
PLAN_OF = "first(plan_code ORDER BY recovered_fen DESC, plan_code)"

INSTRUCTIONS_SQL = f"""
CREATE OR REPLACE TEMP TABLE member_net AS
SELECT *, CASE WHEN paid_out THEN 0 ELSE -net_fen END::BIGINT AS owed_after_fen
FROM (
    SELECT *, net_fen > 0 AND payee_account IS NOT NULL AS paid_out  -- one instruction each
    FROM (
        SELECT r.national_id, r.entry_count,
               coalesce(b.recovery_due_fen, 0)::BIGINT AS owed_before_fen,
               b.national_id IS NOT NULL AS has_balance, b.rowid AS balance_rowid,
               r.run_fen - coalesce(b.recovery_due_fen, 0) AS net_fen,
               m.member_name, m.payee_account
        FROM (
            SELECT national_id, sum(amount_fen)::BIGINT AS run_fen, count(*) AS entry_count
            FROM new_entries GROUP BY ALL
        ) r
        LEFT JOIN recovery_balances b USING (national_id)
        LEFT JOIN (
            SELECT national_id, member_name, payee_account FROM night_members
            UNION ALL
            SELECT national_id, member_name, payee_account FROM members
            WHERE national_id IN (
                SELECT national_id FROM new_entries
                ANTI JOIN night_ids USING (national_id)
                ANTI JOIN night_members USING (national_id))
        ) m USING (national_id)
    )
);

INSERT INTO payment_instructions
SELECT $batch_id || '-' || lpad(row_number() OVER (ORDER BY national_id)::VARCHAR, 6, '0'),
       $batch_id, national_id, member_name, payee_account, net_fen::BIGINT, entry_count,
       $created_at
FROM member_net
WHERE paid_out;

-- What each plan recovered from each member (migration 020), moved by this run's recoveries:
-- the morning shows a balance under the plan that recovered most from its member, kept beside
-- the balance. Only the members with a recovery in this run, or a balance row this run makes,
-- need their plan; their kept rows are read from the small table, not from the ledger.
CREATE OR REPLACE TEMP TABLE run_recovered AS
SELECT national_id, plan_code, -sum(amount_fen)::BIGINT AS recovered_fen
FROM new_entries WHERE amount_fen < 0
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE recovered_before AS
SELECT rowid AS recovered_rowid, national_id, plan_code, recovered_fen
FROM member_plan_recoveries
WHERE national_id IN (
    SELECT national_id FROM run_recovered
    UNION ALL
    SELECT national_id FROM member_net WHERE NOT has_balance AND owed_after_fen <> 0);

UPDATE member_plan_recoveries SET recovered_fen = b.recovered_fen + r.recovered_fen
FROM recovered_before b JOIN run_recovered r USING (national_id, plan_code)
WHERE member_plan_recoveries.rowid = b.recovered_rowid;
INSERT INTO member_plan_recoveries
SELECT * FROM run_recovered ANTI JOIN recovered_before USING (national_id, plan_code);

-- The plan of each of those members after this run (NULL for none recovered, ever); the same
-- rule as migration 020 and `claims verify`'s `recovery_plan`.
CREATE OR REPLACE TEMP TABLE member_plan AS
SELECT national_id, {PLAN_OF} AS plan_code
FROM (
    SELECT national_id, plan_code,
           coalesce(b.recovered_fen, 0) + coalesce(r.recovered_fen, 0) AS recovered_fen
    FROM recovered_before b FULL JOIN run_recovered r USING (national_id, plan_code)
)
GROUP BY ALL;

-- What is not paid out is owed back (a payout with no payee on file is held as a negative
-- balance and paid with the member's next payout). Only balances that are not 0 have a row
-- (migration 017): a member without one owes nothing. Most members with entries are paid out
-- owing nothing before and after, and write nothing here; a balance that changes, or whose
-- plan a recovery of this run changes, is found by the row id ``member_net`` read it with,
-- updated, or deleted when it comes to 0. A row of 0 for every member ever paid made the
-- table, and every night's read of it, grow with history (2.09 M rows after a year, 2,731 of
-- them not 0).
INSERT INTO recovery_balances (national_id, recovery_due_fen, plan_code)
SELECT m.national_id, m.owed_after_fen, p.plan_code
FROM member_net m LEFT JOIN member_plan p USING (national_id)
WHERE NOT m.has_balance AND m.owed_after_fen <> 0;
UPDATE recovery_balances
SET recovery_due_fen = m.owed_after_fen,
    plan_code = coalesce(m.plan_code, recovery_balances.plan_code)
FROM (SELECT * FROM member_net LEFT JOIN member_plan USING (national_id)) m
WHERE recovery_balances.rowid = m.balance_rowid
  AND m.has_balance AND m.owed_after_fen <> 0
  AND (m.owed_after_fen <> m.owed_before_fen
       OR m.plan_code IS DISTINCT FROM recovery_balances.plan_code AND m.plan_code IS NOT NULL);
DELETE FROM recovery_balances
WHERE rowid IN (SELECT balance_rowid FROM member_net WHERE has_balance AND owed_after_fen = 0);
"""


@dataclass(frozen=True)
class Posted:
    """What a run posted."""

    entries: int
    paid_fen: int
    recovered_fen: int
    batch_id: str | None
    instructions: int
    batch_fen: int


class BatchAlreadyIssued(Exception):
    """A run's batch id already has instructions: paying it again would pay twice."""


class RunAlreadyPosted(Exception):
    """A run id already has ledger entries: posting under it again would hold an entry id twice
    (``ledger_entries`` has no key index since migration 021)."""


def _rows_under(con: duckdb.DuckDBPyConnection, table: str, column: str, value: str) -> int:
    """How many rows of ``table`` already carry ``value`` in ``column`` (a batch or run id)."""
    row = con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", [value]).fetchone()
    return int(row[0]) if row else 0


def post(con: duckdb.DuckDBPyConnection, *, run_id: str, batch_id: str, at: datetime) -> Posted:
    """Append the ledger deltas and this run's payment instructions and batch.

    ``payment_instructions`` has no key index (migration 014): its grain is kept here. A batch
    id that already has instructions is refused before anything is posted, and the caller's
    transaction is rolled back (``BatchAlreadyIssued``); the new instructions are numbered
    1..n within the batch. ``ledger_entries`` has no key index either (migration 021): a run id
    that already has entries is refused the same way (``RunAlreadyPosted``); the new entries
    are numbered 1..n within the run.
    """
    if taken := _rows_under(con, "payment_instructions", "batch_id", batch_id):
        raise BatchAlreadyIssued(
            f"batch {batch_id} already has {taken} payment instruction(s); nothing was posted"
        )
    if taken := _rows_under(con, "ledger_entries", "run_id", run_id):
        raise RunAlreadyPosted(
            f"run {run_id} already has {taken} ledger entries; nothing was posted"
        )
    run_script(con, POST_SQL)
    con.execute(INSERT_ENTRIES_SQL, {"run_id": run_id, "posted_at": at})
    run_script(con, BALANCES_SQL, {"posted_at": at})
    run_script(con, INSTRUCTIONS_SQL, {"run_id": run_id, "batch_id": batch_id, "created_at": at})
    # what INSTRUCTIONS_SQL inserted under this batch id (it had none before)
    row = con.execute(
        "SELECT count(*), coalesce(sum(net_fen), 0) FROM member_net WHERE paid_out"
    ).fetchone()
    instructions, batch_fen = (int(row[0]), int(row[1])) if row else (0, 0)
    if instructions:
        con.execute(
            "INSERT INTO payment_batches VALUES (?, ?, ?, ?, ?, NULL)",
            [batch_id, run_id, at, instructions, batch_fen],
        )
    money = con.execute(
        """
        SELECT count(*),
               coalesce(sum(amount_fen) FILTER (WHERE amount_fen > 0), 0),
               coalesce(-sum(amount_fen) FILTER (WHERE amount_fen < 0), 0)
        FROM new_entries
        """
    ).fetchone()
    entries, paid, recovered = (int(money[0]), int(money[1]), int(money[2])) if money else (0, 0, 0)
    return Posted(
        entries, paid, recovered, batch_id if instructions else None, instructions, batch_fen
    )
