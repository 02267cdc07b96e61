-- Landing state, staged discharge rows, quarantine, reference data.

-- One row per partition (discharge partition or enrolment snapshot): its latest state.
CREATE TABLE partition_state (
    kind              VARCHAR NOT NULL,          -- 'discharges' | 'enrollments'
    partition_key     VARCHAR NOT NULL,          -- feed_date=D/source=S | snapshot_date=D
    day               DATE NOT NULL,
    source            VARCHAR NOT NULL,          -- '' for snapshots
    status            VARCHAR NOT NULL,          -- waiting|running|succeeded|failed|skipped
    content_hash      VARCHAR,                   -- sha256 of the manifest last processed
    applied_hash      VARCHAR,                   -- content whose rows are in use (last success)
    rows_read         BIGINT NOT NULL DEFAULT 0,
    rows_quarantined  BIGINT NOT NULL DEFAULT 0,
    error             VARCHAR,
    retry             BOOLEAN NOT NULL DEFAULT false, -- failed for a reason worth retrying as is
    attempts          INTEGER NOT NULL DEFAULT 0, -- processing attempts of the current content
    warnings          VARCHAR,                   -- JSON object: data-quality warnings by name
    run_id            VARCHAR,
    updated_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, partition_key)
);

-- Quarantined rows of a partition content, one per (row, rule). version_conflict rows are
-- derived from discharge_rows and recomputed for the stays each commit touches.
CREATE TABLE quarantine (
    kind           VARCHAR NOT NULL,
    partition_key  VARCHAR NOT NULL,
    content_hash   VARCHAR NOT NULL,
    row_number     BIGINT NOT NULL,
    rule           VARCHAR NOT NULL,
    message        VARCHAR NOT NULL,
    raw            VARCHAR NOT NULL,
    derived        BOOLEAN NOT NULL DEFAULT false,  -- a version_conflict kept up to date by staging
    hospital_code  VARCHAR,                         -- the stay, for derived rows
    settlement_id  VARCHAR
);

-- Every accepted discharge row of the partition contents in use.
-- Grain: (feed_date, source, row_number). A stay version may appear in several rows.
CREATE TABLE discharge_rows (
    partition_key              VARCHAR NOT NULL,
    feed_date                  DATE NOT NULL,
    source                     VARCHAR NOT NULL,
    row_number                 BIGINT NOT NULL,
    hospital_code              VARCHAR NOT NULL,
    settlement_id              VARCHAR NOT NULL,
    version                    BIGINT NOT NULL,
    record_type                VARCHAR NOT NULL,
    national_id                VARCHAR NOT NULL,
    is_valid_id                BOOLEAN NOT NULL,
    patient_name               VARCHAR NOT NULL,
    patient_name_norm          VARCHAR NOT NULL,
    gender                     VARCHAR NOT NULL,
    birth_date                 DATE NOT NULL,
    admission_date             DATE NOT NULL,
    discharge_date             DATE NOT NULL,
    primary_diagnosis          VARCHAR NOT NULL,
    is_known_diagnosis         BOOLEAN NOT NULL,
    total_cost_fen             BIGINT NOT NULL,
    fund_paid_fen              BIGINT NOT NULL,
    self_pay_in_scope_fen      BIGINT NOT NULL,
    self_pay_out_of_scope_fen  BIGINT NOT NULL,
    settled_at                 TIMESTAMPTZ NOT NULL,
    raw                        VARCHAR NOT NULL,
    content_md5                VARCHAR NOT NULL   -- the contract values after parsing
);

-- The current record of each stay: its highest version among the rows that stand.
-- Grain: (hospital_code, settlement_id).
CREATE TABLE stays (
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
    source                     VARCHAR NOT NULL,
    PRIMARY KEY (hospital_code, settlement_id)
);

-- Hospital registry in effect. Grain: hospital_code.
CREATE TABLE hospitals (
    hospital_code    VARCHAR PRIMARY KEY,
    hospital_name    VARCHAR NOT NULL,
    district         VARCHAR NOT NULL,
    level            INTEGER NOT NULL,
    in_network_from  DATE NOT NULL,
    in_network_to    DATE
);

-- Which reference content (registry, rules) the warehouse was last adjudicated with.
CREATE TABLE reference_versions (
    name          VARCHAR PRIMARY KEY,  -- 'hospitals' | 'plans'
    content_hash  VARCHAR NOT NULL,
    origin        VARCHAR NOT NULL,     -- which file it came from (landing or project default)
    loaded_at     TIMESTAMPTZ NOT NULL
);
