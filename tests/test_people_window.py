"""A night reads its people's other outcomes only as far back as its stays can reach.

``storage/adjudication.py`` (PEOPLE_ROWS_SQL, ADR 0031): of the people's other stays, those
discharged from the window's start on (the earliest admission of the scope's positions, now
and before) are read whole, and so are those discharged from ``reach`` on (the earliest
admission among them: a kept stay a recomputed stay can overlap). Those discharged earlier, in
a benefit year a recomputed stay can be in, enter only their cap's sum (``kept_before``); those
of an earlier benefit year are not read at all.

The history below puts one stay in each band for one member: a 2025 stay (outside every cap
the night reaches), a January stay (a sum only), a stay just before the window that a
recomputed long stay overlaps (read whole), the long stay (in the window) and the night's new
stay. It ends where a full recompute does; an outcome outside the window may hold anything
without changing the night, and the one just inside, read as a sum, moves the night's cap.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from test_ledger import frame
from test_night_scope import FIRST_NIGHT, History, _v, check_equals_full_recompute, play

import synth
from pipeline import run_local
from storage.adjudication import adjudicate
from storage.warehouse import open_warehouse, transaction

# RETIREE_INPATIENT 2026: 60 % of 10,000.00 less the deductible per stay, 15,000.00 a year.
# K2 (long) is held: it overlaps K3, admitted earlier. N1 overlaps K2, so K2 is recomputed and
# must still be judged against K3, discharged before the window starts (N1's admission).
BANDS = History(
    nights=2,
    enrolments=((0, "RETIREE_INPATIENT"),),
    versions=(
        _v("P1", 1, "N", 0, "2025-12-01", "2025-12-05", 1_000_000, 0),
        _v("K1", 1, "N", 0, "2026-01-05", "2026-01-08", 1_000_000, 0),
        _v("K3", 1, "N", 0, "2026-01-18", "2026-01-22", 1_000_000, 0),
        _v("K2", 1, "N", 0, "2026-01-20", "2026-02-20", 1_000_000, 0),
        _v("N1", 1, "N", 0, "2026-02-10", "2026-02-12", 1_000_000, 1),
    ),
    decisions=(),
)
NIGHT_STAY = ("H001", "N1")

# The same member's caps without overlaps: N1 is paid what K1 left of 2026's cap.
SUMS = History(
    nights=2,
    enrolments=((0, "RETIREE_INPATIENT"),),
    versions=(
        _v("P1", 1, "N", 0, "2025-12-01", "2025-12-05", 1_000_000, 0),
        _v("K1", 1, "N", 0, "2026-01-05", "2026-01-08", 1_000_000, 0),
        _v("N1", 1, "N", 0, "2026-02-10", "2026-02-12", 1_000_000, 1),
    ),
    decisions=(),
)


def test_a_night_on_every_band_of_history_ends_where_a_full_recompute_does() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = play(Path(tmp), BANDS)
        check_equals_full_recompute(settings, Path(tmp))


def _bands(db: Path) -> tuple[set[str], list[tuple[int, int]]]:
    """The night's stay recomputed on ``db`` (not written): whose outcomes were read whole,
    and which benefit years entered as sums."""
    with open_warehouse(db) as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched_stays AS "
            "SELECT $h AS hospital_code, $s AS settlement_id",
            {"h": NIGHT_STAY[0], "s": NIGHT_STAY[1]},
        )
        with transaction(con):
            adjudicate(con, full=False, write=False)
            whole = {r[0] for r in con.execute("SELECT settlement_id FROM people_rows").fetchall()}
            sums = con.execute(
                "SELECT benefit_year, count(*) FROM kept_before GROUP BY ALL ORDER BY ALL"
            ).fetchall()
    return whole, sums


def test_the_window_reads_whole_what_a_recomputed_stay_can_overlap_and_sums_the_rest() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = play(Path(tmp), BANDS)
        whole, sums = _bands(settings.warehouse)
    # N1 (scope) and K2 in the window; K3 discharged before it, after K2's admission
    assert whole == {"N1", "K2", "K3"}
    # K1 as its cap's sum (one plan); P1, of 2025, not at all
    assert sums == [(2026, 1)]


def _last_night(tmp: Path, tamper: str | None) -> list[tuple[object, ...]]:
    """Play the first night, change one stored outcome (``tamper``: its settlement id), run the
    last night: the night's stay's targets."""
    root = tmp / (tamper or "plain")
    first = History(SUMS.nights - 1, SUMS.enrolments, SUMS.versions, ())
    settings = play(root, first)
    if tamper is not None:
        with open_warehouse(settings.warehouse) as con:
            # ten times its raw amount in the cap's sum, as if it had paid that
            con.execute(
                "UPDATE stay_outcomes SET raw_by_plan = "
                "list_transform(raw_by_plan, lambda r: {'plan_code': r.plan_code, "
                "'raw_fen': r.raw_fen * 10}) WHERE settlement_id = $s",
                {"s": tamper},
            )
    day = FIRST_NIGHT + timedelta(days=SUMS.nights)
    rows = [v.row() for v in SUMS.versions if v.night == SUMS.nights - 1]
    synth.write_partition(settings.landing, day, "SHYB", frame(rows, synth.DISCHARGE_COLUMNS))
    assert not run_local(settings, as_of=day).failed
    with open_warehouse(settings.warehouse, read_only=True) as con:
        targets = con.execute(
            "SELECT plan_code, cap_used_before_fen, target_fen FROM stay_plan_targets "
            "WHERE hospital_code = $h AND settlement_id = $s ORDER BY ALL",
            {"h": NIGHT_STAY[0], "s": NIGHT_STAY[1]},
        ).fetchall()
    shutil.rmtree(root)
    return targets


@pytest.mark.parametrize(
    ("tamper", "matters"),
    [("P1", False), ("K1", True)],
    ids=["a-stay-of-the-year-before-does-not-matter", "a-stay-summed-in-the-cap-does"],
)
def test_an_outcome_outside_the_window_does_not_matter_and_one_inside_does(
    tamper: str, matters: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain = _last_night(Path(tmp), None)
        changed = _last_night(Path(tmp), tamper)
    assert plain and changed
    assert (plain != changed) is matters
