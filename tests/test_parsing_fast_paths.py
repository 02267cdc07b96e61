"""The parsers' fast paths for the usual notation (a timestamp with seconds and an offset, an
amount with two decimals) give, value for value, what the general rewriting gives: the
timestamp's reference below is its parser as it was before the fast path, kept here verbatim;
the amount's is ``to_fen``, which the fast path sits beside."""

from __future__ import annotations

import itertools
import random

import polars as pl
import pytest
from polars.testing import assert_series_equal

from schemas.discharge import TIMESTAMP_RE, parse_timestamp


def reference_timestamp(text: pl.Expr) -> pl.Expr:
    shaped = text.str.contains(TIMESTAMP_RE)
    canonical = (
        text.str.replace(" ", "T")
        .str.replace(r"T([0-9]{2}:[0-9]{2})$", "T$1:00")
        .str.replace(r"T([0-9]{2}:[0-9]{2})([Z+-])", "T$1:00$2")
        .str.replace(r"Z$", "+00:00")
        .str.replace(r"([+-][0-9]{2})$", "$1:00")
    )
    with_zone = pl.when(canonical.str.contains(r"[+-][0-9]{2}:?[0-9]{2}$")).then(canonical)
    local = canonical + "+08:00"
    full = with_zone.otherwise(local)
    return (
        pl.when(shaped)
        .then(full.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC"))
        .otherwise(None)
    )


DAYS = ["2026-11-12", "2024-02-29", "2026-02-29", "2026-13-01", "0001-01-01", "9999-12-31",
        "2026-1-12", "２０２６-11-12"]  # fmt: skip
SEPARATORS = ["T", " ", "t", "  ", ""]
TIMES = ["10:30", "10:30:00", "23:59:59", "24:00:00", "10:30:60", "9:30:00", "10:3", "00:00:00"]
FRACTIONS = ["", ".1", ".123456", ".123456789", ".1234567890", "."]
OFFSETS = ["", "Z", "z", "+08", "+0800", "+08:00", "-05:30", "+8:00", "+08:0", "-00:00",
           "+14:00", "+25:00", " +08:00"]  # fmt: skip


def _timestamps() -> list[str | None]:
    values: list[str | None] = [None, "", "yesterday", "2026-11-12", "T10:30:00+08:00"]
    values += [
        d + s + t + f + o
        for d, s, t, f, o in itertools.product(DAYS, SEPARATORS, TIMES, FRACTIONS, OFFSETS)
    ]
    rng = random.Random(7)
    chars = "0123456789-:T +Z."
    values += ["".join(rng.choice(chars) for _ in range(rng.randrange(1, 30))) for _ in range(3000)]
    return values


def test_timestamps_parse_as_the_general_rewriting_parses_them() -> None:
    frame = pl.DataFrame({"t": _timestamps()}, schema={"t": pl.String})
    got = frame.select(parse_timestamp(pl.col("t"))).to_series()
    expected = frame.select(reference_timestamp(pl.col("t"))).to_series()
    assert got.is_not_null().sum() > 1000  # many of them are timestamps
    assert_series_equal(got, expected)


@pytest.mark.parametrize("text", ["2026-11-12T10:30:00+08:00", "2026-11-12T10:30:00.5-05:30"])
def test_the_usual_notation_parses(text: str) -> None:
    frame = pl.DataFrame({"t": [text]})
    assert frame.select(parse_timestamp(pl.col("t"))).item() is not None


def _amounts() -> list[str | None]:
    values: list[str | None] = [None, "", ".", "-", "-0.00", "-0", "0.00", "00.00", ".50", "5.",
                                "1e5", "1,234.00", "NaN", "１００.００", "+100.00", " 60.00",
                                "60.00 ", "999999999999999.99", "1000000000000000.00",
                                "9999999999999999.99", "0000000000000000001.00", "12.345",
                                "12.3", "12", "-12.30", "--1.00", "1.0.0", "1.2e"]  # fmt: skip
    rng = random.Random(11)
    for _ in range(4000):
        whole = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 18)))
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 4)))
        sign = rng.choice(["", "", "", "-", "+", " "])
        point = rng.choice([".", ".", ".", "", ",", "．"])
        values.append(sign + whole + point + frac)
    return values


def test_usual_amounts_parse_to_the_fen_the_general_way_gives() -> None:
    from transforms.money import is_plain_amount, plain_to_fen, to_fen

    frame = pl.DataFrame({"v": _amounts()}, schema={"v": pl.String})
    # to_fen is the general way (unchanged); plain_to_fen is its fast path for usual amounts.
    expected = frame.select(to_fen(pl.col("v"))).to_series()
    usual = frame.filter(is_plain_amount(pl.col("v")))
    assert usual.height > 150
    assert_series_equal(
        usual.select(plain_to_fen(pl.col("v"))).to_series(),
        usual.select(to_fen(pl.col("v"))).to_series(),
    )
    # every amount the general way turns into fen with a point and two places is a usual one
    two_places = frame.filter(
        pl.col("v").str.contains(r"^[0-9]+\.[0-9]{2}$") & expected.is_not_null()
    )
    assert two_places.select(is_plain_amount(pl.col("v")).all()).item()
