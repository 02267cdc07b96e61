"""Quarantine rows: one per (partition, row, rule), with every broken column's message.

The grain of ``quarantine_rows`` (payouts.md) is a row and a rule; a row that breaks a rule in
two columns gets one quarantine row naming both. Its model is ``schemas.quarantine_row``; this
module does without pandera, which a clean night never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pandera.polars as pa

QUARANTINE_SCHEMA = {
    "row_number": pl.Int64,
    "rule": pl.String,
    "message": pl.String,
    "raw": pl.String,
}
# The quarantine's rules (feeds.md, *What happens to a bad row*): name → what the row did. The one
# registry of rule names: a check names its rule through ``schemas.checks.rule``, which refuses a
# name missing here, and a test holds this table equal to the contract's.
RULES: dict[str, str] = {
    "missing_value": "lacks a required value",
    "invalid_value": "has a value of the wrong shape (pattern, enum, not a number, not a date)",
    "invalid_amount": "has a negative amount, more than 2 decimals, or a non-decimal notation",
    "amount_mismatch": "has `total_cost` ≠ the sum of its three parts",
    "date_order": "is discharged before it was admitted, or admitted before 1990-01-01",
    "future_discharge": "is discharged after its partition's `feed_date`",
    "unknown_hospital": "names a hospital not in the registry",
    "invalid_diagnosis": "has an empty or malformed diagnosis code",
    "version_conflict": "repeats a stay's key and version with different content",
}
# Derived in the warehouse, across partitions (storage.staging), not by a model's check.
VERSION_CONFLICT = "version_conflict"


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def failures_to_quarantine(
    errors: pa.errors.SchemaErrors | None,
    validated: pl.DataFrame,
    *,
    column_names: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Turn pandera's failure cases into (row_number, rule, message) rows.

    Each check's error reads ``rule: message`` (``schemas.checks.rule``); the failing value
    itself (``failure_case``) is dropped here because it may be personal data: the raw row is
    kept separately, in the quarantine's ``raw`` column.
    """
    if errors is None:
        return pl.DataFrame(
            schema={"row_number": pl.Int64, "rule": pl.String, "message": pl.String}
        )
    cases = errors.failure_cases.filter(pl.col("index").is_not_null())
    unknown = errors.failure_cases.filter(pl.col("index").is_null())
    if unknown.height:
        # A schema-level failure (a column missing or mistyped) is our bug, not the sender's.
        raise RuntimeError(
            "validation failed on the frame's structure: "
            + ", ".join(sorted(set(unknown.get_column("check").to_list())))
        )
    names = column_names or {}
    positions = validated.select(pl.col("row_number")).with_row_index("index")
    return (
        cases.select(
            pl.col("index").cast(pl.UInt32),
            pl.col("check").str.split_exact(": ", 1).struct.field("field_0").alias("rule"),
            pl.col("check").str.split_exact(": ", 1).struct.field("field_1").alias("text"),
            pl.col("schema_context"),
            pl.col("column").replace(names),
        )
        .join(positions, on="index", how="left")
        .with_columns(
            message=pl.when(pl.col("schema_context") == "Column")
            .then(pl.col("column") + ": " + pl.col("text"))
            .otherwise(pl.col("text"))
        )
        .select(pl.col("row_number").cast(pl.Int64), "rule", "message")
    )


def combine(failures: list[pl.DataFrame], raw: pl.DataFrame) -> pl.DataFrame:
    """One quarantine row per (row_number, rule), messages joined, with the row's raw values."""
    frames = [f for f in failures if f.height]
    if not frames:
        return empty_quarantine()
    return (
        pl.concat(frames, how="vertical")
        .unique(maintain_order=True)
        .group_by("row_number", "rule", maintain_order=True)
        .agg(pl.col("message").unique(maintain_order=True).str.join("; "))
        .join(raw.select("row_number", "raw"), on="row_number", how="left")
        .sort("row_number", "rule")
        .select(list(QUARANTINE_SCHEMA))
    )


def over_threshold(bad_rows: int, rows_read: int, threshold: float) -> bool:
    """Quarantined rows exceed the reject threshold (strictly: exactly at it still succeeds)."""
    return rows_read > 0 and bad_rows / rows_read > threshold


def _percent(share: float) -> str:
    """0.05 → '5%', 0.056 → '5.6%', 0.10638 → '10.64%'."""
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def threshold_error(bad_rows: int, rows_read: int, threshold: float, consequence: str) -> str:
    """The reason a partition fails its reject threshold, with the numbers."""
    return (
        f"reject_threshold: {bad_rows} of {rows_read} rows quarantined "
        f"({_percent(bad_rows / rows_read)} > {_percent(threshold)}); {consequence}"
    )
