"""The rules file's scheme-wide parameters (``plans.toml`` ``[review]``), in plain Python.

``claims review list`` needs only the second-approval limit: read here, it starts without
polars and pandera (read-only commands answer fast). ``transforms.reference.load_rules`` checks
the whole file for a run, and takes the same parameters from here.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

# benefits.md, *Review decisions*: our default second-approval limit, 20 000.00 yuan of
# self_pay_in_scope; plans.toml [review] second_approval_limit overrides it.
DEFAULT_SECOND_APPROVAL_LIMIT_FEN = 2_000_000


class ReferenceError(Exception):
    """Reference data that cannot be used; the message says which file and what is wrong."""


def yuan_to_fen(value: object, where: str, *, allow_empty: bool = False) -> int | None:
    """A yuan amount written as a decimal string ("200.00") as integer fen."""
    if allow_empty and value == "":
        return None
    if not isinstance(value, str):
        raise ReferenceError(f'{where}: write money as a decimal string like "200.00"')
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ReferenceError(f"{where}: {value!r} is not a decimal amount") from None
    fen = amount * 100
    if fen != fen.to_integral_value() or amount < 0:
        raise ReferenceError(f"{where}: {value!r} must be ≥ 0 with at most 2 decimals")
    return int(fen)


def review_params(doc: dict[str, Any], name: str) -> dict[str, int]:
    """The ``[review]`` table of a parsed rules file, in fen."""
    review = doc.get("review", {})
    if not isinstance(review, dict):
        raise ReferenceError(f"{name}: [review] must be a table")
    limit = yuan_to_fen(
        review.get("second_approval_limit", "20000.00"),
        f"{name} [review] second_approval_limit",
    )
    return {"second_approval_limit_fen": limit if limit is not None else 0}


def second_approval_limit_of(path: Path) -> int:
    """The second-approval limit of the rules file at ``path`` (its ``[review]`` table alone)."""
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ReferenceError(f"{path.name}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReferenceError(f"{path.name}: cannot read the rules file ({exc})") from None
    return review_params(doc, path.name)["second_approval_limit_fen"]
