"""The benchmark script runs end to end at small scale, so that it cannot rot.

Figures only: no timing is asserted here (the targets live in ``benchmarks/run.py`` and are
judged in its output). A few minutes on an idle machine (seven Prefect start-ups).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_small_benchmarks_print_the_table_with_positive_figures(tmp_path: Path) -> None:
    out, docs = tmp_path / "out", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--scale",
            "small",
            "--out",
            str(out),
            "--docs",
            str(docs),
            "--timeout",
            "1500",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    for row in (
        "year backfill",
        "backfill_local",
        "year-end warehouse",
        "new snapshot",
        "data work",
        "running Prefect server",
        "snapshot load",
        "read-only commands",
        "claims verify",
        "claims report sustainability",
        "peak memory",
    ):
        assert row in proc.stdout, f"the table lacks {row!r}:\n{proc.stdout[-4000:]}"

    record = json.loads((out / "results-small.json").read_text())
    results = record["results"]
    sides = {
        "snapshot": ("pipeline", "floor"),
        "prefect_start": ("pipeline",),
        "night": ("pipeline", "local", "floor"),
        "backfill": ("pipeline", "local", "floor"),
        "yearend": ("pipeline", "local", "floor"),
        "newsnap": ("pipeline", "bare", "floor"),
        "readonly": ("status", "explain"),
        "verify": ("pipeline",),
        "sustainability": ("pipeline",),
    }
    if not results["server"].get("missing"):
        sides["server"] = ("pipeline", "floor")
    for bench, names in sides.items():
        for side in names:
            part = results[bench][side]
            assert part["n"] >= 1 and part["ok"] == part["n"], (bench, side, part["runs"])
            assert part["wall_s"] > 0 and part["peak_rss"] > 0, (bench, side, part)
    assert "overhead" not in results  # the date-by-date year is not in the default set
    assert results["verify"]["exit"] == [0]
    for row in record["figures"]:
        for key in ("pipeline_s", "floor_s", "ratio", "peak"):
            value = row[key]
            if value is not None:
                assert value > 0, (row["name"], key, value)
        if row["pipeline_s"] is not None or row["peak"] is not None:
            assert row["target"].startswith("—") or row["met"] is not None, row

    # The floor must do the pipeline's work: the same stays and the same money, to the fen.
    for bench, key in (
        ("night", "check"),
        ("night", "check_local"),
        ("backfill", "check"),
        ("backfill", "check_local"),
        ("yearend", "check"),
        ("yearend", "check_local"),
        ("newsnap", "check"),
    ):
        check = results[bench][key]
        assert check["same"], (bench, key, check)
    assert docs.read_text(encoding="utf-8").startswith("# Benchmarks")
    # Scratch warehouses are gone; the generated data stays cached.
    assert not (out / "work-small").exists()
    assert any(out.glob("data-small-*/.complete"))
