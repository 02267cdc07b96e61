"""Row validation (feeds.md, *Discharge settlement record*): one crafted row per quarantine rule.

The crafted rows travel the way a sender's rows do (a CSV file in a landing folder, read by
``read_delivery``) and are validated together, once: ``validate_discharges`` judges each row on
its own, so each test looks at its row's outcome. The reject threshold is tested end to end
through ``run_local`` on a real DuckDB file.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from samples import HOSPITALS, national_id
from samples import discharge_row as row

import synth
from config.settings import Settings
from landing.delivery import read_delivery
from landing.partitions import DISCHARGES, Partition
from landing.readers import READ_ERROR, read_csv_text
from pipeline import run_local
from schemas.discharge import COLUMNS, MONEY, OPTIONAL, REQUIRED
from transforms.discharges import ValidatedRows, validate_discharges

FEED = date(2026, 11, 27)
SOURCE = "SHYB"
CODES = HOSPITALS["hospital_code"]
CASES_DIR = Path(__file__).parent / "cases" / "validate_discharges"


VALID_ID = national_id("1956-03-14", 13)
WRONG_CHECK_ID = VALID_ID[:17] + ("1" if VALID_ID[17] != "1" else "2")


def deliver(
    landing: Path, rows: list[dict[str, str]], *, day: date = FEED, source: str = SOURCE, **kw: Any
) -> Partition:
    """Write the rows as a partition (CSV unless told otherwise), manifest last."""
    frame = pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))
    return Partition(
        DISCHARGES, day, source, synth.write_partition(landing, day, source, frame, **kw)
    )


def validate(partition: Partition) -> ValidatedRows:
    delivery = read_delivery(partition, REQUIRED, optional=OPTIONAL)
    return validate_discharges(
        delivery.frame, feed_date=partition.day, source=partition.source, hospital_codes=CODES
    )


# One row per case: (case, values that differ from a valid row, the exact rules it breaks).
CASES: list[tuple[str, dict[str, str], set[str]]] = [
    ("valid", {}, set()),
    ("discharged_on_the_feed_date", {"discharge_date": "2026-11-27"}, set()),
    ("admitted_on_1990_01_01", {"admission_date": "1990-01-01"}, set()),
    ("padded_values_are_trimmed", {"patient_name": " 张三 ", "gender": " M ",
                                   "total_cost": " 100.00 ", "primary_diagnosis": " I10.x05 "},
     set()),
    ("dagger_asterisk_diagnosis", {"primary_diagnosis": "A17.000+G01*"}, set()),
    ("extension_diagnosis", {"primary_diagnosis": "A00.000x001"}, set()),
    ("name_of_50_characters", {"patient_name": "张" * 50}, set()),
    ("minus_zero", {"total_cost": "90.00", "self_pay_out_of_scope": "-0.00"}, set()),
    ("tenths_add_up_exactly", {"total_cost": "0.3", "fund_paid": "0.1",
                               "self_pay_in_scope": "0.2", "self_pay_out_of_scope": "0"}, set()),
    ("unknown_but_well_formed_diagnosis", {"primary_diagnosis": "K22.301x999"}, set()),
    ("malformed_national_id", {"national_id": VALID_ID[:17]}, set()),
    ("wrong_check_national_id", {"national_id": WRONG_CHECK_ID}, set()),
    ("no_national_id", {"national_id": ""}, set()),
    # missing_value
    ("missing_settlement_id", {"settlement_id": ""}, {"missing_value"}),
    ("missing_version", {"version": ""}, {"missing_value"}),
    ("missing_record_type", {"record_type": ""}, {"missing_value"}),
    ("missing_hospital_code", {"hospital_code": ""}, {"missing_value"}),
    ("missing_patient_name", {"patient_name": ""}, {"missing_value"}),
    ("blank_patient_name", {"patient_name": "   "}, {"missing_value"}),
    ("missing_gender", {"gender": ""}, {"missing_value"}),
    ("missing_birth_date", {"birth_date": ""}, {"missing_value"}),
    ("missing_admission_date", {"admission_date": ""}, {"missing_value"}),
    ("missing_discharge_date", {"discharge_date": ""}, {"missing_value"}),
    ("missing_total_cost", {"total_cost": ""}, {"missing_value"}),
    ("missing_fund_paid", {"fund_paid": ""}, {"missing_value"}),
    ("missing_settled_at", {"settled_at": ""}, {"missing_value"}),
    # invalid_value
    ("gender_not_m_or_f", {"gender": "X"}, {"invalid_value"}),
    ("record_type_not_n_c_v", {"record_type": "U"}, {"invalid_value"}),
    ("version_zero", {"version": "0"}, {"invalid_value"}),
    ("version_with_decimals", {"version": "1.0"}, {"invalid_value"}),
    ("version_not_a_number", {"version": "v2"}, {"invalid_value"}),
    ("settlement_id_with_a_space", {"settlement_id": "S 1"}, {"invalid_value"}),
    ("settlement_id_of_33_characters", {"settlement_id": "S" * 33}, {"invalid_value"}),
    ("impossible_birth_date", {"birth_date": "1956-02-30"}, {"invalid_value"}),
    ("admission_date_not_iso", {"admission_date": "02/11/2026"}, {"invalid_value"}),
    ("settled_at_not_a_timestamp", {"settled_at": "yesterday"}, {"invalid_value"}),
    ("name_of_51_characters", {"patient_name": "张" * 51}, {"invalid_value"}),
    ("amount_not_a_number", {"fund_paid": "sixty"}, {"invalid_value"}),
    ("padded_and_quarantined", {"patient_name": "  张三\t", "gender": " X ",
                                "total_cost": " 100.00", "national_id": f" {VALID_ID} "},
     {"invalid_value"}),
    # invalid_amount
    ("negative_amount", {"fund_paid": "80.00", "self_pay_out_of_scope": "-10.00"},
     {"invalid_amount"}),
    ("three_decimals", {"total_cost": "100.005", "fund_paid": "60.005"}, {"invalid_amount"}),
    ("exponent", {"total_cost": "1e5", "fund_paid": "99960.00"}, {"invalid_amount"}),
    ("thousands_separator", {"total_cost": "1,234.00", "fund_paid": "1194.00"},
     {"invalid_amount"}),
    ("nan", {"self_pay_out_of_scope": "NaN"}, {"invalid_amount"}),
    ("full_width_digits", {"total_cost": "１００.００"}, {"invalid_amount"}),
    ("leading_plus", {"total_cost": "+100.00"}, {"invalid_amount"}),
    # the rules comparing values
    ("parts_do_not_add_up", {"self_pay_out_of_scope": "10.01"}, {"amount_mismatch"}),
    ("discharged_before_admitted", {"admission_date": "2026-11-12", "discharge_date": "2026-11-02"},
     {"date_order"}),
    ("admitted_before_1990", {"admission_date": "1989-12-31", "discharge_date": "1990-01-10"},
     {"date_order"}),
    ("discharged_after_the_feed_date", {"discharge_date": "2026-11-28"}, {"future_discharge"}),
    ("hospital_not_in_registry", {"hospital_code": "H999999999"}, {"unknown_hospital"}),
    ("empty_diagnosis", {"primary_diagnosis": ""}, {"invalid_diagnosis"}),
    ("diagnosis_with_a_dash", {"primary_diagnosis": "J18-9"}, {"invalid_diagnosis"}),
    ("diagnosis_in_lower_case", {"primary_diagnosis": "i10.x05"}, {"invalid_diagnosis"}),
    ("diagnosis_in_words", {"primary_diagnosis": "肺炎"}, {"invalid_diagnosis"}),
    # a row gets every rule it breaks
    ("six_rules_at_once", {"patient_name": "", "gender": "X", "total_cost": "1e5",
                           "hospital_code": "H999999999", "admission_date": "2026-11-20",
                           "discharge_date": "2026-11-10", "primary_diagnosis": ""},
     {"missing_value", "invalid_value", "invalid_amount", "unknown_hospital", "date_order",
      "invalid_diagnosis"}),
    ("three_comparisons_at_once", {"self_pay_out_of_scope": "10.01", "discharge_date": "2026-12-01",
                                   "record_type": "X"},
     {"amount_mismatch", "future_discharge", "invalid_value"}),
    ("both_date_orders", {"admission_date": "1989-12-31", "discharge_date": "1989-12-01"},
     {"date_order"}),
]  # fmt: skip
ROW_OF = {case: number for number, (case, _, _) in enumerate(CASES, start=1)}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> ValidatedRows:
    """Every case as one row of one CSV partition, validated once."""
    landing = tmp_path_factory.mktemp("crafted") / "landing"
    rows = [row(f"R{n}") | values for n, (_, values, _) in enumerate(CASES, start=1)]
    return validate(deliver(landing, rows))


def rules_of(result: ValidatedRows, row_number: int) -> set[str]:
    return set(result.quarantine.filter(pl.col("row_number") == row_number)["rule"].to_list())


def staged_row(result: ValidatedRows, case: str) -> dict[str, Any]:
    rows = result.staged.filter(pl.col("row_number") == ROW_OF[case]).to_dicts()
    assert len(rows) == 1, f"{case} was not staged"
    return rows[0]


@pytest.mark.parametrize(("case", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_row_breaks_exactly_its_rules(
    crafted: ValidatedRows, case: str, values: dict[str, str], expected: set[str]
) -> None:
    number = ROW_OF[case]

    assert rules_of(crafted, number) == expected
    is_staged = number in crafted.staged["row_number"].to_list()
    assert is_staged == (not expected)


def test_counts_add_up(crafted: ValidatedRows) -> None:
    bad = sum(1 for _, _, rules in CASES if rules)

    assert crafted.rows_read == len(CASES)
    assert crafted.rows_quarantined == bad
    assert crafted.staged.height == len(CASES) - bad


@pytest.mark.parametrize(
    ("case", "rule", "column"),
    [
        ("gender_not_m_or_f", "invalid_value", "gender"),
        ("negative_amount", "invalid_amount", "self_pay_out_of_scope"),
        ("exponent", "invalid_amount", "total_cost"),
        ("missing_fund_paid", "missing_value", "fund_paid"),
        ("hospital_not_in_registry", "unknown_hospital", "hospital_code"),
        ("empty_diagnosis", "invalid_diagnosis", "primary_diagnosis"),
    ],
)
def test_quarantine_message_names_the_column(
    crafted: ValidatedRows, case: str, rule: str, column: str
) -> None:
    found = crafted.quarantine.filter(
        (pl.col("row_number") == ROW_OF[case]) & (pl.col("rule") == rule)
    )

    assert found["message"].to_list()[0].startswith(f"{column}: ")


def test_one_quarantine_row_per_rule_naming_every_broken_column(crafted: ValidatedRows) -> None:
    found = crafted.quarantine.filter(pl.col("row_number") == ROW_OF["three_decimals"])

    assert found["rule"].to_list() == ["invalid_amount"]
    assert "total_cost" in found["message"][0] and "fund_paid" in found["message"][0]

    found = crafted.quarantine.filter(pl.col("row_number") == ROW_OF["both_date_orders"])
    assert found["rule"].to_list() == ["date_order"]
    assert "before 1990-01-01" in found["message"][0]
    assert "discharged before it was admitted" in found["message"][0]


def test_minus_zero_is_accepted_as_zero_fen(crafted: ValidatedRows) -> None:
    staged = staged_row(crafted, "minus_zero")

    assert staged["self_pay_out_of_scope_fen"] == 0
    assert staged["total_cost_fen"] == 9000


def test_money_is_parsed_exactly_to_fen(crafted: ValidatedRows) -> None:
    staged = staged_row(crafted, "tenths_add_up_exactly")

    assert [staged[f"{m}_fen"] for m in MONEY] == [30, 10, 20, 0]


def test_trimmed_values_are_staged_and_raw_values_kept(crafted: ValidatedRows) -> None:
    staged = staged_row(crafted, "padded_values_are_trimmed")

    trimmed = (staged["patient_name"], staged["gender"], staged["total_cost_fen"])
    assert trimmed == ("张三", "M", 10000)
    assert json.loads(staged["raw"])["patient_name"] == " 张三 "


@pytest.mark.parametrize(
    ("case", "column", "received"),
    [
        ("blank_patient_name", "patient_name", "   "),
        ("full_width_digits", "total_cost", "１００.００"),
        ("thousands_separator", "total_cost", "1,234.00"),
        ("nan", "self_pay_out_of_scope", "NaN"),
        ("diagnosis_in_lower_case", "primary_diagnosis", "i10.x05"),
    ],
)
def test_quarantine_keeps_the_raw_values_as_received(
    crafted: ValidatedRows, case: str, column: str, received: str
) -> None:
    found = crafted.quarantine.filter(pl.col("row_number") == ROW_OF[case])
    raw = json.loads(found["raw"][0])

    assert raw[column] == received
    assert set(raw) == set(COLUMNS)
    assert raw["settlement_id"] == f"R{ROW_OF[case]}"


def test_quarantine_keeps_untrimmed_values(crafted: ValidatedRows) -> None:
    found = crafted.quarantine.filter(pl.col("row_number") == ROW_OF["padded_and_quarantined"])
    raw = json.loads(found["raw"][0])

    assert {k: raw[k] for k in ("patient_name", "gender", "total_cost", "national_id")} == {
        "patient_name": "  张三\t",
        "gender": " X ",
        "total_cost": " 100.00",
        "national_id": f" {VALID_ID} ",
    }


def test_unknown_diagnosis_is_a_warning_not_a_quarantine(crafted: ValidatedRows) -> None:
    staged = staged_row(crafted, "unknown_but_well_formed_diagnosis")

    assert staged["is_known_diagnosis"] is False
    assert crafted.warnings["unknown_diagnosis"] == 1


@pytest.mark.parametrize(
    "case", ["malformed_national_id", "wrong_check_national_id", "no_national_id"]
)
def test_bad_national_id_is_not_a_quarantine_reason(crafted: ValidatedRows, case: str) -> None:
    assert staged_row(crafted, case)["is_valid_id"] is False


def test_valid_national_id_is_staged_as_valid(crafted: ValidatedRows) -> None:
    staged = staged_row(crafted, "valid")

    assert (staged["national_id"], staged["is_valid_id"]) == (VALID_ID, True)


# --- row numbers -------------------------------------------------------------------------------


def test_row_numbers_count_data_rows_across_files_in_manifest_order(tmp_path: Path) -> None:
    rows = [row(f"S{n}") for n in range(1, 6)]
    rows[3] |= {"gender": "X"}  # S4: the first row of the second file
    partition = deliver(tmp_path / "landing", rows, files=2)
    delivery = read_delivery(partition, REQUIRED, optional=OPTIONAL)
    assert delivery.frame.select("row_number", "settlement_id").rows() == [
        (1, "S1"), (2, "S2"), (3, "S3"), (4, "S4"), (5, "S5")
    ]  # fmt: skip

    # The same files, listed the other way round: part-0002 comes first.
    doc = json.loads(partition.manifest_path.read_text())
    doc["files"].reverse()
    partition.manifest_path.write_text(json.dumps(doc))
    delivery = read_delivery(partition, REQUIRED, optional=OPTIONAL)
    assert delivery.frame.select("row_number", "settlement_id").rows() == [
        (1, "S4"), (2, "S5"), (3, "S1"), (4, "S2"), (5, "S3")
    ]  # fmt: skip
    result = validate(partition)
    assert result.quarantine.select("row_number", "rule").rows() == [(1, "invalid_value")]
    assert json.loads(result.quarantine["raw"][0])["settlement_id"] == "S4"


# --- golden case -------------------------------------------------------------------------------


def test_golden_case() -> None:
    text = (CASES_DIR / "given_rows.csv").read_text(encoding="utf-8")
    raw = read_csv_text(text, "given_rows.csv")
    # As read_delivery hands it over: row numbers from 1, no unreadable lines.
    raw = raw.with_columns(
        pl.lit(None, pl.String).alias(READ_ERROR), pl.lit(None, pl.String).alias("_line")
    ).with_row_index("row_number", offset=1)
    raw = raw.with_columns(pl.col("row_number").cast(pl.Int64))

    result = validate_discharges(raw, feed_date=FEED, source=SOURCE, hospital_codes=CODES)

    expected_quarantine = pl.read_csv(
        CASES_DIR / "expected_quarantine.csv", schema={"row_number": pl.Int64, "rule": pl.String}
    )
    assert_frame_equal(
        result.quarantine.select("row_number", "rule").sort("row_number", "rule"),
        expected_quarantine,
    )
    expected_staged = pl.read_csv(
        CASES_DIR / "expected_staged.csv", infer_schema=False
    ).with_columns(
        pl.col("row_number", "version", "^.*_fen$").cast(pl.Int64),
        pl.col("^is_.*$") == "true",
        pl.col("national_id").fill_null(""),  # staged as "" when the feed had none
    )
    assert_frame_equal(
        result.staged.select(expected_staged.columns).sort("row_number"), expected_staged
    )


# --- reject threshold, end to end --------------------------------------------------------------

DAY_AT = date(2026, 11, 26)
DAY_OVER = date(2026, 11, 27)
AT_KEY = f"feed_date={DAY_AT}/source=AT"
OVER_KEY = f"feed_date={DAY_OVER}/source=OVER"


@pytest.fixture(scope="module")
def threshold_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two partitions: 1 bad row in 20 (exactly 5 %) and 1 bad row in 19 (5.3 %)."""
    landing = tmp_path_factory.mktemp("threshold") / "landing"
    synth.write_registry(landing, HOSPITALS)
    at = [row(f"A{n:02d}", discharge_date="2026-11-26") for n in range(20)]
    at[7] |= {"gender": "X"}
    over = [row(f"O{n:02d}") for n in range(19)]
    over[11] |= {"total_cost": "1,000.00"}
    deliver(landing, at, day=DAY_AT, source="AT")
    deliver(landing, over, day=DAY_OVER, source="OVER")
    return landing


def warehouse_settings(landing: Path, tmp_path: Path, **kw: Any) -> Settings:
    return Settings.build(landing, tmp_path / "warehouse.duckdb", tmp_path / "outbox", **kw)


def query(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def partition_runs(settings: Settings) -> dict[str, tuple[Any, ...]]:
    rows = query(
        settings,
        "SELECT partition_key, status, rows_read, rows_quarantined, error FROM partition_runs",
    )
    return {r[0]: r[1:] for r in rows}


def test_exactly_the_threshold_succeeds_and_just_above_fails(
    threshold_landing: Path, tmp_path: Path
) -> None:
    settings = warehouse_settings(threshold_landing, tmp_path)
    assert settings.reject_threshold == 0.05

    result = run_local(settings, as_of=DAY_OVER)

    runs = partition_runs(settings)
    assert runs[AT_KEY] == ("succeeded", 20, 1, "")
    status, rows_read, quarantined, error = runs[OVER_KEY]
    assert (status, rows_read, quarantined) == ("failed", 19, 1)
    assert error.startswith("reject_threshold: 1 of 19 rows quarantined (5.26% > 5%)")
    assert result.partitions["failed"] == [OVER_KEY]
    # Nothing of the failed partition is used ...
    stays = [r[0] for r in query(settings, "SELECT settlement_id FROM claim_outcomes")]
    assert sorted(stays) == [f"A{n:02d}" for n in range(20) if n != 7]
    # ... but its bad rows are there for the engineer who fixes it.
    quarantine = query(
        settings, "SELECT partition_key, row_number, rule FROM quarantine_rows ORDER BY 1"
    )
    assert quarantine == [(AT_KEY, 8, "invalid_value"), (OVER_KEY, 12, "invalid_amount")]


def test_threshold_is_configurable_in_settings(threshold_landing: Path, tmp_path: Path) -> None:
    settings = dataclasses.replace(
        warehouse_settings(threshold_landing, tmp_path), reject_threshold=0.06
    )

    run_local(settings, as_of=DAY_OVER, command="rerun", rerun_keys=[OVER_KEY])

    assert partition_runs(settings)[OVER_KEY] == ("succeeded", 19, 1, "")
    assert len(query(settings, "SELECT * FROM claim_outcomes")) == 18


def test_threshold_is_configurable_by_environment(
    threshold_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAIMS_REJECT_THRESHOLD", "0")
    settings = warehouse_settings(threshold_landing, tmp_path)
    assert settings.reject_threshold == 0

    run_local(settings, as_of=DAY_AT)

    status, _, quarantined, error = partition_runs(settings)[AT_KEY]
    assert (status, quarantined) == ("failed", 1)
    assert error.startswith("reject_threshold: 1 of 20 rows quarantined (5% > 0%)")
    assert query(settings, "SELECT count(*) FROM claim_outcomes") == [(0,)]
