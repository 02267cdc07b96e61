"""A commit recomputes an annual cap only from its first changed position on.

The stays of a (member, benefit year) before the earliest position a commit changes keep their
targets and enter the cap as a sum (storage/adjudication.py, CAP_PREFIX_SQL). These histories
move that earliest position where a careless pivot would miss it: a stay moved later than the
stays after it (its old position counts), a held stay released into the cap by a stay that
moved away, a late stay before the kept ones. Each ends where a full recompute does, and the
random histories of ``test_night_scope`` cover the rest.
"""

from __future__ import annotations

import pytest
from test_night_scope import History, _run, _v

# RETIREE_INPATIENT 2026: 60 % of 10,000.00 less the deductible per stay, 15,000.00 a year; the
# third stay reaches the cap. K1 sits between M1's old and new positions: once M1 moves after
# it, K1 is paid in full and the cap falls on the later stays.
MOVED_LATER = History(
    nights=2,
    enrolments=((0, "RETIREE_INPATIENT"),),
    versions=(
        _v("M1", 1, "N", 0, "2026-01-05", "2026-01-08", 1_000_000, 0),
        _v("K1", 1, "N", 0, "2026-01-15", "2026-01-18", 1_000_000, 0),
        _v("K2", 1, "N", 0, "2026-01-22", "2026-01-24", 1_000_000, 0),
        _v("M1", 2, "C", 0, "2026-02-01", "2026-02-03", 1_000_000, 1),
        _v("N1", 1, "N", 0, "2026-02-10", "2026-02-12", 1_000_000, 1),
    ),
    decisions=(),
)

# H1 and K1 are held (they overlap S1, admitted earlier); S1 then moves after every stay of the
# year: both are released into the cap, before K2, which now reaches the cap.
RELEASED_BEFORE = History(
    nights=2,
    enrolments=((0, "RETIREE_INPATIENT"),),
    versions=(
        _v("E1", 1, "N", 0, "2026-01-01", "2026-01-03", 1_000_000, 0),
        _v("S1", 1, "N", 0, "2026-01-05", "2026-01-20", 1_000_000, 0),
        _v("H1", 1, "N", 0, "2026-01-08", "2026-01-10", 1_000_000, 0),
        _v("K1", 1, "N", 0, "2026-01-12", "2026-01-14", 1_000_000, 0),
        _v("K2", 1, "N", 0, "2026-01-25", "2026-01-27", 1_000_000, 0),
        _v("S1", 2, "C", 0, "2026-02-05", "2026-02-20", 1_000_000, 1),
    ),
    decisions=(),
)

# Many stays of one cap, a new one after them each night and a late one before them: the kept
# stays' sum carries the cap across nights.
LATE_ARRIVAL = History(
    nights=3,
    enrolments=((0, "RETIREE_INPATIENT"), (0, "UNION_BASIC")),
    versions=(
        _v("A1", 1, "N", 0, "2026-01-02", "2026-01-04", 400_000, 0),
        _v("A2", 1, "N", 0, "2026-01-06", "2026-01-08", 700_000, 0),
        _v("A3", 1, "N", 0, "2026-01-10", "2026-01-12", 900_000, 1),
        _v("A4", 1, "N", 0, "2026-01-14", "2026-01-16", 1_200_000, 2),
        _v("L1", 1, "N", 0, "2026-01-07", "2026-01-09", 800_000, 2),
    ),
    decisions=(),
)


@pytest.mark.parametrize(
    "history",
    [MOVED_LATER, RELEASED_BEFORE, LATE_ARRIVAL],
    ids=["moved-later-in-its-cap", "released-before-the-kept-stays", "late-arrival"],
)
def test_a_cap_recomputed_from_its_first_change_ends_where_a_full_recompute_does(
    history: History,
) -> None:
    _run(history)
