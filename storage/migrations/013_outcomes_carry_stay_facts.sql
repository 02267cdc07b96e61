-- stay_outcomes carries the facts of its stay that a night reads for the other stays of the
-- people it touches (dates for overlaps and benefit years, the amount and record type for
-- their targets), and the review queue reads for what is at stake. A night found them by
-- joining those people's outcomes with `stays` (5 M rows on a year's warehouse, ~0.2 s each
-- time, twice a night); now the outcomes row has them. Derived, like the rest of the row: a stay
-- whose rows change is in the night's scope, so its outcome (and these copies) is rewritten in
-- the same transaction (storage/adjudication.py, OUTCOMES_SQL).
-- Rebuilt rather than updated in place (as 005 did): one pass over 5 M rows, in their order.

CREATE TABLE stay_outcomes_013 (
    hospital_code          VARCHAR NOT NULL,
    settlement_id          VARCHAR NOT NULL,
    current_version        BIGINT NOT NULL,
    status                 VARCHAR NOT NULL,
    reason                 VARCHAR NOT NULL,
    national_id            VARCHAR NOT NULL,
    match_method           VARCHAR NOT NULL,
    overlapped_stay        VARCHAR DEFAULT '',
    record_type            VARCHAR,   -- the stay's, when its outcome was computed
    admission_date         DATE,
    discharge_date         DATE,
    self_pay_in_scope_fen  BIGINT
);
INSERT INTO stay_outcomes_013
SELECT o.hospital_code, o.settlement_id, o.current_version, o.status, o.reason, o.national_id,
       o.match_method, o.overlapped_stay, s.record_type, s.admission_date, s.discharge_date,
       s.self_pay_in_scope_fen
FROM stay_outcomes o
LEFT JOIN stays s USING (hospital_code, settlement_id)
ORDER BY o.rowid;  -- as they were: a night's new stays at the end, where its key filters look
DROP TABLE stay_outcomes;
ALTER TABLE stay_outcomes_013 RENAME TO stay_outcomes;

-- The same queue (006), its amount read from the outcome; an outcome without its stay is not
-- waiting for anyone (006 joined `stays`).
CREATE OR REPLACE VIEW review_queue AS
SELECT o.hospital_code, o.settlement_id, o.current_version, o.reason, o.self_pay_in_scope_fen,
       coalesce(a.approvals, 0)::BIGINT AS approvals, i.opened_at
FROM stay_outcomes o
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
WHERE o.status = 'review' AND o.discharge_date IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM review_effective e
      WHERE e.hospital_code = o.hospital_code AND e.settlement_id = o.settlement_id
        AND e.version = o.current_version
        AND (e.decision = 'reject' OR e.reason = o.reason));
