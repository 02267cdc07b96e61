-- payment_instructions without its PRIMARY KEY index. Every commit that paid wrote ~17,000 new
-- keys into an index of every instruction ever issued (2.9 M after a year) and its checkpoint
-- paid for it: ~0.25 s of CPU of a night's ~0.5 s commit on a year's warehouse, nothing on a
-- new one. The grain (one instruction_id) is kept by the one path that writes a night's
-- instructions (storage/ledger.py, post): it refuses, inside the commit's transaction, a batch
-- id that already has instructions, and numbers the new ones 1..n within the batch; a batch
-- taken back from the outbox (storage/audit.py) is one the warehouse does not know, and
-- payment_batches (which keeps its key) takes one row per batch in the same transaction as its
-- instructions. `claims verify` checks the grain (instruction_id).
-- Rebuilt (as 005 and 013 did) in the order the rows had: batches in the order they were issued.

CREATE TABLE payment_instructions_014 (
    instruction_id  VARCHAR NOT NULL,
    batch_id        VARCHAR NOT NULL,
    national_id     VARCHAR NOT NULL,
    payee_name      VARCHAR NOT NULL,
    payee_account   VARCHAR NOT NULL,
    amount_fen      BIGINT NOT NULL,
    entry_count     INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
INSERT INTO payment_instructions_014 SELECT * FROM payment_instructions ORDER BY rowid;
DROP TABLE payment_instructions;
ALTER TABLE payment_instructions_014 RENAME TO payment_instructions;
