"""Enrolment snapshot validation: each rule, slices, the 1 % threshold, raw JSON for bad rows."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from stdnum.cn import ric

from landing.readers import READ_ERROR
from transforms.enrollments import validate_enrollments, validate_in_slices

SNAPSHOT = date(2026, 11, 1)


def valid_id(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


def row(enrollment_id: str | None, **values: str | None) -> dict[str, str | None]:
    base: dict[str, str | None] = {
        "enrollment_id": enrollment_id,
        "national_id": valid_id("11010519600101001"),
        "member_name": "张三",
        "gender": "M",
        "birth_date": "1960-01-01",
        "plan_code": "RETIREE_INPATIENT",
        "coverage_start": "2020-01-01",
        "coverage_end": None,
        "payee_account": "6222000011112222",
    }
    base.update(values)
    return base


def raw_frame(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})
    return (
        frame.with_columns(
            pl.lit(None, pl.String).alias(READ_ERROR), pl.lit(None, pl.String).alias("_line")
        )
        .with_row_index("row_number", offset=1)
        .with_columns(pl.col("row_number").cast(pl.Int64))
    )


def rules_of(rows: list[dict[str, str | None]]) -> dict[int, set[str]]:
    result = validate_enrollments(raw_frame(rows), snapshot_date=SNAPSHOT)
    found: dict[int, set[str]] = {}
    for number, rule in result.quarantine.select("row_number", "rule").rows():
        found.setdefault(number, set()).add(rule)
    return found


@pytest.mark.parametrize(
    ("change", "rules"),
    [
        ({"national_id": "110105196001010010"}, {"invalid_value"}),  # wrong check character
        ({"national_id": None}, {"missing_value", "invalid_value"}),
        ({"member_name": None}, {"missing_value"}),
        ({"gender": "X"}, {"invalid_value"}),
        ({"birth_date": "1960-02-30"}, {"invalid_value"}),
        ({"plan_code": "GOLD"}, {"invalid_value"}),
        ({"coverage_start": "2020-13-01"}, {"invalid_value"}),
        ({"coverage_end": "2019-12-31"}, {"date_order"}),
        ({"payee_account": "12345"}, {"invalid_value"}),
        ({"payee_account": "6222 0000 1111 2222"}, {"invalid_value"}),
    ],
)
def test_each_rule_quarantines_its_row(change: dict[str, str | None], rules: set[str]) -> None:
    assert rules_of([row("E1"), row("E2", **change)]) == {2: rules}


def test_a_valid_row_is_staged_with_its_normalised_name() -> None:
    number = valid_id("11010519600101001")
    noisy = f" {number[:6]} {number[6:].lower()} "  # spaces inside and around: normalised away
    result = validate_enrollments(
        raw_frame([row("E1", member_name=" 张 三 ", national_id=noisy)]), snapshot_date=SNAPSHOT
    )
    assert result.quarantine.height == 0
    staged = result.staged.row(0, named=True)
    assert staged["member_name_norm"] == "张三"
    assert staged["national_id"] == number


def test_repeated_enrollment_ids_are_all_quarantined_even_across_slices() -> None:
    rows = [row(f"E{i}") for i in range(10)] + [row("E3")]
    parts = list(validate_in_slices(raw_frame(rows), snapshot_date=SNAPSHOT, slice_rows=4))
    assert len(parts) == 3
    quarantined = pl.concat([p.quarantine for p in parts])
    assert sorted(quarantined.get_column("row_number").to_list()) == [4, 11]
    assert set(quarantined.get_column("message")) == {"enrollment_id: repeats within the snapshot"}
    assert sum(p.staged.height for p in parts) == 9


def test_raw_json_is_kept_for_bad_rows_only_and_as_received() -> None:
    result = validate_enrollments(
        raw_frame([row("E1"), row("E2", gender=" x ")]), snapshot_date=SNAPSHOT
    )
    assert result.quarantine.get_column("row_number").to_list() == [2]
    assert '"gender":" x "' in result.quarantine.get_column("raw")[0]
    assert "raw" not in result.staged.columns


# The screen (one polars pass) must never pass a row the pandera models quarantine: random rows
# mutated in every column, judged both ways, must give the same staged rows and quarantine.
_MUTATIONS: dict[str, list[str | None]] = {
    "enrollment_id": [None, " ", "E1", " E2 "],
    "national_id": [
        None,
        "110105196001010010",
        valid_id("11010519600101001").lower(),
        "１１０１０５１９６００１０１００１" + valid_id("11010519600101001")[-1],
        "110105600101001",  # 15 digits: upgraded
        # Interior and ideographic spaces: valid once normalised, staged in normal form.
        "110105 19600101\u3000" + valid_id("11010519600101001")[-4:],
        valid_id("11010520990101001"),  # born after the snapshot
        "abc",
        # White space around a valid number: the screen checks the number as received.
        " " + valid_id("11010519600101001") + "\t",
        "",
    ],
    "member_name": [None, "", "王" * 51, "李\x01四", " Ｌｉ　Ｍｉｎｇ ", "\ufffd"],
    "gender": [None, "X", " f ", "m", "F", " M", "", "\u3000F"],
    "birth_date": [None, "1960-02-30", "1960-1-01", " 1960-01-01 ", "0999-01-01"],
    "plan_code": [None, "GOLD", "WORKER_MUTUAL", " UNION_BASIC ", "", "WORKER_MUTUAL\n"],
    "coverage_start": [None, "2020-13-01", "2024-02-29", "2026-12-31"],
    "coverage_end": [None, "", "2019-12-31", "2020-01-01", "2023-02-29"],
    "payee_account": [
        None,
        "12345",
        "6222 0000 1111 2222",
        "12345678901234567890",
        "123456789012",
        " 123456789012 ",
        "",
    ],
}


def _random_rows(seed: int, n: int) -> list[dict[str, str | None]]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        r = row(f"E{i}")
        for column, values in _MUTATIONS.items():
            if rng.random() < 0.15:
                r[column] = rng.choice(values)
        rows.append(r)
    return rows


def _canonical(frame: pl.DataFrame, key: str) -> list[tuple[object, ...]]:
    return sorted(frame.select(sorted(frame.columns)).rows(), key=lambda r: str(r))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("typed", [False, True])
def test_the_screen_passes_nothing_the_models_quarantine(seed: int, typed: bool) -> None:
    from transforms.enrollments import _judge, mark_repeated_ids

    raw = mark_repeated_ids(raw_frame(_random_rows(seed, 300)))
    if typed:
        # As a typed Parquet file is read: the dates that are real dates, typed; the rest null.
        raw = raw.with_columns(
            pl.col(c).str.to_date("%Y-%m-%d", strict=False)
            for c in ("birth_date", "coverage_start", "coverage_end")
        )
    fast = validate_enrollments(raw, snapshot_date=SNAPSHOT)
    slow = _judge(
        raw.with_columns(
            pl.col(c).dt.to_string("%Y-%m-%d")
            for c in ("birth_date", "coverage_start", "coverage_end")
            if raw.schema[c] == pl.Date
        ),
        SNAPSHOT,
    )
    assert 0 < slow.quarantine.height < raw.height
    assert _canonical(fast.quarantine, "row_number") == _canonical(slow.quarantine, "row_number")
    assert _canonical(fast.staged, "enrollment_id") == _canonical(slow.staged, "enrollment_id")


@pytest.mark.parametrize(
    "ids",
    [
        ["E1", "E2", "E3"],
        ["E1", " E1 ", "E3"],  # the same id once trimmed
        ["E1", None, None, " ", "E2"],  # missing ids are not repeats of each other
        ["E1", None, "E2", "E2"],
        [None, None],
    ],
)
def test_repeated_ids_are_marked_as_an_exact_count_marks_them(ids: list[str | None]) -> None:
    from transforms.enrollments import REPEATED_ID, mark_repeated_ids

    raw = raw_frame([row(e) for e in ids])
    trimmed = pl.col("enrollment_id").str.strip_chars().replace("", None)
    expected = raw.select((trimmed.is_not_null() & trimmed.is_duplicated()).alias("r"))
    assert mark_repeated_ids(raw).get_column(REPEATED_ID).to_list() == expected["r"].to_list()
