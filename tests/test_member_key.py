"""Migration 014: a night finds the other stays of its people by an integer member key.

``stay_outcomes.member_key`` is ``hash(national_id)``, written with every outcome; the night
filters by it and then checks ``national_id``. DuckDB does not promise ``hash`` across versions,
so ``warehouse_keys`` keeps the hash of a fixed text, and a night run by a DuckDB that hashes it
otherwise rekeys every outcome before reading by the key.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_instruction_grain import _night
from test_night_scope import CROSSING, FIRST_NIGHT, check_equals_full_recompute, play

from pipeline import run_local
from storage.warehouse import open_warehouse

STALE = "SELECT count(*) FROM stay_outcomes WHERE member_key <> hash(national_id)"


def test_every_outcome_carries_its_members_key(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stay_outcomes").fetchone() != (0,)
        assert con.execute(STALE).fetchone() == (0,)


def test_keys_from_another_hash_are_rewritten_before_the_night_reads_by_them(
    tmp_path: Path,
) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        # as a DuckDB that hashed otherwise would have left them: no key finds anyone now
        con.execute("UPDATE stay_outcomes SET member_key = member_key + 1")
        con.execute("UPDATE warehouse_keys SET hash_canary = hash_canary + 1")
        assert con.execute(STALE).fetchone() != (0,)
    # a new stay of a person with stays in the same annual caps: the night must find them
    night = CROSSING.nights + 1
    _night(settings, night, "N1")
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=night))
    assert not result.failed
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(STALE).fetchone() == (0,)
        assert con.execute(
            "SELECT bool_and(hash_canary = hash('claims member key')) FROM warehouse_keys"
        ).fetchone() == (True,)
    check_equals_full_recompute(settings, tmp_path)
