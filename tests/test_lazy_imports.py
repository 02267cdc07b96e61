"""A clean night does not import pandera; what it uses instead equals the models.

Pandera costs a night ~0.1-0.2 s of CPU to import. A night needs it only for a suspect row, a
snapshot or a reference file its screen doubts. The constants and screens that stand in for
the models (``schemas.discharge_columns``, ``transforms.reference.rules_pass`` /
``registry_passes``) are held to the models here: a table a screen passes is one the model
passes. (pyarrow every night needs: DuckDB reads a registered polars frame through it.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_flows import SNAPSHOT, build_landing, night, population, query

import pipeline
import synth
from config.settings import Settings
from schemas import discharge, discharge_columns, enrollment, enrollment_columns
from schemas.checks import columns_of
from schemas.reference import Hospital, PlanRule
from transforms import reference

PROJECT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# The stand-ins equal the models
# --------------------------------------------------------------------------------------------


def model_schema(model: Any) -> pl.Schema:
    return pl.Schema(
        {name: column.dtype.type for name, column in model.to_schema().columns.items()}
    )


def test_the_discharge_columns_are_the_models() -> None:
    assert columns_of(discharge.DischargeRecord) == discharge_columns.COLUMNS
    assert model_schema(discharge.StagedDischarge) == discharge_columns.STAGED_SCHEMA
    assert columns_of(discharge.StagedDischarge) == discharge_columns.STAGED_COLUMNS


def test_the_enrollment_columns_are_the_models() -> None:
    assert columns_of(enrollment.EnrollmentRecord) == enrollment_columns.COLUMNS
    assert model_schema(enrollment.StagedEnrollment) == enrollment_columns.STAGED_SCHEMA
    assert columns_of(enrollment.StagedEnrollment) == enrollment_columns.STAGED_COLUMNS
    assert (enrollment.REQUIRED, enrollment.OPTIONAL, enrollment.DATES) == (
        enrollment_columns.REQUIRED,
        enrollment_columns.OPTIONAL,
        enrollment_columns.DATES,
    )


def test_a_staged_enrolment_frame_of_another_schema_is_refused() -> None:
    from transforms.enrollments import _check_staged

    good = pl.DataFrame(schema=enrollment_columns.STAGED_SCHEMA)
    _check_staged(good)
    for wrong in (
        good.with_columns(pl.col("birth_date").cast(pl.String)),
        good.drop("member_name_norm"),
        good.select(reversed(enrollment_columns.STAGED_COLUMNS)),
        good.with_columns(pl.lit(1).alias("extra")),
    ):
        with pytest.raises(RuntimeError, match="staged enrolment rows"):
            _check_staged(wrong)


def test_the_reference_schemas_are_the_models() -> None:
    assert model_schema(PlanRule) == reference.RULES_SCHEMA
    assert model_schema(Hospital) == reference.REGISTRY_SCHEMA


def model_checks(model: Any) -> set[str]:
    """Every check a model makes, one line each: what its screen must cover."""
    schema = model.to_schema()
    lines = {f"table: unique {schema.unique}"} if schema.unique else set()
    lines |= {f"table: {check.name}" for check in schema.checks}
    for name, column in schema.columns.items():
        lines.add(f"{name}: {'nullable' if column.nullable else 'not null'}")
        if column.unique:
            lines.add(f"{name}: unique")
        lines |= {f"{name}: {check.name} {check.statistics}" for check in column.checks}
    return lines


# The checks ``rules_pass`` and ``registry_passes`` were written against. A check added to a
# model fails the test below until its screen covers it too (and this list says so).
_AT_LEAST_ZERO = (
    "deductible_fen",
    "daily_allowance_fen",
    "allowance_days",
    "annual_cap_fen",
    "waiting_days",
    "monthly_contribution_fen",
)
SCREENED_RULES = {
    "table: unique ['plan_code', 'from_year']",
    "plan_code: not null",
    "plan_code: isin {'allowed_values': "
    "['RETIREE_INPATIENT', 'WORKER_MUTUAL', 'GIG_WORKER', 'UNION_BASIC']}",
    "from_year: not null",
    "from_year: greater_than_or_equal_to {'min_value': 1990}",
    "from_year: less_than_or_equal_to {'max_value': 2100}",
    "priority: not null",
    "priority: greater_than_or_equal_to {'min_value': 1}",
    "rate_bp: not null",
    "rate_bp: greater_than_or_equal_to {'min_value': 0}",
    "rate_bp: less_than_or_equal_to {'max_value': 10000}",
    "per_stay_cap_fen: nullable",
    "per_stay_cap_fen: greater_than_or_equal_to {'min_value': 0}",
    *(f"{name}: not null" for name in _AT_LEAST_ZERO),
    *(f"{name}: greater_than_or_equal_to {{'min_value': 0}}" for name in _AT_LEAST_ZERO),
}
SCREENED_REGISTRY = {
    "table: network_period",
    "hospital_code: not null",
    "hospital_code: unique",
    "hospital_code: str_length {'min_value': 1, 'max_value': None, 'exact_value': None}",
    "hospital_name: not null",
    "district: not null",
    "level: not null",
    "level: isin {'allowed_values': [1, 2, 3]}",
    "in_network_from: not null",
    "in_network_to: nullable",
}


def test_the_screens_cover_every_check_of_their_models() -> None:
    assert model_checks(PlanRule) == SCREENED_RULES
    assert model_checks(Hospital) == SCREENED_REGISTRY


def model_passes(model: Any, frame: pl.DataFrame) -> bool:
    from pandera.errors import SchemaError, SchemaErrors

    try:
        model.validate(frame, lazy=True)
    except (SchemaErrors, SchemaError):
        return False
    return True


def _broken(frame: pl.DataFrame, rng: random.Random, values: dict[str, list[Any]]) -> pl.DataFrame:
    """``frame`` with one to three cells set to a value that may break a check (or a row
    repeated)."""
    rows = frame.to_dicts()
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.15:
            rows.append(dict(rng.choice(rows)))
            continue
        row = rng.choice(rows)
        column = rng.choice(list(values))
        row[column] = rng.choice(values[column])
    return pl.DataFrame(rows, schema=frame.schema)


def _screen_implies_model(
    screen: Callable[[pl.DataFrame], bool],
    model: Any,
    good: pl.DataFrame,
    rng: random.Random,
    values: dict[str, list[Any]],
) -> None:
    """Over 300 broken copies of ``good``: whatever ``screen`` passes, ``model`` passes too;
    and both tables the model passes and tables it refuses were tried."""
    seen = {True: 0, False: 0}
    for _ in range(300):
        frame = _broken(good, rng, values)
        passes = model_passes(model, frame)
        seen[passes] += 1
        if screen(frame):
            assert passes, frame
    assert seen[True] and seen[False]


def _rules() -> pl.DataFrame:
    return reference.load_rules(Settings.build().reference_dir / "plans.toml").frame


def _registry() -> pl.DataFrame:
    return reference.load_registry(Settings.build().reference_dir / "hospitals.csv").frame


def test_the_project_reference_files_take_the_screens_way() -> None:
    assert reference.rules_pass(_rules())
    assert reference.registry_passes(_registry())


def test_a_rules_table_the_screen_passes_is_one_the_model_passes() -> None:
    rng = random.Random(7)
    good = _rules()
    values: dict[str, list[Any]] = {
        "plan_code": [None, "", "NOPE", "WORKER_MUTUAL", "GIG_WORKER"],
        "from_year": [None, 1989, 1990, 2100, 2101, 2026],
        "priority": [None, 0, 1, 2, -1],
        "rate_bp": [None, -1, 0, 10_000, 10_001, 5_000],
        "per_stay_cap_fen": [None, -1, 0, 10],
        **{
            name: [None, -1, 0, 7]
            for name in (
                "deductible_fen",
                "daily_allowance_fen",
                "allowance_days",
                "annual_cap_fen",
                "waiting_days",
                "monthly_contribution_fen",
            )
        },
    }
    _screen_implies_model(reference.rules_pass, PlanRule, good, rng, values)


def test_a_registry_the_screen_passes_is_one_the_model_passes() -> None:
    rng = random.Random(11)
    good = _registry()
    some = good.get_column("hospital_code").to_list()
    values: dict[str, list[Any]] = {
        "hospital_code": [None, "", *some[:3]],
        "hospital_name": [None, "", "x"],
        "district": [None, "", "y"],
        "level": [None, 0, 1, 3, 4],
        "in_network_from": [None, date(2000, 1, 1), date(2030, 1, 1)],
        "in_network_to": [None, date(1999, 1, 1), date(2040, 1, 1)],
    }
    _screen_implies_model(reference.registry_passes, Hospital, good, rng, values)


def test_a_broken_rules_file_is_still_refused_with_the_models_words(tmp_path: Path) -> None:
    text = (Settings.build().reference_dir / "plans.toml").read_text(encoding="utf-8")
    broken = tmp_path / "plans.toml"
    broken.write_text(text.replace("priority = 1", "priority = 0", 1), encoding="utf-8")
    assert "priority = 0" in broken.read_text(encoding="utf-8")
    with pytest.raises(reference.ReferenceError, match="priority"):
        reference.load_rules(broken)


# --------------------------------------------------------------------------------------------
# What a night imports
# --------------------------------------------------------------------------------------------

NIGHT = """
import json, sys
from datetime import date, timedelta
from pathlib import Path
sys.modules.setdefault("hypothesis", None)  # as the claims command does
from config.settings import Settings
from pipeline import run_local
s = Settings.build(*(Path(a) for a in sys.argv[1:4]))
result = run_local(s, as_of=date.fromisoformat(sys.argv[4]))
print(json.dumps({
    "modules": sorted(m for m in ("pandera", "pandera.polars") if m in sys.modules),
    "quarantined": result.rows_quarantined,
    "succeeded": len(result.partitions.get("succeeded", [])),
    "entries": result.entries,
}))
"""


def night_in_a_process(settings: Settings, day: date) -> dict[str, Any]:
    paths = [str(settings.landing), str(settings.warehouse), str(settings.outbox)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    done = subprocess.run(
        [sys.executable, "-c", NIGHT, *paths, day.isoformat()],
        cwd=PROJECT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.fixture
def first_night_done(tmp_path: Path) -> Any:
    """The snapshot and the first night committed (they need the models); the second night's
    deliveries to come."""
    landing = build_landing(tmp_path, nights=1, failing_night=None)
    pipeline.run_local(landing.settings, as_of=landing.feed_dates[0])
    return landing


def test_a_clean_night_does_not_import_pandera(first_night_done: Any) -> None:
    landing = first_night_done
    day = landing.feed_dates[0] + timedelta(days=1)
    for source, rows in night(day, 0.0, landing.sources).items():
        synth.write_partition(landing.settings.landing, day, source, rows)
    got = night_in_a_process(landing.settings, day)
    assert got["modules"] == []
    assert got["succeeded"] == len(landing.sources) and got["quarantined"] == 0
    assert got["entries"] > 0


def test_a_typed_parquet_night_neither_but_a_bad_row_needs_pandera(
    first_night_done: Any,
) -> None:
    landing = first_night_done
    day = landing.feed_dates[0] + timedelta(days=1)
    deliveries = night(day, 0.0, landing.sources)
    first, second = landing.sources
    synth.write_partition(landing.settings.landing, day, first, deliveries[first])
    synth.write_partition(
        landing.settings.landing, day, second, deliveries[second], fmt="parquet", typed=True
    )
    bad = night(day, 0.3, landing.sources)[first]
    next_day = day + timedelta(days=1)
    assert night_in_a_process(landing.settings, day)["modules"] == []

    synth.write_partition(landing.settings.landing, next_day, first, bad)
    got = night_in_a_process(landing.settings, next_day)
    assert "pandera" in got["modules"] and got["quarantined"] > 0
    # The quarantine holds the rows, with their rules, as ever.
    rows = query(
        landing.settings.warehouse,
        "SELECT count(*) FROM quarantine_rows WHERE partition_key LIKE ?",
        [f"feed_date={next_day.isoformat()}/%"],
    )
    assert rows[0][0] > 0


def test_a_clean_snapshot_does_not_import_pandera_but_a_bad_row_does(tmp_path: Path) -> None:
    landing = build_landing(tmp_path, nights=0)
    got = night_in_a_process(landing.settings, SNAPSHOT)
    assert got["modules"] == []
    assert got["succeeded"] == 1 and got["quarantined"] == 0

    later = SNAPSHOT + timedelta(days=1)
    enrollments = population().enrollments
    bad = enrollments.with_columns(
        gender=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("X")).otherwise("gender")
    )
    synth.write_snapshot(landing.settings.landing, later, bad)
    got = night_in_a_process(landing.settings, later)
    assert "pandera" in got["modules"] and got["quarantined"] == 1
    rows = query(
        landing.settings.warehouse,
        "SELECT rule FROM quarantine_rows WHERE partition_key = ?",
        [f"snapshot_date={later.isoformat()}"],
    )
    assert rows == [("invalid_value",)]
