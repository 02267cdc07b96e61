-- A night finds its people's other outcomes by an integer filtered inside the scan of
-- stay_outcomes (014). The key was hash(national_id), which two people can share, so every
-- row the filter let through was checked by national_id: DuckDB then decoded that column (18
-- random digits, the table's most expensive to read) in every vector of the table, since the
-- night's ~19,000 people have stays in nearly all of them: ~0.16 of the ~0.45 CPU s the read cost
-- on a year's warehouse. Now the key is the identity number itself as an integer (member_number):
-- the 17 digits times 11 plus the check character (X = 10), exact and one-to-one for every
-- number of the canonical form (schemas/enrollment.py: every member's), NULL for any other text
-- (no member has one; a night reads such outcomes by national_id, storage/adjudication.py).
-- Being exact, the filter needs no check by national_id, and being ours, not DuckDB's hash, it
-- needs no rekeying when DuckDB changes its hash (014's warehouse_keys goes).
-- `claims verify` checks every outcome's number against its national_id (check member_number).
-- Rebuilt (as 013–016), in the order the rows had.

CREATE OR REPLACE MACRO member_number(id) AS
    CASE WHEN regexp_full_match(id, '[0-9]{17}[0-9X]')
         THEN CAST(left(id, 17) AS BIGINT) * 11 + CAST(replace(right(id, 1), 'X', '10') AS BIGINT)
    END;

CREATE TABLE stay_outcomes_022 (
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
    member_number          BIGINT,  -- member_number(national_id): NULL for '' (not matched)
    raw_by_plan            STRUCT(plan_code VARCHAR, raw_fen BIGINT)[]  -- NULL: no targets
);
INSERT INTO stay_outcomes_022
SELECT hospital_code, settlement_id, current_version, status, reason, national_id, match_method,
       overlapped_stay, record_type, admission_date, discharge_date, self_pay_in_scope_fen,
       member_number(national_id), raw_by_plan
FROM stay_outcomes ORDER BY rowid;
DROP TABLE stay_outcomes;
ALTER TABLE stay_outcomes_022 RENAME TO stay_outcomes;
DROP TABLE IF EXISTS warehouse_keys;
