"""Money as integer fen, parsed from the sender's decimal text without ever passing through a float.

>>> import polars as pl
>>> values = pl.DataFrame({"v": ["12.3", "0.05", "1200", "-1.00", "1e5"]})
>>> values.select(to_fen(pl.col("v")))["v"].to_list()
[1230, 5, 120000, -100, None]
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


def to_fen(text: pl.Expr) -> pl.Expr:
    """Decimal text → Int64 fen; null unless it is decimal notation with ≤ 2 places that fits."""
    ok = text.str.contains(DECIMAL_RE) & ~too_many_places(text) & ~too_large(text)
    negative = text.str.starts_with("-")
    digits = text.str.strip_chars_start("-")
    whole = digits.str.split_exact(".", 1).struct.field("field_0")
    frac = digits.str.split_exact(".", 1).struct.field("field_1").fill_null("")
    fen = whole.cast(pl.Int64, strict=False) * 100 + frac.str.pad_end(2, "0").cast(
        pl.Int64, strict=False
    )
    return (
        pl.when(ok).then(pl.when(negative).then(-fen).otherwise(fen)).alias(text.meta.output_name())
    )


def too_many_places(text: pl.Expr) -> pl.Expr:
    """Decimal text with more than 2 decimal places (rejected, never rounded)."""
    return text.str.contains(r"\.[0-9]{3,}$")


def too_large(text: pl.Expr) -> pl.Expr:
    """Decimal text whose integer part has more digits than Int64 fen can sum safely."""
    return text.str.contains(rf"^-?[0-9]{{{MAX_INTEGER_DIGITS + 1},}}")


def fen_to_yuan(fen: int) -> str:
    """Integer fen as yuan text with exactly 2 decimals, for payment files and reports.

    >>> fen_to_yuan(123456), fen_to_yuan(-5), fen_to_yuan(0)
    ('1234.56', '-0.05', '0.00')
    """
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"
