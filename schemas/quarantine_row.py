"""The quarantine's grain as a pandera model (``schemas.quarantine`` does without pandera)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from schemas.quarantine import RULES


class QuarantineRow(pa.DataFrameModel):
    """One row per (row_number, rule) of one partition's content."""

    row_number: Series[pl.Int64] = pa.Field(ge=1)
    rule: Series[str] = pa.Field(isin=list(RULES))
    message: Series[str]
    raw: Series[str]

    class Config:
        strict = True
        unique = ["row_number", "rule"]  # noqa: RUF012 - pandera reads a list
