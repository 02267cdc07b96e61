"""The discharge screen (one polars pass) never passes a row the pandera models quarantine, and
validating with it gives exactly what judging every row by the models gives: the same staged
rows, quarantine rows (rule, message, raw JSON), counts and warnings.

Hostile rows come three ways: the crafted landing of ``test_validate_batch`` (every case of
``test_validation`` spread over dates, sources and formats, a broken JSON line, a feed without
``national_id``), rows mutated at random in every column with the values feeds.md's rules name,
and a hypothesis property over the same values; each with text dates and with typed ones (as a
typed Parquet file is read with ``keep_dates``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from samples import HOSPITALS, national_id
from samples import discharge_row as row
from test_validate_batch import _landing

from landing.delivery import read_delivery
from landing.partitions import Partition
from landing.readers import READ_ERROR
from schemas.discharge import COLUMNS, DATES, OPTIONAL, REQUIRED
from schemas.quarantine import RULES
from transforms import discharges
from transforms.discharges import RawRows, ValidatedRows, validate_discharge_batch

CODES = HOSPITALS["hospital_code"]
FEED = date(2026, 11, 27)
VALID_ID = national_id("1956-03-14", 13)

# The values feeds.md's rules are about, column by column (None: the value is missing).
HOSTILE: dict[str, list[str | None]] = {
    "settlement_id": [None, "", " ", "S 1", "S" * 33, "S" * 32, "ab-C9", "结算1", " S7 "],
    "version": [None, "", "0", "1.0", "v2", "007", "1234567890", "999999999", " 2 ", "-1",
                "0000000000000000000001", "２"],
    "record_type": [None, "U", "n", " C ", "V", "NC"],
    "hospital_code": [None, "H999999999", CODES[1], f" {CODES[2]} ", CODES[0].lower()],
    "national_id": [None, "", VALID_ID, VALID_ID[:17], VALID_ID[:17] + "0", "310104560314013",
                    f" {VALID_ID.lower()} ", "abc"],
    "patient_name": [None, "", "   ", "张" * 50, "张" * 51, "李\x01四", "\ufffd",
                     " Ｌｉ　Ｍｉｎｇ ", "O'Brien-Smith"],
    "gender": [None, "X", " f ", "m", "F", "MF"],
    "birth_date": [None, "1956-02-30", "1956-2-01", " 1956-03-14 ", "0999-01-01", "2027-01-01",
                   "1900-02-29", "2000-02-29"],
    "admission_date": [None, "1989-12-31", "1990-01-01", "02/11/2026", "2026-11-20",
                       "2026-11-30", "2026-11-27"],
    "discharge_date": [None, "2026-11-27", "2026-11-28", "2026-11-01", "1989-12-01",
                       "2026-02-29", "2026-11-12T00:00", "1990-01-01"],
    "primary_diagnosis": [None, "", "J18-9", "i10.x05", "肺炎", "A17.000+G01*", "A00.000x001",
                          "K22.301x999", " I10.x05 ", "I10"],
    "settled_at": [None, "yesterday", "2026-11-12 10:30", "2026-11-12T10:30:00Z",
                   "2026-11-12T10:30:00.123456789+0800", "2026-13-12T10:30:00",
                   "2026-11-12T10:30:00+08", "2026-11-12"],
}  # fmt: skip
MONEY_VALUES: list[str | None] = [
    None, "", "-0.00", "-10.00", "100.005", "1e5", "1,234.00", "NaN", "１００.００", "+100.00",
    "sixty", "1234567890123456", "123456789012345", "0.3", "10.01", "100", " 60.00 ", "60.0",
    "-0", ".5", "5.", "inf",
]  # fmt: skip
for _money in ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope"):
    HOSTILE[_money] = MONEY_VALUES


def _frame(rows: Sequence[Mapping[str, str | None]], unreadable: int = 0) -> pl.DataFrame:
    """Rows as ``read_delivery`` hands them over: text, row numbers from 1, the reader's two
    columns (``unreadable`` rows at the end as broken JSON lines)."""
    frame = pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.String)).with_columns(
        pl.lit(None, pl.String).alias(READ_ERROR), pl.lit(None, pl.String).alias("_line")
    )
    if unreadable:
        bad = pl.DataFrame(
            {
                READ_ERROR: ["the line is not a JSON object"] * unreadable,
                "_line": ['{"settlement_id": "X", not json'] * unreadable,
            }
        )
        frame = pl.concat([frame, bad], how="diagonal_relaxed")
    return frame.with_row_index("row_number", offset=1).with_columns(
        pl.col("row_number").cast(pl.Int64)
    )


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    """As a typed Parquet file is read (``keep_dates``): dates typed, what is not one null."""
    return frame.with_columns(pl.col(c).str.to_date("%Y-%m-%d", strict=False) for c in DATES)


def _mutated(seed: int, n: int, share: float = 0.15) -> list[dict[str, str | None]]:
    rng = random.Random(seed)
    rows: list[dict[str, str | None]] = []
    for i in range(n):
        r: dict[str, str | None] = dict(row(f"M{i}"))
        for column, values in HOSTILE.items():
            if rng.random() < share:
                r[column] = rng.choice(values)
        rows.append(r)
    return rows


def assert_same(with_screen: list[ValidatedRows], judged: list[ValidatedRows]) -> None:
    assert len(with_screen) == len(judged)
    for a, b in zip(with_screen, judged, strict=True):
        assert_frame_equal(a.staged, b.staged)
        assert_frame_equal(a.quarantine, b.quarantine)
        assert (a.rows_read, a.rows_quarantined, a.warnings) == (
            b.rows_read,
            b.rows_quarantined,
            b.warnings,
        )


def assert_screen_holds(deliveries: list[RawRows]) -> tuple[int, int]:
    """(a) every row the models quarantine is suspect; (b) both ways give the same outcome.
    Returns (rows quarantined, rows suspect) for the caller to check the case is hostile."""
    judged = validate_discharge_batch(deliveries, CODES, screen=False)
    assert_same(validate_discharge_batch(deliveries, CODES), judged)
    suspect: set[tuple[int, int]] = set()
    for schema in {tuple(d.frame.schema.items()) for d in deliveries}:
        group = [d for d in deliveries if tuple(d.frame.schema.items()) == schema]
        k_of = [i for i, d in enumerate(deliveries) if tuple(d.frame.schema.items()) == schema]
        tagged = discharges._tagged(group)
        screened = discharges._screen(tagged.with_columns(discharges.raw_json(tagged)), CODES)
        for part, rn in (
            screened.filter(pl.col(discharges._SUSPECT))
            .select(discharges._PART, discharges._ROW)
            .iter_rows()
        ):
            suspect.add((k_of[part], rn))
    quarantined = {
        (k, rn) for k, v in enumerate(judged) for rn in v.quarantine["row_number"].to_list()
    }
    assert quarantined <= suspect, sorted(quarantined - suspect)[:5]
    return len(quarantined), len(suspect)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> list[Partition]:
    return _landing(tmp_path_factory.mktemp("screen"))


@pytest.mark.parametrize("typed", [False, True])
def test_the_crafted_landing_is_judged_the_same_with_the_screen(
    crafted: list[Partition], typed: bool
) -> None:
    deliveries = [
        RawRows(read_delivery(p, REQUIRED, optional=OPTIONAL).frame, p.day, p.source)
        for p in crafted
    ]
    if typed:  # the Parquet feed's dates as a typed file's are read (keep_dates)
        deliveries = [
            RawRows(_typed(d.frame), d.feed_date, d.source) if d.source == "MEDIX" else d
            for d in deliveries
        ]
    judged = validate_discharge_batch(deliveries, CODES, screen=False)
    rules = {r for v in judged for r in v.quarantine["rule"].to_list()}
    assert rules == set(RULES) - {"version_conflict"}  # every rule a model checks
    quarantined, suspect = assert_screen_holds(deliveries)
    assert quarantined > 0 and suspect < sum(d.frame.height for d in deliveries)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("typed", [False, True])
def test_the_screen_passes_nothing_the_models_quarantine(seed: int, typed: bool) -> None:
    # Three deliveries of one batch: other feed dates, the same row numbers and ids.
    deliveries = []
    for k in range(3):
        frame = _frame(_mutated(seed * 10 + k, 200), unreadable=k)
        deliveries.append(
            RawRows(_typed(frame) if typed else frame, FEED + timedelta(days=k), f"SRC{k}")
        )
    quarantined, suspect = assert_screen_holds(deliveries)
    assert 0 < quarantined <= suspect < 600 + 3


def test_frames_of_another_shape_go_to_the_models_whole() -> None:
    frame = _frame(_mutated(7, 50))
    # A repeated row number breaks the models' grain: every row is judged by them.
    repeated = frame.with_columns(pl.col("row_number").replace(2, 1))
    tagged = discharges._tagged([RawRows(repeated, FEED, "S")])
    screened = discharges._screen(tagged.with_columns(discharges.raw_json(tagged)), CODES)
    assert screened.get_column(discharges._SUSPECT).all()
    # A frame without a column (read_delivery adds the missing optional one; a caller that
    # does not) fails the same way with the screen as without, even when all rows are clean.
    clean = _frame([row(f"C{i}") for i in range(5)]).drop("national_id")
    for screen in (True, False):
        with pytest.raises(RuntimeError, match="structure"):
            validate_discharge_batch([RawRows(clean, FEED, "S")], CODES, screen=screen)


def test_a_clean_batch_never_calls_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the models were called on rows the screen passed")

    monkeypatch.setattr(discharges, "_validate", refuse)
    rows = [row(f"C{i}", patient_name=f" 张{i} ") for i in range(30)]
    (validated,) = validate_discharge_batch([RawRows(_frame(rows), FEED, "S")], CODES)
    assert validated.staged.height == 30 and validated.quarantine.height == 0


_VALUES = {c: st.sampled_from([row()[c], *HOSTILE[c]]) for c in COLUMNS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.fixed_dictionaries(_VALUES), min_size=1, max_size=12),
    typed=st.booleans(),
    days=st.integers(min_value=-3, max_value=3),
)
def test_property_screen_and_models_agree(
    rows: list[dict[str, str | None]], typed: bool, days: int
) -> None:
    frame = _frame(rows)
    assert_screen_holds([RawRows(_typed(frame) if typed else frame, FEED + timedelta(days), "S")])


def test_the_staged_guard_refuses_a_null() -> None:
    frame = _frame([row("G1")])
    tagged = discharges._tagged([RawRows(frame, FEED, "S")])
    tagged = tagged.with_columns(discharges.raw_json(tagged))
    good, _ = discharges._judge(tagged, CODES)
    staged = discharges._staged(good)
    discharges._check_staged(staged)  # as it is: fine
    with pytest.raises(RuntimeError, match="nulls in version"):
        discharges._check_staged(staged.with_columns(pl.lit(None, pl.Int64).alias("version")))
    with pytest.raises(RuntimeError, match=r"wrong types.*version"):
        discharges._check_staged(staged.with_columns(pl.col("version").cast(pl.Int32)))
