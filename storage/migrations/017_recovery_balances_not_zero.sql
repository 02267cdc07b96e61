-- Recovery balances hold only what is owed: a member without a row owes nothing (0).
-- Before, the posting kept a row of 0 for every member it ever paid, so the table, and every
-- night's read of it (the posting's net, the morning's outstanding recoveries), grew with the
-- history of payments (2.09 M rows after a year, 2,714 of them not 0). Every reader takes a
-- missing row as 0 (`member_accounts`, verify's member identity, the morning), so removing the
-- rows of 0 changes no figure. The few rows kept are copied into a new table rather than the
-- others deleted: deleting 2 M of 2 M rows from the keyed table took ~50 s.
CREATE TABLE recovery_balances_017 (
    national_id       VARCHAR PRIMARY KEY,
    recovery_due_fen  BIGINT NOT NULL
);
INSERT INTO recovery_balances_017
SELECT national_id, recovery_due_fen FROM recovery_balances WHERE recovery_due_fen <> 0;
DROP TABLE recovery_balances;
ALTER TABLE recovery_balances_017 RENAME TO recovery_balances;
