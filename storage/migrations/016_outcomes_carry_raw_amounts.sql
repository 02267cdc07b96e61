-- stay_outcomes carries the stay's raw amount per plan (before any annual cap: its targets'
-- raw_fen, in plan order). A night's annual caps start from the sum of raw amounts of the
-- people's stays before each cap's first change (storage/adjudication.py, CAP_PREFIX_SQL); it
-- summed them from stay_plan_targets, a scan of every target (3.4 M rows after a year, ~0.24 CPU
-- s) for the ~16,000 stays it needed, which the night had already read from stay_outcomes with
-- their other facts. Derived, like the facts 013 copied: written with the outcome from the same
-- computation as the targets (OUTCOMES_SQL), and an outcome whose amounts change is rewritten;
-- `claims verify` checks it against the targets (check `outcome_amounts`).
-- Rebuilt (as 013–015), in the order the rows had.
CREATE TABLE stay_outcomes_016 (
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
    member_key             UBIGINT NOT NULL,
    raw_by_plan            STRUCT(plan_code VARCHAR, raw_fen BIGINT)[]  -- NULL: no targets
);
INSERT INTO stay_outcomes_016
SELECT o.hospital_code, o.settlement_id, o.current_version, o.status, o.reason, o.national_id,
       o.match_method, o.overlapped_stay, o.record_type, o.admission_date, o.discharge_date,
       o.self_pay_in_scope_fen, o.member_key, t.raw_by_plan
FROM stay_outcomes o
LEFT JOIN (
    SELECT hospital_code, settlement_id,
           list_sort(list({'plan_code': plan_code, 'raw_fen': raw_fen})) AS raw_by_plan
    FROM stay_plan_targets GROUP BY ALL
) t USING (hospital_code, settlement_id)
ORDER BY o.rowid;
DROP TABLE stay_outcomes;
ALTER TABLE stay_outcomes_016 RENAME TO stay_outcomes;
