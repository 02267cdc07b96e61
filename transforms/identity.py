r"""Chinese resident identity numbers (居民身份证号码, GB 11643-1999).

The rules are those of ``spec/feeds.md``, section *Identity numbers*: normalise first (strip every
white-space character, fold full-width digits and letters to ASCII, upper-case a trailing ``x``),
upgrade a 15-digit legacy number to 18 characters, then require an ISO 7064 MOD 11-2 check
character that matches and a birth date between 1900-01-01 and ``as_of`` (the feed date).  The
area code is deliberately not checked.

The scalar functions wrap ``python-stdnum``; :func:`id_columns` (per-column expressions) and
:func:`with_id_columns` (whole frame, for bulk) give the same answers in vectorised polars.

>>> import datetime
>>> parse("11010519491231002\uff58", datetime.date(2024, 1, 1))  # full-width x
IdNumber(number='11010519491231002X', birth_date=datetime.date(1949, 12, 31), gender='F')
>>> upgrade_15("110105491231002")
'11010519491231002X'
>>> is_valid("110105 19491231 0021", datetime.date(2024, 1, 1))  # wrong check character
False
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

__all__ = [
    "CANONICAL",
    "ID_COLUMNS",
    "IdNumber",
    "canonical_validity",
    "id_columns",
    "id_struct",
    "is_valid",
    "normalize",
    "parse",
    "upgrade_15",
    "with_id_columns",
]

ID_COLUMNS = ("national_id", "is_valid_id", "id_birth_date", "id_gender")
MIN_BIRTH_DATE = datetime.date(1900, 1, 1)
_MIN_BIRTH_YMD = int(MIN_BIRTH_DATE.strftime("%Y%m%d"))

# Exactly the code points for which str.isspace() is true: Unicode White_Space plus the ASCII
# separators U+001C-U+001F.  Spelled out because polars' regex `\s` lacks U+001C-U+001F and both
# implementations must strip the same set.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_HALF_WIDTH = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# U+FF10-FF19, U+FF21-FF3A and U+FF41-FF5A sit at a fixed offset of 0xFEE0 from ASCII.
_FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) for c in _HALF_WIDTH)

# One str.translate table does the whole character-level normalisation in a single pass.
_TRANSLATION: dict[int, int | None] = {ord(c): None for c in WHITESPACE}
_TRANSLATION.update({ord(f): ord(h) for f, h in zip(_FULL_WIDTH, _HALF_WIDTH, strict=True)})

# ISO 7064 MOD 11-2: character i (1-based) of the 17 carries weight 2**(18 - i) mod 11, and the
# check character is _CHECK_CHARS[sum % 11].
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
# A string already in normal form and of a valid shape; `[0-9]` is ASCII-only, unlike `\d`.
_SHAPE = r"^(?:[0-9]{15}|[0-9]{17}[0-9X])$"


@dataclass(frozen=True)
class IdNumber:
    """A valid identity number with what it encodes."""

    number: str  # normalised 18-character form
    birth_date: datetime.date
    gender: str  # "M" or "F"


def _ascii_digits(text: str) -> bool:
    """Tell whether text is non-empty and only ASCII 0-9."""
    # Not str.isdigit() alone (it accepts '٣' and '²'), nor stdnum.util.isdigits (its
    # `^[0-9]+$` accepts a trailing newline).
    return text.isascii() and text.isdigit()


def normalize(raw: str | None) -> str:
    """Strip white space, fold full-width digits/letters, upper-case a trailing x; "" for None."""
    if not isinstance(raw, str):  # None, or a stray non-string from a loosely typed reader
        return ""
    text = raw.translate(_TRANSLATION)
    if text.endswith("x"):
        text = text[:-1] + "X"
    return text


def upgrade_15(number: str) -> str:
    """Upgrade a 15-digit legacy number to 18 characters; anything else is returned unchanged."""
    if len(number) != 15 or not _ascii_digits(number):
        return number
    body = number[:6] + "19" + number[6:]
    # calc_check_digit wants the number *with* a check character, which it ignores.
    return body + ric.calc_check_digit(body + "0")


def parse(raw: str | None, as_of: datetime.date) -> IdNumber | None:
    """Return the parsed number, or None when it is empty or invalid on `as_of`; never raises."""
    if isinstance(as_of, datetime.datetime):  # date <= datetime raises TypeError
        as_of = as_of.date()
    if not isinstance(as_of, datetime.date):
        raise TypeError(f"as_of must be a datetime.date, not {type(as_of).__name__}")
    number = upgrade_15(normalize(raw))
    # Shape first: stdnum's helpers call int(), which accepts '٣', '_', signs and spaces.
    if len(number) != 18 or not _ascii_digits(number[:17]) or number[17] not in _CHECK_CHARS:
        return None
    try:
        if ric.calc_check_digit(number) != number[17]:
            return None
        birth_date = ric.get_birth_date(number)  # InvalidComponent for 19000229 and the like
    except (ValidationError, ValueError, KeyError):  # defensive: no input may stop a batch
        return None
    if not MIN_BIRTH_DATE <= birth_date <= as_of:
        return None
    return IdNumber(
        number=number, birth_date=birth_date, gender="M" if int(number[16]) % 2 else "F"
    )


def is_valid(raw: str | None, as_of: datetime.date) -> bool:
    """Tell whether `raw` is a valid identity number on `as_of`."""
    return parse(raw, as_of) is not None


def _normalised(raw: pl.Expr, as_of: pl.Expr | datetime.date) -> pl.Expr:
    """Struct stage: the raw text, its normal form `text`, `shaped` and `is_15`."""
    as_of_expr = pl.lit(as_of) if isinstance(as_of, datetime.date) else as_of
    f = pl.field
    s = pl.struct(
        raw=raw.cast(pl.String).fill_null(""),
        as_of=as_of_expr.cast(pl.Date),  # a Datetime feed date counts by its day, as in parse()
    )
    s = s.struct.with_fields(
        text=f("raw")
        .str.replace_many(
            list(WHITESPACE) + list(_FULL_WIDTH), [""] * len(WHITESPACE) + list(_HALF_WIDTH)
        )
        .str.replace(r"x$", "X")  # Rust regex: `$` is the end of text, no newline quirk
    )
    s = s.struct.with_fields(shaped=f("text").str.contains(_SHAPE))
    return s.struct.with_fields(is_15=f("shaped") & (f("text").str.len_bytes() == 15))


def _national_id() -> pl.Expr:
    """Field expression on _normalised: the text, 15-digit numbers upgraded to 18 characters."""
    f = pl.field
    legacy = pl.when(f("is_15")).then(f("text"))  # null elsewhere, so the work below is cheap
    # Base 13 makes the MOD 11-2 sum a single parse (see _validated); "19" is 1 * 13 + 9 there.
    legacy13 = legacy.str.to_integer(base=13, strict=False)
    body13 = legacy13 // 13**9 * 13**11 + (1 * 13 + 9) * 13**9 + legacy13 % 13**9
    check = pl.lit(_CHECK_CHARS).str.slice(body13 % 11 * 2 % 11, 1)
    return (
        pl.when(f("is_15"))
        .then(pl.concat_str(legacy.str.slice(0, 6), pl.lit("19"), legacy.str.slice(6), check))
        .otherwise(f("text"))
    )


def _validated(s: pl.Expr) -> pl.Expr:
    """Add `valid`, `birth_date` and `gender` (null unless valid) to a _normalised struct."""
    return _birth_and_gender(_valid(s))


def _valid(s: pl.Expr) -> pl.Expr:
    """Add `valid` (and the fields it is computed from) to a struct holding `text`, `as_of`,
    `shaped` and `is_15` (a _normalised struct)."""
    f = pl.field
    s = s.struct.with_fields(
        body=f("text").str.head(17),
        # The check character in base 36 is 0-9 or 33 for X; % 23 maps 33 to its value 10.
        given_check=f("text").str.tail(1).str.to_integer(base=36, strict=False) % 23,
    )
    s = s.struct.with_fields(
        value=f("body").str.to_integer(strict=False),  # 17 digits fit an Int64 (< 9.2e18)
        # WEIGHTS[i] (0-based) is 2**(17 - i) % 11 and 13 = 2 (mod 11), so the weighted sum is
        # 2 * (the body read in base 13) mod 11: one parse instead of 17 digit extractions.
        value13=f("body").str.to_integer(base=13, strict=False),
    )
    s = s.struct.with_fields(
        # A 15-digit number becomes AAAAAA + "19" + the rest: shift the area code two places
        # left.  Its check character is made, not checked, so value13 stays as read.
        value=pl.when(f("is_15"))
        .then(f("value") // 10**9 * 10**11 + 19 * 10**9 + f("value") % 10**9)
        .otherwise(f("value")),
        # MOD 11-2 holds when the weighted sum plus the check value is 1 (mod 11), which is the
        # same as "10X98765432"[sum % 11] being the check character.
        check_ok=f("is_15") | ((f("value13") % 11 * 2 + f("given_check")) % 11 == 1),
    )
    s = s.struct.with_fields(
        ymd=f("value") // 1000 % 100_000_000,  # characters 7-14 as YYYYMMDD
        as_of_ymd=f("as_of").dt.year().cast(pl.Int64) * 10_000
        + f("as_of").dt.month().cast(pl.Int64) * 100
        + f("as_of").dt.day().cast(pl.Int64),
    )
    s = s.struct.with_fields(
        year=f("ymd") // 10_000, month=f("ymd") // 100 % 100, day=f("ymd") % 100
    )
    # The date is checked with integers: polars' str.to_date("%Y%m%d") is lenient (it reads
    # "2024121" as 2024-12-01 and skips spaces) and pl.date() raises on 1900-02-29.
    valid = f("shaped") & f("check_ok") & _a_birth_date(f("as_of_ymd"))
    # null from an unparsable body or a null as_of: invalid
    return s.struct.with_fields(valid=valid.fill_null(False))


def _a_birth_date(as_of_ymd: pl.Expr | int) -> pl.Expr:
    """The struct's ``year``, ``month``, ``day`` make a calendar date, and its ``ymd`` lies
    between the earliest birth date accepted and ``as_of_ymd`` (YYYYMMDD)."""
    f = pl.field
    leap = (f("year") % 4 == 0) & ((f("year") % 100 != 0) | (f("year") % 400 == 0))
    return (
        f("month").is_between(1, 12)
        & f("day").is_between(
            1,
            pl.when(f("month") == 2)
            .then(28 + leap.cast(pl.Int64))
            .when(f("month").is_in([4, 6, 9, 11]))
            .then(30)
            .otherwise(31),
        )
        & f("ymd").is_between(_MIN_BIRTH_YMD, as_of_ymd)
    )


def _birth_and_gender(s: pl.Expr) -> pl.Expr:
    """Add `birth_date` and `gender` (null unless valid) to a struct from _valid."""
    f = pl.field
    # Days since 1970-01-01 by the civil-from-days inverse (H. Hinnant), years starting in March.
    year_from_march = f("year") - (f("month") <= 2).cast(pl.Int64)
    era = year_from_march // 400
    year_of_era = year_from_march - era * 400
    day_of_year = (153 * ((f("month") + 9) % 12) + 2) // 5 + f("day") - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return s.struct.with_fields(
        birth_date=pl.when(f("valid"))
        .then(era * 146_097 + day_of_era - 719_468)
        .cast(pl.Int32)
        .cast(pl.Date),
        gender=pl.when(f("valid")).then(
            pl.when(f("value") % 2 == 1).then(pl.lit("M")).otherwise(pl.lit("F"))
        ),
    )


# The normal form of a number with no legacy upgrade to make: what almost every row holds.
CANONICAL = r"^[0-9]{17}[0-9X]$"


def canonical_validity(raw: pl.Expr, as_of: datetime.date) -> pl.Expr:
    """``is_valid_id`` for numbers already in their normal 18-character form; false for any
    other text, valid or not (white space, full-width characters, a lower-case ``x``, a
    15-digit number), which a caller checks the full way (``with_id_columns``).

    The same verdict as ``with_id_columns`` without its normalisation, which changes nothing
    in such text: where this is true, that gives the same verdict and leaves the text as it is
    (``tests/test_identity.py`` holds it to that over hostile text). For a screen of millions
    of rows that are nearly all canonical, the check character is one parse of the whole
    number in base 35: 35 = 2 (mod 11), as 2**(18 - i) gives the weights, so the number's
    value mod 11 is the weighted sum of the body plus the last character's value; a digit
    check character is right when that is 1, an ``X`` (33 in base 35, 0 mod 11, where the
    check value is 10) when it is 2. ~75 % of the cost of the general arithmetic (``_valid``).
    """
    f = pl.field
    text = raw.cast(pl.String)
    as_of_ymd = as_of.year * 10_000 + as_of.month * 100 + as_of.day
    # struct stages as let-bindings (see id_struct): each field computed once.
    s = pl.struct(
        shaped=text.str.contains(CANONICAL),
        # 35**18 < 2**93: an Int128 holds any 18 characters of base 35.
        remainder=text.str.to_integer(base=35, dtype=pl.Int128, strict=False) % 11,
        x=text.str.ends_with("X"),
        ymd=text.str.slice(6, 8).str.to_integer(strict=False),  # characters 7-14, YYYYMMDD
    )
    s = s.struct.with_fields(
        year=f("ymd") // 10_000, month=f("ymd") // 100 % 100, day=f("ymd") % 100
    )
    valid = (
        f("shaped")
        & (f("remainder") == pl.when(f("x")).then(2).otherwise(1))
        & _a_birth_date(as_of_ymd)
    ).fill_null(False)  # null text, or a body that is not a number: invalid
    return s.struct.with_fields(valid=valid).struct.field("valid")


def id_struct(raw: pl.Expr, as_of: pl.Expr | datetime.date) -> pl.Expr:
    """One Struct expression holding the four ID_COLUMNS, every intermediate computed once."""
    # struct.with_fields stages act as let-bindings: each field is computed once and later
    # stages read it with pl.field.  Plain nested expressions cannot share work here: polars
    # 2.1 eliminates common subexpressions one level deep only, and not inside a struct stage.
    f = pl.field
    s = _validated(_normalised(raw, as_of))
    return s.struct.with_fields(
        result=pl.struct(
            national_id=_national_id(),
            is_valid_id=f("valid"),
            id_birth_date=f("birth_date"),
            id_gender=f("gender"),
        )
    ).struct.field("result")


def id_columns(raw: pl.Expr, as_of: pl.Expr | datetime.date) -> list[pl.Expr]:
    """Expressions national_id, is_valid_id, id_birth_date, id_gender; see with_id_columns."""
    # Sibling expressions cannot share a struct stage, so in one select/with_columns the last
    # three each run the whole validation: with_id_columns is about three times cheaper.
    national_id = _normalised(raw, as_of).struct.with_fields(national_id=_national_id())
    validated = _validated(_normalised(raw, as_of))
    return [
        national_id.struct.field("national_id").alias("national_id"),
        validated.struct.field("valid").alias("is_valid_id"),
        validated.struct.field("birth_date").alias("id_birth_date"),
        validated.struct.field("gender").alias("id_gender"),
    ]


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def with_id_columns(frame: FrameT, raw: str | pl.Expr, as_of: pl.Expr | datetime.date) -> FrameT:
    """Add (or replace) the ID_COLUMNS on `frame`, computing the shared work once."""
    raw_expr = pl.col(raw) if isinstance(raw, str) else raw
    scratch = f"__identity_{uuid.uuid4().hex}"  # cannot collide with a caller's column
    return (
        frame.with_columns(id_struct(raw_expr, as_of).alias(scratch))
        .with_columns(pl.col(scratch).struct.field(name).alias(name) for name in ID_COLUMNS)
        .drop(scratch)
    )
