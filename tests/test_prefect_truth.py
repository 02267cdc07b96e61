"""Prefect shows the truth (operations.md, *Flows*), against a real ``prefect server start``.

One server on 127.0.0.1 for the module (started and stopped here), ``claims serve`` with
``--notify-url`` pointed at an HTTP receiver on 127.0.0.1, and the project's own commands:

- a bad night ends its flow run Failed, its failed partition's task run Failed, both naming the
  partition and the reason; the automation posts to the webhook for it, and not for a good night;
- the served deployment has its own name and runs one at a time (queued);
- ``prefect flow-run retry`` of the failed night re-processes the failed partition (content
  unchanged), and nothing that succeeded;
- a run refused by the warehouse's lock leaves a terminal flow run saying so;
- nothing personal (an ID number, a name) is anywhere on the server.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_flows import (
    Landing,
    artifacts_of,
    build_landing,
    holding_run_lock,
    initialised,
    logs_of,
    partition_status,
    query,
    settled_task_runs,
)
from test_prefect_server import BIN, _env, _stop, _tail, _wait, running_server

pytestmark = pytest.mark.slow

# Every landing folder this module ran: the personal-data test searches the server for them.
LANDINGS: list[Landing] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One real Prefect server for the module, on 127.0.0.1, stopped at its end."""
    with running_server(tmp_path_factory.mktemp("prefect-server")) as (url, home, log):
        yield {"url": url, "home": home, "log": log}


@pytest.fixture(scope="module")
def client(server: dict[str, Any]) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: server["url"]}),
        get_client(sync_client=True) as c,
    ):
        yield c


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                posts.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/night-failed"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def _final(client: Any, flow_run_id: Any, *, run_count: int = 1) -> Any:
    run = client.read_flow_run(flow_run_id)
    if run.state and run.state.is_final() and run.run_count >= run_count:
        return run
    return None


def test_a_bad_night_fails_notifies_and_its_retry_redoes_only_what_failed(
    tmp_path: Path, server: dict[str, Any], client: Any, receiver: Receiver
) -> None:
    landing = initialised(build_landing(tmp_path / "claims"))
    LANDINGS.append(landing)
    good_night, bad_night = landing.feed_dates
    failing = landing.failing
    assert failing is not None
    serve_log = tmp_path / "serve.log"
    env = _env(server["home"], PREFECT_API_URL=server["url"], PREFECT_RUNNER_POLL_FREQUENCY="1")
    with serve_log.open("wb") as out:
        serve = subprocess.Popen(
            [str(BIN / "claims"), "serve", "--notify-url", receiver.url, *landing.cli_paths()],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        from prefect.exceptions import ObjectNotFound

        def deployment() -> Any:
            assert serve.poll() is None, f"claims serve exited:\n{_tail(serve_log)}"
            with contextlib.suppress(ObjectNotFound):
                return client.read_deployment_by_name("claims-nightly/serve")
            return None

        served = _wait("the deployment", deployment, 120, serve_log)
        # One run at a time; the next one waits in the queue.
        assert served.global_concurrency_limit.limit == 1
        assert served.concurrency_options.collision_strategy == "ENQUEUE"
        (automation,) = client.read_automations_by_name("claims-nightly-failed")
        assert automation.enabled

        def night(day: Any) -> Any:
            triggered = client.create_flow_run_from_deployment(
                served.id, parameters={"as_of": day.isoformat()}
            )
            return _wait("the flow run", lambda: _final(client, triggered.id), 240, serve_log)

        good = night(good_night)
        assert good.state.is_completed(), f"{good.state}\n{_tail(serve_log)}"
        bad = night(bad_night)
        assert bad.state.is_failed(), f"{bad.state}\n{_tail(serve_log)}"
        assert bad.state.message.startswith(f"1 of 2 partitions failed: {failing}: ")
        assert "reject_threshold" in bad.state.message
        assert bad.name == f"run-{bad_night.isoformat()}-{str(bad.id)[:8]}" != good.name
        tasks = settled_task_runs(client, bad.id, {failing})
        assert (
            tasks[failing].state.is_failed() and "reject_threshold" in tasks[failing].state.message
        )

        # The webhook hears of the bad night, and only of it.
        _wait("the webhook post", lambda: receiver.posts, 90, server["log"])
        (post,) = receiver.posts
        body = json.loads(post)
        assert body["flow_run_id"] == str(bad.id) and bad.name in body["text"]
        assert f"{failing}: reject_threshold" in body["text"]

        # Prefect's retry of the failed night: the failed partition again (content unchanged),
        # nothing that succeeded.
        attempts = dict(
            query(landing.settings.warehouse, "SELECT partition_key, attempts FROM partition_runs")
        )
        retried = subprocess.run(
            [str(BIN / "prefect"), "flow-run", "retry", str(bad.id)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert retried.returncode == 0, retried.stdout + retried.stderr
        again = _wait(
            "the retried flow run", lambda: _final(client, bad.id, run_count=2), 240, serve_log
        )
        assert again.state.is_failed() and failing in again.state.message
        after = dict(
            query(landing.settings.warehouse, "SELECT partition_key, attempts FROM partition_runs")
        )
        assert after.pop(failing) == attempts.pop(failing) + 1
        assert after == attempts  # nothing that succeeded was touched
        (summary,) = query(
            landing.settings.warehouse,
            "SELECT summary FROM runs WHERE flow_run_id = ? ORDER BY finished_at DESC LIMIT 1",
            [str(bad.id)],
        )[0]
        figures = json.loads(summary)
        assert figures["partitions"].get("failed") == [failing]
        assert not figures["partitions"].get("succeeded")

        # Re-delivered fixed, the next retry succeeds: the flow run ends Completed.
        landing.repair()
        assert (
            subprocess.run(
                [str(BIN / "prefect"), "flow-run", "retry", str(bad.id)],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                timeout=120,
            ).returncode
            == 0
        )
        fixed = _wait(
            "the second retry", lambda: _final(client, bad.id, run_count=3), 240, serve_log
        )
        assert fixed.state.is_completed(), f"{fixed.state}\n{_tail(serve_log)}"
        assert set(partition_status(landing.settings.warehouse).values()) == {"succeeded"}
    finally:
        _stop(serve)
    assert len(receiver.posts) == 2  # the bad night and its first retry, never a good one


def test_a_run_refused_by_the_lock_leaves_a_flow_run_saying_so(
    tmp_path: Path, server: dict[str, Any], client: Any
) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    landing = initialised(build_landing(tmp_path / "claims", nights=1, failing_night=None))
    LANDINGS.append(landing)
    with holding_run_lock(landing.settings.warehouse):
        env = _env(server["home"], PREFECT_API_URL=server["url"], CLAIMS_LOCK_TIMEOUT="1")
        day = landing.feed_dates[0].isoformat()
        busy = subprocess.run(
            [str(BIN / "claims"), "run", "--date", day, *landing.cli_paths()],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert busy.returncode == 3, busy.stdout + busy.stderr
    runs = [
        r
        for r in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"run-{day}-"))
        )
        if r.state and "refused" in (r.state.message or "")
    ]
    (refused,) = runs
    assert refused.state.is_final() and refused.state.is_cancelled()
    assert "another claims run holds" in refused.state.message


def test_the_notification_is_made_once_and_follows_the_url(
    server: dict[str, Any], client: Any
) -> None:
    """`--notify-url` again (a new URL, say) updates the one automation and its webhook block."""
    from prefect.blocks.webhook import Webhook
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.notify import AUTOMATION, WEBHOOK_BLOCK, notify_on_failure

    with temporary_settings({PREFECT_API_URL: server["url"]}):
        first = notify_on_failure("http://127.0.0.1:9/first")
        second = notify_on_failure("http://127.0.0.1:9/second")
        block = Webhook.load(WEBHOOK_BLOCK)
    assert first == second
    (automation,) = client.read_automations_by_name(AUTOMATION)
    assert str(automation.id) == first
    assert block.url.get_secret_value() == "http://127.0.0.1:9/second"


def _personal_values(landing: Landing) -> set[str]:
    """Every ID number, name and account in a landing folder's files."""
    columns = {"national_id", "patient_name", "member_name", "payee_account", "name"}
    values: set[str] = set()
    for path in landing.settings.landing.rglob("*"):
        if path.suffix not in (".csv", ".parquet"):
            continue
        with contextlib.suppress(Exception):
            frame = (
                pl.read_parquet(path)
                if path.suffix == ".parquet"
                else pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
            )
            for column in columns & set(frame.columns):
                values |= {v for v in frame.get_column(column).cast(pl.String) if v}
    return {v.strip() for v in values if len(v.strip()) >= 2}


def test_nothing_personal_reaches_the_server(client: Any) -> None:
    """Flow runs, task runs, logs, artifacts and events: searched for every ID number and name
    of the landing folders this module ran."""
    from prefect.events.filters import EventFilter

    assert LANDINGS, "run the module's other tests first"
    personal = set().union(*(_personal_values(landing) for landing in LANDINGS))
    assert any(len(v) == 18 for v in personal) and any(len(v) <= 4 for v in personal)

    texts: list[str] = []
    flow_runs = client.read_flow_runs(limit=200)
    assert flow_runs
    texts += [r.model_dump_json() for r in flow_runs]
    texts += [r.model_dump_json() for r in client.read_task_runs(limit=200)]
    for run in flow_runs:
        texts += [g.model_dump_json() for g in logs_of(client, run.id)]
        texts += [a.model_dump_json() for a in artifacts_of(client, run.id)]
    page = client.read_events(filter=EventFilter(), limit=50)
    events = list(page.events)
    while page.next_page and len(events) < 5000:
        page = client.read_events_page(page.next_page)
        events += page.events
    assert events
    texts += [e.model_dump_json() for e in events]
    blob = "\n".join(texts)
    assert len(blob) > 10_000
    found = sorted(v for v in personal if v in blob)
    assert found == [], f"{len(found)} personal value(s) on the server"
