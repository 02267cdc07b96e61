-- Each enrolment keeps the fingerprint its snapshot's load computed (a 64-bit hash of the row's
-- columns, storage/members.py `fingerprints`), so that the next snapshot's diff hashes the new
-- rows only: hashing the 10 M rows in effect again cost a new-snapshot night ~0.9 CPU s (ADR 0026).
-- fingerprint_keys holds the fingerprint of a fixed row as the load that kept them computed it:
-- a load that computes it otherwise (another polars), or finds no row (a warehouse from before
-- this migration, whose enrolments have no fingerprint), hashes both sides itself, as before.
-- The column is NULL until the next load: a row without one counts as changed, never unchanged.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS fingerprint UBIGINT;
CREATE TABLE IF NOT EXISTS fingerprint_keys (hash_canary UBIGINT NOT NULL);
