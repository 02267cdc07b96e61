"""Tests for transforms.identity: the stdnum-based scalar parser and its polars twin."""

from __future__ import annotations

import datetime
import re
import sys
from collections.abc import Sequence

import polars as pl
import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from transforms.identity import (
    CANONICAL,
    ID_COLUMNS,
    WEIGHTS,
    WHITESPACE,
    IdNumber,
    canonical_validity,
    id_columns,
    id_struct,
    is_valid,
    normalize,
    parse,
    upgrade_15,
    with_id_columns,
)

AS_OF = datetime.date(2024, 6, 30)
FULL_WIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "0123456789Xx"})
FAKE = Faker("zh_CN")  # one instance: creating a Faker is slow; seeded per example instead


def make(body17: str) -> str:
    """Complete 17 digits with their check character (stdnum wants a placeholder appended)."""
    return body17 + ric.calc_check_digit(body17 + "0")


def weighted_check(body17: str) -> str:
    """The check character straight from the spec's weights, as an oracle."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(body17, WEIGHTS, strict=True)) % 11]


def vectorised(raws: Sequence[str | None], as_of: datetime.date = AS_OF) -> pl.DataFrame:
    """Run id_columns over a frame built from `raws`."""
    frame = pl.DataFrame({"raw": list(raws)}, schema={"raw": pl.String})
    return frame.select(id_columns(pl.col("raw"), pl.lit(as_of)))


def assert_agrees(raws: Sequence[str | None], as_of: datetime.date = AS_OF) -> None:
    """The vectorised columns equal the scalar parse, row by row."""
    out = vectorised(raws, as_of)
    assert out.columns == list(ID_COLUMNS)
    assert out.schema == pl.Schema(
        {
            "national_id": pl.String,
            "is_valid_id": pl.Boolean,
            "id_birth_date": pl.Date,
            "id_gender": pl.String,
        }
    )
    for raw, row in zip(raws, out.iter_rows(), strict=True):
        parsed = parse(raw, as_of)
        expected = (
            parsed.number if parsed else upgrade_15(normalize(raw)),
            parsed is not None,
            parsed.birth_date if parsed else None,
            parsed.gender if parsed else None,
        )
        assert row == expected, repr(raw)
    # The snapshot screen's shortcut: true exactly for a valid number already in normal form
    # (which is then its own normal form); any other spelling is left to the full check.
    canonical = pl.DataFrame({"raw": list(raws)}, schema={"raw": pl.String}).select(
        canonical_validity(pl.col("raw"), as_of)
    )
    for raw, (fast,) in zip(raws, canonical.iter_rows(), strict=True):
        parsed = parse(raw, as_of)
        in_normal_form = raw is not None and re.fullmatch(CANONICAL[1:-1], raw) is not None
        assert fast is (in_normal_form and parsed is not None), repr(raw)
        assert not fast or (parsed is not None and parsed.number == raw), repr(raw)


VALID = make("11010519491231002")  # 11010519491231002X: female, born 1949-12-31


# --- scalar unit tests -----------------------------------------------------------------------


def test_known_valid_number() -> None:
    assert VALID == "11010519491231002X"
    assert parse(VALID, AS_OF) == IdNumber(VALID, datetime.date(1949, 12, 31), "F")
    assert is_valid(VALID, AS_OF)


def test_weights_are_mod_11_2() -> None:
    assert tuple(2 ** (17 - i) % 11 for i in range(17)) == WEIGHTS
    assert weighted_check("11010519491231002") == "X"


@pytest.mark.parametrize("wrong", ["0", "1", "9"])
def test_wrong_checksum(wrong: str) -> None:
    assert not is_valid(VALID[:-1] + wrong, AS_OF)


def test_lower_case_x() -> None:
    assert normalize(VALID.lower()) == VALID
    assert parse(VALID.lower(), AS_OF) == parse(VALID, AS_OF)
    # Only a trailing x is upper-cased; an interior one leaves the number invalid.
    assert normalize("1x2x") == "1x2X"


def test_full_width_digits_and_x() -> None:
    full = VALID.translate(FULL_WIDTH)
    assert full != VALID
    assert normalize(full) == VALID
    assert parse(full.lower(), AS_OF) == parse(VALID, AS_OF)
    assert normalize("ＡＢｃ") == "ABc"


def test_interior_white_space_and_ideographic_space() -> None:
    spaced = f"\u3000{VALID[:6]} {VALID[6:14]}\t{VALID[14:]}\xa0\n"
    assert normalize(spaced) == VALID
    assert parse(spaced, AS_OF) == parse(VALID, AS_OF)


def test_whitespace_constant_is_str_isspace() -> None:
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(WHITESPACE) == spaces


def test_fifteen_digit_upgrade() -> None:
    legacy = "110105491231002"  # 1949-12-31, sequence 002: female
    assert upgrade_15(legacy) == VALID
    assert parse(legacy, AS_OF) == IdNumber(VALID, datetime.date(1949, 12, 31), "F")
    male = parse("110105491231003", AS_OF)
    assert male is not None
    assert male.gender == "M"
    assert male.number == make("11010519491231003")


@pytest.mark.parametrize(
    "number", ["11010549123100", "1101054912310021", "11010549123100x", "١١٠١٠٥٤٩١٢٣١٠٠٢", ""]
)
def test_upgrade_15_leaves_other_input_alone(number: str) -> None:
    assert upgrade_15(number) == number


def test_birth_date_bounds() -> None:
    assert not is_valid(make("11010518991231001"), AS_OF)
    assert is_valid(make("11010519000101001"), AS_OF)
    assert is_valid(make("11010520240630001"), AS_OF)  # born on the feed date
    assert not is_valid(make("11010520240701001"), AS_OF)  # born after it
    assert is_valid(make("11010520240701001"), datetime.datetime(2024, 7, 1, 0, 0))


@pytest.mark.parametrize(
    ("ymd", "valid"),
    [
        ("20000229", True),  # divisible by 400
        ("19000229", False),  # divisible by 100, not 400
        ("20240229", True),
        ("20230229", False),
        ("19960230", False),
        ("20231131", False),
        ("20231301", False),
        ("20230001", False),
        ("20230100", False),
    ],
)
def test_real_dates_only(ymd: str, valid: bool) -> None:
    number = make(f"110105{ymd}001")
    assert is_valid(number, AS_OF) is valid
    assert_agrees([number])


def test_area_code_is_not_checked() -> None:
    number = make("00000019800101001")
    assert ric.is_valid(number) is False  # stdnum's strict place rule would reject it
    assert is_valid(number, AS_OF)
    assert is_valid(make("99999919800101001"), AS_OF)


def test_stdnum_validate_raises_bare_key_error_but_parse_does_not() -> None:
    number = make("12345619800101001")
    with pytest.raises(KeyError):
        ric.validate(number)
    assert is_valid(number, AS_OF)


@pytest.mark.parametrize(("digit", "gender"), [(str(d), "MF"[d % 2 == 0]) for d in range(10)])
def test_gender_from_character_17(digit: str, gender: str) -> None:
    parsed = parse(make(f"1101051980010100{digit}"), AS_OF)
    assert parsed is not None
    assert parsed.gender == gender


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "\u3000", VALID[:-1], VALID + "1", VALID[:-1] + "Y", "+" + VALID[1:]],
)
def test_empty_and_malformed(raw: str | None) -> None:
    assert parse(raw, AS_OF) is None
    assert not is_valid(raw, AS_OF)


def test_non_ascii_digits_are_not_digits() -> None:
    arabic = VALID[:-1].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")) + "X"
    assert arabic.replace("X", "").isdigit()
    assert parse(arabic, AS_OF) is None
    assert normalize(None) == ""
    assert normalize(123) == ""  # type: ignore[arg-type]


def test_as_of_must_be_a_date() -> None:
    with pytest.raises(TypeError):
        parse(VALID, "2024-06-30")  # type: ignore[arg-type]


# --- vectorised unit tests -------------------------------------------------------------------


def test_vectorised_examples() -> None:
    raws = [
        VALID,
        VALID.lower(),
        VALID.translate(FULL_WIDTH),
        f" {VALID[:9]}\u3000{VALID[9:]}\t",
        "110105491231002",
        "110105 491231 003",
        make("00000019800101001"),
        make("11010518991231001"),
        make("11010520240701001"),
        VALID[:-1] + "0",
        None,
        "",
        "abc x",
    ]
    out = vectorised(raws)
    assert out["is_valid_id"].to_list() == [True] * 7 + [False] * 6
    assert out["national_id"].to_list()[:4] == [VALID] * 4
    assert out["national_id"].to_list()[-3:] == ["", "", "abcX"]
    assert out["id_gender"].to_list()[4:6] == ["F", "M"]
    assert_agrees(raws)


def test_as_of_column_and_datetime() -> None:
    number = make("11010520240701001")
    frame = pl.DataFrame(
        {
            "raw": [number] * 4,
            "as_of": [datetime.date(2024, 6, 30), datetime.date(2024, 7, 1), None, None],
        }
    )
    out = frame.select(id_columns(pl.col("raw"), pl.col("as_of")))
    assert out["is_valid_id"].to_list() == [False, True, False, False]
    dt = frame.select(id_columns(pl.col("raw"), datetime.datetime(2024, 7, 1, 12)))
    assert dt["is_valid_id"].all()


def test_with_id_columns_and_id_struct_match_id_columns() -> None:
    raws = [VALID, "110105491231002", "junk", None]
    frame = pl.DataFrame({"national_id": raws, "other": [1, 2, 3, 4]})
    expected = frame.with_columns(id_columns(pl.col("national_id"), AS_OF))
    assert with_id_columns(frame, "national_id", AS_OF).equals(expected)
    assert with_id_columns(frame.lazy(), "national_id", AS_OF).collect().equals(expected)
    unnested = frame.select(id_struct(pl.col("national_id"), AS_OF).alias("s")).unnest("s")
    assert unnested.equals(expected.select(ID_COLUMNS))


def test_non_string_column_is_cast() -> None:
    frame = pl.DataFrame({"raw": [int(make("11010519800101001"))]})
    assert frame.select(id_columns(pl.col("raw"), AS_OF))["is_valid_id"].item()


# --- property tests --------------------------------------------------------------------------

FULL_WIDTH_DIGITS = "".join(chr(0xFF10 + i) for i in range(10))
ID_ALPHABET = "0123456789xX" + FULL_WIDTH_DIGITS + "ｘＸ" + WHITESPACE
id_like_text = st.text(alphabet=ID_ALPHABET, max_size=24)
any_text = st.text(alphabet=st.characters(exclude_categories=[]))  # surrogates included
polars_text = st.text()  # polars holds UTF-8 only, so no lone surrogates here
dates = st.dates(min_value=datetime.date(1890, 1, 1), max_value=datetime.date(2110, 12, 31))
FAST = settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(raw=st.one_of(any_text, id_like_text, st.none()), as_of=dates)
def test_parse_never_raises(raw: str | None, as_of: datetime.date) -> None:
    result = parse(raw, as_of)
    assert result is None or (len(result.number) == 18 and result.number.isascii())
    assert is_valid(raw, as_of) is (result is not None)


@settings(deadline=None, max_examples=200)
@given(raw=st.one_of(any_text, id_like_text), as_of=dates)
def test_parse_never_raises_many(raw: str, as_of: datetime.date) -> None:
    parse(raw, as_of)


@FAST
@given(raws=st.lists(st.one_of(polars_text, id_like_text, st.none()), max_size=30), as_of=dates)
def test_vectorised_agrees_on_arbitrary_text(raws: list[str | None], as_of: datetime.date) -> None:
    assert_agrees(raws, as_of)


def variants(number: str, draw_ws: st.DrawFn) -> list[str]:
    """Spellings of one number the feeds send: lower x, full width, spaces, the 15-digit form."""
    spaced = "".join(ch + draw_ws(st.sampled_from(["", "", " ", "\u3000", "\t"])) for ch in number)
    return [
        number,
        number.lower(),
        number.translate(FULL_WIDTH),
        spaced,
        number[:6] + number[8:17],  # the 15-digit legacy form: no century, no check character
        number[:-1] + "0" if number[-1] != "0" else number[:-1] + "1",  # wrong check character
    ]


@st.composite
def faker_numbers(draw: st.DrawFn) -> list[str]:
    """Faker zh_CN numbers, births 0-130 years before today (so some before 1900)."""
    FAKE.seed_instance(draw(st.integers(0, 2**32)))
    count = draw(st.integers(1, 10))
    # The zh_CN provider takes min_age/max_age; Faker's generic stub does not know them.
    return [FAKE.ssn(min_age=0, max_age=130) for _ in range(count)]  # type: ignore[call-arg]


@st.composite
def faker_batches(draw: st.DrawFn) -> list[str]:
    """Faker zh_CN numbers and their variants."""
    return [v for n in draw(faker_numbers()) for v in variants(n, draw)]


@FAST
@given(raws=faker_batches(), as_of=dates)
def test_vectorised_agrees_on_faker_numbers(raws: list[str], as_of: datetime.date) -> None:
    assert_agrees(raws, as_of)


@FAST
@given(numbers=faker_numbers())
def test_every_faker_number_born_by_as_of_is_valid(numbers: list[str]) -> None:
    as_of = datetime.date.today()  # Faker draws birthdays back from today
    out = vectorised(numbers, as_of)
    for number, valid in zip(numbers, out["is_valid_id"], strict=True):
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        assert born <= as_of
        assert valid is (born >= datetime.date(1900, 1, 1)), number
        assert is_valid(number, as_of) is valid
        assert weighted_check(number[:17]) == number[17]


def expected_validity(year: int, month: int, day: int, as_of: datetime.date) -> bool:
    """What datetime.date says about characters 7-14."""
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= as_of


def test_dates_agree_with_datetime_exhaustively() -> None:
    years = [1899, 1900, 1904, 1999, 2000, 2023, 2024, 2025, 2100]
    cases = [(y, m, d) for y in years for m in range(14) for d in range(33)]
    numbers = [make(f"110105{y:04d}{m:02d}{d:02d}001") for y, m, d in cases]
    assert [is_valid(n, AS_OF) for n in numbers] == [expected_validity(*c, AS_OF) for c in cases]
    assert_agrees(numbers)  # and the vectorised columns say the same


@FAST
@given(
    cases=st.lists(
        st.tuples(st.integers(1, 9999), st.integers(0, 99), st.integers(0, 99), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    as_of=dates,
)
def test_dates_agree_with_datetime(
    cases: list[tuple[int, int, int, bool]], as_of: datetime.date
) -> None:
    raws, expected = [], []
    for year, month, day, legacy in cases:
        number = make(f"110105{year:04d}{month:02d}{day:02d}001")
        raws.append(number[:6] + number[8:17] if legacy and 1900 <= year <= 1999 else number)
        expected.append(expected_validity(year, month, day, as_of))
    assert vectorised(raws, as_of)["is_valid_id"].to_list() == expected
    assert [is_valid(r, as_of) for r in raws] == expected


def test_canonical_check_character_every_candidate() -> None:
    # The screen's one-parse check (base 35) against the full check, for every character that
    # could stand last: each digit and X (one of them right), lower-case x, letters base 35
    # reads as digits (A, Y), and Z, which it does not.
    bodies = ["11010519491231002", "44030419900101001", "00000019000101000", "99999920240229999"]
    raws = [body + last for body in bodies for last in "0123456789XxAYZ"]
    assert_agrees(raws)
    valid = pl.DataFrame({"raw": raws}).select(canonical_validity(pl.col("raw"), AS_OF))
    # One right check character per body, found among the upper-case candidates only.
    assert valid.to_series().sum() == 4
    assert sum(parse(r, AS_OF) is not None for r in raws if r[-1] != "x") == 4
