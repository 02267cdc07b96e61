"""The Prefect flows (operations.md, *Flows*): names, retries, concurrency, artifacts, reports.

The flow tests run the real flows against the session's Prefect test server (the
``prefect_harness`` fixture); the rest need no Prefect server. ``build_landing`` makes the small
synthetic landing folder that test_cli.py and test_pii.py use too.
"""

from __future__ import annotations

import contextlib
import functools
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import flows.progress as progress_module
import pipeline
import synth
from config.settings import Settings
from landing.partitions import Partition
from outbox.summary import CommitResult

START = date(2026, 3, 2)
SNAPSHOT = START - timedelta(days=1)
SEED = 5


# ---------------------------------------------------------------------------------------------
# A small landing folder: one snapshot, a few nights of two sources, optionally a bad partition
# ---------------------------------------------------------------------------------------------


@functools.cache
def population() -> synth.Population:
    """150 people (~200 enrolments), built once per test process."""
    return synth.make_population(150, seed=SEED, as_of=SNAPSHOT)


@functools.cache
def hospitals() -> pl.DataFrame:
    return synth.make_hospitals(40, seed=0)


@functools.cache
def night(day: date, bad_rate: float, sources: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    return synth.make_stays(
        population(),
        hospitals(),
        feed_date=day,
        n=24,
        seed=SEED,
        sources=sources,
        bad_rate=bad_rate,
        history_start=START,
    )


def key(day: date, source: str) -> str:
    return f"feed_date={day.isoformat()}/source={source}"


@dataclass
class Landing:
    """What :func:`build_landing` wrote, and the repair of its failing partition."""

    settings: Settings
    feed_dates: list[date]
    sources: tuple[str, ...]
    failing: str | None = None
    _repair: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def keys(self) -> list[str]:
        return [key(d, s) for d in self.feed_dates for s in self.sources]

    def paths(self) -> dict[str, str]:
        """The flows' path parameters."""
        s = self.settings
        return {"landing": str(s.landing), "warehouse": str(s.warehouse), "outbox": str(s.outbox)}

    def cli_paths(self) -> list[str]:
        s = self.settings
        return [
            "--landing",
            str(s.landing),
            "--warehouse",
            str(s.warehouse),
            "--outbox",
            str(s.outbox),
        ]

    def repair(self) -> None:
        """Re-deliver the failing partition with good rows (new files, new manifest)."""
        assert self.failing is not None and self._repair is not None
        day, source = self.failing.split("/")
        synth.write_partition(
            self.settings.landing,
            date.fromisoformat(day.removeprefix("feed_date=")),
            source.removeprefix("source="),
            self._repair,
        )


def build_landing(
    root: Path,
    *,
    nights: int = 2,
    failing_night: int | None = 1,
    sources: tuple[str, ...] = ("SHYB", "HOSPX"),
) -> Landing:
    """Registry, one enrolment snapshot and ``nights`` nights of ``sources`` (12 stays each).

    With ``failing_night``, that night's last source has half its rows broken: far above the 5 %
    reject threshold, so the partition fails as a whole and its rows are quarantined.
    """
    settings = Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")
    synth.write_registry(settings.landing, hospitals())
    synth.write_snapshot(settings.landing, SNAPSHOT, population().enrollments)
    landing = Landing(settings, [START + timedelta(days=i) for i in range(nights)], sources)
    for i, day in enumerate(landing.feed_dates):
        for source, rows in night(day, 0.0, sources).items():
            if i == failing_night and source == sources[-1]:
                landing.failing, landing._repair = key(day, source), rows
                rows = night(day, 0.5, sources)[source]
            synth.write_partition(settings.landing, day, source, rows)
    return landing


@contextlib.contextmanager
def holding_run_lock(warehouse: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the warehouse's run lock, as a running `claims run` does."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from storage.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1]), 0):\n"
            "    print('held', flush=True); time.sleep(120)",
            str(warehouse),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def initialised(landing: Landing) -> Landing:
    """``claims init`` for the landing's warehouse and outbox (the command line requires it)."""
    pipeline.init_warehouse(landing.settings)
    return landing


def query(warehouse: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on the warehouse file."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def partition_status(warehouse: Path) -> dict[str, str]:
    return dict(query(warehouse, "SELECT partition_key, status FROM partition_runs"))


# ---------------------------------------------------------------------------------------------
# Without a Prefect server
# ---------------------------------------------------------------------------------------------


def test_partitions_validate_two_at_a_time() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.nightly import nightly

    assert isinstance(nightly.task_runner, ThreadPoolTaskRunner)
    assert nightly.task_runner._max_workers == 2


def test_retry_condition_retries_io_errors_only() -> None:
    """Prefect 3 calls ``retry_condition_fn(task, task_run, state)`` with the failed state."""
    from prefect.states import Completed, Failed

    from flows.nightly import StepFailed, _io_only, validate_discharge_partition

    assert validate_discharge_partition.retry_condition_fn is _io_only
    assert _io_only(None, None, Failed(data=OSError(5, "Input/output error"))) is True
    assert _io_only(None, None, Failed(data=TimeoutError("slow disk"))) is True
    assert _io_only(None, None, Failed(data=StepFailed("ValueError: bad value"))) is False
    assert _io_only(None, None, Completed()) is False


def test_unexpected_errors_are_scrubbed() -> None:
    from flows.nightly import StepFailed, _sanitized

    @_sanitized
    def broken() -> None:
        raise ValueError(
            "cannot parse '张三丰' near 310104198001010012, account 6222021234567890123"
        )

    with pytest.raises(StepFailed) as raised:
        broken()
    message = str(raised.value)
    assert "310104198001010012" not in message and "张三丰" not in message
    assert "6222021234567890123" not in message
    assert "310*************12" in message and "张*" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

    # An I/O error stays one of its kind, so that it is retried, but its path is scrubbed.
    @_sanitized
    def unreadable() -> None:
        raise FileNotFoundError(2, "No such file or directory", "/in/310104198001010012_张三丰.csv")

    with pytest.raises(FileNotFoundError) as missing:
        unreadable()
    assert "310104198001010012" not in str(missing.value) and "张三丰" not in str(missing.value)
    assert missing.value.errno == 2 and "310*************12_张*.csv" in str(missing.value)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with progress_module.progress("nights", 3) as advance:
        advance()
        assert progress_module._bars is None  # not a terminal: nothing drawn

    monkeypatch.setattr(sys, "stdout", _Terminal())
    with progress_module.progress("nights", 2) as advance_nights:
        outer = progress_module._bars
        assert outer is not None
        with progress_module.progress("partitions", 3) as advance_partitions:
            assert progress_module._bars is outer  # nested work shares the one live display
            assert len(outer.tasks) == 2
            advance_partitions()
        assert len(outer.tasks) == 1
        advance_nights()
        assert outer.tasks[0].completed == 1
    assert progress_module._bars is None


class _Page(HTMLParser):
    """What a browser would load and draw: charts, their bars, and anything fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, Any]] = []
        self.fetches: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append({"label": a.get("aria-label"), "bars": []})
        elif tag == "rect" and self.svgs:
            # SVG lengths may be decimals (matplotlib's clip rectangles)
            self.svgs[-1]["bars"].append(int(float(a.get("width") or 0)))
        if tag in ("script", "link", "img", "iframe", "object", "embed"):
            self.fetches.append(tag)
        self.fetches += [f"{k}={v}" for k, v in a.items() if k in ("src", "href") and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def parse_report(path: Path) -> _Page:
    return parse_html(path.read_text(encoding="utf-8"))


def check_report(path: Path, result: CommitResult) -> _Page:
    """The report opens as one self-contained page with its figures and three charts."""
    page = parse_report(path)
    source = path.read_text(encoding="utf-8")
    assert page.fetches == [], "the report must not load anything"
    assert "http" not in source and "url(" not in source and "@import" not in source
    charts = {svg["label"]: svg["bars"] for svg in page.svgs}
    for chart in ("Paid by plan (CNY)", "Quarantined rows by rule", "Stays by status"):
        assert chart in charts, f"missing chart {chart}"
        assert charts[chart] and max(charts[chart]) > 0, f"chart {chart} has no data"
    text = " ".join(page.text)
    assert result.batch_id and result.batch_id in text
    for plan in result.paid_by_plan:
        assert plan in text
    for status in result.stays_by_status:
        assert status in text
    for rule in result.quarantined_by_rule:
        assert rule in text
    return page


def test_report_is_a_self_contained_page_with_three_charts(tmp_path: Path) -> None:
    from outbox.report import render_markdown, write_report

    result = CommitResult(
        run_id="20260303T020000-abcd",
        command="run",
        as_of="2026-03-02",
        partitions={"succeeded": [key(START, "SHYB")], "failed": [key(START, "HOSPX")]},
        rows_read=30,
        rows_quarantined=9,
        quarantined_by_rule={"invalid_amount": 6, "missing_value": 3},
        errors={key(START, "HOSPX"): "reject_threshold: 9 of 30 rows quarantined"},
        stays_by_status={"paid": 12, "review": 2, "unmatched": 1},
        paid_by_plan={"UNION_BASIC": 123456, "RETIREE": 7800},
        recovered_by_plan={"UNION_BASIC": 1000},
        paid_fen=131256,
        recovered_fen=1000,
        batch_id="B20260303T020000-abcd",
        batch_instructions=7,
        batch_fen=130256,
    )
    path = write_report(tmp_path, [result], title="claims run 2026-03-02")
    assert path == tmp_path / "reports" / "20260303T020000-abcd.html"
    page = check_report(path, result)
    text = " ".join(page.text)
    assert "1234.56" in text and "10.00" in text  # money in yuan
    assert key(START, "HOSPX") in text and "reject_threshold" in text

    markdown = render_markdown([result], title="claims run 2026-03-02")
    for figure in ("| failed | 1 |", "| invalid_amount | 6 |", "| paid | 12 |", "1234.56"):
        assert figure in markdown
    assert "B20260303T020000-abcd" in markdown


# ---------------------------------------------------------------------------------------------
# Through the real flows
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def prefect_client(prefect_harness: None) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def flow_run_of(client: Any, name: str) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert runs, f"no flow run named {name}"
    return max(runs, key=lambda r: r.created)


def task_runs_of(client: Any, flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    return {r.name: r for r in runs}


def settled_task_runs(
    client: Any, flow_run_id: Any, names: set[str], timeout: float = 60
) -> dict[str, Any]:
    """The flow run's task runs once ``names`` are all recorded in a final state.

    A real server records task-run states from events, a moment after the flow run's own final
    state: a test that reads them once races that.
    """
    deadline = time.monotonic() + timeout
    while True:
        tasks = task_runs_of(client, flow_run_id)
        # A task run may be recorded before its first state is: no state yet is not settled.
        missing = sorted(
            n for n in names if n not in tasks or not (tasks[n].state and tasks[n].state.is_final())
        )
        if not missing:
            return tasks
        assert time.monotonic() < deadline, f"task runs not settled after {timeout} s: {missing}"
        time.sleep(0.5)


def artifacts_of(client: Any, flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    return client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )


def run_flow(**parameters: Any) -> tuple[CommitResult, Any]:
    """The nightly flow, here: its figures and its final state."""
    from flows.nightly import nightly

    state = nightly(return_state=True, **parameters)
    return state.result(raise_on_failure=False), state


@pytest.mark.e2e
def test_nightly_flow_reads_like_the_partition_table(tmp_path: Path, prefect_client: Any) -> None:
    landing = build_landing(tmp_path)
    day = landing.feed_dates[-1]
    # A deployment passes the date as a string (parameters are JSON).
    result, state = run_flow(as_of=day.isoformat(), command="run", **landing.paths())

    assert landing.failing is not None
    assert result.partitions["failed"] == [landing.failing]
    assert sorted(result.partitions["succeeded"]) == sorted(
        [k for k in landing.keys if k != landing.failing] + [f"snapshot_date={SNAPSHOT}"]
    )
    assert result.entries > 0 and result.batch_id

    # The flow run ends Failed, after the rest was committed, paid and reported, saying which
    # partition failed and why; its name is unique.
    run = prefect_client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_failed()
    assert run.state.message.startswith(
        f"1 of 5 partitions failed: {landing.failing}: reject_threshold: "
    )
    assert run.name == f"run-{day.isoformat()}-{str(run.id)[:8]}"
    partitions = [*landing.keys, f"snapshot_date={SNAPSHOT}"]
    expected = {
        "plan",
        *partitions,
        *(f"validate {k}" for k in partitions),
        "commit",
        "issue-batch",
        "report",
    }
    # the last task run's state can be recorded a moment after the flow run's own
    tasks = settled_task_runs(prefect_client, run.id, expected)
    assert set(tasks) == expected
    # Each partition's own task run ends as the partition did; the failed one says why.
    failed = tasks[landing.failing]
    assert failed.state.is_failed()
    assert failed.state.message.startswith(f"{landing.failing}: reject_threshold: ")
    assert all(tasks[k].state.is_completed() for k in partitions if k != landing.failing)
    # A data error is an outcome, not an exception: never retried.
    assert tasks[f"validate {landing.failing}"].run_count == 1
    assert warning_about(prefect_client, run.id, landing.failing), "no WARNING names it"

    by_key = {a.key: a for a in artifacts_of(prefect_client, run.id)}
    assert set(by_key) == {"claims-run-report", "claims-partitions"}
    artifact = by_key["claims-run-report"]
    assert artifact.type == "markdown"
    # the partitions by state, failed first with the next command to type
    table = by_key["claims-partitions"]
    assert table.type == "table" and landing.failing in str(table.data)
    assert f"claims rerun --partition {landing.failing}" in str(table.data)
    assert result.batch_id in artifact.data and landing.failing in artifact.data
    assert "| failed | 1 |" in artifact.data

    report = landing.settings.outbox / "reports" / f"{result.run_id}.html"
    check_report(report, result)

    # The same content again: nothing to do, nothing paid, nothing failed: Completed.
    again, state = run_flow(as_of=day, command="run", **landing.paths())
    assert state.is_completed()
    assert again.entries == 0 and again.batch_id is None
    assert "failed" not in again.partitions or not again.partitions["failed"]
    assert set(again.partitions["skipped"]) == set(landing.keys) - {landing.failing}
    second = prefect_client.read_flow_run(state.state_details.flow_run_id)
    assert second.name != run.name and second.name.startswith(f"run-{day.isoformat()}-")


def logs_of(client: Any, flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    )


def warning_about(client: Any, flow_run_id: Any, text: str, wait_s: float = 15) -> bool:
    """Whether a WARNING log line of the flow run names ``text`` (logs arrive in batches)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        if any(g.level == 30 and text in g.message for g in logs_of(client, flow_run_id)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


@pytest.mark.e2e
def test_transient_io_errors_are_retried_then_fail_only_their_partition(
    tmp_path: Path, prefect_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.nightly as nightly_module
    from flows.nightly import StepFailed, nightly

    landing = build_landing(tmp_path, nights=1, failing_night=None)
    flaky, broken = landing.keys
    calls: dict[str, int] = {}
    real = pipeline.validate_partition

    def validate(ref: Partition, **kw: Any) -> pipeline.Validated:
        calls[ref.key] = calls.get(ref.key, 0) + 1
        if ref.key == flaky and calls[ref.key] == 1:
            raise OSError(5, "Input/output error")
        if ref.key == broken:
            raise OSError(5, "Input/output error")
        return real(ref, **kw)

    monkeypatch.setattr(pipeline, "validate_partition", validate)
    monkeypatch.setattr(
        nightly_module,
        "validate_discharge_partition",
        nightly_module.validate_discharge_partition.with_options(retry_delay_seconds=0),
    )
    result, state = run_flow(as_of=START, command="run", **landing.paths())

    assert calls == {flaky: 2, broken: 3}  # retried twice at most
    assert flaky in result.partitions["succeeded"]
    assert result.partitions["failed"] == [broken]
    assert result.errors[broken].startswith("io_error")
    assert result.batch_id  # the rest is committed and paid
    tasks = settled_task_runs(
        prefect_client, state.state_details.flow_run_id, {f"validate {flaky}", broken}
    )
    assert tasks[f"validate {flaky}"].run_count == 2
    assert tasks[broken].state.is_failed() and "io_error" in tasks[broken].state.message

    # An unexpected error is not retried, and stops the run with a scrubbed message.
    def crash(ref: Partition, **kw: Any) -> pipeline.Validated:
        calls[ref.key] = calls.get(ref.key, 0) + 1
        raise ValueError("cannot parse 310104198001010012 (张三丰)")

    calls.clear()
    monkeypatch.setattr(pipeline, "validate_partition", crash)
    with pytest.raises(StepFailed) as raised:
        nightly(as_of=START, command="rerun", rerun_keys=[broken], **landing.paths())
    assert calls == {broken: 1}
    assert "310104198001010012" not in str(raised.value) and "张三丰" not in str(raised.value)
    # The killed-by-error run left its partition `running`; the next run takes it up again.
    monkeypatch.setattr(pipeline, "validate_partition", real)
    retried, _ = run_flow(as_of=START, command="run", **landing.paths())
    assert retried.partitions["succeeded"] == [broken]
    assert set(partition_status(landing.settings.warehouse).values()) == {"succeeded"}
