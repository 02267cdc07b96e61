-- Plans, adjudication results, the ledger, payment batches.

-- Plan parameters by benefit year from which they apply. Grain: (plan_code, from_year).
CREATE TABLE plan_rules (
    plan_code            VARCHAR NOT NULL,
    from_year            INTEGER NOT NULL,
    priority             INTEGER NOT NULL,
    rate_bp              INTEGER NOT NULL,   -- rate in basis points of 1/10000 (0.50 → 5000)
    deductible_fen       BIGINT NOT NULL,
    per_stay_cap_fen     BIGINT,             -- NULL: no per-stay cap
    daily_allowance_fen  BIGINT NOT NULL,
    allowance_days       INTEGER NOT NULL,
    annual_cap_fen       BIGINT NOT NULL,
    waiting_days         INTEGER NOT NULL,
    PRIMARY KEY (plan_code, from_year)
);

-- Outcome of each stay. Grain: (hospital_code, settlement_id).
CREATE TABLE stay_outcomes (
    hospital_code    VARCHAR NOT NULL,
    settlement_id    VARCHAR NOT NULL,
    current_version  BIGINT NOT NULL,
    status           VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,     -- '' where there is none
    national_id      VARCHAR NOT NULL,     -- matched member; '' unless matched
    match_method     VARCHAR NOT NULL,     -- 'id' | 'demographic' | ''
    PRIMARY KEY (hospital_code, settlement_id)
);

-- How each covering plan's amount was computed. Grain: (hospital_code, settlement_id, plan_code).
CREATE TABLE stay_plan_targets (
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
    target_fen           BIGINT NOT NULL,
    PRIMARY KEY (hospital_code, settlement_id, plan_code)
);

-- Append-only. Grain: entry_id. Never updated, never deleted.
CREATE TABLE ledger_entries (
    entry_id       VARCHAR PRIMARY KEY,
    run_id         VARCHAR NOT NULL,
    hospital_code  VARCHAR NOT NULL,
    settlement_id  VARCHAR NOT NULL,
    version        BIGINT NOT NULL,
    plan_code      VARCHAR NOT NULL,
    national_id    VARCHAR NOT NULL,
    amount_fen     BIGINT NOT NULL,
    reason         VARCHAR NOT NULL,
    posted_at      TIMESTAMPTZ NOT NULL
);

-- One row per run of claims (run, rerun, backfill date). Grain: run_id.
CREATE TABLE runs (
    run_id       VARCHAR PRIMARY KEY,
    command      VARCHAR NOT NULL,
    as_of_date   DATE,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    status       VARCHAR NOT NULL,       -- committed | failed
    batch_id     VARCHAR,
    summary      VARCHAR                 -- JSON, no personal data
);

-- One batch per run that has instructions. Grain: batch_id.
CREATE TABLE payment_batches (
    batch_id        VARCHAR PRIMARY KEY,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    row_count       BIGINT NOT NULL,
    amount_sum_fen  BIGINT NOT NULL,
    issued_at       TIMESTAMPTZ           -- set once the files are in the outbox
);

-- Grain: instruction_id; at most one per member per batch.
CREATE TABLE payment_instructions (
    instruction_id  VARCHAR PRIMARY KEY,
    batch_id        VARCHAR NOT NULL,
    national_id     VARCHAR NOT NULL,
    payee_name      VARCHAR NOT NULL,
    payee_account   VARCHAR NOT NULL,
    amount_fen      BIGINT NOT NULL,
    entry_count     INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

-- What a member owes back, to be netted against later payouts. Grain: national_id.
CREATE TABLE recovery_balances (
    national_id       VARCHAR PRIMARY KEY,
    recovery_due_fen  BIGINT NOT NULL
);
