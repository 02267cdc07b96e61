"""The contract's columns, formats and rule names are each defined once, and all else agrees.

The Pandera models (``schemas``) hold the columns, ``landing.readers.READERS`` the feed formats and
``schemas.quarantine.RULES`` the quarantine rules. These tests hold them to the contract's own
tables (``docs/contract/feeds.md``, a copy of the spec) and hold the generator to them.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pandera.polars as pa
import pytest

import synth
from landing.readers import FORMATS, READERS, file_format, formats_in_words
from schemas import discharge, enrollment
from schemas.checks import columns_of, rule
from schemas.quarantine import RULES, VERSION_CONFLICT
from schemas.reference import Hospital

FEEDS = (Path(__file__).resolve().parent.parent / "docs" / "contract" / "feeds.md").read_text(
    encoding="utf-8"
)
CHECKED_MODELS: tuple[type[pa.DataFrameModel], ...] = (
    discharge.RawDischarge,
    discharge.ParsedDischarge,
    enrollment.RawEnrollment,
    enrollment.ParsedEnrollment,
)


def table_after(heading: str) -> list[list[str]]:
    """The cells of the first markdown table after a line containing ``heading``."""
    lines = FEEDS[FEEDS.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def first_cells(heading: str) -> tuple[str, ...]:
    return tuple(row[0].strip("`") for row in table_after(heading))


# --- rules --------------------------------------------------------------------------------------


def test_the_rule_registry_is_the_contracts_rule_table() -> None:
    table = {row[0].strip("`"): row[1] for row in table_after("Rule names used in the quarantine")}
    assert table == RULES
    assert list(RULES) == list(table)


def rules_of_checks() -> set[str]:
    found = set()
    for model in CHECKED_MODELS:
        schema = model.to_schema()
        checks = [*schema.checks, *(c for col in schema.columns.values() for c in col.checks)]
        for check in checks:
            if check.error:
                found.add(check.error.split(": ", 1)[0])
    return found


def test_every_rule_is_checked_somewhere_and_every_check_names_a_rule() -> None:
    # version_conflict compares rows across partitions, so the warehouse derives it.
    assert rules_of_checks() | {VERSION_CONFLICT} == set(RULES)


def test_a_check_cannot_name_a_rule_missing_from_the_registry() -> None:
    assert rule("date_order", "x") == "date_order: x"
    with pytest.raises(ValueError, match="not a quarantine rule"):
        rule("date_wrong", "x")


def test_the_generators_defects_break_registered_rules() -> None:
    assert set(synth.DEFECT_RULES.values()) == set(RULES) - {VERSION_CONFLICT}


# --- columns ------------------------------------------------------------------------------------


def test_the_models_hold_the_contracts_columns_in_its_order() -> None:
    assert first_cells("## Discharge settlement record") == discharge.COLUMNS
    assert first_cells("## Enrolment snapshot") == enrollment.COLUMNS
    assert columns_of(Hospital) == first_cells("## Hospital registry")
    assert discharge.OPTIONAL == ("national_id",)  # "Every column is required … except"


def test_the_generators_columns_are_the_schemas() -> None:
    assert synth.DISCHARGE_COLUMNS == discharge.COLUMNS
    assert synth.ENROLLMENT_COLUMNS == enrollment.COLUMNS
    assert columns_of(Hospital) == synth.REGISTRY_COLUMNS
    as_of = date(2026, 11, 1)
    pop = synth.make_population(50, seed=1, as_of=as_of)
    hospitals = synth.make_hospitals(5)
    night = synth.make_stays(pop, hospitals, feed_date=as_of, n=20, seed=1)
    assert tuple(pop.enrollments.columns) == enrollment.COLUMNS
    assert tuple(hospitals.columns) == columns_of(Hospital)
    assert all(tuple(rows.columns) == discharge.COLUMNS for rows in night.values())


# --- formats ------------------------------------------------------------------------------------


def test_the_readers_are_the_contracts_formats() -> None:
    line = next(x for x in FEEDS.splitlines() if x.startswith("- File formats by extension:"))
    assert tuple(READERS) == tuple(re.findall(r"`(\.[a-z.]+)`", line))
    assert formats_in_words() == ".csv, .csv.gz, .parquet or .jsonl"
    assert synth.FORMATS == FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_named_by_its_extension(fmt: str) -> None:
    assert file_format(f"part-0001.{fmt}") == fmt
    assert file_format(f"PART-0001.{fmt.upper()}") == fmt
    assert file_format(f"part-0001.{fmt}.tmp") is None


def test_the_benchmark_floor_reads_the_contracts_columns() -> None:
    # The floor is bare DuckDB on purpose (no project code in the measured process), so it
    # spells the columns out; it must still spell the schema's.
    from benchmarks import floor

    assert floor._CSV_COLUMNS == discharge.COLUMNS
