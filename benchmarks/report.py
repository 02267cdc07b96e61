"""The markdown report of a benchmark run (``docs/benchmarks.md`` at full scale).

Figures come from the run's record (``benchmarks/out/results-<scale>.json``); the diagnosis of
missed targets is written by hand in ``benchmarks/analysis.md`` and included as is, so that a
re-run refreshes the figures without losing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import data as bdata

GB = 1024**3
ANALYSIS = Path(__file__).with_name("analysis.md")


def fmt_s(value: Any) -> str:
    """Seconds, or milliseconds below one second."""
    if value is None:
        return "—"
    v = float(value)
    return f"{v * 1000:.1f} ms" if abs(v) < 1 else f"{v:.1f} s"


def fmt_gb(value: Any) -> str:
    """Bytes as GB."""
    return "—" if value is None else f"{int(value) / GB:.2f} GB"


def verdict(row: dict[str, Any], *, bold: bool = False) -> str:
    """A figure's result against its target: met / MISSED with the limit, or — if not judged."""
    met = row.get("met")
    if met is None:
        return "—"
    limit = row.get("limit")
    bound = f" (≤ {fmt_s(limit)})" if isinstance(limit, float) else ""
    word = "met" if met else "MISSED"
    return (f"**{word}**" if bold else word) + bound


def _summary(figures: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | pipeline | floor | pipeline/floor | peak RSS | floor peak RSS | target "
        "| result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in figures:
        ratio = "—" if r["ratio"] is None else f"{float(r['ratio']):.2f}×"
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(
            f"| {r['name']}{note} | {fmt_s(r['pipeline_s'])} | {fmt_s(r['floor_s'])} | {ratio} | "
            f"{fmt_gb(r['peak'])} | {fmt_gb(r['floor_peak'])} | {r['target']} | "
            f"{verdict(r, bold=True)} |"
        )
    return lines


def _runs(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | side | runs (wall s) | median | peak RSS | measured at | load | commit |",
        "|---|---|---|---:|---:|---|---:|---|",
    ]
    for name, entry in results.items():
        for side in ("pipeline", "floor", "local", "tasks"):
            part = entry.get(side)
            if not isinstance(part, dict):
                continue
            walls = ", ".join(
                ("timeout" if r["timed_out"] else f"{r['wall_s']:.2f}")
                + ("" if r["returncode"] in (0, 1) else f" (exit {r['returncode']})")
                for r in part["runs"]
            )
            median, peak = fmt_s(part["wall_s"]), fmt_gb(part["peak_rss"])
            lines.append(
                f"| {name} | {side} | {walls} | {median} | {peak} "
                f"| {entry.get('measured_at', '')} | {entry.get('load', '')} "
                f"| {entry.get('commit', '')} |"
            )
    return lines


def _checks(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name in ("night", "backfill"):
        check = results.get(name, {}).get("check")
        if not isinstance(check, dict) or not check.get("pipeline") or not check.get("floor"):
            continue
        p, f = check["pipeline"], check["floor"]
        verdict = "the same" if check["same"] else "**different**"
        lines.append(
            f"- {name}: pipeline {p['stays']:,} paid-or-covered stays, {p['stay_plans']:,} "
            f"(stay, plan) targets, {p['target_fen']:,} fen; floor {f['stays']:,}, "
            f"{f['stay_plans']:,}, {f['target_fen']:,} fen: {verdict}."
        )
    over = results.get("overhead", {}).get("check")
    back = results.get("backfill", {}).get("check")
    if isinstance(over, dict) and isinstance(back, dict) and back.get("pipeline"):
        same = over == back["pipeline"]
        lines.append(
            f"- backfill via `run_local` per date: {over['target_fen']:,} fen in targets, "
            f"{over['ledger_fen']:,} fen posted: {'the same as' if same else '**not** the same as'}"
            " `claims backfill`."
        )
    return lines


def write_markdown(path: Path, record: dict[str, Any]) -> None:
    m = record["machine"]
    ds = record["dataset"]
    params = ds["params"]
    results: dict[str, dict[str, Any]] = record["results"]
    figures: list[dict[str, Any]] = record["figures"]
    scale = record["scale"]
    year_last = bdata.YEAR_START.toordinal() + int(params["year_nights"]) - 1
    from datetime import date

    formats = ", ".join(
        f"{src} {bdata.SOURCE_FORMATS[src]}"
        + (" (typed)" if bdata.SOURCE_FORMATS[src] == "parquet" else "")
        for src in params["sources"]
    )

    lines = [
        "# Benchmarks",
        "",
        f"Scale **{scale}**, run {record['started_at']} ({record['elapsed_s']} s in all), "
        f"`{record['command']}`. Load average before {record['load_before'][0]}, "
        f"after {record['load_after'][0]} on {m['cores']} cores: above ~1.0 other work "
        "shared the machine and the figures are high by that much.",
        "",
        *(
            []
            if scale == "full"
            else [
                f"**Not the full scale**: the targets are set for the full scale (10 M "
                f"enrolments, a 20 k night, 365 feed dates); at scale {scale} the met/missed "
                "column is indicative only. `make bench` runs the full scale.",
                "",
            ]
        ),
        "## Figures (medians)",
        "",
        *_summary(figures),
        "",
        "Ratios are pipeline ÷ floor wall time; every figure is a whole fresh process (start-up "
        "and imports included on both sides). Peak RSS is the larger of GNU time's maximum RSS "
        "of the step and the largest summed RSS of its process tree (sampled every 50 ms).",
        "",
        "Same money on both sides (a check that the floor does the same work):",
        "",
        *(_checks(results) or ["- (no cross-check in this run)"]),
        "",
        "## What is measured",
        "",
        f"- **snapshot load**: `pipeline.run_local` on a landing folder holding only the "
        f"registry and a {ds['enrollments']:,}-row enrolment snapshot "
        f"({params['snapshot_format']}), "
        "into a new warehouse (read, manifest and sha256 checks, validation, staging Parquet, "
        "load with chains and members). Floor: `CREATE TABLE enrollments AS SELECT * FROM "
        "read_parquet(file)` (or `read_csv`) of the same file into a new `.duckdb` file "
        "(`benchmarks/floor.py`, `bare_load_sql`).",
        f"- **night**: `claims run --date {bdata.NIGHT_DATE}` (the real command, Prefect "
        f"ephemeral mode) on a copy of the warehouse holding the snapshot; {ds['night_rows']:,} "
        f"rows ({params['night_stays']:,} new stays plus the corrections and voids due) from "
        f"{len(params['sources'])} sources ({formats}). Floor: ONE DuckDB "
        "statement (`benchmarks/floor.py`, `floor_sql`) over the same files and the bare "
        "enrolment table: current version, identity numbers normalised and checked, match by id "
        "else by name + birth date + gender, in-network hospital, coverage with gaps-and-islands "
        "chain start and waiting days, coordination by priority, deductible, half-up rate, "
        "per-stay cap, allowance and the annual cap as a running sum, written to Parquet. No "
        "validation, no manifests, no ledger, no history. **Prefect start** is a trivial flow "
        "in a fresh process in the same mode.",
        f"- **backfill**: `claims backfill --from {bdata.YEAR_START} --to "
        f"{date.fromordinal(year_last)}` on a copy of the warehouse holding the snapshot: "
        f"{ds['year_rows']:,} rows in {ds['year_partitions']} partitions "
        f"({params['year_nights']} feed dates × {len(params['sources'])} sources), one commit "
        "per date. Floor: the same statement over the year's files.",
        "- **Prefect per partition**: (backfill wall time − the same year through "
        "`run_local` per feed date in one process, no Prefect, `benchmarks/steps.py local-dates`) "
        "÷ partitions; the note gives the same difference per task run (one per feed date) and "
        "beyond Prefect's start-up. Not judged: `run_local` also opens and closes the warehouse "
        "for every date where the flow keeps one session, so the difference holds more than "
        "Prefect. **Prefect per partition, direct** (judged): a flow of as many empty "
        "task runs as feed dates, declared like `backfill_chunk` (`benchmarks/steps.py "
        "prefect-tasks`), less an empty flow, both timed in one process after the API server "
        "has started: the same cost per task run and per partition, without subtracting two "
        "long, noisy runs.",
        "",
        f"Repeats: {record['repeats']} fresh processes each for the snapshot, night, floors and "
        f"Prefect start; {record['backfill_repeats']} for the backfill and its `run_local` twin "
        "(the longest runs). Before each benchmark its input files are read once (page cache), "
        "and a first Prefect run (not measured) creates Prefect's database under "
        "`benchmarks/out/prefect-home`.",
        "",
        "## Machine",
        "",
        f"- {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']}",
        "- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- commit {m['commit']}",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench        # = .venv/bin/python -m benchmarks.run --scale full",
        "# one benchmark (the others keep their last figures):",
        ".venv/bin/python -m benchmarks.run --scale full --only night",
        "# the test's scale, a few minutes:",
        ".venv/bin/python -m benchmarks.run --scale small",
        "```",
        "",
        "Generated data is cached under `benchmarks/out/data-<scale>-<key>/` (the key hashes the "
        "scale's parameters and the `synth/` package); the first full run generates it (a few "
        "minutes, ~2 GB). Per-run logs are in `benchmarks/out/logs-<scale>/`, every figure in "
        "`benchmarks/out/results-<scale>.json`. Options: `--repeats N`, `--timeout S` (per "
        "process), `--snapshot-format csv`, `--keep` (keep the scratch warehouses), `--docs PATH`.",
        "",
        "## Every run",
        "",
        *_runs(results),
        "",
    ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text(encoding="utf-8").rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
