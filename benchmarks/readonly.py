"""How fast the read-only commands answer: ``python -m benchmarks.readonly``.

Issue 16's target: ``claims status`` and ``claims explain`` (and ``quarantine``) answer in
≤ 1.5 s. Each command runs in fresh processes (median of ``--repeats``) on a small warehouse
built once (``benchmarks/out/readonly/``: two synthetic nights, one failed partition); the
answer's cost is nearly all start-up, so the size of the warehouse hardly matters. Beside the
wall times: ``python -c pass`` (the interpreter alone) and, from ``python -X importtime``, the
modules whose import costs the most. ``--source DIR`` measures another checkout of the project
(e.g. ``git archive`` of an earlier commit) with this virtual environment: before and after.

Timing lives here, never in tests; ``tests/test_startup.py`` checks the behaviour behind it
(no Prefect, pandera, synth, polars or pyarrow in those processes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.measure import measure

PROJECT = Path(__file__).resolve().parent.parent
TARGET_S = 1.5
CLI = "import sys; from claims.cli import main; sys.argv[0] = 'claims'; main()"


def build(root: Path) -> tuple[list[str], str, str]:
    """The small warehouse (built once): its path flags, a failed partition and a paid stay."""
    from datetime import date, timedelta

    import duckdb

    import synth
    from config.settings import Settings
    from pipeline import backfill_local

    settings = Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")
    flags = [
        "--landing",
        str(settings.landing),
        "--warehouse",
        str(settings.warehouse),
        "--outbox",
        str(settings.outbox),
    ]
    if not settings.warehouse.exists():
        start = date(2026, 3, 2)
        pop = synth.make_population(2_000, seed=3, as_of=start - timedelta(days=1))
        hospitals = synth.make_hospitals(20, seed=0)
        synth.write_registry(settings.landing, hospitals)
        synth.write_snapshot(settings.landing, start - timedelta(days=1), pop.enrollments)
        for i in range(2):
            day = start + timedelta(days=i)
            night = synth.make_stays(
                pop, hospitals, feed_date=day, n=300, seed=3, bad_rate=0.5 if i else 0.01
            )
            for source, rows in night.items():
                synth.write_partition(settings.landing, day, source, rows)
        backfill_local(settings, start, start + timedelta(days=1))
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        failed = con.execute(
            "SELECT partition_key FROM partition_runs WHERE status = 'failed' LIMIT 1"
        ).fetchone()
        stay = con.execute(
            "SELECT hospital_code || '/' || settlement_id FROM claim_outcomes "
            "WHERE status = 'paid' ORDER BY 1 LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    assert failed and stay, "the small warehouse should hold a failed partition and a paid stay"
    return flags, str(failed[0]), str(stay[0])


def top_imports(
    source: Path, args: list[str], env: dict[str, str], n: int = 8
) -> tuple[float, list[tuple[str, float]]]:
    """All imports' seconds, and the top-level imports that cost most (cumulative seconds),
    from ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CLI, *args],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    costs = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, raw = line.split("|")
        name = raw[1:]
        if cumulative.strip().isdigit() and not name.startswith(" "):
            costs.append((name, int(cumulative) / 1e6))
    return sum(c for _, c in costs), sorted(costs, key=lambda c: -c[1])[:n]


def _env(source: Path, pycache: Path | None = None) -> dict[str, str]:
    """``pycache``: compiled bytecode kept there (as an installed program has it); else none
    written or read from a prefix, as with ``PYTHONDONTWRITEBYTECODE`` and no ``__pycache__``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--source", type=Path, default=PROJECT, help="checkout to measure")
    p.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "out" / "readonly")
    args = p.parse_args(argv)
    flags, failed, stay = build(args.out)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "claims status": [sys.executable, "-c", CLI, "status", *flags],
        "claims quarantine": [
            sys.executable,
            "-c",
            CLI,
            "quarantine",
            "--partition",
            failed,
            *flags,
        ],
        "claims explain": [sys.executable, "-c", CLI, "explain", "--stay", stay, *flags],
        "claims review list": [sys.executable, "-c", CLI, "review", "list", *flags],
    }
    print(
        f"read-only commands, source {args.source}, {datetime.now(UTC):%Y-%m-%dT%H:%M}Z, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    pycache = args.out / f"pycache-{abs(hash(str(args.source.resolve())))}"
    rows = []
    for mode, env in (
        ("bytecode cached", _env(args.source, pycache)),
        ("no bytecode", _env(args.source)),
    ):
        if mode == "bytecode cached":  # fill the cache once, unmeasured
            subprocess.run(
                commands["claims status"],
                env=env,
                cwd=args.source,
                capture_output=True,
                check=False,
            )
        for name, cmd in commands.items():
            walls = []
            for i in range(args.repeats):
                log = args.out / "logs" / f"{name.replace(' ', '-')}-{i}.log"
                sample = measure(cmd, log_path=log, env=env, cwd=args.source)
                assert sample.returncode in (0, 1), f"{name} failed: see {sample.log}"
                walls.append(sample.wall_s)
            median = statistics.median(walls)
            verdict = (
                "" if name.startswith("python") else ("met" if median <= TARGET_S else "MISSED")
            )
            rows.append(
                {
                    "command": name,
                    "mode": mode,
                    "median_s": round(median, 3),
                    "runs_s": [round(w, 3) for w in walls],
                    "target": verdict,
                }
            )
            print(
                f"  {mode:<16} {name:<18} median {median:5.2f} s  runs "
                f"{', '.join(f'{w:.2f}' for w in walls)}"
                f"  {('≤ ' + str(TARGET_S) + ' s: ' + verdict) if verdict else ''}"
            )
        total, imports = top_imports(args.source, ["status", *flags], env)
        print(
            f"  {mode:<16} claims status imports {total:.2f} s; costliest (cumulative s): "
            + ", ".join(f"{m} {s:.2f}" for m, s in imports)
        )
        rows.append(
            {
                "command": "claims status imports",
                "mode": mode,
                "seconds": round(total, 3),
                "costliest": imports,
            }
        )
    print("BENCH-RESULT " + json.dumps({"rows": rows, "load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
