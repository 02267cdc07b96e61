-- People in the loop (benefits.md, *Overlapping stays*, *Review decisions*): decisions on stays
-- in review, when each item opened, and the views review_queue and review_log (payouts.md).

-- Append-only: a decision is never updated or deleted. Grain: decision_id.
CREATE TABLE review_decisions (
    decision_id       VARCHAR PRIMARY KEY,
    hospital_code     VARCHAR NOT NULL,
    settlement_id     VARCHAR NOT NULL,
    version           BIGINT NOT NULL,     -- the stay's current version when decided
    reason            VARCHAR NOT NULL,    -- name_mismatch | ambiguous | overlap
    decision          VARCHAR NOT NULL,    -- approve | reject
    enrollment_id     VARCHAR,             -- ambiguous: the enrolment the operator named
    national_id       VARCHAR,             -- the member an identity approval matches
    approvals_needed  INTEGER NOT NULL,    -- 2 above the second-approval limit (four eyes)
    operator          VARCHAR NOT NULL,
    note              VARCHAR NOT NULL,
    decided_at        TIMESTAMPTZ NOT NULL
);

-- Stays decided since the last run: the next run re-adjudicates them (even an incremental one)
-- and empties this. Grain: (hospital_code, settlement_id).
CREATE TABLE review_touched (
    hospital_code  VARCHAR NOT NULL,
    settlement_id  VARCHAR NOT NULL
);

-- When a stay first entered review for a version and reason (the queue's age).
-- Grain: (hospital_code, settlement_id, version, reason).
CREATE TABLE review_items (
    hospital_code  VARCHAR NOT NULL,
    settlement_id  VARCHAR NOT NULL,
    version        BIGINT NOT NULL,
    reason         VARCHAR NOT NULL,
    opened_at      TIMESTAMPTZ NOT NULL
);

-- The earlier stay a held stay overlaps ('' for others), for `claims explain`.
ALTER TABLE stay_outcomes ADD COLUMN overlapped_stay VARCHAR DEFAULT '';

-- Decisions that take effect, on each stay's current version: a rejection at once; an approval
-- when enough different operators approved the same choice (same reason, same member).
CREATE VIEW review_effective AS
WITH current_decisions AS (
    SELECT d.*
    FROM review_decisions d
    JOIN stays s
      ON s.hospital_code = d.hospital_code AND s.settlement_id = d.settlement_id
     AND s.current_version = d.version
), approvals AS (
    SELECT hospital_code, settlement_id, version, reason, coalesce(national_id, '') AS national_id,
           count(DISTINCT operator) AS approvals, max(approvals_needed) AS needed
    FROM current_decisions WHERE decision = 'approve'
    GROUP BY ALL
)
SELECT hospital_code, settlement_id, version, reason, 'reject' AS decision, '' AS national_id
FROM current_decisions WHERE decision = 'reject'
GROUP BY ALL
UNION ALL
SELECT hospital_code, settlement_id, version, reason, 'approve', national_id
FROM approvals WHERE approvals >= needed;

-- Open items only: in review now, with no decision taking effect on the next run.
CREATE VIEW review_queue AS
SELECT o.hospital_code, o.settlement_id, o.current_version, o.reason, s.self_pay_in_scope_fen,
       coalesce(a.approvals, 0)::BIGINT AS approvals, i.opened_at
FROM stay_outcomes o
JOIN stays s USING (hospital_code, settlement_id)
LEFT JOIN review_items i
  ON i.hospital_code = o.hospital_code AND i.settlement_id = o.settlement_id
 AND i.version = o.current_version AND i.reason = o.reason
LEFT JOIN (
    SELECT hospital_code, settlement_id, version, reason, max(n) AS approvals
    FROM (SELECT hospital_code, settlement_id, version, reason, national_id,
                 count(DISTINCT operator) AS n
          FROM review_decisions WHERE decision = 'approve' GROUP BY ALL)
    GROUP BY ALL
) a ON a.hospital_code = o.hospital_code AND a.settlement_id = o.settlement_id
   AND a.version = o.current_version AND a.reason = o.reason
WHERE o.status = 'review'
  AND NOT EXISTS (
      SELECT 1 FROM review_effective e
      WHERE e.hospital_code = o.hospital_code AND e.settlement_id = o.settlement_id
        AND e.version = o.current_version
        AND (e.decision = 'reject' OR e.reason = o.reason));

CREATE VIEW review_log AS
SELECT hospital_code, settlement_id, version, decision, coalesce(enrollment_id, '') AS enrollment_id,
       operator, note, decided_at
FROM review_decisions;

-- payouts.md: national_id and match_method are empty unless the stay is matched (a stay held
-- for an overlap keeps its member internally, for the next computation).
CREATE OR REPLACE VIEW claim_outcomes AS
SELECT o.hospital_code, o.settlement_id, o.current_version, o.status, o.reason,
       CASE WHEN o.status IN ('not_covered', 'paid', 'zero_benefit') THEN o.national_id
            ELSE '' END AS national_id,
       CASE WHEN o.status IN ('not_covered', 'paid', 'zero_benefit') THEN o.match_method
            ELSE '' END AS match_method,
       coalesce(l.paid_fen, 0)::BIGINT AS paid_fen
FROM stay_outcomes o
LEFT JOIN (
    SELECT hospital_code, settlement_id, sum(amount_fen) AS paid_fen
    FROM ledger_entries GROUP BY ALL
) l USING (hospital_code, settlement_id);
