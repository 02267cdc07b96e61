"""The review desk over HTTP (operations.md, `claims desk` / `claims operators`; issue 19).

A real warehouse with review items of every reason (built once with ``run_local``, copied per
test), operators added through the storage API and the command line, the desk driven with
Starlette's TestClient: sign-in on every page, CSRF on every form, auditors read only, four eyes
by different operators, disabled operators, the sign-in brake, personal data only on item pages,
every item view on record, and the same money as the command line's decisions. One test runs the
real server (``claims desk``) and reads its log for personal data.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from test_matching import outcomes, query
from test_review import (
    AMBIG,
    BED,
    BIG,
    NAME,
    RICH,
    TWIN_A,
    TWIN_B,
    TYPO,
    A,
    B,
    H,
    _by_id,
    deliver,
    night,
    world,
)
from test_review import cli as claims_cli

from claims.desk.app import create_app
from claims.desk.security import Brake, Session, Sessions
from config.settings import Settings
from storage.desk import add_operator, hash_password, verify_password

PASSWORD = "correct horse battery"
OPERATORS = {"liu": "reviewer", "ma": "approver", "zhao": "auditor", "qian": "reviewer"}
PEOPLE = (BED, TYPO, TWIN_A, TWIN_B, RICH)
PERSONAL = [p.nid for p in PEOPLE] + [p.name for p in PEOPLE] + ["吴方"]
BIG0 = _by_id("BIG0", RICH, "2026-01-30", "2026-02-03")


def build_desk_world(root: Path) -> Settings:
    """Review items of every reason: NAME1 (name_mismatch), AMB1 (ambiguous), OVB (overlap) and
    BIG1 (an overlap above the second-approval limit: four eyes)."""
    settings = world(root)
    deliver(settings, 0, [NAME, AMBIG, BIG, A, B])
    night(settings)
    deliver(settings, 1, [BIG0])
    night(settings)
    for name, role in OPERATORS.items():
        add_operator(settings.warehouse, name, role, PASSWORD, lock_timeout_s=5)
    return settings


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = build_desk_world(tmp_path_factory.mktemp("desk-world"))
    assert {s: o["reason"] for s, o in outcomes(settings).items() if o["status"] == "review"} == {
        "NAME1": "name_mismatch",
        "AMB1": "ambiguous",
        "OVB": "overlap",
        "BIG1": "overlap",
    }
    return settings


def copy_world(built: Settings, to: Path) -> Settings:
    root = built.warehouse.parent
    shutil.copytree(root, to, ignore=shutil.ignore_patterns("*.lock"))
    return Settings.build(to / "landing", to / "warehouse.duckdb", to / "outbox")


@pytest.fixture
def desk(built: Settings, tmp_path: Path) -> Settings:
    return copy_world(built, tmp_path / "w")


@pytest.fixture
def client(desk: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(desk), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(c: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(c.get("/signin").text)
    return c.post("/signin", data={"operator": name, "password": password, "csrf": token})


def signed_in(desk: Settings, name: str, **kw: Any) -> TestClient:
    c = TestClient(create_app(desk, **kw), follow_redirects=False)
    assert sign_in(c, name).status_code == 303
    return c


def decide(c: TestClient, stay: str, decision: str, note: str, **extra: str) -> httpx.Response:
    token = csrf_of(c.get(f"/item/{stay}").text)
    return c.post(
        f"/item/{stay}/decide", data={"decision": decision, "note": note, "csrf": token, **extra}
    )


def decisions(settings: Settings) -> int:
    return int(query(settings, "SELECT count(*) FROM review_decisions")[0][0])


# ---------------------------------------------------------------------------------------------
# Sign-in, sessions, CSRF
# ---------------------------------------------------------------------------------------------

PAGES = ["/", "/queue", "/queue?reason=overlap", "/log", f"/item/{H[0]}/NAME1", "/item/X/Y"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_sign_in(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    # a forged or tampered cookie is no session either
    client.cookies.set("claims_desk", "eyJvcCI6ImxpdSJ9.forged")
    r = client.get(path)
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_a_post_without_a_session_is_refused_and_records_nothing(
    client: TestClient, desk: Settings
) -> None:
    r = client.post(f"/item/{H[0]}/NAME1/decide", data={"decision": "reject", "note": "x"})
    assert r.status_code == 403
    assert decisions(desk) == 0


def test_sign_in_then_pages_then_sign_out(client: TestClient) -> None:
    r = sign_in(client, "liu")
    assert r.status_code == 303 and r.headers["location"] == "/queue"
    page = client.get("/queue")
    assert page.status_code == 200 and "signed in as" in page.text
    for header in ("content-security-policy", "x-frame-options", "cache-control"):
        assert header in page.headers
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    r = client.post("/signout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert client.get("/queue").status_code == 303


def test_sessions_expire(desk: Settings) -> None:
    c = signed_in(desk, "liu", idle_minutes=1 / 60)  # one second idle
    assert c.get("/queue").status_code == 200
    time.sleep(1.2)
    r = c.get("/queue")
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    box = Sessions(b"k" * 32, idle_s=60, absolute_s=120)
    s = Session("liu", "t", 0.0, 0.0)
    assert box.read(box.issue(s, now=100.0), now=119.0) is not None  # renewed while active
    assert box.read(box.issue(s, now=100.0), now=121.0) is None  # but never past absolute
    assert Sessions(b"j" * 32, idle_s=60, absolute_s=120).read(box.issue(s, now=1), now=2) is None


def test_a_form_without_its_csrf_token_is_refused(desk: Settings) -> None:
    c = signed_in(desk, "ma")
    stay = f"{H[0]}/NAME1"
    for data in (
        {"decision": "approve", "note": "ok"},
        {"decision": "approve", "note": "ok", "csrf": ""},
        {"decision": "approve", "note": "ok", "csrf": "not-the-token"},
    ):
        r = c.post(f"/item/{stay}/decide", data=data)
        assert r.status_code == 403, data
    assert decisions(desk) == 0
    # another session's token is not this session's
    other = signed_in(desk, "liu")
    stolen = csrf_of(other.get("/queue").text)
    r = c.post(f"/item/{stay}/decide", data={"decision": "approve", "note": "ok", "csrf": stolen})
    assert r.status_code == 403 and decisions(desk) == 0
    # the sign-in form and the sign-out form too
    fresh = TestClient(create_app(desk), follow_redirects=False)
    r = fresh.post("/signin", data={"operator": "liu", "password": PASSWORD})
    assert r.status_code == 403
    assert c.post("/signout", data={}).status_code == 403
    # with the token it works
    assert decide(c, stay, "approve", "called the hospital").status_code == 303
    assert decisions(desk) == 1


def test_a_disabled_operator_cannot_sign_in_and_loses_an_open_session(desk: Settings) -> None:
    open_session = signed_in(desk, "qian")
    assert open_session.get("/queue").status_code == 200
    out = claims_cli(desk, "operators", "disable", "qian")
    assert out.exit_code == 0, out.output
    r = sign_in(TestClient(create_app(desk), follow_redirects=False), "qian")
    assert r.status_code == 401 and "/queue" not in r.headers.get("location", "")
    r = open_session.get("/queue")
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_failed_sign_ins_are_slowed_down(desk: Settings) -> None:
    brake = Brake(first_s=0.5, longest_s=2.0)
    c = TestClient(create_app(desk, brake=brake), follow_redirects=False)
    assert sign_in(c, "liu", "wrong password!").status_code == 401
    # right at once after a failure: refused without even checking the password
    r = sign_in(c, "liu")
    assert r.status_code == 429 and "wait" in r.text
    time.sleep(0.6)
    assert sign_in(c, "liu", "wrong again!!!!").status_code == 401
    assert brake.wait_s("op:liu") > 0.5  # the wait doubles
    assert sign_in(c, "liu").status_code == 429
    time.sleep(1.1)
    assert sign_in(c, "liu").status_code == 303
    # bounded
    for _ in range(10):
        brake.failed("op:x")
    assert brake.wait_s("op:x") <= 2.0
    # an unknown operator is answered like a wrong password
    other = TestClient(create_app(desk, brake=Brake()), follow_redirects=False)
    assert sign_in(other, "nobody", PASSWORD).status_code == 401


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def test_an_auditors_approve_is_refused(desk: Settings) -> None:
    c = signed_in(desk, "zhao")
    page = c.get(f"/item/{H[0]}/NAME1")
    assert page.status_code == 200 and 'id="approve"' not in page.text
    r = c.post(
        f"/item/{H[0]}/NAME1/decide",
        data={"decision": "approve", "note": "ok", "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 403
    r = c.post(
        f"/item/{H[0]}/NAME1/decide",
        data={"decision": "reject", "note": "no", "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 403
    assert decisions(desk) == 0


def test_four_eyes_the_same_operators_second_approval_is_refused(desk: Settings) -> None:
    stay = f"{H[0]}/BIG1"
    liu, qian, ma = (signed_in(desk, n) for n in ("liu", "qian", "ma"))
    r = decide(liu, stay, "approve", "both bills checked")
    assert r.status_code == 303 and "notice=waiting" in r.headers["location"]
    item = liu.get(f"/item/{stay}").text
    assert "Approved first by <strong>liu</strong>" in item
    assert "waits for a different operator" in liu.get("/queue").text
    again = decide(liu, stay, "approve", "me again")
    assert again.status_code == 409 and "second, different operator" in again.text
    # a reviewer cannot give the second approval above the limit; an approver can
    assert decide(qian, stay, "approve", "agreed").status_code == 403
    assert decisions(desk) == 1
    r = decide(ma, stay, "approve", "agreed")
    assert r.status_code == 303 and "notice=approved" in r.headers["location"]
    assert f'data-stay="{stay}"' not in ma.get("/queue").text  # left the queue
    operators = query(
        desk, "SELECT operator FROM review_decisions WHERE settlement_id = 'BIG1' ORDER BY 1"
    )
    assert operators == [("liu",), ("ma",)]


def test_the_operator_is_the_signed_in_one_never_a_form_field(desk: Settings) -> None:
    c = signed_in(desk, "liu")
    r = decide(c, f"{H[0]}/NAME1", "approve", "typo", operator="ma", by="ma")
    assert r.status_code == 303
    assert query(desk, "SELECT operator FROM review_decisions") == [("liu",)]


def test_refusals_of_the_contract_are_shown_and_record_nothing(desk: Settings) -> None:
    c = signed_in(desk, "ma")
    amb = f"{H[0]}/AMB1"
    assert decide(c, amb, "approve", "which one?").status_code == 409  # needs an enrolment
    assert decide(c, amb, "approve", "x", enrollment="E101").status_code == 409  # not a candidate
    assert decide(c, amb, "approve", "   ").status_code == 400  # a note is required
    stale = decide(c, f"{H[0]}/NAME1", "approve", "typo", version="7")
    assert stale.status_code == 409 and "stale" in stale.text
    assert decide(c, f"{H[0]}/OVA", "approve", "paid one").status_code == 409  # not in review
    assert decisions(desk) == 0
    assert decide(c, amb, "approve", "birth certificate", enrollment="E104").status_code == 303


def test_decisions_on_the_desk_pay_what_the_same_decisions_on_the_command_line_pay(
    built: Settings, tmp_path: Path
) -> None:
    on_desk = copy_world(built, tmp_path / "desk")
    on_cli = copy_world(built, tmp_path / "cli")
    liu, ma = signed_in(on_desk, "liu"), signed_in(on_desk, "ma")
    assert decide(liu, f"{H[0]}/NAME1", "approve", "typo").status_code == 303
    assert decide(liu, f"{H[0]}/AMB1", "approve", "cert", enrollment="E104").status_code == 303
    assert decide(liu, f"{H[1]}/OVB", "reject", "duplicate bill").status_code == 303
    assert decide(liu, f"{H[0]}/BIG1", "approve", "checked").status_code == 303
    assert decide(ma, f"{H[0]}/BIG1", "approve", "agreed").status_code == 303
    for args in (
        ["approve", "--stay", f"{H[0]}/NAME1", "--by", "liu", "--note", "typo"],
        ["approve", "--stay", f"{H[0]}/AMB1", "--enrollment", "E104", "--by", "liu", "--note", "c"],
        ["reject", "--stay", f"{H[1]}/OVB", "--by", "liu", "--note", "duplicate bill"],
        ["approve", "--stay", f"{H[0]}/BIG1", "--by", "liu", "--note", "checked"],
        ["approve", "--stay", f"{H[0]}/BIG1", "--by", "ma", "--note", "agreed"],
    ):
        assert claims_cli(on_cli, "review", *args).exit_code == 0
    night(on_desk)
    night(on_cli)
    ledger = "SELECT hospital_code, settlement_id, plan_code, sum(amount_fen) FROM ledger_entries "
    ledger += "GROUP BY ALL ORDER BY ALL"
    assert query(on_desk, ledger) == query(on_cli, ledger)
    assert outcomes(on_desk) == outcomes(on_cli)
    got = outcomes(on_desk)
    assert got["NAME1"]["status"] == got["AMB1"]["status"] == got["BIG1"]["status"] == "paid"
    assert got["OVB"]["status"] == "rejected"


# ---------------------------------------------------------------------------------------------
# Personal data
# ---------------------------------------------------------------------------------------------


def test_personal_data_only_on_item_pages_and_every_view_on_record(desk: Settings) -> None:
    c = signed_in(desk, "liu")
    assert decide(c, f"{H[0]}/AMB1", "reject", f"not {TWIN_A.name}, id {TWIN_A.nid}").status_code
    queue = c.get("/queue").text
    log = c.get("/log").text
    for value in PERSONAL:
        assert value not in queue and value not in log, value
    assert not re.search(r"\d{15,}", queue + log)
    assert "AMB1" in log and "reject" in log
    item = c.get(f"/item/{H[0]}/NAME1").text
    assert TYPO.nid in item and TYPO.name in item and "吴方" in item
    assert 'class="differ">' + TYPO.name in item  # the name differs from the stay's
    assert 'class="agree">' + TYPO.nid in item
    over = c.get(f"/item/{H[1]}/OVB").text
    assert f"{H[0]}/OVA" in over and "The stay it overlaps" in over
    assert "RETIREE_INPATIENT" in over  # the amount at stake per plan
    views = query(
        desk, "SELECT operator, hospital_code, settlement_id FROM desk_views ORDER BY viewed_at"
    )
    assert views[-2:] == [("liu", H[0], "NAME1"), ("liu", H[1], "OVB")]
    assert len(views) == 3  # the page decide() read first is a view too


def test_queue_filters_and_counts(desk: Settings) -> None:
    c = signed_in(desk, "zhao")
    page = c.get("/queue").text
    assert "overlap: 2" in page and "ambiguous: 1" in page and "name_mismatch: 1" in page
    only = c.get("/queue?reason=overlap").text
    assert "OVB" in only and "BIG1" in only and "AMB1" not in only
    big = c.get("/queue?min_amount=20000.01").text
    assert "BIG1" in big and "OVB" not in big and "NAME1" not in big
    assert "No open item" in c.get("/queue?min_age_days=400").text
    assert c.get("/queue?reason=nope").status_code == 400
    assert c.get("/queue?min_amount=abc").status_code == 400
    rows = re.findall(r'<tr data-stay="([^"]+)"', page)
    assert len(rows) == 4  # oldest first: open_items' order
    log = c.get("/log?decision=approve&operator=liu&since=2026-01-01")
    assert log.status_code == 200 and "No decision matches" in log.text
    assert c.get("/log?since=yesterday").status_code == 400


def test_error_pages_are_generic(desk: Settings) -> None:
    c = signed_in(desk, "liu")
    r = c.get("/nope")
    assert r.status_code == 404 and "Traceback" not in r.text
    assert c.get(f"/item/{H[0]}/NOPE").status_code == 404
    assert c.get("/item/bad%20code/x").status_code == 404
    assert c.put("/queue").status_code == 405


# ---------------------------------------------------------------------------------------------
# Operators on the command line
# ---------------------------------------------------------------------------------------------


def test_operators_add_reads_the_password_and_stores_a_scrypt_hash(desk: Settings) -> None:
    from typer.testing import CliRunner

    from claims.cli import app

    paths = ["--warehouse", str(desk.warehouse), "--landing", str(desk.landing)]
    r = CliRunner().invoke(
        app, ["operators", "add", "sun", "--role", "approver", *paths], input="a secret phrase 1\n"
    )
    assert r.exit_code == 0, r.output
    assert "a secret phrase" not in r.output
    ((stored,),) = query(desk, "SELECT password_hash FROM operators WHERE operator = 'sun'")
    assert stored.startswith("scrypt$") and "secret" not in stored
    assert verify_password("a secret phrase 1", stored)
    assert not verify_password("a secret phrase 2", stored)
    assert hash_password("same") != hash_password("same")  # a random salt each time
    assert sign_in(TestClient(create_app(desk), follow_redirects=False), "sun", "a secret phrase 1")
    for args, says in (
        (["add", "sun", "--role", "approver"], "already exists"),
        (["add", "moon", "--role", "boss"], "--role"),
        (["add", "Moon Wang", "--role", "auditor"], "operator name"),
        (["add", "moon", "--role", "auditor"], "at least 12"),
        (["disable", "nobody"], "no operator"),
    ):
        r = CliRunner().invoke(app, ["operators", *args, *paths], input="short\n")
        assert r.exit_code == 2 and says in r.output, (args, r.output)


def test_the_desk_refuses_a_missing_warehouse(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from claims.cli import app

    r = CliRunner().invoke(app, ["desk", "--warehouse", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 2 and "no warehouse" in r.output


# ---------------------------------------------------------------------------------------------
# The real server: its log holds nothing personal
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_desk(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``claims desk`` in its own process on a free port of 127.0.0.1; waits until it answers."""
    port = _free_port()
    claims = Path(sys.executable).parent / "claims"
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            str(claims),
            "desk",
            "--port",
            str(port),
            "--warehouse",
            str(settings.warehouse),
            "--landing",
            str(settings.landing),
            "--outbox",
            str(settings.outbox),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/signin", timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.2)
    proc.terminate()
    raise AssertionError("the desk did not start")


def test_the_server_log_holds_no_identity_number_or_name(desk: Settings, tmp_path: Path) -> None:
    log = tmp_path / "desk.log"
    proc, url = start_desk(desk, log)
    try:
        with httpx.Client(base_url=url, follow_redirects=False) as c:
            page = c.get("/signin")
            assert "server" not in page.headers
            bad = c.post(
                "/signin",
                data={"operator": TYPO.nid, "password": TYPO.name, "csrf": csrf_of(page.text)},
            )
            assert bad.status_code == 401
            ok = c.post(
                "/signin",
                data={"operator": "liu", "password": PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert ok.status_code in (303, 429)
            if ok.status_code == 429:  # the brake holds this address for a second
                time.sleep(1.1)
                ok = c.post(
                    "/signin",
                    data={"operator": "liu", "password": PASSWORD, "csrf": csrf_of(page.text)},
                )
            assert ok.status_code == 303
            viewed = ""
            for stay in (f"{H[0]}/NAME1", f"{H[0]}/AMB1", f"{H[1]}/OVB", f"{H[0]}/BIG1"):
                viewed += c.get(f"/item/{stay}").text
            assert TYPO.nid in viewed and TWIN_B.name in viewed  # they were on the pages
            token = csrf_of(viewed)
            c.post(
                f"/item/{H[0]}/NAME1/decide",
                data={"decision": "approve", "note": f"{TYPO.name} {TYPO.nid}", "csrf": token},
            )
            c.get(f"/queue?reason=overlap&q={TYPO.nid}")
            c.get(f"/log?operator={TWIN_A.nid}")
            c.get(f"/item/{H[0]}/{TYPO.nid}")
            c.get(f"/nope/{RICH.name}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log.read_text(encoding="utf-8")
    assert "GET /queue 200" in text and "POST /signin 401" in text  # it does log requests
    for value in PERSONAL:
        assert value not in text, value
    assert not re.search(r"\d{15,}", text), text


def test_while_a_run_writes_the_desk_answers_busy_and_holds_nothing_open(desk: Settings) -> None:
    c = signed_in(desk, "liu")
    page = c.get("/queue")
    assert page.status_code == 200
    # Between requests the desk holds no connection: another process may open the file to write.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
            "print('open', flush=True); time.sleep(30)",
            str(desk.warehouse),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"open"
        for path in ("/queue", f"/item/{H[0]}/NAME1", "/log"):
            r = c.get(path)
            assert r.status_code == 503 and "Try again in a few minutes" in r.text, path
        r = c.post(
            f"/item/{H[0]}/NAME1/decide",
            data={"decision": "reject", "note": "no", "csrf": csrf_of(page.text)},
        )
        assert r.status_code == 503
    finally:
        writer.kill()
        writer.wait()
    assert c.get("/queue").status_code == 200
    assert decisions(desk) == 0
    assert (
        query(desk, "SELECT count(*) FROM desk_views")[0][0] == 0
    )  # nothing shown, nothing on record


def _read_until(fd: int, wanted: bytes, timeout_s: float = 60) -> bytes:
    import select

    seen = b""
    deadline = time.monotonic() + timeout_s
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _type_hidden(fd: int, text: str) -> None:
    """Type once the prompt has switched echo off (typed earlier, the switch would flush it)."""
    import termios

    deadline = time.monotonic() + 30
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
        time.sleep(0.02)
    os.write(fd, text.encode() + b"\n")


def test_operators_add_on_a_terminal_asks_twice_without_echo(desk: Settings) -> None:
    import pty
    import signal

    claims = str(Path(sys.executable).parent / "claims")
    args = [claims, "operators", "add", "wu", "--role", "auditor"]
    args += ["--warehouse", str(desk.warehouse), "--landing", str(desk.landing)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real terminal on its standard input and output
        os.execv(claims, args)
    secret = "typed on a terminal"
    said = b""
    try:
        said += _read_until(fd, b"Password")
        _type_hidden(fd, "not the same one")
        said += _read_until(fd, b"Repeat")
        _type_hidden(fd, "something else")
        said += _read_until(fd, b"Password")  # a mismatch asks again
        _type_hidden(fd, secret)
        said += _read_until(fd, b"Repeat")
        _type_hidden(fd, secret)
        said += _read_until(fd, b"added")
    finally:
        for _ in range(100):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert b"match" in said.lower()  # the mismatch was said
    assert b"operator wu added" in said
    assert b"not the same one" not in said and secret.encode() not in said  # never echoed
    ((stored,),) = query(desk, "SELECT password_hash FROM operators WHERE operator = 'wu'")
    assert verify_password(secret, stored)
