"""Typed Parquet decimals and timestamps become, in polars, exactly the text the Python way
(``_decimal_text``, ``_timestamp_text``: one object per value) gives: the quarantine's raw JSON
and the parsed money and times must not depend on which way a column took."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pyarrow as pa
import pytest

from landing.readers import _decimal_text, _decimal_texts, _timestamp_text, _timestamp_texts


def _python(values: list[object], convert: object) -> list[str | None]:
    assert callable(convert)
    return [convert(v) for v in values]


@pytest.mark.parametrize(("precision", "scale"), [(12, 2), (18, 0), (10, 1), (14, 3), (20, 4),
                                                  (38, 2), (27, 10), (6, 5)])  # fmt: skip
def test_decimals_as_the_python_way_writes_them(precision: int, scale: int) -> None:
    rng = random.Random(precision * 100 + scale)
    unit = Decimal(1).scaleb(-scale)
    # (the Python way's quantize fails beyond 28 digits: a crash the polars way does not have)
    digits = precision if scale <= 2 else min(precision, 27)
    values: list[Decimal | None] = [None, Decimal(0), unit, -unit]
    for _ in range(400):
        n = rng.randrange(-(10 ** (digits - 1)), 10 ** (digits - 1))
        if rng.random() < 0.3:  # whole cents and whole yuan, where the zeros may be cut
            n -= n % (10 ** max(scale - rng.choice([0, 1, 2]), 0))
        values.append(Decimal(n).scaleb(-scale))
    column = pa.chunked_array([pa.array(values, pa.decimal128(precision, scale))])
    expected = _python(column.to_pylist(), _decimal_text)
    assert _decimal_texts("v", column).to_list() == expected


@pytest.mark.parametrize("zone", [None, "UTC", "Asia/Shanghai", "America/New_York", "+05:30",
                                  "Europe/London", "Australia/Lord_Howe"])  # fmt: skip
@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_as_the_python_way_writes_them(zone: str | None, unit: str) -> None:
    rng = random.Random(f"{zone}{unit}")
    start = dt.datetime(1850, 1, 1)  # before 1900 (local mean time) the Python way is taken
    values: list[dt.datetime | None] = [None, dt.datetime(2026, 11, 12, 10, 30)]
    for _ in range(300):
        moment = start + dt.timedelta(seconds=rng.randrange(0, 250 * 365 * 86400))
        if rng.random() < 0.5 and unit != "s":
            moment += dt.timedelta(microseconds=rng.randrange(0, 10**6) // 1000 * 1000)
        if rng.random() < 0.3 and unit == "us":
            moment += dt.timedelta(microseconds=rng.randrange(0, 1000))
        values.append(moment)
    for sample in (values, [v for v in values if v is None or v.year >= 1950]):
        column = pa.chunked_array([pa.array(sample, pa.timestamp(unit, tz=zone))])
        expected = _python(column.to_pylist(), _timestamp_text)
        assert _timestamp_texts("t", column).to_list() == expected


def test_times_outside_the_years_python_writes_still_fail() -> None:
    column = pa.chunked_array([pa.array([dt.datetime(9999, 12, 31, 23)], pa.timestamp("us"))])
    column = column.cast(pa.timestamp("us", tz="Asia/Shanghai"))
    with pytest.raises((ValueError, OverflowError)):
        _timestamp_texts("t", column)
