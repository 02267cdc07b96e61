"""Load and check the reference data a run adjudicates with: plan rules and hospital registry.

A bad rules file stops the run before anything is posted; a bad registry in the landing folder
keeps the registry already in the warehouse and is reported.

The models (``schemas.reference``: ``PlanRule``, ``Hospital``) state the checks. Every run loads
both files, so a polars screen (``rules_pass``, ``registry_passes``) first asks whether every
check certainly holds; only a table it doubts goes to the models, for their verdict and their
messages. A night with good reference files thus never imports pandera (~0.2 s of its start);
``tests/test_lazy_imports.py`` holds each screen to its model on broken tables.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import polars as pl

from schemas.codes import PLAN_CODES
from transforms.rules_file import (
    DEFAULT_SECOND_APPROVAL_LIMIT_FEN,
    ReferenceError,
    review_params,
)
from transforms.rules_file import yuan_to_fen as _yuan_to_fen


@dataclass(frozen=True)
class Reference:
    """A checked reference table, where it came from, and its content hash."""

    frame: pl.DataFrame
    origin: str
    content_hash: str
    # scheme-wide parameters of the rules file (plans.toml [review]), in fen
    params: dict[str, int] = field(default_factory=dict)


def second_approval_limit_fen(rules: Reference) -> int:
    """Above this self_pay_in_scope an approval needs a second, different operator."""
    return rules.params.get("second_approval_limit_fen", DEFAULT_SECOND_APPROVAL_LIMIT_FEN)


def _rate_bp(value: object, where: str) -> int:
    if not isinstance(value, str):
        raise ReferenceError(f'{where}: write the rate as a decimal string like "0.50"')
    try:
        bp = Decimal(value) * 10_000
    except InvalidOperation:
        raise ReferenceError(f"{where}: {value!r} is not a decimal rate") from None
    if bp != bp.to_integral_value() or not 0 <= bp <= 10_000:
        raise ReferenceError(f"{where}: rate {value!r} must be 0–1 with at most 4 decimals")
    return int(bp)


# Checked reference content by (kind, sha256): a backfill loads the same files once per date.
_checked: dict[tuple[str, str], Reference] = {}


def _cached(kind: str, path: Path) -> tuple[bytes, str, Reference | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReferenceError(f"{path.name}: cannot read it ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    hit = _checked.get((kind, digest))
    if hit is not None and hit.origin == str(path):
        return data, digest, hit
    return data, digest, None


def load_rules(path: Path) -> Reference:
    """Parse and check ``plans.toml``; raises ReferenceError naming the entry at fault."""
    data, digest, hit = _cached("plans", path)
    if hit is not None:
        return hit
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReferenceError(f"{path.name}: cannot read the rules file ({exc})") from None
    entries = doc.get("plan")
    if not isinstance(entries, list) or not entries:
        raise ReferenceError(f"{path.name}: no [[plan]] entries")
    rows = []
    for i, entry in enumerate(entries, start=1):
        where = f"{path.name} [[plan]] #{i}"
        try:
            rows.append(
                {
                    "plan_code": entry["plan_code"],
                    "from_year": entry["from_year"],
                    "priority": entry["priority"],
                    "rate_bp": _rate_bp(entry["rate"], f"{where} rate"),
                    "deductible_fen": _yuan_to_fen(entry["deductible"], f"{where} deductible"),
                    "per_stay_cap_fen": _yuan_to_fen(
                        entry["per_stay_cap"], f"{where} per_stay_cap", allow_empty=True
                    ),
                    "daily_allowance_fen": _yuan_to_fen(
                        entry["daily_allowance"], f"{where} daily_allowance"
                    ),
                    "allowance_days": entry["allowance_days"],
                    "annual_cap_fen": _yuan_to_fen(entry["annual_cap"], f"{where} annual_cap"),
                    "waiting_days": entry["waiting_days"],
                    "monthly_contribution_fen": _yuan_to_fen(
                        entry["monthly_contribution"], f"{where} monthly_contribution"
                    ),
                }
            )
        except KeyError as exc:
            raise ReferenceError(f"{where}: missing {exc.args[0]}") from None
    try:
        frame = pl.DataFrame(
            rows,
            schema={
                "plan_code": pl.String,
                "from_year": pl.Int64,
                "priority": pl.Int64,
                "rate_bp": pl.Int64,
                "deductible_fen": pl.Int64,
                "per_stay_cap_fen": pl.Int64,
                "daily_allowance_fen": pl.Int64,
                "allowance_days": pl.Int64,
                "annual_cap_fen": pl.Int64,
                "waiting_days": pl.Int64,
                "monthly_contribution_fen": pl.Int64,
            },
            strict=True,
        )
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise ReferenceError(
            f"{path.name}: a value has the wrong type ({type(exc).__name__})"
        ) from None
    if not rules_pass(frame):
        from schemas.reference import PlanRule

        _check_with(PlanRule, frame, path)
    params = review_params(doc, path.name)
    ref = Reference(frame, str(path), digest, params)
    _checked[("plans", digest)] = ref
    return ref


def load_registry(path: Path) -> Reference:
    """Parse and check a ``hospitals.csv``; raises ReferenceError saying what is wrong."""
    data, digest, hit = _cached("hospitals", path)
    if hit is not None:
        return hit
    try:
        text = data.decode("utf-8-sig")
        raw = pl.read_csv(text.encode(), infer_schema=False)
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError):
        raise ReferenceError(f"{path}: not a readable UTF-8 CSV file") from None
    required = ["hospital_code", "hospital_name", "district", "level", "in_network_from"]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ReferenceError(f"{path.name}: missing column(s) {', '.join(missing)}")
    if "in_network_to" not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.String).alias("in_network_to"))
    frame = raw.select(
        pl.col("hospital_code").str.strip_chars(),
        pl.col("hospital_name").str.strip_chars().fill_null(""),
        pl.col("district").str.strip_chars().fill_null(""),
        pl.col("level").str.strip_chars().cast(pl.Int64, strict=False),
        pl.col("in_network_from").str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
        pl.col("in_network_to")
        .str.strip_chars()
        .replace("", None)
        .str.to_date("%Y-%m-%d", strict=False),
    )
    bad_dates = raw.filter(
        pl.col("in_network_to").str.strip_chars().replace("", None).is_not_null()
        & frame.get_column("in_network_to").is_null()
    ).height
    if bad_dates:
        raise ReferenceError(f"{path.name}: {bad_dates} row(s) with an unreadable in_network_to")
    if not registry_passes(frame):
        from schemas.reference import Hospital

        _check_with(Hospital, frame, path)
    ref = Reference(frame, str(path), digest)
    _checked[("hospitals", digest)] = ref
    return ref


def _check_with(model: Any, frame: pl.DataFrame, path: Path) -> None:
    """The model's verdict on a table its screen doubted: a ReferenceError naming the columns
    and checks that failed (none: the table is good after all)."""
    from pandera.errors import SchemaErrors

    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as exc:
        problems = exc.failure_cases.select("column", "check").unique().rows()
        raise ReferenceError(
            f"{path.name}: " + "; ".join(f"{c}: {chk}" for c, chk in sorted(problems, key=str))
        ) from None


# The columns and types of the models (``schemas.reference``), as the loaders build them.
RULES_SCHEMA = pl.Schema(
    {
        "plan_code": pl.String,
        **{
            name: pl.Int64
            for name in (
                "from_year",
                "priority",
                "rate_bp",
                "deductible_fen",
                "per_stay_cap_fen",
                "daily_allowance_fen",
                "allowance_days",
                "annual_cap_fen",
                "waiting_days",
                "monthly_contribution_fen",
            )
        },
    }
)
REGISTRY_SCHEMA = pl.Schema(
    {
        "hospital_code": pl.String,
        "hospital_name": pl.String,
        "district": pl.String,
        "level": pl.Int64,
        "in_network_from": pl.Date,
        "in_network_to": pl.Date,
    }
)


def _holds(frame: pl.DataFrame, *conditions: pl.Expr) -> bool:
    """Every condition true on every row (a null is a doubt, not a pass)."""
    if not frame.height:
        return True
    return bool(frame.select(pl.all_horizontal(conditions).fill_null(False).all()).item())


def rules_pass(frame: pl.DataFrame) -> bool:
    """Whether every check of ``PlanRule`` certainly holds: its columns and types, no nulls but
    in ``per_stay_cap_fen``, the ranges, the codes, one row per (plan_code, from_year). False
    where in doubt: the model then decides."""
    c = pl.col
    at_least_zero = (
        "deductible_fen",
        "daily_allowance_fen",
        "allowance_days",
        "annual_cap_fen",
        "waiting_days",
        "monthly_contribution_fen",
    )
    return frame.schema == RULES_SCHEMA and _holds(
        frame,
        c("plan_code").is_in(list(PLAN_CODES)),
        c("from_year").is_between(1990, 2100),
        c("priority") >= 1,
        c("rate_bp").is_between(0, 10_000),
        *(c(name) >= 0 for name in at_least_zero),
        c("per_stay_cap_fen").is_null() | (c("per_stay_cap_fen") >= 0),
        pl.struct("plan_code", "from_year").is_unique(),
    )


def registry_passes(frame: pl.DataFrame) -> bool:
    """Whether every check of ``Hospital`` certainly holds: its columns and types, no nulls but
    in ``in_network_to``, a unique non-empty code, level 1-3, a network period in order. False
    where in doubt: the model then decides."""
    c = pl.col
    return frame.schema == REGISTRY_SCHEMA and _holds(
        frame,
        c("hospital_code").str.len_chars() >= 1,
        c("hospital_code").is_unique(),
        c("hospital_name").is_not_null(),
        c("district").is_not_null(),
        c("level").is_in([1, 2, 3]),
        c("in_network_from").is_not_null(),
        c("in_network_to").is_null() | (c("in_network_to") >= c("in_network_from")),
    )


def registry_path(landing: Path, reference_dir: Path) -> Path:
    """The landing folder's registry takes precedence over the project's default."""
    landed = landing / "reference" / "hospitals.csv"
    return landed if landed.is_file() else reference_dir / "hospitals.csv"
