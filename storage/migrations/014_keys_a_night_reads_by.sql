-- Two things a night paid for as history grew: the key index of payment_instructions, and
-- reading every outcome's national_id to find the rows of the people it touches.

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

-- stay_outcomes carries an integer key of its member: a night finds the rows of the ~16,000
-- people it touches by that key (DuckDB filters the scan by it before reading the other
-- columns), then checks national_id on those few rows (storage/adjudication.py, CALC_SQL).
-- Joining 5 M national_id strings was the night's largest read that grew with history.
-- DuckDB's hash() is not promised to stay the same across DuckDB versions: warehouse_keys keeps
-- the hash of a fixed text as computed when the keys were written, and a night whose DuckDB
-- hashes it otherwise recomputes every key first (storage/adjudication.py, rekey_if_needed).
-- Rebuilt (as 013), in the order the rows had; NOT NULL: a writer that forgets the key fails.
CREATE TABLE stay_outcomes_014 (
    hospital_code          VARCHAR NOT NULL,
    settlement_id          VARCHAR NOT NULL,
    current_version        BIGINT NOT NULL,
    status                 VARCHAR NOT NULL,
    reason                 VARCHAR NOT NULL,
    national_id            VARCHAR NOT NULL,
    match_method           VARCHAR NOT NULL,
    overlapped_stay        VARCHAR DEFAULT '',
    record_type            VARCHAR,
    admission_date         DATE,
    discharge_date         DATE,
    self_pay_in_scope_fen  BIGINT,
    member_key             UBIGINT NOT NULL  -- hash(national_id)
);
INSERT INTO stay_outcomes_014
SELECT hospital_code, settlement_id, current_version, status, reason, national_id, match_method,
       overlapped_stay, record_type, admission_date, discharge_date, self_pay_in_scope_fen,
       hash(national_id)
FROM stay_outcomes ORDER BY rowid;
DROP TABLE stay_outcomes;
ALTER TABLE stay_outcomes_014 RENAME TO stay_outcomes;
CREATE TABLE warehouse_keys (hash_canary UBIGINT NOT NULL);
INSERT INTO warehouse_keys VALUES (hash('claims member key'));
