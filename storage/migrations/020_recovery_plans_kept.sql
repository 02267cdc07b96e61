-- The morning report shows each member's recovery balance under the plan that recovered most
-- from them (the smallest plan code on a tie), so that the plans add up to the total. It found
-- that plan by summing every recovery of the owing members in `ledger_entries` (~0.09 CPU s
-- on a year's warehouse for ~2,700 members, growing with the ledger). Now the plan is kept
-- beside the balance, and what each plan recovered from each member beside it: the posting
-- (storage/ledger.py) adds its run's recoveries there and sets the plan of every balance it
-- writes or whose recoveries moved, in the same transaction; `claims reconcile` sets it for
-- the balances it makes. `claims verify` holds both to the ledger (check `recovery_plan`).
-- Written so that it can run again on a warehouse that has it (tests put warehouses back).

-- What the ledger recovered from each member under each plan: minus the sum of the member's
-- negative entries of that plan, for every (member, plan) with one. Grain: (national_id,
-- plan_code); no key index (the posting finds a member's rows by scanning this small table).
DROP TABLE IF EXISTS member_plan_recoveries;
CREATE TABLE member_plan_recoveries (
    national_id    VARCHAR NOT NULL,
    plan_code      VARCHAR NOT NULL,
    recovered_fen  BIGINT NOT NULL   -- > 0
);
INSERT INTO member_plan_recoveries
SELECT national_id, plan_code, -sum(amount_fen)::BIGINT
FROM ledger_entries WHERE amount_fen < 0
GROUP BY ALL ORDER BY ALL;

-- The balances again, each with its plan: NULL when nothing was ever recovered from the member
-- (a payout held for want of a payee, a batch taken back by reconcile). Rebuilt (as 017), a
-- few thousand rows.
CREATE TABLE recovery_balances_020 (
    national_id       VARCHAR PRIMARY KEY,
    recovery_due_fen  BIGINT NOT NULL,
    plan_code         VARCHAR   -- the plan that recovered most from the member
);
INSERT INTO recovery_balances_020
SELECT b.national_id, b.recovery_due_fen, p.plan_code
FROM recovery_balances b
LEFT JOIN (
    SELECT national_id, first(plan_code ORDER BY recovered_fen DESC, plan_code) AS plan_code
    FROM member_plan_recoveries SEMI JOIN recovery_balances USING (national_id)
    GROUP BY ALL
) p USING (national_id);
DROP TABLE recovery_balances;
ALTER TABLE recovery_balances_020 RENAME TO recovery_balances;
