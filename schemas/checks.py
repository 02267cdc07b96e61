"""Small helpers shared by the models: rule-named errors and the column a check runs on."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.quarantine import RULES


def rule(name: str, message: str) -> str:
    """The error text of a check: ``rule: message``, split again when building quarantine rows.

    ``name`` must be in the registry (``schemas.quarantine.RULES``): a new rule is added there,
    with its docs line, before a check can use it.
    """
    if name not in RULES:
        raise ValueError(f"{name!r} is not a quarantine rule of schemas.quarantine.RULES")
    return f"{name}: {message}"


def col(data: PolarsData) -> pl.Expr:
    """The column a column-check is running on."""
    return pl.col(data.key)


def passes(data: PolarsData, ok: pl.Expr) -> pl.LazyFrame:
    """A check result: one boolean per row, True where the row passes; nulls pass."""
    return data.lazyframe.select(ok.fill_null(True))


def columns_of(model: type[pa.DataFrameModel]) -> tuple[str, ...]:
    """A model's columns, in the order they are declared."""
    return tuple(model.to_schema().columns)
