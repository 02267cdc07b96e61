"""Reference data: a bad rules file stops the run before anything is posted; a bad landing
registry keeps the one in use; a registry change re-adjudicates every stay."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from stdnum.cn import ric

import synth
from config.settings import REFERENCE_DIR, ConfigError, Settings
from pipeline import run_local
from transforms.reference import ReferenceError, load_rules

SNAPSHOT = date(2026, 2, 1)
NIGHT = date(2026, 3, 1)
BODY = "31010419500101001"
NID = BODY + ric.calc_check_digit(BODY + "0")


def registry(in_network_to: str = "") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "hospital_code": ["H001"],
            "hospital_name": ["一院"],
            "district": ["黄浦区"],
            "level": ["3"],
            "in_network_from": ["2015-01-01"],
            "in_network_to": [in_network_to],
        }
    )


def landing_with_one_paid_stay(settings: Settings) -> None:
    synth.write_registry(settings.landing, registry())
    enrolment = {
        "enrollment_id": "E1",
        "national_id": NID,
        "member_name": "张三",
        "gender": "M",
        "birth_date": "1950-01-01",
        "plan_code": "RETIREE_INPATIENT",
        "coverage_start": "2020-01-01",
        "coverage_end": "",
        "payee_account": "6222000011112222",
    }
    synth.write_snapshot(settings.landing, SNAPSHOT, pl.DataFrame([enrolment]))
    stay = {
        "settlement_id": "S1",
        "version": "1",
        "record_type": "N",
        "hospital_code": "H001",
        "national_id": NID,
        "patient_name": "张三",
        "gender": "M",
        "birth_date": "1950-01-01",
        "admission_date": "2026-02-20",
        "discharge_date": "2026-02-25",
        "primary_diagnosis": "K22.301",
        "total_cost": "1000.00",
        "fund_paid": "600.00",
        "self_pay_in_scope": "300.00",
        "self_pay_out_of_scope": "100.00",
        "settled_at": "2026-02-25T10:00:00+08:00",
    }
    synth.write_partition(settings.landing, NIGHT, "SHYB", pl.DataFrame([stay]))


def reference_copy(tmp_path: Path, plans_toml: str | None = None) -> Path:
    folder = tmp_path / "reference"
    shutil.copytree(REFERENCE_DIR, folder)
    if plans_toml is not None:
        (folder / "plans.toml").write_text(plans_toml, encoding="utf-8")
    return folder


def ledger_rows(settings: Settings) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(
            "SELECT plan_code, amount_fen, reason FROM ledger_entries ORDER BY posted_at"
        ).fetchall()
    finally:
        con.close()


def test_the_shipped_rules_are_the_contracts_defaults() -> None:
    rules = load_rules(REFERENCE_DIR / "plans.toml").frame
    retiree = rules.filter(pl.col("plan_code") == "RETIREE_INPATIENT").sort("from_year")
    assert retiree.select("from_year", "rate_bp", "annual_cap_fen").rows() == [
        (2020, 5000, 1_000_000),
        (2026, 6000, 1_500_000),
    ]
    worker = rules.filter(pl.col("plan_code") == "WORKER_MUTUAL").row(0, named=True)
    assert (worker["deductible_fen"], worker["per_stay_cap_fen"], worker["waiting_days"]) == (
        20_000,
        800_000,
        90,
    )


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("this is not toml [", "cannot read the rules file"),
        ('[[plan]]\nplan_code = "UNION_BASIC"\n', "missing"),
        (
            (REFERENCE_DIR / "plans.toml").read_text().replace('rate = "0.50"', "rate = 0.50", 1),
            "decimal string",
        ),
        (
            (REFERENCE_DIR / "plans.toml")
            .read_text()
            .replace('deductible = "200.00"', 'deductible = "200.001"'),
            "at most 2 decimals",
        ),
    ],
)
def test_a_bad_rules_file_stops_the_run_before_anything_is_posted(
    settings: Settings, tmp_path: Path, broken: str, says: str
) -> None:
    landing_with_one_paid_stay(settings)
    bad = replace(settings, reference_dir=reference_copy(tmp_path, broken))
    with pytest.raises(ConfigError, match=says):
        run_local(bad, as_of=NIGHT)
    assert not settings.warehouse.exists() or ledger_rows(settings) == []


def test_load_rules_names_the_entry_at_fault(tmp_path: Path) -> None:
    text = (
        (REFERENCE_DIR / "plans.toml")
        .read_text()
        .replace('deductible = "200.00"', 'deductible = "-200.00"')
    )
    path = reference_copy(tmp_path, text) / "plans.toml"
    with pytest.raises(ReferenceError, match=r"plans.toml \[\[plan\]\] #3 deductible"):
        load_rules(path)


def test_a_broken_landing_registry_keeps_the_one_in_use(settings: Settings) -> None:
    landing_with_one_paid_stay(settings)
    first = run_local(settings, as_of=NIGHT)
    assert first.paid_fen == 18_000  # 300.00 × 0.60 in 2026
    (settings.landing / "reference" / "hospitals.csv").write_text(
        "hospital_code,hospital_name\nH001,一院\nH001,重复\n", encoding="utf-8"
    )
    second = run_local(settings, as_of=NIGHT)
    assert second.entries == 0
    assert any("registry not updated" in note for note in second.notes)


def test_a_hospital_leaving_the_network_retroactively_recovers_its_stays(
    settings: Settings,
) -> None:
    landing_with_one_paid_stay(settings)
    run_local(settings, as_of=NIGHT)
    synth.write_registry(settings.landing, registry(in_network_to="2026-01-31"))
    result = run_local(settings, as_of=NIGHT)
    assert result.full_recompute
    assert ledger_rows(settings) == [
        ("RETIREE_INPATIENT", 18_000, "initial"),
        ("RETIREE_INPATIENT", -18_000, "eligibility"),
    ]
