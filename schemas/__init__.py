"""Pandera models, one per contract row; each states its grain.

Models are validated on *collected* polars frames: on a LazyFrame pandera checks only names and
types. A check's ``error`` starts with the contract's rule name (``rule: message``) so that
``SchemaErrors.failure_cases`` turns straight into quarantine rows (see ``schemas.quarantine``).
"""
