-- stays without its PRIMARY KEY index. A backfill chunk inserts ~430,000 new stays, and keeping
-- their keys in an index of every stay ever received (5 M after a year) cost each chunk's commit
-- ~0.7 s of CPU (inserting 434,744 rows: 1.06 s with the key, 0.36 s without); a night pays the
-- same per row. The grain (one row per hospital_code, settlement_id) is kept by the one path
-- that writes stays (storage/staging.py, refresh_touched_stays): it deletes every row of the
-- stays the commit touched, then inserts one row per touched stay that still has rows, and
-- refuses, inside the commit's transaction, a touched stay that was held more than once (from
-- the rows the delete returns). `claims verify` checks the grain of every stay (stay_grain).
-- Rebuilt (as 005, 013 and 014 did) in the order the rows had: a night's stays at the end.

CREATE TABLE stays_015 (
    hospital_code              VARCHAR NOT NULL,
    settlement_id              VARCHAR NOT NULL,
    current_version            BIGINT NOT NULL,
    record_type                VARCHAR NOT NULL,
    national_id                VARCHAR NOT NULL,
    is_valid_id                BOOLEAN NOT NULL,
    patient_name_norm          VARCHAR NOT NULL,
    gender                     VARCHAR NOT NULL,
    birth_date                 DATE NOT NULL,
    admission_date             DATE NOT NULL,
    discharge_date             DATE NOT NULL,
    self_pay_in_scope_fen      BIGINT NOT NULL,
    feed_date                  DATE NOT NULL,
    source                     VARCHAR NOT NULL
);
INSERT INTO stays_015 SELECT * FROM stays ORDER BY rowid;
DROP TABLE stays;
ALTER TABLE stays_015 RENAME TO stays;
