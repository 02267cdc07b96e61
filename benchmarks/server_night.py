"""A night against a running Prefect server (issue 16, item 4).

    python -m benchmarks.server_night --warehouse W --landing L --date D --repeats N \\
        --json OUT [--outbox O]

Starts ``prefect server start`` on 127.0.0.1 (a free port, its own PREFECT_HOME in a temporary
folder) and waits for its health check; then, ``N`` times, copies the warehouse ``W`` (and the
outbox ``O`` it is paired with, if given) to a scratch folder and runs the real
``claims run --date D`` there in a fresh process with ``PREFECT_API_URL`` set: the production
shape, where no ephemeral API server starts inside the command. The server is always stopped,
also on an error or an interrupt.

Each run is split from what it records itself, not guessed:

- ``import_s``: the seconds the command spent importing modules, the sum of the top-level
  entries of ``python -X importtime`` of the measured process (``-X importtime`` itself adds a
  little to them), split at the flow run's "Beginning flow run" log line (stderr keeps the
  order) into imports before the flow run and lazy imports inside it (``import_in_flow_s``);
- ``data_s``: the union of the intervals (start → end, as the server recorded them) of the
  flow run's task runs (plan, validation, commit, issue, the partitions' outcomes, the
  report), less the imports made inside the flow run;
- ``api_s``: the rest of the time up to the end of the flow run: interpreter start, client
  set-up, flow-run creation and its state round-trips before its first task (process start to
  the flow run's start, less the imports before it), and the gaps between the task runs inside
  the flow run;
- ``exit_s``: from the end of the flow run to the end of the process (the terminal summary,
  Prefect's flushing of logs and events, the interpreter's shutdown).

``wall_s`` = ``import_s`` + ``api_s`` + ``data_s`` + ``exit_s`` (up to the clock's resolution).
Imports made inside validation, on two threads at once, are timed with the other thread's work
in them, so there the split between imports and data work is approximate; ``task_s`` has each
task run's seconds as the server recorded them.
Peak RSS is ``benchmarks.measure``'s (GNU time and the sampled process tree). Timing stays here,
never in tests; ``tests/test_server_night.py`` runs this once on a tiny landing folder.

Before the first run, a few unmeasured reads warm the fresh server (its first answers take
seconds; a long-running server's do not). Bytecode: the command runs with compiled modules
cached under ``--pycache`` (as an installed program has them; filled once, unmeasured, before
the first run), unless ``--no-bytecode`` (then every start compiles every module from source,
as with ``PYTHONDONTWRITEBYTECODE``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import measure

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = "import sys; from claims.cli import main; sys.argv[0] = 'claims'; main()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, pycache: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of the server and of the measured command: no inherited Prefect or
    claims settings, a private PREFECT_HOME, quiet, the project importable; with ``pycache``,
    compiled bytecode kept there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLAIMS_"))}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="false",
        PYTHONPATH=str(PROJECT) + os.pathsep + env.get("PYTHONPATH", ""),
        **extra,
    )
    return env


def _prefect() -> str:
    script = BIN / "prefect"
    return str(script) if script.exists() else "prefect"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server this module started (its own session: uvicorn and its children):
    politely, then for sure, also when interrupted while waiting."""
    try:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def prefect_server(root: Path, timeout_s: float = 180) -> Iterator[tuple[str, Path, float]]:
    """``prefect server start`` on a free port of 127.0.0.1; yields (API URL, its
    PREFECT_HOME, seconds until it answered its health check). Always stopped on the way out."""
    home = root / "prefect-home"
    log = root / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    started = time.perf_counter()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=_env(home),
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the Prefect server exited; see {log}")
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"the Prefect server never answered; see {log}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        yield url, home, time.perf_counter() - started
    finally:
        _stop(server)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def warm_server(api: str) -> None:
    """A few reads of what a night asks for, unmeasured: a fresh server answers its first
    requests slowly (seconds), a long-running one, as in production, does not."""
    with urllib.request.urlopen(f"{api}/admin/version", timeout=60) as answer:
        answer.read()
    for path in ("flows", "flow_runs", "task_runs", "logs"):
        _post(f"{api}/{path}/filter", {"limit": 1})


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def flow_run_record(api: str, after: float, wait_s: float = 30) -> dict[str, Any]:
    """The flow run started after ``after`` (epoch s), its task runs and its log lines, once the
    server has recorded every task run's end and the flow run's last log line (task-run states
    reach the server as events, log lines in batches: some a little after the command
    exits)."""
    deadline = time.monotonic() + wait_s
    while True:
        runs = _post(
            f"{api}/flow_runs/filter",
            {
                "flow_runs": {
                    "start_time": {"after_": datetime.fromtimestamp(after, UTC).isoformat()}
                },
                "sort": "START_TIME_DESC",
                "limit": 5,
            },
        )
        tasks: list[dict[str, Any]] = []
        if len(runs) == 1 and runs[0].get("end_time"):
            tasks = _post(
                f"{api}/task_runs/filter",
                {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}, "limit": 200},
            )
            logs = _post(
                f"{api}/logs/filter",
                {"logs": {"flow_run_id": {"any_": [runs[0]["id"]]}}, "limit": 200},
            )
            # The flow run's last line is sent by Prefect's exit handlers: it proves they ran.
            flushed = any("Finished in state" in g.get("message", "") for g in logs)
            if tasks and all(t.get("end_time") for t in tasks) and flushed:
                return {"flow_run": runs[0], "task_runs": tasks, "logs": logs}
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no finished flow run with finished task runs and its last log line on the "
                f"server ({len(runs)} flow run(s), {len(tasks)} task run(s))"
            )
        time.sleep(0.5)


def _union(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the intervals (validation task runs overlap on two threads)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


FLOW_START = "Beginning flow run"


def import_seconds(log_text: str) -> tuple[float, float]:
    """Seconds of top-level imports (``-X importtime``'s cumulative column) before the flow
    run's first log line, and after it."""
    before, after, in_flow = 0, 0, False
    for line in log_text.splitlines():
        if FLOW_START in line:
            in_flow = True
            continue
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and not name[1:].startswith(" "):
            if in_flow:
                after += int(cumulative)
            else:
                before += int(cumulative)
    return before / 1e6, after / 1e6


def split(
    started: float, wall_s: float, imports: tuple[float, float], record: dict[str, Any]
) -> dict[str, Any]:
    """import / API / data / exit seconds of one run (epoch-second clocks of one machine)."""
    flow = record["flow_run"]
    flow_start, flow_end = _ts(flow["start_time"]), _ts(flow["end_time"])
    assert flow_start is not None and flow_end is not None
    spans = []
    for t in record["task_runs"]:
        a, b = _ts(t.get("start_time")), _ts(t.get("end_time"))
        if a is not None and b is not None:
            spans.append((a, b))
    tasks_s = _union(spans)
    before_flow = flow_start - started
    in_flow = flow_end - flow_start
    imports_before, imports_in_flow = imports
    return {
        "import_s": round(imports_before + imports_in_flow, 3),
        "api_s": round(max(before_flow - imports_before, 0.0) + max(in_flow - tasks_s, 0.0), 3),
        "data_s": round(max(tasks_s - imports_in_flow, 0.0), 3),
        "exit_s": round(started + wall_s - flow_end, 3),
        "import_in_flow_s": round(imports_in_flow, 3),
        "before_flow_s": round(before_flow, 3),
        "flow_s": round(in_flow, 3),
        "task_runs_s": round(tasks_s, 3),
        "task_runs": len(record["task_runs"]),
        "task_s": {
            t["name"]: round(b - a, 3)
            for t in record["task_runs"]
            if (a := _ts(t.get("start_time"))) is not None
            and (b := _ts(t.get("end_time"))) is not None
        },
        "log_lines": len(record["logs"]),
        "warnings": sum(1 for g in record["logs"] if g.get("level", 0) >= 30),
        "flow_run_name": flow["name"],
        "flow_run_state": (flow.get("state") or {}).get("type"),
    }


def committed(warehouse: Path) -> dict[str, Any]:
    """What the night committed: partitions by status, targets and the ledger posted."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        states = dict(
            con.execute("SELECT status, count(*) FROM partition_runs GROUP BY 1").fetchall()
        )
        row = con.execute("SELECT coalesce(sum(target_fen), 0) FROM stay_plan_targets").fetchone()
        ledger = con.execute("SELECT coalesce(sum(amount_fen), 0) FROM ledger_entries").fetchone()
        batches = con.execute("SELECT count(*) FROM runs WHERE batch_id IS NOT NULL").fetchone()
    finally:
        con.close()
    assert row is not None and ledger is not None and batches is not None
    return {
        "partitions": {str(k): int(v) for k, v in states.items()},
        "target_fen": int(row[0]),
        "ledger_fen": int(ledger[0]),
        "batches": int(batches[0]),
    }


def night(
    api: str,
    home: Path,
    scratch: Path,
    args: argparse.Namespace,
    index: int,
) -> dict[str, Any]:
    """One ``claims run`` in a fresh process on a fresh copy of the warehouse (and outbox)."""
    folder = scratch / f"night-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    warehouse = folder / "warehouse.duckdb"
    shutil.copy2(args.warehouse, warehouse)
    outbox = folder / "outbox"
    if args.outbox is not None and args.outbox.exists():
        shutil.copytree(args.outbox, outbox, symlinks=True)
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-c",
        CLI,
        "run",
        "--date",
        args.date,
        "--landing",
        str(args.landing),
        "--warehouse",
        str(warehouse),
        "--outbox",
        str(outbox),
        "--staging",
        str(folder / "staging"),
    ]
    started = time.time()
    sample = measure(
        cmd,
        log_path=folder / "claims-run.log",
        env=_env(home, _pycache(args), PREFECT_API_URL=api),
        cwd=folder,
        timeout_s=args.timeout,
    )
    text = Path(sample.log).read_text(errors="replace")
    if sample.returncode not in (0, 1):
        tail = "\n".join(x for x in text.splitlines() if not x.startswith("import time:"))
        raise RuntimeError(f"claims run exited {sample.returncode}:\n{tail[-3000:]}")
    record = flow_run_record(api, started)
    run = {
        "wall_s": round(sample.wall_s, 3),
        **split(started, sample.wall_s, import_seconds(text), record),
        "peak_rss": sample.peak_rss,
        "returncode": sample.returncode,
        "committed": committed(warehouse),
    }
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return run


def _pycache(args: argparse.Namespace) -> Path | None:
    return None if args.no_bytecode else args.pycache


WARM = "import claims.cli, flows.nightly, pipeline, pandera.polars, polars, duckdb, rich.markdown"


def warm_bytecode(args: argparse.Namespace, home: Path) -> None:
    """Compile what a night imports into the bytecode cache once, unmeasured."""
    pycache = _pycache(args)
    if pycache is None:
        return
    pycache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", WARM], env=_env(home, pycache), cwd=PROJECT, check=True)


def table(result: dict[str, Any]) -> str:
    cols = ("wall_s", "import_s", "api_s", "data_s", "exit_s", "import_in_flow_s", "task_runs")
    lines = [
        f"Prefect server started in {result['server_start_s']:.1f} s; load "
        f"{result['load_before']:.2f} → {result['load_after']:.2f}",
        "run  " + "  ".join(f"{c.removesuffix('_s'):>9}" for c in cols) + "  peak RSS",
    ]
    for i, r in enumerate(result["runs"]):
        lines.append(
            f"{i:<4} " + "  ".join(f"{r[c]:>9}" for c in cols) + f"  {r['peak_rss'] / 2**30:.2f} GB"
        )
    if len(result["runs"]) > 1:
        lines.append(
            "med  "
            + "  ".join(
                f"{round(statistics.median(r[c] for r in result['runs']), 3):>9}" for c in cols
            )
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", type=Path, required=True, help="warehouse to copy per run")
    p.add_argument("--landing", type=Path, required=True)
    p.add_argument("--date", required=True, help="the night's feed date, YYYY-MM-DD")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, required=True, help="where to write the figures")
    p.add_argument("--outbox", type=Path, help="the outbox the warehouse is paired with")
    p.add_argument("--timeout", type=float, default=1800, help="per claims run, seconds")
    p.add_argument("--scratch", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep each run's scratch folder")
    p.add_argument(
        "--pycache",
        type=Path,
        default=PROJECT / "benchmarks" / "out" / "pycache",
        help="where the command's compiled bytecode is kept",
    )
    p.add_argument("--no-bytecode", action="store_true", help="compile every start from source")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A stop (SIGTERM, as `timeout` or a harness sends) unwinds like Ctrl-C: the server stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.warehouse.is_file():
        raise SystemExit(f"no warehouse {args.warehouse}")
    root = Path(tempfile.mkdtemp(prefix="claims-server-night-"))
    scratch = args.scratch or root
    load_before = os.getloadavg()[0]
    try:
        with prefect_server(root) as (api, home, server_start_s):
            warm_bytecode(args, home)
            warm_server(api)
            runs = [night(api, home, scratch, args, i) for i in range(args.repeats)]
        result = {
            "runs": runs,
            "server_start_s": round(server_start_s, 3),
            "date": args.date,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "bytecode": "none" if args.no_bytecode else "cached",
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(table(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
