"""Small helpers shared by the models: rule-named errors and the column a check runs on."""

from __future__ import annotations

import polars as pl
from pandera.api.polars.types import PolarsData


def rule(name: str, message: str) -> str:
    """The error text of a check: ``rule: message``, split again when building quarantine rows."""
    return f"{name}: {message}"


def col(data: PolarsData) -> pl.Expr:
    """The column a column-check is running on."""
    return pl.col(data.key)


def passes(data: PolarsData, ok: pl.Expr) -> pl.LazyFrame:
    """A check result: one boolean per row, True where the row passes; nulls pass."""
    return data.lazyframe.select(ok.fill_null(True))
