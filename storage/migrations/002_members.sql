-- Enrolment: the current snapshot, the people derived from it, and their coverage chains.

-- Grain: enrollment_id (unique within the current snapshot; checked before the load, no index:
-- an index would slow a 10-million-row load for no query that needs it).
CREATE TABLE enrollments (
    enrollment_id     VARCHAR NOT NULL,
    national_id       VARCHAR NOT NULL,
    member_name       VARCHAR NOT NULL,
    member_name_norm  VARCHAR NOT NULL,
    gender            VARCHAR NOT NULL,
    birth_date        DATE NOT NULL,
    plan_code         VARCHAR NOT NULL,
    coverage_start    DATE NOT NULL,
    coverage_end      DATE,                  -- inclusive; NULL is open-ended
    payee_account     VARCHAR NOT NULL,
    chain_start       DATE NOT NULL          -- first day of the unbroken chain it belongs to
);

-- One row per person in the current snapshot, attributes from their latest enrolment.
-- Grain: national_id.
CREATE TABLE members (
    national_id       VARCHAR NOT NULL,
    member_name       VARCHAR NOT NULL,
    member_name_norm  VARCHAR NOT NULL,
    gender            VARCHAR NOT NULL,
    birth_date        DATE NOT NULL,
    payee_account     VARCHAR NOT NULL
);

-- The snapshot in effect (at most one row).
CREATE TABLE current_snapshot (
    snapshot_date  DATE NOT NULL,
    content_hash   VARCHAR NOT NULL,
    row_count      BIGINT NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL,
    run_id         VARCHAR NOT NULL
);
