-- A commit finds its matched people's enrolments (storage/adjudication.py, COVERING_SQL) by an
-- integer filtered inside the scan of enrollments, as 022 made a night find their outcomes: the
-- member number (022's macro member_number: the identity number as an integer, one to one on
-- the canonical form, NULL for any other text). Filtering the 10 M enrolments by national_id
-- decoded and hashed that column (18 digits, uncompressed since the load writes it so) in every
-- row, every commit: ~1.9 CPU s a late backfill chunk (ADR 0032).
-- The snapshot load writes it with every enrolment (storage/members.py); here the rows a load
-- wrote before are numbered in place. A row without a number (a table written by hand) is still
-- found, by national_id: COVERING_SQL reads such rows apart.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS member_number BIGINT;
UPDATE enrollments SET member_number = member_number(national_id);
