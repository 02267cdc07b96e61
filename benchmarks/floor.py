"""The floor: the same work as the pipeline, by hand, in bare DuckDB, without validation.

``bare_load_sql`` is the snapshot floor: the snapshot file into a table of a new ``.duckdb``
file. ``floor_sql`` is the night/backfill floor: ONE statement over the landing folder's
discharge files and that bare enrolment table, doing what benefits.md asks for a batch of
stays — the current version of each stay, identity numbers normalised and checked (MOD 11-2,
15-digit upgrade, birth date), match by id else by name + birth date + gender, in-network
hospital, coverage with chain start (gaps and islands) and waiting days, overlapping stays
held, coordination by priority, deductible, half-up rate, per-stay cap, allowance, and the
annual cap as a running sum — and writes one row per (stay, plan) to Parquet. No quarantine, no
manifests, no ledger, no history: that difference is what the pipeline/floor ratio measures.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

from config.settings import REFERENCE_DIR

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# What transforms.identity strips (str.isspace()), as an RE2 class.
WHITE_SPACE = (
    r"[\s\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
    r"\x{1c}-\x{1f}]"
)
FULL_WIDTH = "０１２３４５６７８９Ｘｘ"
HALF_WIDTH = "0123456789XX"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def bare_load_sql(path: Path) -> str:
    """Load the snapshot file, as delivered, into ``enrollments``."""
    if path.name.endswith(".parquet"):
        return f"CREATE TABLE enrollments AS SELECT * FROM read_parquet({_lit(str(path))})"
    return (
        "CREATE TABLE enrollments AS SELECT * FROM read_csv("
        f"{_lit(str(path))}, header = true, "
        "types = {'birth_date': 'DATE', 'coverage_start': 'DATE', 'coverage_end': 'DATE'})"
    )


def _fen(value: str) -> int:
    return int(Decimal(value) * 100)


def rules_values(path: Path = REFERENCE_DIR / "plans.toml") -> str:
    """The plan rules as a VALUES list: (plan, from_year, priority, rate_bp, …, waiting_days)."""
    plans = tomllib.loads(path.read_text(encoding="utf-8"))["plan"]
    rows = []
    for p in plans:
        cap = "NULL" if p["per_stay_cap"] == "" else str(_fen(p["per_stay_cap"]))
        rows.append(
            f"({_lit(p['plan_code'])}, {int(p['from_year'])}, {int(p['priority'])}, "
            f"{int(Decimal(p['rate']) * 10000)}, {_fen(p['deductible'])}, {cap}::BIGINT, "
            f"{_fen(p['daily_allowance'])}, {int(p['allowance_days'])}, {_fen(p['annual_cap'])}, "
            f"{int(p['waiting_days'])})"
        )
    return ",\n        ".join(rows)


def _check_char(value: str) -> str:
    """SQL for the MOD 11-2 check character of a 17-digit number held as BIGINT ``value``."""
    # Digits by integer arithmetic: far cheaper than 17 substrings per row.
    terms = " + ".join(
        f"{w} * ({value} // {10 ** (16 - i)} % 10)" for i, w in enumerate(ID_WEIGHTS)
    )
    return f"substr('10X98765432', (({terms}) % 11)::INTEGER + 1, 1)"


# The contract's columns of a discharge file, all read as text: no sniffing, no type guessing.
_CSV_COLUMNS = (
    "settlement_id", "version", "record_type", "hospital_code", "national_id", "patient_name",
    "gender", "birth_date", "admission_date", "discharge_date", "primary_diagnosis",
    "total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope", "settled_at",
)  # fmt: skip
_CSV_OPTIONS = (
    "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
    "hive_partitioning = true, hive_types = {'feed_date': 'DATE', 'source': 'VARCHAR'}, "
    "columns = {" + ", ".join(f"'{c}': 'VARCHAR'" for c in _CSV_COLUMNS) + "}"
)


def _discharge_sources(landing: Path) -> str:
    """Every discharge file of the landing folder, typed alike, with its feed date and source."""
    base = landing / "discharges"
    # Text files: every value as text, cast below. Typed Parquet: already typed.
    columns = """
        hospital_code, settlement_id, version::BIGINT AS version, record_type, national_id,
        patient_name, gender, birth_date::DATE AS birth_date,
        admission_date::DATE AS admission_date, discharge_date::DATE AS discharge_date,
        (self_pay_in_scope::DECIMAL(18, 2) * 100)::BIGINT AS in_scope_fen, feed_date, source"""
    parts = []
    for pattern, reader in (
        ("*.csv", f"read_csv(GLOB, {_CSV_OPTIONS})"),
        ("*.csv.gz", f"read_csv(GLOB, {_CSV_OPTIONS}, compression = 'gzip')"),
        ("*.parquet", "read_parquet(GLOB, hive_partitioning = true, "
                      "hive_types = {'feed_date': 'DATE', 'source': 'VARCHAR'})"),
    ):  # fmt: skip
        if not any(base.glob(f"feed_date=*/source=*/{pattern}")):
            continue
        glob = _lit(str(base / "feed_date=*" / "source=*" / pattern))
        parts.append(f"SELECT {columns}\n    FROM {reader.replace('GLOB', glob)}")
    if not parts:
        raise ValueError(f"no discharge files under {base}")
    return "\n    UNION ALL\n    ".join(parts)


def floor_sql(landing: Path, out_parquet: Path, *, enrollments: str = "b.enrollments") -> str:
    """One statement: the night's (or year's) payable amounts per (stay, plan), to Parquet."""
    registry = _lit(str(landing / "reference" / "hospitals.csv"))
    return f"""
COPY (
WITH RECURSIVE raw AS (
    {_discharge_sources(landing)}
), current_rows AS (
    -- the current record of a stay is its highest version; the earliest partition stands
    SELECT * FROM raw
    QUALIFY row_number() OVER (PARTITION BY hospital_code, settlement_id
                               ORDER BY version DESC, feed_date, source) = 1
), cleaned AS (
    -- most values arrive clean: normalise (white space out, full width folded) only the others
    SELECT *,
        CASE WHEN regexp_full_match(national_id, '[0-9]{{17}}[0-9X]') THEN national_id
             ELSE upper(translate(regexp_replace(coalesce(national_id, ''), '{WHITE_SPACE}', '',
                                                 'g'), '{FULL_WIDTH}', '{HALF_WIDTH}'))
        END AS nid0,
        CASE WHEN regexp_matches(patient_name, '{WHITE_SPACE}')
             THEN regexp_replace(patient_name, '{WHITE_SPACE}', '', 'g') ELSE patient_name
        END AS name_norm
    FROM current_rows
    WHERE record_type <> 'V'
), bodies AS (
    SELECT *,
        CASE WHEN regexp_full_match(nid0, '[0-9]{{17}}[0-9X]') THEN substr(nid0, 1, 17)
             WHEN regexp_full_match(nid0, '[0-9]{{15}}')
                 THEN substr(nid0, 1, 6) || '19' || substr(nid0, 7, 9)
        END AS body17
    FROM cleaned
), checked AS (
    SELECT *, {_check_char("body17::BIGINT")} AS check_char FROM bodies
), ided AS (
    SELECT *,
        body17 || check_char AS nid,
        body17 IS NOT NULL
            AND (length(nid0) = 15 OR substr(nid0, 18, 1) = check_char)
            AND coalesce(try_strptime(substr(body17, 7, 8), '%Y%m%d')::DATE
                         BETWEEN DATE '1900-01-01' AND feed_date, false) AS id_valid
    FROM checked
), hospitals AS (
    SELECT hospital_code, in_network_from, in_network_to
    FROM read_csv({registry}, header = true,
                  types = {{'in_network_from': 'DATE', 'in_network_to': 'DATE'}})
), in_network AS (
    SELECT i.* FROM ided i JOIN hospitals h
      ON h.hospital_code = i.hospital_code
     AND i.admission_date BETWEEN h.in_network_from AND coalesce(h.in_network_to, DATE '9999-12-31')
), candidates AS (
    -- people who could be a stay's member: the id's holder, or anyone enrolled under the
    -- stay's name, birth date and gender
    SELECT national_id FROM {enrollments} e
    SEMI JOIN (SELECT nid FROM in_network WHERE id_valid) v ON e.national_id = v.nid
    UNION
    SELECT national_id FROM (
        SELECT national_id, birth_date, gender,
            CASE WHEN regexp_matches(member_name, '{WHITE_SPACE}')
                 THEN regexp_replace(member_name, '{WHITE_SPACE}', '', 'g') ELSE member_name
            END AS name_norm
        FROM {enrollments}) e
    SEMI JOIN (SELECT DISTINCT birth_date, gender, name_norm FROM in_network WHERE NOT id_valid) d
      ON e.birth_date = d.birth_date AND e.gender = d.gender AND e.name_norm = d.name_norm
), enr AS (
    SELECT e.* FROM {enrollments} e SEMI JOIN candidates USING (national_id)
), people AS (
    -- a person's name, gender and birth date come from their latest enrolment
    SELECT national_id, p.name_norm, p.gender, p.birth_date
    FROM (
        SELECT national_id,
            max_by(struct_pack(name_norm := regexp_replace(member_name, '{WHITE_SPACE}', '', 'g'),
                               gender := gender, birth_date := birth_date),
                   struct_pack(s := coverage_start, e := enrollment_id)) AS p
        FROM enr GROUP BY national_id)
), by_id AS (
    SELECT s.hospital_code, s.settlement_id, p.national_id AS member
    FROM in_network s JOIN people p ON s.id_valid AND p.national_id = s.nid
    WHERE p.name_norm = s.name_norm
), by_demographics AS (
    SELECT s.hospital_code, s.settlement_id, min(p.national_id) AS member
    FROM in_network s JOIN people p
      ON NOT s.id_valid AND p.name_norm = s.name_norm AND p.birth_date = s.birth_date
     AND p.gender = s.gender
    GROUP BY ALL HAVING count(*) = 1
), matched AS (
    SELECT s.hospital_code, s.settlement_id, m.member, s.admission_date, s.discharge_date,
           year(s.discharge_date) AS benefit_year,
           greatest(1, s.discharge_date - s.admission_date) AS los, s.in_scope_fen
    FROM in_network s
    JOIN (SELECT * FROM by_id UNION ALL SELECT * FROM by_demographics) m
      USING (hospital_code, settlement_id)
), ordered AS (
    SELECT e.*, max(coalesce(coverage_end, DATE '9999-12-31')) OVER (
               PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_until
    FROM enr e WHERE national_id IN (SELECT member FROM matched)
), chains AS (
    -- an enrolment opens a new chain unless it starts by the day after the ones before end;
    -- starts only grow in this order, so the latest opening so far is the chain's start
    SELECT national_id, plan_code, enrollment_id, coverage_start, coverage_end,
        max(CASE WHEN covered_until IS NULL OR coverage_start > covered_until + 1
                 THEN coverage_start END) OVER (
            PARTITION BY national_id, plan_code ORDER BY coverage_start, enrollment_id
            ROWS UNBOUNDED PRECEDING) AS chain_start
    FROM ordered
), rules(plan_code, from_year, priority, rate_bp, deductible_fen, per_stay_cap_fen,
         daily_allowance_fen, allowance_days, annual_cap_fen, waiting_days) AS (
    VALUES
        {rules_values()}
), year_rules AS (
    SELECT y.benefit_year, r.*
    FROM (SELECT DISTINCT benefit_year FROM matched) y
    JOIN rules r ON r.from_year <= y.benefit_year
    QUALIFY row_number() OVER (PARTITION BY y.benefit_year, r.plan_code
                               ORDER BY r.from_year DESC) = 1
), covering AS (
    SELECT m.*, c.plan_code, r.priority, r.rate_bp, r.deductible_fen, r.per_stay_cap_fen,
           r.daily_allowance_fen, r.allowance_days, r.annual_cap_fen
    FROM matched m
    JOIN chains c ON c.national_id = m.member
     AND m.admission_date BETWEEN c.coverage_start AND coalesce(c.coverage_end, DATE '9999-12-31')
    JOIN year_rules r ON r.plan_code = c.plan_code AND r.benefit_year = m.benefit_year
    WHERE m.admission_date >= c.chain_start + r.waiting_days
    QUALIFY row_number() OVER (PARTITION BY m.hospital_code, m.settlement_id, c.plan_code
                               ORDER BY c.chain_start, c.enrollment_id) = 1
), covered_stays AS (
    SELECT DISTINCT hospital_code, settlement_id, member, admission_date, discharge_date
    FROM covering
), held AS (
    -- a stay overlapping an earlier one of the same member (admission, discharge, hospital,
    -- settlement order) waits for a person and takes no part in the caps; a transfer (out and
    -- in on the same day) is no overlap
    SELECT DISTINCT b.hospital_code, b.settlement_id
    FROM covered_stays b JOIN covered_stays a
      ON a.member = b.member
     AND a.admission_date < b.discharge_date AND b.admission_date < a.discharge_date
     AND (a.admission_date < b.admission_date
          OR (a.admission_date = b.admission_date
              AND (a.discharge_date < b.discharge_date
                   OR (a.discharge_date = b.discharge_date
                       AND (a.hospital_code < b.hospital_code
                            OR (a.hospital_code = b.hospital_code
                                AND a.settlement_id < b.settlement_id))))))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY hospital_code, settlement_id
                                 ORDER BY priority, plan_code) AS plan_rank
    FROM covering ANTI JOIN held USING (hospital_code, settlement_id)
), coordinated AS (
    SELECT r.*, r.in_scope_fen AS remaining_fen,
        least(coalesce(r.per_stay_cap_fen, 9223372036854775807),
              (greatest(0, r.in_scope_fen - r.deductible_fen)::HUGEINT * r.rate_bp + 5000)
                  // 10000)::BIGINT AS reimbursement_fen
    FROM ranked r WHERE r.plan_rank = 1
    UNION ALL
    SELECT r.*, c.remaining_fen - c.reimbursement_fen,
        least(coalesce(r.per_stay_cap_fen, 9223372036854775807),
              (greatest(0, c.remaining_fen - c.reimbursement_fen - r.deductible_fen)::HUGEINT
                  * r.rate_bp + 5000) // 10000)::BIGINT
    FROM coordinated c JOIN ranked r
      ON r.hospital_code = c.hospital_code AND r.settlement_id = c.settlement_id
     AND r.plan_rank = c.plan_rank + 1
), capped AS (
    SELECT *, reimbursement_fen + daily_allowance_fen * least(los, allowance_days) AS raw_fen,
        sum(reimbursement_fen + daily_allowance_fen * least(los, allowance_days)) OVER (
            PARTITION BY member, plan_code, benefit_year
            ORDER BY discharge_date, admission_date, hospital_code, settlement_id
            ROWS UNBOUNDED PRECEDING) AS cum_fen
    FROM coordinated
)
SELECT hospital_code, settlement_id, plan_code, member AS national_id, benefit_year, raw_fen,
       (least(annual_cap_fen, cum_fen) - least(annual_cap_fen, cum_fen - raw_fen))::BIGINT
           AS target_fen
FROM capped
) TO {_lit(str(out_parquet))} (FORMAT parquet)
"""
