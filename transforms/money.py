"""Money as integer fen, parsed from the sender's decimal text without ever passing through a float.

>>> import polars as pl
>>> values = pl.DataFrame({"v": ["12.3", "0.05", "1200", "-1.00", "1e5"]})
>>> values.select(to_fen(pl.col("v")))["v"].to_list()
[1230, 5, 120000, -100, None]
"""

from __future__ import annotations

import polars as pl

from schemas.notation import DECIMAL_RE, too_large, too_many_places
from transforms.yuan import fen_to_yuan

__all__ = ["fen_to_yuan", "is_plain_amount", "plain_to_fen", "to_fen", "yuan_text"]


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


def yuan_text(fen: pl.Expr) -> pl.Expr:
    """Int64 fen → yuan text with exactly 2 decimals, as ``fen_to_yuan`` gives, for a column.

    >>> pl.DataFrame({"f": [123456, -5, 0]}).select(yuan_text(pl.col("f")))["f"].to_list()
    ['1234.56', '-0.05', '0.00']
    """
    size = fen.abs()
    return pl.concat_str(
        pl.when(fen < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (size // 100).cast(pl.String),
        pl.lit("."),
        (size % 100).cast(pl.String).str.pad_start(2, "0"),
    ).alias(fen.meta.output_name())


# The usual amount: 1 to 15 digits, a point and two decimals; its fen are its digits.
PLAIN_AMOUNT_RE = r"^[0-9]{1,15}\.[0-9]{2}$"


def is_plain_amount(text: pl.Expr) -> pl.Expr:
    """The text is a usual amount (``PLAIN_AMOUNT_RE``), for which ``plain_to_fen`` suffices."""
    return text.str.contains(PLAIN_AMOUNT_RE)


def plain_to_fen(text: pl.Expr) -> pl.Expr:
    """``to_fen`` of a usual amount (``is_plain_amount``), at a quarter of its cost: the digits
    without the point. Only for a column whose values are all usual amounts (or null)."""
    return text.str.replace(".", "", literal=True).cast(pl.Int64).alias(text.meta.output_name())
