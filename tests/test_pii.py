"""No full identity number, name or bank account leaves the access-controlled files.

operations.md, *Personal data*: never in logs, Prefect task/flow names, parameters, artifacts,
reports, exceptions or terminal output. A demo (``claims demo --nights 2``) runs through the real
flows with every logger at DEBUG; then a night with deliberately bad deliveries whose errors
quote personal values (file and folder names, a non-JSON line, values in the wrong columns), a
run that crashes on a library error quoting a person, and the read-only commands. Everything a
person or a log could read is collected and searched for every identity number, name (whole
strings of 2+ Han characters) and account of the generated people and rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import traceback
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from rich.console import Console
from test_flows import artifacts_of, parse_html, query, task_runs_of
from typer.testing import CliRunner

import claims.options as cli_module
import pipeline
import synth
from claims.cli import app
from landing.delivery import read_delivery
from landing.errors import PartitionError
from landing.partitions import DISCHARGES, Partition, discover
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema

pytestmark = pytest.mark.e2e

HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]{2,}")
# A person only this test knows, quoted by the bad deliveries and the crashing library.
PLANTED_ID = "31010419800101001X"
PLANTED_NAME = "欧阳明月"
PLANTED_ACCOUNT = "6222021234567890123"


@dataclass
class Evidence:
    """Everything readable that a demo night left, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, set[str]] = field(default_factory=dict)
    access_controlled: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + "\n" + text


class _Lines(logging.Handler):
    """Every log record, formatted with its traceback, as a person would read it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
            self.lines.append(json.dumps(getattr(record, "__dict__", {}), default=str))
        except Exception:  # a record that cannot be formatted is still searched, raw
            self.lines.append(repr(record.__dict__))


@pytest.fixture(scope="module")
def debug_logs() -> Iterator[_Lines]:
    """Every logger at DEBUG into one handler (Prefect's own loggers do not all propagate)."""
    import flows.nightly  # noqa: F401  - Prefect configures logging on import: before, not after

    handler = _Lines()
    names = ["", "prefect", "prefect.extra", "prefect._internal", "prefect.flow_runs",
             "prefect.task_runs", "claims", "httpx", "py.warnings"]  # fmt: skip
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        for lg, level in saved:
            lg.setLevel(level)
            lg.removeHandler(handler)


def _claims(evidence: Evidence, where: str, *args: object) -> int:
    """Run ``claims ARGS`` in this process; its terminal output becomes evidence."""
    wide_out, wide_err = Console(width=300), Console(width=300, stderr=True)
    saved = cli_module.console, cli_module.err
    cli_module.console, cli_module.err = wide_out, wide_err  # no folding of a value
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        cli_module.console, cli_module.err = saved
    evidence.add(f"terminal: {where}", result.output)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        evidence.add(f"exception: {where}", "".join(traceback.format_exception(result.exception)))
    return result.exit_code


def _bad_deliveries(landing: Path, day: date, rows: pl.DataFrame) -> list[str]:
    """Deliveries whose errors would quote personal values if anything let them through."""
    # A data file named after a person, beside one the manifest does not list.
    named = synth.write_partition(landing, day, "PIIX", rows.head(5))
    (named / "part-0001.csv").rename(named / f"{PLANTED_ID}_{PLANTED_NAME}.csv")
    synth.write_manifest(named)
    (named / f"{PLANTED_ACCOUNT}.csv").write_text("national_id\n" + PLANTED_ID + "\n")

    # Values in the wrong columns (a name as gender, an identity number as hospital, an account
    # as a date), and a line that is not JSON quoting a person: quarantined, over the threshold.
    shifted = rows.head(8).with_columns(
        gender=pl.col("patient_name"),
        hospital_code=pl.col("national_id"),
        admission_date=pl.lit(PLANTED_ACCOUNT),
    )
    jsonl = synth.write_partition(landing, day, "PIIY", shifted, fmt="jsonl")
    data = next(jsonl.glob("part-*.jsonl"))
    with data.open("a", encoding="utf-8") as f:
        f.write(f"not json: {PLANTED_NAME} {PLANTED_ID} {PLANTED_ACCOUNT}\n")
    manifest_path = jsonl / "_manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    (entry,) = manifest["files"]
    entry["rows"] += 1
    entry["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    manifest["row_count"] += 1
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")

    # Folders whose names break the contract and quote a person: reported, never read.
    for bad in (f"source={PLANTED_ID}", f"source={PLANTED_NAME}"):
        (landing / DISCHARGES / f"feed_date={day.isoformat()}" / bad).mkdir(parents=True)
    return [f"feed_date={day.isoformat()}/source={s}" for s in ("PIIX", "PIIY")]


def _secrets(landing: Path, warehouse: Path) -> dict[str, set[str]]:
    """Every identity number, name and account of the generated people and rows."""
    ids: set[str] = {PLANTED_ID}
    names: set[str] = {PLANTED_NAME}
    accounts: set[str] = {PLANTED_ACCOUNT}
    found = discover(landing)
    for p in [*found.discharges, *found.snapshots]:
        schema = discharge_schema if p.kind == DISCHARGES else enrollment_schema
        try:
            frame = read_delivery(p, schema.REQUIRED, optional=schema.OPTIONAL).frame
        except PartitionError:
            continue  # the bad deliveries: their values are the planted ones
        for column, bucket in (
            ("national_id", ids),
            ("patient_name", names),
            ("member_name", names),
            ("payee_account", accounts),
        ):
            if column in frame.columns:
                bucket.update(v for v in frame.get_column(column).to_list() if v)
    for table, columns in (
        ("members", ("national_id", "member_name", "payee_account")),
        ("enrollments", ("national_id",)),  # names and accounts: the members (migration 024)
        ("discharge_rows", ("national_id", "patient_name")),
        ("payment_instructions", ("national_id", "payee_name", "payee_account")),
    ):
        for row in query(warehouse, f"SELECT {', '.join(columns)} FROM {table}"):
            for column, value in zip(columns, row, strict=True):
                if value:
                    {"national_id": ids, "payee_account": accounts}.get(column, names).add(value)

    def id_forms(raw: str) -> set[str]:
        folded = unicodedata.normalize("NFKC", raw)
        compact = re.sub(r"\s+", "", folded).upper()
        return {v for v in (raw.strip(), compact) if len(v) >= 15}

    return {
        "identity number": {f for raw in ids for f in id_forms(raw)},
        "name": {run for raw in names for run in HAN_RUN.findall(re.sub(r"\s+", "", raw))},
        "account": {a.strip() for a in accounts if len(a.strip()) >= 12},
    }


def _prefect_evidence(evidence: Evidence, client: Any) -> None:
    """Flow and task run names, parameters, states; every log line the API holds; artifacts."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    for run in client.read_flow_runs(limit=200):
        evidence.add("prefect: flow run names", run.name)
        evidence.add("prefect: flow run parameters", json.dumps(run.parameters, default=str))
        evidence.add("prefect: flow run states", f"{run.state.name} {run.state.message or ''}")
        for name, task_run in task_runs_of(client, run.id).items():
            evidence.add("prefect: task run names", name)
            state = task_run.state
            evidence.add("prefect: task run states", f"{state.name} {state.message or ''}")
        for artifact in artifacts_of(client, run.id):
            evidence.add("prefect: artifacts", f"{artifact.key} {artifact.description}")
            evidence.add("prefect: artifacts", str(artifact.data))
        offset, page = 0, 200  # the API's page size
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                limit=page,
                offset=offset,
            )
            evidence.add("prefect: flow run logs", "\n".join(log.message for log in logs))
            if len(logs) < page:
                break
            offset += page


@pytest.fixture(scope="module")
def demo_night(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, debug_logs: _Lines
) -> Evidence:
    evidence = Evidence()
    root = tmp_path_factory.mktemp("pii")
    environ = dict(os.environ)  # the demo quiets Prefect for its own process: not for others
    try:
        _demo_night(evidence, root, debug_logs)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return evidence


def _demo_night(evidence: Evidence, root: Path, debug_logs: _Lines) -> None:
    from prefect.client.orchestration import get_client

    folder = root / "demo"
    assert _claims(evidence, "demo", "demo", "--folder", folder, "--nights", "2") == 0
    landing, warehouse, outbox = folder / "landing", folder / "warehouse.duckdb", folder / "outbox"
    paths = ["--landing", landing, "--warehouse", warehouse, "--outbox", outbox]

    feed_dates = sorted({p.day for p in discover(landing).discharges})
    bad_day = feed_dates[-1] + timedelta(days=1)
    good = next(p for p in discover(landing).discharges if p.source == "SHYB")
    rows = read_delivery(good, discharge_schema.REQUIRED, optional=discharge_schema.OPTIONAL)
    shifted_rows = rows.frame.select(*discharge_schema.REQUIRED, *discharge_schema.OPTIONAL)
    bad_keys = _bad_deliveries(landing, bad_day, shifted_rows)
    assert _claims(evidence, "run (bad night)", "run", "--date", bad_day, *paths) == 1

    # A library error quoting a person, in the middle of a rerun.
    def crash(ref: Partition, **kw: Any) -> pipeline.Validated:
        raise ValueError(f"could not parse {PLANTED_ID!r} for {PLANTED_NAME}: {PLANTED_ACCOUNT}")

    real = pipeline.validate_partition
    pipeline.validate_partition = crash
    try:
        code = _claims(evidence, "rerun (crash)", "rerun", "--partition", good.key, *paths)
    finally:
        pipeline.validate_partition = real
    assert code == 1

    assert _claims(evidence, "status", "status", *paths) == 1
    demo_failed = next(
        k for k, e in query(warehouse, "SELECT partition_key, error FROM partition_runs")
        if e.startswith("reject_threshold") or k in bad_keys
    )  # fmt: skip
    for key in {*bad_keys, demo_failed}:
        _claims(evidence, f"quarantine {key}", "quarantine", "--partition", key, "--limit",
                "500", *paths)  # fmt: skip
    # The whole quarantine of one partition, unmasked, where it belongs: an access-controlled file.
    out = root / "quarantine.csv"
    _claims(evidence, "quarantine --output", "quarantine", "--partition", bad_keys[1],
            "--output", out, *paths)  # fmt: skip
    evidence.access_controlled["quarantine.csv"] = out.read_text(encoding="utf-8")
    for hospital, settlement in query(
        warehouse,
        "SELECT hospital_code, settlement_id FROM claim_outcomes WHERE national_id <> '' "
        "ORDER BY status, settlement_id LIMIT 5",
    ):
        _claims(evidence, "explain", "explain", "--stay", f"{hospital}/{settlement}", *paths)

    # The review queue: candidates shown masked (the demo's items wait in it).
    assert _claims(evidence, "review list", "review", "list", *paths) == 0

    # `claims verify` finds nothing after the demo's nights; with every instruction changed by
    # hand, it names each member it finds (masked) and each batch file (issue 17).
    assert _claims(evidence, "verify", "verify", *paths) == 0
    con = duckdb.connect(str(warehouse))
    con.execute("UPDATE payment_instructions SET amount_fen = amount_fen + 1")
    con.close()
    assert _claims(evidence, "verify (planted)", "verify", *paths) == 1
    assert "member_identity: member " in evidence.texts["terminal: verify (planted)"]

    for report in sorted((outbox / "reports").glob("*.html")):
        evidence.add(f"report {report.name}", report.read_text(encoding="utf-8"))
    with get_client(sync_client=True) as client:
        _prefect_evidence(evidence, client)
    evidence.add("log lines", "\n".join(debug_logs.lines))
    evidence.secrets = _secrets(landing, warehouse)


def _hits(evidence: Evidence, texts: dict[str, str]) -> list[str]:
    """Every secret found in the texts (one Aho-Corasick pass per text), with its context."""
    kind_of = {v: kind for kind, values in evidence.secrets.items() for v in values}
    patterns = sorted(kind_of)
    hits = []
    for where, text in texts.items():
        found = pl.Series([text]).str.extract_many(patterns, overlapping=True).item()
        for value in sorted(set(found)):
            at = text.index(value)
            hits.append(f"{kind_of[value]} in {where}: …{text[max(0, at - 60) : at + 40]!r}…")
    return hits


def test_nothing_readable_holds_a_full_identity_number_name_or_account(
    demo_night: Evidence,
) -> None:
    hits = _hits(demo_night, demo_night.texts)
    assert not hits, f"{len(hits)} leak(s):\n" + "\n".join(hits[:20])


def test_the_search_is_thorough_and_would_find_a_leak(demo_night: Evidence) -> None:
    """The evidence covers every place, holds the masked forms, and the secrets are real."""
    texts = demo_night.texts
    kinds = {where.split(":")[0].split(" ")[0] for where in texts}
    assert {"terminal", "report", "prefect", "log"} <= kinds
    assert len(demo_night.texts["log lines"].splitlines()) > 500  # DEBUG really was on
    assert sum(len(v) for v in demo_night.secrets.values()) > 1000
    for kind in ("identity number", "name", "account"):
        assert len(demo_night.secrets[kind]) > 100, kind
    # Masked forms are what is shown instead.
    shown = "\n".join(t for w, t in texts.items() if w.startswith("terminal: quarantine"))
    assert re.search(r"\b\d{3}\*{13}[0-9X]{2}\b", shown)
    explained = "\n".join(t for w, t in texts.items() if w.startswith("terminal: explain"))
    assert re.search(r"\b\d{3}\*{13}[0-9X]{2}\b", explained)
    # The planted person reached the places that had to mask it: errors, notes, the crash.
    everything = "\n".join(texts.values())
    assert "310*************1X" in everything and "欧*" in everything
    assert "622" + "*" * 14 + "23" in everything
    assert "is in the folder but not in the manifest" in everything
    assert "StepFailed" in everything and "ValueError" in everything
    # And the same search finds personal data where it is allowed to be.
    allowed = _hits(demo_night, demo_night.access_controlled)
    assert {hit.split(" in ")[0] for hit in allowed} == {"identity number", "name", "account"}


def test_demo_reports_open_as_pages_with_their_charts(demo_night: Evidence) -> None:
    reports = {w: t for w, t in demo_night.texts.items() if w.startswith("report ")}
    assert len(reports) >= 5  # the demo's 2 nights, its rerun and late run; the bad night
    charted = 0
    for where, text in reports.items():
        page = parse_html(text)
        assert page.fetches == [], where
        charts = {svg["label"]: svg["bars"] for svg in page.svgs}
        if all(
            charts.get(c) and max(charts[c]) > 0
            for c in ("Paid by plan (CNY)", "Quarantined rows by rule", "Stays by status")
        ):
            charted += 1
    assert charted >= 2
