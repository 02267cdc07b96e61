"""Match stays to members, find covering plans, compute benefits and annual caps: set-based SQL.

benefits.md is the specification; each CTE below names the rule it implements. Work is limited
to a *scope*: the stays a commit touched (with a new snapshot, those its changed people can
change; every stay when the registry or rules changed), plus the stays those can change: the
stays of the (member, benefit year) annual caps they are or were in, and the member's stays that
overlap them (CALC_SQL).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from storage.members import SNAPSHOT_CHANGES
from storage.sql import run_script

OPEN_END = "DATE '9999-12-31'"

# benefits.md, *Matching a stay to a member* and *Status of a stay* (the statuses decided before
# any money: void, not_in_network, unmatched, review).
MATCH_SQL = f"""
CREATE OR REPLACE TEMP TABLE new_match AS
WITH s AS (
    SELECT * FROM scope_stays
), by_id AS (
    SELECT s.hospital_code, s.settlement_id, m.national_id, m.member_name_norm
    FROM s JOIN night_members m ON s.is_valid_id AND m.national_id = s.national_id
), by_demographics AS (
    SELECT s.hospital_code, s.settlement_id, count(*) AS candidates,
           min(m.national_id) AS national_id
    FROM s JOIN night_members m
      ON NOT s.is_valid_id
     AND m.member_name_norm = s.patient_name_norm
     AND m.birth_date = s.birth_date
     AND m.gender = s.gender
    GROUP BY ALL
), in_network AS (
    SELECT s.hospital_code, s.settlement_id
    FROM s JOIN hospitals h
      ON h.hospital_code = s.hospital_code
     AND s.admission_date BETWEEN h.in_network_from AND coalesce(h.in_network_to, {OPEN_END})
), effective AS (
    -- Review decisions that take effect on the stay's current version (benefits.md,
    -- *Review decisions*)
    SELECT e.* FROM review_effective e
    SEMI JOIN s ON s.hospital_code = e.hospital_code AND s.settlement_id = e.settlement_id
), rejected AS (
    SELECT DISTINCT hospital_code, settlement_id FROM effective WHERE decision = 'reject'
), name_approved AS (
    SELECT DISTINCT hospital_code, settlement_id FROM effective
    WHERE decision = 'approve' AND reason = 'name_mismatch'
), chosen AS (
    -- ambiguous, approved: the member the operator named, while still one of the candidates
    SELECT s.hospital_code, s.settlement_id, min(m.national_id) AS national_id
    FROM s
    JOIN effective e
      ON e.hospital_code = s.hospital_code AND e.settlement_id = s.settlement_id
     AND e.decision = 'approve' AND e.reason = 'ambiguous'
    JOIN night_members m
      ON m.national_id = e.national_id
     AND m.member_name_norm = s.patient_name_norm
     AND m.birth_date = s.birth_date
     AND m.gender = s.gender
    GROUP BY ALL
), decided AS (
    SELECT s.hospital_code, s.settlement_id, s.current_version,
        CASE
            WHEN s.record_type = 'V' THEN 'void'
            WHEN n.hospital_code IS NULL THEN 'not_in_network'
            WHEN rj.hospital_code IS NOT NULL THEN 'rejected'
            WHEN s.is_valid_id AND i.national_id IS NULL THEN 'unmatched'
            WHEN s.is_valid_id AND i.member_name_norm <> s.patient_name_norm
                 AND na.hospital_code IS NULL THEN 'review'
            WHEN NOT s.is_valid_id AND d.candidates IS NULL THEN 'unmatched'
            WHEN NOT s.is_valid_id AND d.candidates > 1 AND ch.national_id IS NULL
                 THEN 'review'
            ELSE 'matched'
        END AS match_status,
        s.is_valid_id, i.national_id AS id_member,
        coalesce(ch.national_id, d.national_id) AS demographic_member,
        (s.is_valid_id AND i.member_name_norm <> s.patient_name_norm)
            OR (NOT s.is_valid_id AND d.candidates > 1) AS by_review
    FROM s
    LEFT JOIN by_id i USING (hospital_code, settlement_id)
    LEFT JOIN by_demographics d USING (hospital_code, settlement_id)
    LEFT JOIN in_network n USING (hospital_code, settlement_id)
    LEFT JOIN rejected rj USING (hospital_code, settlement_id)
    LEFT JOIN name_approved na USING (hospital_code, settlement_id)
    LEFT JOIN chosen ch USING (hospital_code, settlement_id)
)
SELECT hospital_code, settlement_id, current_version, match_status,
    CASE WHEN match_status = 'rejected' THEN 'review_rejected'
         WHEN match_status <> 'review' THEN ''
         WHEN is_valid_id THEN 'name_mismatch' ELSE 'ambiguous' END AS reason,
    CASE WHEN match_status <> 'matched' THEN ''
         WHEN is_valid_id THEN id_member ELSE demographic_member END AS national_id,
    CASE WHEN match_status <> 'matched' THEN ''
         WHEN by_review THEN 'review'
         WHEN is_valid_id THEN 'id' ELSE 'demographic' END AS match_method
FROM decided
"""

# The stays to compute: the scope, and the stays its changes reach through the two rules that
# tie stays together (benefits.md): the annual cap ties a member's stays of one benefit year, and
# the overlap rule ties a member's stays that overlap in time. Nothing else of history is read:
# - people: whoever a scope stay is matched to now, or was matched or posted to before;
# - their other stays as last computed (``people_stays``: the statuses a covered stay can have,
#   with the facts of the stay that the outcome carries, migration 013);
# - overlap: those of them that overlap a scope stay now, or were held because of one;
# - cap: every stay in a (member, benefit year) that a scope stay is in now or was in before, or
#   that an overlap-touched stay is in (released or newly held, it enters or leaves that cap).
# Stays pulled in for a cap need nothing more: their own inputs did not change, and an overlap
# with a changed stay already put them in. ``kept_covered`` is the rest of those people's covered
# stays: not recomputed, but a recomputed stay is judged against them (OVERLAP_SQL).
# An annual cap is a running sum in cap order (discharge, admission, hospital, settlement:
# TARGETS_SQL), so a change to a (member, benefit year) reaches only the stays from its first
# changed position on. ``cap_pivot`` is that position: the earliest of where the scope's stays
# are now and where those with targets were before (their outcome carries the facts, 013), and
# of the overlap-touched stays (released or newly held, they enter or leave the cap); a position
# not known (no facts) recomputes the whole year. The people's other stays before it
# (``cap_kept``) are not recomputed: their inputs did not change and neither did any stay before
# them, so their targets stand, and only their sum per (member, plan, year) enters the cap of
# the stays after them (``cap_prefix``). A backfill chunk or a night, whose stays are mostly the
# year's latest, so recomputes its own stays and not the whole year before them. The prefix is
# summed from the raw amounts the kept stays' outcomes carry (migration 016), read with the
# people's other stays, not from ``stay_plan_targets`` (a scan of every target).
CAP_PREFIX_SQL = """
CREATE OR REPLACE TEMP TABLE cap_pivot AS
SELECT national_id, benefit_year,
       CASE WHEN bool_or(discharge_date IS NULL OR admission_date IS NULL) THEN NULL
            ELSE min((discharge_date, admission_date, hospital_code, settlement_id)) END AS pivot
FROM (
    SELECT national_id, year(discharge_date) AS benefit_year, discharge_date, admission_date,
           hospital_code, settlement_id
    FROM scope_now
    UNION ALL
    SELECT t.national_id, t.benefit_year, o.discharge_date, o.admission_date, t.hospital_code,
           t.settlement_id
    FROM scope_old_targets t LEFT JOIN scope_old_outcomes o USING (hospital_code, settlement_id)
    UNION ALL
    SELECT national_id, benefit_year, discharge_date, admission_date, hospital_code,
           settlement_id
    FROM people_stays SEMI JOIN overlap_touched USING (hospital_code, settlement_id)
)
WHERE national_id IN (SELECT national_id FROM people_stays)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE cap_kept AS
SELECT p.hospital_code, p.settlement_id
FROM people_stays p
JOIN cap_pivot v USING (national_id, benefit_year)
WHERE v.pivot IS NOT NULL
  AND (p.discharge_date, p.admission_date, p.hospital_code, p.settlement_id) < v.pivot
  AND NOT EXISTS (SELECT 1 FROM overlap_touched t
                  WHERE t.hospital_code = p.hospital_code AND t.settlement_id = p.settlement_id);

CREATE OR REPLACE TEMP TABLE cap_prefix AS
SELECT national_id, raw.plan_code, benefit_year, sum(raw.raw_fen)::BIGINT AS prefix_fen
FROM (
    SELECT p.national_id, p.benefit_year, unnest(p.raw_by_plan) AS raw
    FROM people_stays p SEMI JOIN cap_kept USING (hospital_code, settlement_id)
)
GROUP BY ALL;
"""

# The scope's outcomes as they were: whom its stays were matched to before (CALC_SQL's cap
# pivot, the people affected).
SCOPE_OLD_OUTCOMES_SQL = """
CREATE OR REPLACE TEMP TABLE scope_old_outcomes AS
SELECT hospital_code, settlement_id, national_id, admission_date, discharge_date
FROM stay_outcomes SEMI JOIN scope USING (hospital_code, settlement_id)
"""

# The members a night can need, read from ``members`` once: matching's candidates (the scope's
# valid IDs; the people sharing an invalid-ID stay's name, birth date and gender) and whoever
# the scope's stays were matched or posted to before. Matching reads them here, and so does
# the posting (``storage.ledger``: the name and payee account of each member it pays, the
# snapshot's, as payouts.md asks), instead of each reading the 7 M members again.
# ``night_ids`` are the IDs looked up, present in the snapshot or not: a member with entries
# who is in neither table was not looked up, and the posting reads ``members`` for them.
# The candidates by demographics are found among the members born on an invalid-ID stay's
# birth date first (one integer column, filtered inside the scan; ~6 % of members on a
# 20,000-stay night): the three-column join then sees those only (ADR 0017).
NIGHT_MEMBERS_SQL = """
CREATE OR REPLACE TEMP TABLE night_ids AS
SELECT national_id FROM scope_stays WHERE is_valid_id
UNION SELECT national_id FROM scope_old_outcomes WHERE national_id <> ''
UNION SELECT national_id FROM ledger_balances SEMI JOIN scope USING (hospital_code, settlement_id);

CREATE OR REPLACE TEMP TABLE night_members AS
SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
FROM members SEMI JOIN night_ids USING (national_id);

INSERT INTO night_members
SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
FROM (SELECT * FROM members
      WHERE birth_date IN (SELECT birth_date FROM scope_stays WHERE NOT is_valid_id)) m
SEMI JOIN (SELECT DISTINCT patient_name_norm AS member_name_norm, birth_date, gender
           FROM scope_stays WHERE NOT is_valid_id) d
  USING (member_name_norm, birth_date, gender)
ANTI JOIN night_ids USING (national_id)
"""
AFFECTED_PEOPLE_SQL = """
CREATE OR REPLACE TEMP TABLE affected_people AS
SELECT national_id FROM new_match WHERE national_id <> ''
UNION SELECT national_id FROM scope_old_outcomes WHERE national_id <> ''
UNION SELECT national_id FROM ledger_balances l
      SEMI JOIN scope USING (hospital_code, settlement_id)
"""

# Their outcomes, found by the member's number (migration 022: the identity number as an
# integer, one-to-one), which DuckDB filters inside the scan of ``stay_outcomes`` before reading
# the other columns. ``national_id`` is taken from ``affected_people``, not read: decoding it in
# every vector of the table (the night's people have stays in nearly all of them) was the most
# expensive part of this read. A person whose identity number is not of the canonical form has
# no number; their outcomes (none, as the snapshot's schema admits no such member) are read by
# ``national_id`` (PEOPLE_ROWS_BY_ID_SQL).
_PEOPLE_COLUMNS = """o.hospital_code, o.settlement_id, o.current_version, o.status, o.reason,
       {national_id} AS national_id, o.match_method, o.overlapped_stay, o.rowid AS outcome_rowid,
       o.admission_date, o.discharge_date, year(o.discharge_date) AS benefit_year,
       o.current_version AS stay_version, o.record_type, o.self_pay_in_scope_fen,
       o.raw_by_plan"""
# the statuses a covered stay can have, and the stay's facts as the outcome carries them (013)
_PEOPLE_STATUSES = """(o.status IN ('not_covered', 'paid', 'zero_benefit')
       OR (o.status = 'review' AND o.reason = 'overlap'))
  AND o.discharge_date IS NOT NULL"""
PEOPLE_ROWS_SQL = f"""
CREATE OR REPLACE TEMP TABLE people_rows AS
SELECT {_PEOPLE_COLUMNS.format(national_id="a.national_id")}
FROM stay_outcomes o
JOIN (SELECT national_id, member_number(national_id) AS member_number FROM affected_people) a
  USING (member_number)
WHERE {_PEOPLE_STATUSES}
"""
UNNUMBERED_PEOPLE_SQL = (
    "SELECT count(*) FROM affected_people WHERE member_number(national_id) IS NULL"
)
PEOPLE_ROWS_BY_ID_SQL = f"""
INSERT INTO people_rows
SELECT {_PEOPLE_COLUMNS.format(national_id="o.national_id")}
FROM stay_outcomes o
WHERE o.member_number IS NULL
  AND o.national_id IN (SELECT national_id FROM affected_people
                        WHERE member_number(national_id) IS NULL)
  AND {_PEOPLE_STATUSES}
"""
# A full recompute's scope is every stay: nobody has other stays.
PEOPLE_ROWS_FULL_SQL = f"""
CREATE OR REPLACE TEMP TABLE people_rows AS
SELECT {_PEOPLE_COLUMNS.format(national_id="o.national_id")} FROM stay_outcomes o WHERE false
"""

CALC_SQL = f"""
CREATE OR REPLACE TEMP TABLE people_stays AS
SELECT * FROM people_rows ANTI JOIN scope USING (hospital_code, settlement_id);

CREATE OR REPLACE TEMP TABLE scope_now AS
SELECT n.hospital_code, n.settlement_id, n.national_id, s.admission_date, s.discharge_date
FROM new_match n JOIN scope_stays s USING (hospital_code, settlement_id)
WHERE n.match_status = 'matched';

CREATE OR REPLACE TEMP TABLE overlap_touched AS
SELECT p.hospital_code, p.settlement_id
FROM people_stays p JOIN scope_now n
  ON p.national_id = n.national_id
 AND p.admission_date < n.discharge_date AND n.admission_date < p.discharge_date
UNION
SELECT p.hospital_code, p.settlement_id
FROM people_stays p
WHERE p.overlapped_stay IN (SELECT hospital_code || '/' || settlement_id FROM scope);

CREATE OR REPLACE TEMP TABLE scope_old_targets AS
SELECT DISTINCT hospital_code, settlement_id, national_id, benefit_year FROM stay_plan_targets
SEMI JOIN scope USING (hospital_code, settlement_id);

CREATE OR REPLACE TEMP TABLE affected_years AS
SELECT national_id, year(discharge_date) AS benefit_year FROM scope_now
UNION SELECT national_id, benefit_year FROM scope_old_targets
UNION SELECT national_id, benefit_year FROM people_stays
      SEMI JOIN overlap_touched USING (hospital_code, settlement_id);
{CAP_PREFIX_SQL}
CREATE OR REPLACE TEMP TABLE calc_match AS
SELECT hospital_code, settlement_id, current_version, match_status, reason, national_id,
       match_method
FROM new_match
UNION ALL
SELECT p.hospital_code, p.settlement_id, p.current_version, 'matched', '', p.national_id,
       p.match_method
FROM people_stays p
WHERE (EXISTS (SELECT 1 FROM affected_years y
               WHERE y.national_id = p.national_id AND y.benefit_year = p.benefit_year)
       OR EXISTS (SELECT 1 FROM overlap_touched t
                  WHERE t.hospital_code = p.hospital_code AND t.settlement_id = p.settlement_id))
  AND NOT EXISTS (SELECT 1 FROM cap_kept k
                  WHERE k.hospital_code = p.hospital_code AND k.settlement_id = p.settlement_id);

CREATE OR REPLACE TEMP TABLE calc_keys AS
SELECT hospital_code, settlement_id FROM calc_match
UNION SELECT hospital_code, settlement_id FROM scope;

CREATE OR REPLACE TEMP TABLE kept_covered AS
SELECT hospital_code, settlement_id, national_id, admission_date, discharge_date
FROM people_stays ANTI JOIN calc_keys USING (hospital_code, settlement_id)
WHERE status <> 'not_covered';
"""

# The stays rows of everything computed (for COVERING_SQL and the ledger's reasons): the scope's
# and the people's other stays, both read by CALC_SQL; ``stays`` is not scanned again. A full
# recompute reads ``stays`` in place (its scope is every stay, nobody's "other" stays).
_STAYS_COLUMNS = (
    "hospital_code, settlement_id, current_version, record_type, admission_date, discharge_date, "
    "self_pay_in_scope_fen"
)
CALC_STAYS_SQL = f"""
CREATE TEMP TABLE calc_stays AS
SELECT {_STAYS_COLUMNS} FROM scope_stays
UNION ALL
SELECT hospital_code, settlement_id, stay_version, record_type, admission_date, discharge_date,
       self_pay_in_scope_fen
FROM people_stays
"""
CALC_STAYS_FULL_SQL = f"CREATE TEMP VIEW calc_stays AS SELECT {_STAYS_COLUMNS} FROM stays"

_INT64_MAX = 9_223_372_036_854_775_807


def _reimbursement(remaining: str) -> str:
    """round_half_up(max(0, remaining − deductible) × rate), then the per-stay cap; in fen."""
    base = f"greatest(0, {remaining} - r.deductible_fen)"
    # Integer arithmetic: rate in basis points, +5000 then floor-divide = half-up for base ≥ 0.
    return (
        f"least(coalesce(r.per_stay_cap_fen, {_INT64_MAX}), "
        f"(({base})::HUGEINT * r.rate_bp + 5000) // 10000)::BIGINT"
    )


# benefits.md, *Definitions* (covered, waiting period, chains): each matched stay's covering
# plans, one enrolment per plan. The matched people's enrolments are picked first by their ID
# alone: a one-column join whose filter DuckDB applies inside the scan of the 10 M enrolments,
# so the join on ID, plan and dates sees only theirs (the join on all of them filtered the scan
# by ranges only, and built every enrolment's row: ~0.25 CPU s a night, ADR 0017).
COVERING_SQL = f"""
CREATE OR REPLACE TEMP TABLE calc_covering AS
WITH matched AS (
    SELECT c.hospital_code, c.settlement_id, s.current_version, c.national_id,
           s.admission_date, s.discharge_date, year(s.discharge_date) AS benefit_year,
           greatest(1, s.discharge_date - s.admission_date) AS los, s.self_pay_in_scope_fen
    FROM calc_match c JOIN calc_stays s USING (hospital_code, settlement_id)
    WHERE c.match_status = 'matched'
), year_rules AS (
    -- the entry used for a stay: the latest whose from_year ≤ the stay's benefit year
    SELECT y.benefit_year, r.*
    FROM (SELECT DISTINCT benefit_year FROM matched) y
    JOIN plan_rules r ON r.from_year <= y.benefit_year
    QUALIFY row_number() OVER (PARTITION BY y.benefit_year, r.plan_code
                               ORDER BY r.from_year DESC) = 1
), covering AS (
    -- covered: an enrolment in the plan spans the admission date, and the admission is at
    -- least waiting_days after the start of that enrolment's unbroken chain
    SELECT m.*, e.plan_code, e.enrollment_id, e.chain_start, r.from_year AS rule_year,
           r.priority, r.rate_bp, r.deductible_fen, r.per_stay_cap_fen, r.daily_allowance_fen,
           r.allowance_days, r.annual_cap_fen
    FROM matched m
    JOIN (SELECT * FROM enrollments
          WHERE national_id IN (SELECT national_id FROM matched)) e
      ON e.national_id = m.national_id
     AND m.admission_date BETWEEN e.coverage_start AND coalesce(e.coverage_end, {OPEN_END})
    JOIN year_rules r ON r.plan_code = e.plan_code AND r.benefit_year = m.benefit_year
    WHERE m.admission_date >= e.chain_start + r.waiting_days
    QUALIFY row_number() OVER (PARTITION BY m.hospital_code, m.settlement_id, e.plan_code
                               ORDER BY e.chain_start, e.enrollment_id) = 1
)
SELECT * FROM covering
"""

# benefits.md, *Overlapping stays*: of a member's covered stays in (admission, discharge,
# hospital, settlement) order, one that overlaps any earlier one is held for a person, unless a
# person approved its current version. A pure function of the stays: arrival order plays no part.
OVERLAP_SQL = """
CREATE OR REPLACE TEMP TABLE overlap_held AS
WITH c AS (
    SELECT DISTINCT hospital_code, settlement_id, current_version, national_id,
           admission_date, discharge_date
    FROM calc_covering
), everyone AS (
    -- a recomputed stay is judged against all of its member's covered stays, recomputed or not
    SELECT hospital_code, settlement_id, national_id, admission_date, discharge_date FROM c
    UNION ALL
    SELECT hospital_code, settlement_id, national_id, admission_date, discharge_date
    FROM kept_covered SEMI JOIN c USING (national_id)
), overlapping AS (
    SELECT b.hospital_code, b.settlement_id, b.current_version,
           arg_min(a.hospital_code || '/' || a.settlement_id,
                   (a.admission_date, a.discharge_date, a.hospital_code, a.settlement_id))
               AS overlapped_stay
    FROM c b JOIN everyone a
      ON a.national_id = b.national_id
     AND a.admission_date < b.discharge_date AND b.admission_date < a.discharge_date
     AND (a.admission_date < b.admission_date
          OR (a.admission_date = b.admission_date AND (a.discharge_date < b.discharge_date
          OR (a.discharge_date = b.discharge_date AND (a.hospital_code < b.hospital_code
          OR (a.hospital_code = b.hospital_code AND a.settlement_id < b.settlement_id))))))
    GROUP BY ALL
)
SELECT o.hospital_code, o.settlement_id, o.overlapped_stay
FROM overlapping o
WHERE NOT EXISTS (
    SELECT 1 FROM review_effective e
    WHERE e.hospital_code = o.hospital_code AND e.settlement_id = o.settlement_id
      AND e.version = o.current_version AND e.decision = 'approve' AND e.reason = 'overlap')
"""

# *Amount for one stay* (coordination in priority order) and *Annual cap*, for the covered
# stays not held: stays in review take no part in the cap.
TARGETS_SQL = f"""
CREATE OR REPLACE TEMP TABLE new_targets AS
WITH RECURSIVE ranked AS (
    SELECT *, row_number() OVER (PARTITION BY hospital_code, settlement_id
                                 ORDER BY priority, plan_code) AS plan_rank
    FROM calc_covering c
    WHERE NOT EXISTS (SELECT 1 FROM overlap_held h
                      WHERE h.hospital_code = c.hospital_code
                        AND h.settlement_id = c.settlement_id)
), coordinated AS (
    -- coordination: each plan sees what the plans before it left, before any annual cap
    SELECT r.*, r.self_pay_in_scope_fen AS remaining_before_fen,
           {_reimbursement("r.self_pay_in_scope_fen")} AS reimbursement_fen
    FROM ranked r WHERE r.plan_rank = 1
    UNION ALL
    SELECT r.*, c.remaining_before_fen - c.reimbursement_fen AS remaining_before_fen,
           {_reimbursement("(c.remaining_before_fen - c.reimbursement_fen)")}
    FROM coordinated c
    JOIN ranked r
      ON r.hospital_code = c.hospital_code AND r.settlement_id = c.settlement_id
     AND r.plan_rank = c.plan_rank + 1
), amounts AS (
    SELECT *,
        greatest(0, remaining_before_fen - deductible_fen) AS base_fen,
        daily_allowance_fen * least(los, allowance_days) AS allowance_fen,
        reimbursement_fen + daily_allowance_fen * least(los, allowance_days) AS raw_fen
    FROM coordinated
), capped AS (
    -- annual cap per (member, plan, benefit year), stays in (discharge, admission, hospital,
    -- settlement) order: paid so far is min(cap, running sum), so each stay pays the increase;
    -- the sum starts from the stays before the cap's first change, not recomputed (CALC_SQL)
    SELECT a.*, coalesce(p.prefix_fen, 0) + sum(a.raw_fen) OVER (
        PARTITION BY a.national_id, a.plan_code, a.benefit_year
        ORDER BY a.discharge_date, a.admission_date, a.hospital_code, a.settlement_id
        ROWS UNBOUNDED PRECEDING) AS cum_fen
    FROM amounts a
    LEFT JOIN cap_prefix p
      ON p.national_id = a.national_id AND p.plan_code = a.plan_code
     AND p.benefit_year = a.benefit_year
)
SELECT hospital_code, settlement_id, plan_code, national_id, current_version, benefit_year,
       rule_year, priority, enrollment_id, chain_start, remaining_before_fen, deductible_fen,
       base_fen, rate_bp, per_stay_cap_fen, reimbursement_fen, allowance_fen, raw_fen,
       annual_cap_fen,
       least(annual_cap_fen, cum_fen - raw_fen)::BIGINT AS cap_used_before_fen,
       (least(annual_cap_fen, cum_fen) - least(annual_cap_fen, cum_fen - raw_fen))::BIGINT
           AS target_fen
FROM capped
"""

OUTCOMES_SQL = """
CREATE OR REPLACE TEMP TABLE new_outcomes AS
SELECT c.hospital_code, c.settlement_id, c.current_version,
    s.record_type, s.admission_date, s.discharge_date, s.self_pay_in_scope_fen,
    CASE
        WHEN c.match_status <> 'matched' THEN c.match_status
        WHEN h.hospital_code IS NOT NULL THEN 'review'
        WHEN t.plans IS NULL THEN 'not_covered'
        WHEN t.paying > 0 THEN 'paid'
        ELSE 'zero_benefit'
    END AS status,
    CASE WHEN c.match_status = 'matched' AND h.hospital_code IS NOT NULL THEN 'overlap'
         ELSE c.reason END AS reason,
    c.national_id, c.match_method, coalesce(h.overlapped_stay, '') AS overlapped_stay,
    member_number(c.national_id) AS member_number,  -- what CALC_SQL finds them by (022)
    t.raw_by_plan  -- its targets' raw amounts: what a later night's cap prefix sums (016)
FROM calc_match c
LEFT JOIN calc_stays s USING (hospital_code, settlement_id)
LEFT JOIN overlap_held h USING (hospital_code, settlement_id)
LEFT JOIN (
    SELECT hospital_code, settlement_id, count(*) AS plans,
           count(*) FILTER (WHERE target_fen > 0) AS paying,
           -- in plan order; sorted after the aggregate (an ordered aggregate cost ~3x more)
           list_sort(list({'plan_code': plan_code, 'raw_fen': raw_fen})) AS raw_by_plan
    FROM new_targets GROUP BY ALL
) t USING (hospital_code, settlement_id)
"""

_TARGET_COLUMNS = (
    "hospital_code, settlement_id, plan_code, national_id, current_version, benefit_year, "
    "rule_year, priority, enrollment_id, chain_start, remaining_before_fen, deductible_fen, "
    "base_fen, rate_bp, per_stay_cap_fen, reimbursement_fen, allowance_fen, raw_fen, "
    "annual_cap_fen, cap_used_before_fen, target_fen"
)

# Keep the previous computation for the ledger's reasons (``old_targets``), then swap in the
# new one. A full recompute replaces every row of its scope.
REPLACE_TARGETS_FULL_SQL = """
CREATE OR REPLACE TEMP TABLE old_targets AS
SELECT hospital_code, settlement_id, plan_code, national_id, raw_fen  -- what post's reasons read
FROM stay_plan_targets SEMI JOIN calc_keys USING (hospital_code, settlement_id);
DELETE FROM stay_plan_targets t
WHERE EXISTS (SELECT 1 FROM calc_keys k
              WHERE k.hospital_code = t.hospital_code AND k.settlement_id = t.settlement_id);
INSERT INTO stay_plan_targets BY NAME SELECT * FROM new_targets;
"""

# A night rewrites only the stays whose targets changed: most of what it recomputes (the other
# stays of an annual cap) comes out as it was, and deleting those rows scattered them over every
# row group of the table, which its checkpoint then paid for (~0.4 s on a year's warehouse for
# ~12,000 rows, against a few hundred that change). The old rows are found by row id.
REPLACE_TARGETS_SQL = f"""
CREATE OR REPLACE TEMP TABLE old_targets AS
SELECT rowid AS old_rowid, {_TARGET_COLUMNS}
FROM stay_plan_targets SEMI JOIN calc_keys USING (hospital_code, settlement_id);
CREATE OR REPLACE TEMP TABLE changed_target_stays AS
WITH compared AS (  -- a stay without old targets (a chunk's new stays) changed: not compared
    SELECT * FROM new_targets SEMI JOIN old_targets USING (hospital_code, settlement_id)
)
SELECT DISTINCT hospital_code, settlement_id FROM (
    (SELECT {_TARGET_COLUMNS} FROM old_targets EXCEPT ALL SELECT {_TARGET_COLUMNS} FROM compared)
    UNION ALL
    (SELECT {_TARGET_COLUMNS} FROM compared EXCEPT ALL SELECT {_TARGET_COLUMNS} FROM old_targets)
    UNION ALL
    SELECT {_TARGET_COLUMNS} FROM new_targets ANTI JOIN old_targets
         USING (hospital_code, settlement_id)
);
DELETE FROM stay_plan_targets
WHERE rowid IN (SELECT old_rowid FROM old_targets
                SEMI JOIN changed_target_stays USING (hospital_code, settlement_id));
INSERT INTO stay_plan_targets BY NAME
SELECT * FROM new_targets SEMI JOIN changed_target_stays USING (hospital_code, settlement_id);
"""

REPLACE_OUTCOMES_FULL_SQL = """
DELETE FROM stay_outcomes o
WHERE EXISTS (SELECT 1 FROM calc_keys k
              WHERE k.hospital_code = o.hospital_code AND k.settlement_id = o.settlement_id);
INSERT INTO stay_outcomes BY NAME SELECT * FROM new_outcomes;
"""

_OUTCOME_COLUMNS = (
    "hospital_code, settlement_id, current_version, status, reason, national_id, match_method, "
    "overlapped_stay, record_type, admission_date, discharge_date, self_pay_in_scope_fen, "
    "raw_by_plan"
)

# A night's outcomes: the scope's are replaced (found by key: new stays sit together at the end
# of the table, so the key filter skips most of it); of the other stays it recomputed (annual
# caps, overlaps), only those whose outcome changed, found by the row id ``people_stays`` read.
REPLACE_OUTCOMES_SQL = f"""
CREATE OR REPLACE TEMP TABLE others_before AS
SELECT outcome_rowid, {_OUTCOME_COLUMNS} FROM people_stays
SEMI JOIN calc_keys USING (hospital_code, settlement_id);
CREATE OR REPLACE TEMP TABLE others_after AS
SELECT {_OUTCOME_COLUMNS} FROM new_outcomes ANTI JOIN scope USING (hospital_code, settlement_id);
CREATE OR REPLACE TEMP TABLE changed_other_outcomes AS
SELECT DISTINCT hospital_code, settlement_id FROM (
    (SELECT {_OUTCOME_COLUMNS} FROM others_before
     EXCEPT ALL SELECT {_OUTCOME_COLUMNS} FROM others_after)
    UNION ALL
    (SELECT {_OUTCOME_COLUMNS} FROM others_after
     EXCEPT ALL SELECT {_OUTCOME_COLUMNS} FROM others_before)
);
DELETE FROM stay_outcomes
WHERE rowid IN (SELECT outcome_rowid FROM others_before
                SEMI JOIN changed_other_outcomes USING (hospital_code, settlement_id));
DELETE FROM stay_outcomes o
WHERE EXISTS (SELECT 1 FROM scope k
              WHERE k.hospital_code = o.hospital_code AND k.settlement_id = o.settlement_id);
INSERT INTO stay_outcomes BY NAME
SELECT * FROM new_outcomes n
WHERE EXISTS (SELECT 1 FROM scope k
              WHERE k.hospital_code = n.hospital_code AND k.settlement_id = n.settlement_id)
   OR EXISTS (SELECT 1 FROM changed_other_outcomes c
              WHERE c.hospital_code = n.hospital_code AND c.settlement_id = n.settlement_id);
"""

REVIEW_ITEMS_SQL = """
INSERT INTO review_items
SELECT DISTINCT n.hospital_code, n.settlement_id, n.current_version, n.reason, now()
FROM new_outcomes n
WHERE n.status = 'review' AND NOT EXISTS (
    SELECT 1 FROM review_items i
    WHERE i.hospital_code = n.hospital_code AND i.settlement_id = n.settlement_id
      AND i.version = n.current_version AND i.reason = n.reason);
DELETE FROM review_touched;
"""


# The stays a new snapshot can change (its diff, ``storage.members.SNAPSHOT_CHANGES``: the
# changed people with their old and new demographics): those whose valid ID is one's number
# (matched to them, or unmatched before and may match now); those without a valid ID whose name,
# birth date and gender are one's, old or new (a candidate came, went or changed: matched,
# ambiguous or unmatched may change); and those whose outcome names one of them. The rest of each
# person's stays follow through CALC_SQL (annual caps).
#
# Every stay matched to a person is found by the first two: by ID, or by the demographics they
# had in the snapshot in effect (whose load re-matched the stays of everyone it changed), which
# are the old ones here. The outcomes (found by the member's number, migration 022, as
# PEOPLE_ROWS_SQL finds them; by national_id for an identity number without one) are read all
# the same, so that a stay matched to a changed person is re-matched whatever its stays row
# says. Targets and ledger entries are not read: a stay's
# targets name the member its outcome names (both written from one computation, OUTCOMES_SQL),
# and what a stay paid someone its outcome no longer names was taken back by the posting that
# moved it (the ledger converges on the targets, ADR 0004): neither adds a stay (measured at
# full scale, ADR 0026), and each was a scan of every row's national_id.
_SNAPSHOT_SCOPE = f"""
INSERT INTO scope
WITH people AS (SELECT DISTINCT national_id FROM {SNAPSHOT_CHANGES}),
demographics AS (
    SELECT DISTINCT member_name_norm, birth_date, gender FROM {SNAPSHOT_CHANGES}
    WHERE member_name_norm IS NOT NULL
)
SELECT hospital_code, settlement_id FROM stays s
      WHERE s.is_valid_id AND s.national_id IN (SELECT national_id FROM people)
UNION SELECT s.hospital_code, s.settlement_id FROM stays s
      JOIN demographics d
        ON NOT s.is_valid_id AND d.member_name_norm = s.patient_name_norm
       AND d.birth_date = s.birth_date AND d.gender = s.gender
UNION SELECT hospital_code, settlement_id FROM stay_outcomes
      WHERE member_number IN (SELECT member_number(national_id) FROM people)
EXCEPT SELECT hospital_code, settlement_id FROM scope
"""
# A changed person whose identity number has no member number (none can be a member today:
# validation demands the canonical form) has their outcomes found by national_id, among the
# outcomes without a number, as PEOPLE_ROWS_BY_ID_SQL does for a night. Asked first over the
# changed people alone: reading every outcome's national_id in the scope's scan cost ~0.4 of its
# ~1.3 CPU s at full scale (ADR 0029).
_SNAPSHOT_UNNUMBERED = f"""
SELECT count(*) FROM (SELECT DISTINCT national_id FROM {SNAPSHOT_CHANGES})
WHERE member_number(national_id) IS NULL
"""
_SNAPSHOT_SCOPE_BY_ID = f"""
INSERT INTO scope
SELECT hospital_code, settlement_id FROM stay_outcomes
WHERE member_number IS NULL AND national_id IN (
    SELECT national_id FROM {SNAPSHOT_CHANGES} WHERE member_number(national_id) IS NULL)
EXCEPT SELECT hospital_code, settlement_id FROM scope
"""


def _add_snapshot_scope(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_SNAPSHOT_SCOPE)
    unnumbered = con.execute(_SNAPSHOT_UNNUMBERED).fetchone()
    if unnumbered and unnumbered[0]:
        con.execute(_SNAPSHOT_SCOPE_BY_ID)


def _drop_temp(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a temporary table or view of that name (a full run makes a view, a night a table)."""
    found = con.execute(
        "SELECT 'VIEW' FROM duckdb_views() WHERE database_name = 'temp' AND view_name = $n "
        "UNION ALL "
        "SELECT 'TABLE' FROM duckdb_tables() WHERE database_name = 'temp' AND table_name = $n",
        {"n": name},
    ).fetchall()
    for (kind,) in found:
        con.execute(f"DROP {kind} temp.{name}")


@dataclass(frozen=True)
class Adjudicated:
    """How much was recomputed."""

    scope_stays: int
    computed_stays: int


def adjudicate(
    con: duckdb.DuckDBPyConnection,
    *,
    full: bool,
    write: bool = True,
    snapshot_diff: bool = False,
) -> Adjudicated:
    """Recompute outcomes and plan targets for the commit's scope (inside its transaction).

    ``full`` re-matches every stay: after a new registry or rules. Otherwise the scope is
    ``touched_stays`` (filled by staging) and the stays decided since the last run; with
    ``snapshot_diff`` (a new snapshot was loaded, ``storage.members.load_snapshot``), also every
    stay the people whose enrolments changed can match or be matched to. ``write=False`` leaves
    the result in the temporary ``new_targets``/``new_outcomes`` only (``claims verify``, on a
    read-only connection).
    """
    _drop_temp(con, "scope_stays")
    if full:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE scope AS
            SELECT hospital_code, settlement_id FROM stays
            UNION SELECT hospital_code, settlement_id FROM stay_outcomes
            """
        )
        # every stay: read in place, not copied
        con.execute("CREATE TEMP VIEW scope_stays AS SELECT * FROM stays")
    else:
        # the commit's stays, and those a person decided since the last run
        con.execute(
            "CREATE OR REPLACE TEMP TABLE scope AS SELECT DISTINCT * FROM ("
            "SELECT hospital_code, settlement_id FROM touched_stays "
            "UNION SELECT hospital_code, settlement_id FROM review_touched)"
        )
        if snapshot_diff:
            _add_snapshot_scope(con)
        # the scope's stays rows, read once for matching, overlaps and amounts
        con.execute(
            "CREATE TEMP TABLE scope_stays AS "
            "SELECT * FROM stays SEMI JOIN scope USING (hospital_code, settlement_id)"
        )
    if snapshot_diff:
        con.execute(f"DROP TABLE IF EXISTS {SNAPSHOT_CHANGES}")
    con.execute(SCOPE_OLD_OUTCOMES_SQL)
    run_script(con, NIGHT_MEMBERS_SQL)
    con.execute(MATCH_SQL)
    run_script(con, AFFECTED_PEOPLE_SQL)
    con.execute(PEOPLE_ROWS_FULL_SQL if full else PEOPLE_ROWS_SQL)
    if not full:
        unnumbered = con.execute(UNNUMBERED_PEOPLE_SQL).fetchone()
        if unnumbered and unnumbered[0]:
            con.execute(PEOPLE_ROWS_BY_ID_SQL)
    run_script(con, CALC_SQL)
    _drop_temp(con, "calc_stays")
    con.execute(CALC_STAYS_FULL_SQL if full else CALC_STAYS_SQL)
    con.execute(COVERING_SQL)
    con.execute(OVERLAP_SQL)
    con.execute(TARGETS_SQL)
    con.execute(OUTCOMES_SQL)
    if write:
        run_script(con, REPLACE_TARGETS_FULL_SQL if full else REPLACE_TARGETS_SQL)
        run_script(con, REPLACE_OUTCOMES_FULL_SQL if full else REPLACE_OUTCOMES_SQL)
        run_script(con, REVIEW_ITEMS_SQL)
    scope = con.execute("SELECT count(*) FROM scope").fetchone()
    computed = con.execute("SELECT count(*) FROM calc_keys").fetchone()
    return Adjudicated(int(scope[0]) if scope else 0, int(computed[0]) if computed else 0)
