"""What the models share: rule-named errors, check helpers, the checks of several models."""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.notation import CONTROL_RE, parse_date
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


# The checks two contracts share (a person's name, gender and dates; required values), written
# once. In a model: ``gender_enum = checks.gender("gender")``.


def required(*columns: str) -> Any:
    """missing_value: the columns must hold a value."""

    @pa.check(*columns, error=rule("missing_value", "a required value is empty"))
    def present(cls: Any, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(col(data).is_not_null())

    return present


def person_name(column: str) -> Any:
    """invalid_value: 1-50 characters, no control characters."""

    @pa.check(column, error=rule("invalid_value", "must be 1-50 characters, no controls"))
    def name_shape(cls: Any, data: PolarsData) -> pl.LazyFrame:
        c = col(data)
        return passes(data, (c.str.len_chars() <= 50) & ~c.str.contains(CONTROL_RE))

    return name_shape


def gender(column: str) -> Any:
    """invalid_value: M or F."""

    @pa.check(column, error=rule("invalid_value", "must be M or F"))
    def gender_enum(cls: Any, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_in(["M", "F"]))

    return gender_enum


def real_date(*columns: str) -> Any:
    """invalid_value: a real calendar date written YYYY-MM-DD (empty passes)."""

    @pa.check(*columns, error=rule("invalid_value", "must be a real date YYYY-MM-DD"))
    def real_date(cls: Any, data: PolarsData) -> pl.LazyFrame:
        return passes(data, col(data).is_null() | parse_date(col(data)).is_not_null())

    return real_date
