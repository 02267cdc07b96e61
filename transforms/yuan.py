"""Integer fen as yuan text: plain Python, so that a read-only command need not load polars."""

from __future__ import annotations


def fen_to_yuan(fen: int) -> str:
    """Integer fen as yuan text with exactly 2 decimals, for payment files and reports.

    >>> fen_to_yuan(123456), fen_to_yuan(-5), fen_to_yuan(0)
    ('1234.56', '-0.05', '0.00')
    """
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"
