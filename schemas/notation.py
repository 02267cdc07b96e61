"""The notations the contract accepts (feeds.md): decimal amounts, dates, diagnosis codes, text.

Checks (``schemas``) and parsers (``transforms``) both use these, so each is defined once, here.
"""

from __future__ import annotations

import polars as pl

# The only notation accepted: optional minus, digits, optional point and digits (feeds.md).
DECIMAL_RE = r"^-?[0-9]+(\.[0-9]+)?$"
# At most 15 integer digits: four amounts of that size still add up inside Int64 fen.
MAX_INTEGER_DIGITS = 15
# Things a person would call a number but that are not decimal notation: exponents, thousands
# separators, full-width digits, a leading plus, NaN/Infinity. They are invalid amounts, not
# shapeless values.
NUMBER_LIKE_RE = (
    r"(?i)^[+-]?(([0-9０-９][0-9０-９,，_ ]*)?[.．]?[0-9０-９]*([e][+-]?[0-9]+)?|nan|inf|infinity)$"
)


# The shape of a code of the national medical-insurance ICD-10 edition, after trimming.
DIAGNOSIS_RE = (
    r"^[A-Z][0-9]{2}(\.[0-9x][0-9x]{0,2}(x[0-9]{3})?)?(\+[A-Z][0-9]{2}(\.[0-9x]{1,3})?\*)?$"
)


def too_many_places(text: pl.Expr) -> pl.Expr:
    """Decimal text with more than 2 decimal places (rejected, never rounded)."""
    return text.str.contains(r"\.[0-9]{3,}$")


def too_large(text: pl.Expr) -> pl.Expr:
    """Decimal text whose integer part has more digits than Int64 fen can sum safely."""
    return text.str.contains(rf"^-?[0-9]{{{MAX_INTEGER_DIGITS + 1},}}")


DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Control characters (and the replacement character a bad decode leaves) are never in a name.
CONTROL_RE = r"[\x00-\x1f\x7f\ufffd]"


def parse_date(text: pl.Expr) -> pl.Expr:
    """``YYYY-MM-DD`` that is a real calendar date, else null."""
    return (
        pl.when(text.str.contains(DATE_RE))
        .then(text.str.to_date("%Y-%m-%d", strict=False))
        .otherwise(None)
    )
