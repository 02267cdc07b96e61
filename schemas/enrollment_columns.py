"""Enrolment snapshot columns and the staged frame's schema, without pandera
(``schemas.enrollment`` holds the models that state the rules).

What a clean snapshot needs to validate and stage its rows: the screen of
``transforms.enrollments`` passes its rows without calling the models, so that a snapshot
without a suspect row never imports pandera. ``tests/test_lazy_imports.py`` holds the
constants here equal to the models'.
"""

from __future__ import annotations

import polars as pl

# feeds.md's columns in its order, as ``schemas.enrollment.EnrollmentRecord`` declares them.
COLUMNS = (
    "enrollment_id",
    "national_id",
    "member_name",
    "gender",
    "birth_date",
    "plan_code",
    "coverage_start",
    "coverage_end",
    "payee_account",
)
OPTIONAL = ("coverage_end",)
REQUIRED = tuple(c for c in COLUMNS if c not in OPTIONAL)
DATES = ("birth_date", "coverage_start", "coverage_end")

# The staged frame's names and types, in order, as ``schemas.enrollment.StagedEnrollment``
# declares them (what ``transforms.enrollments`` guards a staged frame against).
STAGED_SCHEMA = pl.Schema(
    {
        "enrollment_id": pl.String(),
        "national_id": pl.String(),
        "member_name": pl.String(),
        "member_name_norm": pl.String(),
        "gender": pl.String(),
        "birth_date": pl.Date(),
        "plan_code": pl.String(),
        "coverage_start": pl.Date(),
        "coverage_end": pl.Date(),
        "payee_account": pl.String(),
    }
)
STAGED_COLUMNS = tuple(STAGED_SCHEMA)
