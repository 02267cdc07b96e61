-- The read-only views of payouts.md: names and columns are a contract.

CREATE VIEW partition_runs AS
SELECT kind, partition_key, status, rows_read, rows_quarantined, coalesce(error, '') AS error,
       attempts, updated_at
FROM partition_state;

CREATE VIEW quarantine_rows AS
SELECT q.partition_key, q.row_number, q.rule, q.message, q.raw
FROM quarantine q
JOIN partition_state p
  ON p.kind = q.kind AND p.partition_key = q.partition_key AND p.content_hash = q.content_hash;

CREATE VIEW claim_outcomes AS
SELECT o.hospital_code, o.settlement_id, o.current_version, o.status, o.reason, o.national_id,
       o.match_method, coalesce(l.paid_fen, 0)::BIGINT AS paid_fen
FROM stay_outcomes o
LEFT JOIN (
    SELECT hospital_code, settlement_id, sum(amount_fen) AS paid_fen
    FROM ledger_entries GROUP BY ALL
) l USING (hospital_code, settlement_id);

CREATE VIEW claim_plan_payouts AS
SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen)::BIGINT AS paid_fen
FROM ledger_entries
GROUP BY ALL
HAVING sum(amount_fen) <> 0;

CREATE VIEW member_accounts AS
WITH ledger AS (
    SELECT national_id, sum(amount_fen) AS ledger_fen FROM ledger_entries GROUP BY ALL
), paid AS (
    SELECT national_id, sum(amount_fen) AS paid_out_fen FROM payment_instructions GROUP BY ALL
), ids AS (
    SELECT national_id FROM ledger
    UNION SELECT national_id FROM paid
    UNION SELECT national_id FROM recovery_balances
)
SELECT ids.national_id,
       coalesce(ledger.ledger_fen, 0)::BIGINT AS ledger_fen,
       coalesce(paid.paid_out_fen, 0)::BIGINT AS paid_out_fen,
       coalesce(r.recovery_due_fen, 0)::BIGINT AS recovery_due_fen
FROM ids
LEFT JOIN ledger USING (national_id)
LEFT JOIN paid USING (national_id)
LEFT JOIN recovery_balances r USING (national_id);
