-- stay_outcomes and stay_plan_targets are derived: every commit deletes and re-inserts the rows
-- of its scope (storage/adjudication.py, REPLACE_SQL). Their PRIMARY KEY indexes made that
-- delete + insert + commit 12x slower on a year's history (40 000 rows against 5.1 M: 3.3 s
-- with the key, 0.27 s without; docs/benchmarks.md). The grain is kept by construction (one
-- row per key in new_outcomes / new_targets, after deleting the scope) and checked by tests.

CREATE TABLE stay_outcomes_005 (
    hospital_code    VARCHAR NOT NULL,
    settlement_id    VARCHAR NOT NULL,
    current_version  BIGINT NOT NULL,
    status           VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    national_id      VARCHAR NOT NULL,
    match_method     VARCHAR NOT NULL
);
INSERT INTO stay_outcomes_005 SELECT * FROM stay_outcomes;
DROP TABLE stay_outcomes;
ALTER TABLE stay_outcomes_005 RENAME TO stay_outcomes;

CREATE TABLE stay_plan_targets_005 (
    hospital_code        VARCHAR NOT NULL,
    settlement_id        VARCHAR NOT NULL,
    plan_code            VARCHAR NOT NULL,
    national_id          VARCHAR NOT NULL,
    current_version      BIGINT NOT NULL,
    benefit_year         INTEGER NOT NULL,
    rule_year            INTEGER NOT NULL,
    priority             INTEGER NOT NULL,
    enrollment_id        VARCHAR NOT NULL,
    chain_start          DATE NOT NULL,
    remaining_before_fen BIGINT NOT NULL,
    deductible_fen       BIGINT NOT NULL,
    base_fen             BIGINT NOT NULL,
    rate_bp              INTEGER NOT NULL,
    per_stay_cap_fen     BIGINT,
    reimbursement_fen    BIGINT NOT NULL,
    allowance_fen        BIGINT NOT NULL,
    raw_fen              BIGINT NOT NULL,
    annual_cap_fen       BIGINT NOT NULL,
    cap_used_before_fen  BIGINT NOT NULL,
    target_fen           BIGINT NOT NULL
);
INSERT INTO stay_plan_targets_005 SELECT * FROM stay_plan_targets;
DROP TABLE stay_plan_targets;
ALTER TABLE stay_plan_targets_005 RENAME TO stay_plan_targets;
