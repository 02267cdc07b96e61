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
    limit, ratio_limit = row.get("limit"), row.get("ratio_limit")
    bound = ""
    if isinstance(ratio_limit, float):
        bound = f" (≤ {ratio_limit:g}×)"
    elif isinstance(limit, float):
        bound = f" (≤ {fmt_s(limit)})"
    word = "met" if met else "MISSED"
    return (f"**{word}**" if bold else word) + bound


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _summary(figures: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| target (issue 16) | benchmark | figure | floor beside it | ratio | peak RSS | result |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in figures:
        ratio = "—" if r["ratio"] is None else f"{float(r['ratio']):.2f}×"
        note = f" ({r['note']})" if r.get("note") else ""
        basis = "—"
        if r.get("floor_s") is not None:
            basis = f"{fmt_s(r['floor_s'])} {r.get('basis', '')}".strip()
        lines.append(
            f"| {_cell(str(r['target']))} | {_cell(str(r['name']) + note)} | "
            f"{fmt_s(r['pipeline_s'])} | {_cell(basis)} | {ratio} | {fmt_gb(r['peak'])} | "
            f"{verdict(r, bold=True)} |"
        )
    return lines


SIDES = ("pipeline", "local", "twin_pipeline", "twin_local", "floor", "bare", "process")


def _runs(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | side | runs (wall s) | median | peak RSS | measured at | load | commit |",
        "|---|---|---|---:|---:|---|---:|---|",
    ]
    for name, entry in results.items():
        parts = [(side, entry.get(side)) for side in SIDES]
        if name == "readonly":
            parts = [(side, part) for side, part in entry.items() if isinstance(part, dict)]
        for side, part in parts:
            if not isinstance(part, dict) or "runs" not in part:
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


CHECKS = (
    ("night", "check", "night, `claims run`"),
    ("night", "check_local", "night, `run_local`"),
    ("server", "check", "night against a Prefect server"),
    ("backfill", "check", "year, `claims backfill`"),
    ("backfill", "check_local", "year, `backfill_local`"),
    ("yearend", "check", "night on the year-end warehouse, `claims run` (floor: year + night)"),
    ("yearend", "check_local", "night on the year-end warehouse, `run_local`"),
    ("newsnap", "check", "night with the new snapshot (floor: year + night, new snapshot)"),
)


def _checks(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, key, label in CHECKS:
        check = results.get(name, {}).get(key)
        if not isinstance(check, dict) or not check.get("pipeline") or not check.get("floor"):
            continue
        p, f = check["pipeline"], check["floor"]
        same = "the same" if check["same"] else "**different**"
        posted = (
            "all posted"
            if p["ledger_fen"] == p["target_fen"]
            else f"{p['ledger_fen']:,} fen posted"
        )
        lines.append(
            f"- {label}: pipeline {p['stays']:,} paid-or-covered stays, {p['stay_plans']:,} "
            f"(stay, plan) targets, {p['target_fen']:,} fen ({posted}); floor {f['stays']:,}, "
            f"{f['stay_plans']:,}, {f['target_fen']:,} fen: {same}."
        )
    over = results.get("overhead", {}).get("check")
    back = results.get("backfill", {}).get("check")
    if isinstance(over, dict) and isinstance(back, dict) and back.get("pipeline"):
        same = over == back["pipeline"]
        lines.append(
            f"- year via `run_local` date by date: {over['target_fen']:,} fen in targets, "
            f"{over['ledger_fen']:,} fen posted: {'the same as' if same else '**not** the same as'}"
            " `claims backfill`."
        )
    return lines


def _timings(record: dict[str, Any]) -> list[str]:
    timings = record.get("timings") or {}
    if not timings:
        return []
    parts = ", ".join(f"{name} {fmt_s(seconds)}" for name, seconds in timings.items())
    return [f"Each benchmark's share of the run (preparation included): {parts}.", ""]


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
    snap = results.get("newsnap", {}).get("snapshot") or {}
    changed = snap.get("changed") or {}
    changed_text = (
        ", ".join(f"{changed.get(k, 0):,} {k}" for k in ("payee", "name", "ended", "renewed"))
        + f" of {changed.get('people', 0):,} people"
        if changed
        else "1 % of people"
    )
    new_date = snap.get("snapshot_date", "the day after the year")
    lines = [
        "# Benchmarks",
        "",
        f"Scale **{scale}**, run {record['started_at']} ({record['elapsed_s']} s in all), "
        f"`{record['command']}`, every figure from one run at commit {m['commit']}. "
        f"Load average before {record['load_before'][0]}, after {record['load_after'][0]} on "
        f"{m['cores']} cores: above ~1.0 other work shared the machine and the figures are "
        "high by that much (each benchmark's load is in *Every run*).",
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
        "## Targets",
        "",
        *_summary(figures),
        "",
        "Medians of fresh processes (start-up and imports included on both sides). Ratios are "
        "figure ÷ the floor beside it; for the year-end rows, ÷ the same night on the "
        "snapshot-only warehouse. Rows whose target is — are shown for what they explain and "
        "not judged. Peak RSS is the larger of GNU time's maximum RSS of the step and the "
        "largest summed RSS of its process tree (sampled every 50 ms); the peak-memory row is "
        "the largest of the pipeline rows above it (floors are not held to it).",
        "",
        "Same money on both sides, to the fen (a check that the floor does the pipeline's work):",
        "",
        *(_checks(results) or ["- (no cross-check in this run)"]),
        "",
        "## What is measured",
        "",
        f"- **snapshot load**: `pipeline.run_local` on a landing folder holding only the "
        f"registry and a {ds['enrollments']:,}-row enrolment snapshot "
        f"({params['snapshot_format']}), into a new warehouse (read, manifest and sha256 checks, "
        "validation, load with chains and members). Floor: `CREATE TABLE enrollments AS SELECT "
        "* FROM read_parquet(file)` (or `read_csv`) of the same file into a new `.duckdb` file "
        "(`benchmarks/floor.py`, `bare_load_sql`).",
        f"- **night**: `claims run --date {bdata.NIGHT_DATE}` (the real command, Prefect "
        f"ephemeral mode) on a copy of the warehouse holding the snapshot; {ds['night_rows']:,} "
        f"rows ({params['night_stays']:,} new stays plus the corrections and voids due) from "
        f"{len(params['sources'])} sources ({formats}). The **data work** is the same night "
        "through `run_local` (`benchmarks/steps.py local`): everything `claims run` does "
        "but Prefect. Floor: ONE DuckDB statement (`benchmarks/floor.py`, `floor_sql`) over the "
        "same files and the bare enrolment table: current version, identity numbers normalised "
        "and checked, match by id else by name + birth date + gender, in-network hospital, "
        "coverage with gaps-and-islands chain start and waiting days, overlapping stays held, "
        "coordination by priority, deductible, half-up rate, per-stay cap, allowance and the "
        "annual cap as a running sum, written to Parquet. No validation, no manifests, no "
        "ledger, no history. A trivial flow in a fresh process gives Prefect's ephemeral "
        "start-up.",
        "- **night with a running Prefect server**: `benchmarks/server_night.py` starts "
        "`prefect server start` on 127.0.0.1 and runs the same `claims run` with "
        "`PREFECT_API_URL` set (the production shape), each repeat on a fresh copy of the "
        "warehouse; it splits the command into import, API, data and exit time. The server's own "
        "start is not in the figure.",
        f"- **year backfill**: `claims backfill --from {bdata.YEAR_START} --to "
        f"{date.fromordinal(year_last)}` (default `--chunk-days 31`) on a copy of the warehouse "
        f"holding the snapshot: {ds['year_rows']:,} rows in {ds['year_partitions']} partitions "
        f"({params['year_nights']} feed dates × {len(params['sources'])} sources). Beside it "
        "`backfill_local` with the same chunks and no Prefect (`benchmarks/steps.py "
        "local-chunks`): the difference is Prefect's share. Floor: the same statement over "
        "the year's files. The warehouse `claims backfill` leaves is the **year-end "
        "warehouse** of the rows below (each night on its own copy).",
        "- **night on the year-end warehouse**: the same night, `claims run` and `run_local`, "
        "with the landing folder as it is that night (the year's partitions and the night's); "
        "each ÷ its twin on the snapshot-only warehouse, measured beside it (year-end and twin "
        "in turn, the order swapped every repeat, so that the machine's drift over the run "
        "falls on both sides). Floor for the money: the statement over the year and the night.",
        f"- **night with a new snapshot**: the same night on the year-end warehouse, its landing "
        f"folder also holding a snapshot dated {new_date} "
        f"({snap.get('rows', 0):,} rows) drawn from the first with polars "
        f"(`benchmarks/newsnap.py`): {changed_text} changed (a new payee account, a changed "
        "name, an enrolment ended 60 days earlier, a renewal from the new date). Limit: twice "
        "bare DuckDB loading that file plus the year-end night (`claims run`). Floor for the "
        "money: the statement over the year and the night against the new snapshot.",
        "- **read-only commands**: `claims status` and `claims explain --stay H/S` (a paid "
        "stay) on the year-end warehouse, bytecode cached as an installed program has it.",
        "- **verify, sustainability**: `claims verify` and `claims report sustainability "
        f"--year {date.fromordinal(year_last).year}` on the year-end warehouse and its outbox.",
        "",
        f"Repeats: {record['repeats']} fresh processes for each short run and floor; "
        f"{record['backfill_repeats']} for the year-long runs; the new-snapshot night and its "
        "bare load in turn, each as often as a short run. "
        "Before each benchmark its input files are read once (page cache), and a first Prefect "
        "run (not measured) creates Prefect's database under `benchmarks/out/prefect-home`. "
        "Every child process keeps compiled bytecode (`PYTHONPYCACHEPREFIX` under the output "
        "folder). DuckDB's `memory_limit` is the product's default (`CLAIMS_DUCKDB_MEMORY_LIMIT`, "
        "4GB) unless the environment sets another.",
        "",
        *_timings(record),
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
        "make bench BENCH_ARGS='--out DIR'   # data cached under DIR (else benchmarks/out)",
        "# some benchmarks (the others keep their last figures; what they need is built first):",
        ".venv/bin/python -m benchmarks.run --scale full --only night,server",
        "# the test's scale, a few minutes:",
        ".venv/bin/python -m benchmarks.run --scale small",
        "```",
        "",
        "Generated data is cached under `benchmarks/out/data-<scale>-<key>/` (the key hashes the "
        "scale's parameters and the `synth/` package; the first full run generates it, a few "
        "minutes, ~2 GB), the year-end landing folders and the new snapshot under "
        "`benchmarks/out/derived-<scale>-<key>/`. Per-run logs are in "
        "`benchmarks/out/logs-<scale>/`, every figure in `benchmarks/out/results-<scale>.json`. "
        "Options: `--repeats N`, `--timeout S` (per process), `--snapshot-format csv`, `--keep` "
        "(keep the scratch warehouses), `--yearend W` (copy this year-end warehouse instead of "
        "building one when `backfill` is not run), `--docs PATH`, `--report-only`. "
        "`--only overhead` adds the year date by date through `run_local` (the old "
        "`--chunk-days 1` shape, ~50 min at full scale).",
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
