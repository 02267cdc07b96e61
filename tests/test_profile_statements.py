"""``python -m benchmarks.profile chunk-statements`` counts a chunked backfill statement by
statement without changing what it commits (ADR 0027): the counted warehouse holds the ledger a
plain ``backfill_local`` of the same chunks makes, every commit's statements are attributed to
the project's functions, and the counts are those of this process (CPU, faults, bytes read)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_backfill_chunks import DATES, build_landing, ledger, settings_of
from test_faults import Place

from pipeline import backfill_local

PROJECT = Path(__file__).resolve().parent.parent

# A measuring tool, not the product: with the slow tests (a subprocess and two backfills, ~7 s).
pytestmark = pytest.mark.slow


def test_counted_backfill_commits_what_a_plain_one_does(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    build_landing(landing)
    plain, counted = Place(tmp_path / "plain"), Place(tmp_path / "counted")
    for place in (plain, counted):
        shutil.copytree(landing, place.landing)
    backfill_local(settings_of(plain), DATES[0], DATES[-1], chunk_days=4)

    figures = tmp_path / "statements.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.profile",
            "chunk-statements",
            "--landing",
            str(counted.landing),
            "--warehouse",
            str(counted.warehouse),
            "--outbox",
            str(counted.outbox),
            "--from",
            DATES[0].isoformat(),
            "--to",
            DATES[-1].isoformat(),
            "--chunk-days",
            "4",
            "--json",
            str(figures),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ledger(counted.warehouse) == ledger(plain.warehouse)

    found = json.loads(figures.read_text())
    commits, statements = found["commits"], found["statements"]
    assert len(commits) == 3  # ten calendar days in chunks of four
    for commit in commits:
        first, last = commit["statements"]
        assert last > first
        assert commit["user"] + commit["sys"] > 0 and commit["minflt"] > 0
        assert {tag for tag, _ in commit["memory"]} >= {"BASE_TABLE"}
    places = {s["at"].split(":")[0] for s in statements}
    assert {"staging.stage_discharge_set", "seals.seal_run", "adjudication.adjudicate"} <= places
    assert not any(p.startswith("sql.") for p in places)  # a script is named by its caller
    assert all(s["rchar"] >= 0 and s["wall"] >= 0 for s in statements)
    assert "commit 3:" in proc.stdout and "whole run:" in proc.stdout
