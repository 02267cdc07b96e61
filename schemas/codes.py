"""Codes the contract fixes, without pandera (``schemas.reference`` re-exports them)."""

from __future__ import annotations

PLAN_CODES = ("RETIREE_INPATIENT", "WORKER_MUTUAL", "GIG_WORKER", "UNION_BASIC")
