"""The review desk: server-rendered pages over the review queue (operations.md, `claims desk`).

Every page needs a signed-in operator; every form carries a CSRF token; decisions go through
``storage.review.record_decision`` (the command line's code path) with the signed-in operator.
The warehouse is opened per request (read-only for reads) and never held between requests, and
one request at a time touches it (DuckDB refuses two configurations of one file in a process).
Nothing personal is logged: the access log is ours (method, path, status), errors are logged by
type only, and error pages are generic.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from claims.desk.security import COOKIE, Brake, Session, Sessions, same_token
from config.masking import mask_id, mask_name, scrub
from config.settings import ConfigError, Settings

log = logging.getLogger("claims.desk")

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_FORM_BYTES = 16 * 1024
NOTICES = {
    "approved": "Approval recorded: the next run pays the stay.",
    "waiting": "Approval recorded. Above the second-approval limit: it waits for a second, "
    "different operator to approve the same choice.",
    "rejected": "Rejection recorded: the next run recovers anything paid for the stay.",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def yuan(fen: int) -> str:
    from transforms.money import fen_to_yuan

    return fen_to_yuan(fen)


def age(opened: datetime | None) -> str:
    if opened is None:
        return "?"
    seconds = int(max(0.0, (datetime.now(UTC) - opened).total_seconds()))
    days, rest = divmod(seconds, 86_400)
    return f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"


@dataclass
class Desk:
    """What the pages share: settings, sessions, the sign-in brake, the warehouse guard."""

    settings: Settings
    sessions: Sessions
    brake: Brake
    env: Environment
    guard: threading.Lock

    def limit_fen(self) -> int:
        from transforms.reference import ReferenceError, load_rules, second_approval_limit_fen

        try:
            return second_approval_limit_fen(load_rules(self.settings.reference_dir / "plans.toml"))
        except ReferenceError as exc:
            raise ConfigError(f"plan rules: {exc}") from None


class Refused(Exception):
    """A request answered with a page of its own status (403, 404, 409, 429, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Ctx:
    """One request, as a handler sees it (after the session and CSRF checks)."""

    request: Request
    form: dict[str, str]
    session: Session
    operator: str = ""
    role: str = ""


def _render(
    desk: Desk, ctx: Ctx | None, template: str, status: int = 200, **values: Any
) -> Response:
    page = desk.env.get_template(template).render(
        operator=ctx.operator if ctx else "",
        role=ctx.role if ctx else "",
        csrf=ctx.session.csrf if ctx else "",
        **values,
    )
    return HTMLResponse(page, status_code=status)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _finish(desk: Desk, request: Request, response: Response, session: Session | None) -> Response:
    for k, v in HEADERS.items():
        response.headers[k] = v
    if session is None:
        response.delete_cookie(COOKIE, path="/")
    else:
        response.set_cookie(
            COOKIE,
            desk.sessions.issue(session),
            max_age=int(desk.sessions.idle_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
    return response


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, bounded (no multipart on these forms)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "That form is too large.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "That form could not be read.") from None
    return {k: v[0] for k, v in parsed.items()}


def page(public: bool = False) -> Callable[[Callable[[Desk, Ctx], Response]], Any]:
    """Wrap a handler: session, sign-in redirect, CSRF on POST, one warehouse user at a time,
    refusals as pages, and no exception (nor its message) ever leaving unmasked."""

    def wrap(handler: Callable[[Desk, Ctx], Response]) -> Any:
        async def endpoint(request: Request) -> Response:
            desk: Desk = request.app.state.desk
            started = time.monotonic()
            session = desk.sessions.read(request.cookies.get(COOKIE))
            try:
                form = await _form(request) if request.method == "POST" else {}
            except Refused as refused:
                response = _render(
                    desk, None, "error.html", refused.status, message=refused.message
                )
                return _done(desk, request, response, session, started)
            response, session = await run_in_threadpool(
                _handle, desk, handler, request, form, session, public
            )
            return _done(desk, request, response, session, started)

        return endpoint

    return wrap


def _done(
    desk: Desk, request: Request, response: Response, session: Session | None, started: float
) -> Response:
    response = _finish(desk, request, response, session)
    access(request, response.status_code, started)
    return response


def access(request: Request, status: int, started: float) -> None:
    """The access log: method, path without its query string (scrubbed: a mistyped path could
    hold an identity number), status, time."""
    log.info(
        "%s %s %d %.0f ms",
        request.method,
        scrub(request.url.path)[:200],
        status,
        (time.monotonic() - started) * 1000,
    )


def _handle(
    desk: Desk,
    handler: Callable[[Desk, Ctx], Response],
    request: Request,
    form: dict[str, str],
    session: Session | None,
    public: bool,
) -> tuple[Response, Session | None]:
    from storage.desk import find_operator
    from storage.warehouse import WarehouseBusy

    if session is None:
        session = desk.sessions.new()
    ctx = Ctx(request, form, session)
    try:
        with desk.guard:
            if request.method == "POST" and not same_token(form.get("csrf"), session.csrf):
                raise Refused(
                    403,
                    "This form has expired or did not come from the desk. "
                    "Open the page again and resubmit.",
                )
            if not public:
                if not session.operator:
                    return RedirectResponse("/signin", status_code=303), session
                who = find_operator(desk.settings.warehouse, session.operator)
                if who is None or who.is_disabled:
                    return RedirectResponse("/signin", status_code=303), desk.sessions.new()
                ctx.operator, ctx.role = who.name, who.role
            return handler(desk, ctx), ctx.session
    except Refused as refused:
        return _render(desk, ctx, "error.html", refused.status, message=refused.message), session
    except WarehouseBusy:
        message = (
            "The nightly run is writing the warehouse. Try again in a few minutes; "
            "nothing was recorded."
        )
        return _render(desk, ctx, "error.html", 503, message=message), session
    except ConfigError as exc:
        return _render(desk, ctx, "error.html", 409, message=scrub(str(exc))[:500]), session
    except Exception as exc:  # never a traceback: it could quote a value
        log.error("%s on %s %s", type(exc).__name__, request.method, scrub(request.url.path)[:200])
        message = "Something went wrong; nothing was recorded. The desk's log names the error."
        return _render(desk, ctx, "error.html", 500, message=message), session


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


@page(public=True)
def signin(desk: Desk, ctx: Ctx) -> Response:
    from storage.desk import authenticate

    if ctx.request.method == "GET":
        if ctx.session.operator:
            return RedirectResponse("/queue", status_code=303)
        return _render(desk, ctx, "signin.html")
    name = ctx.form.get("operator", "").strip().lower()[:64]
    password = ctx.form.get("password", "")
    client = ctx.request.client.host if ctx.request.client else "?"
    keys = (f"op:{name}", f"ip:{client}")
    wait = desk.brake.wait_s(*keys)
    if wait > 0:
        message = f"Too many failed sign-ins: wait {wait:.0f} s and try again."
        return _render(desk, ctx, "signin.html", 429, message=message, name=name)
    who = authenticate(desk.settings.warehouse, name, password)
    if who is None:
        wait = desk.brake.failed(*keys)
        log.warning("failed sign-in; next attempt in %.1f s", wait)
        message = "Unknown operator, wrong password, or a disabled operator."
        return _render(desk, ctx, "signin.html", 401, message=message, name=name)
    desk.brake.succeeded(f"op:{name}")
    ctx.session = desk.sessions.new(who.name)  # a fresh session (and token) at sign-in
    return RedirectResponse("/queue", status_code=303)


@page()
def signout(desk: Desk, ctx: Ctx) -> Response:
    ctx.session = desk.sessions.new()
    return RedirectResponse("/signin", status_code=303)


@page()
def home(desk: Desk, ctx: Ctx) -> Response:
    return RedirectResponse("/queue", status_code=303)


def _int(text: str | None, what: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise Refused(400, f"{what} must be a whole number") from None
    if value < 0:
        raise Refused(400, f"{what} must not be negative")
    return value


def _fen(text: str | None, what: str) -> int | None:
    if not text:
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise Refused(400, f"{what} must be an amount in yuan, e.g. 5000.00") from None
    if value < 0 or value != value.quantize(Decimal("0.01")) or value > 10**12:
        raise Refused(400, f"{what} must be an amount in yuan with at most 2 decimals")
    return int(value * 100)


@page()
def queue(desk: Desk, ctx: Ctx) -> Response:
    from storage.review import REASONS, open_items

    q = ctx.request.query_params
    reason = q.get("reason") or None
    if reason is not None and reason not in REASONS:
        raise Refused(400, f"reason must be one of {', '.join(REASONS)}")
    min_age_days = _int(q.get("min_age_days"), "age")
    min_fen = _fen(q.get("min_amount"), "amount")
    everything = open_items(desk.settings.warehouse, limit_fen=desk.limit_fen())
    counts = {r: sum(1 for i in everything if i.reason == r) for r in REASONS}
    now = datetime.now(UTC)
    shown = [
        i
        for i in everything
        if (reason is None or i.reason == reason)
        and (min_fen is None or i.self_pay_in_scope_fen >= min_fen)
        and (
            min_age_days is None
            or (i.opened_at is not None and (now - i.opened_at).days >= min_age_days)
        )
    ]
    notice = NOTICES.get(q.get("notice", ""), "")
    return _render(
        desk,
        ctx,
        "queue.html",
        items=shown,
        total=len(everything),
        counts=counts,
        reasons=REASONS,
        reason=reason or "",
        min_age_days=q.get("min_age_days", ""),
        min_amount=q.get("min_amount", ""),
        notice=notice,
        notice_stay=q.get("stay", "") if notice else "",
        yuan=yuan,
        age=age,
        mask_id=mask_id,
        mask_name=mask_name,
    )


def _stay_of(ctx: Ctx) -> tuple[str, str]:
    from storage.review import ReviewError, parse_stay

    params = ctx.request.path_params
    try:
        return parse_stay(f"{params['hospital']}/{params['settlement']}")
    except ReviewError:
        raise Refused(404, "No such stay.") from None


@page()
def item(desk: Desk, ctx: Ctx) -> Response:
    from storage.desk import item_facts, record_view
    from storage.review import open_items

    stay = _stay_of(ctx)
    limit = desk.limit_fen()
    found = [
        i
        for i in open_items(desk.settings.warehouse, limit_fen=limit)
        if (i.hospital_code, i.settlement_id) == stay
    ]
    it = found[0] if found else None
    candidates = [c.national_id for c in it.candidates] if it else []
    facts = item_facts(desk.settings.warehouse, stay, candidates)
    if facts is None:
        raise Refused(404, "No such stay.")
    # The audit row first: personal data is shown only once its view is on record.
    record_view(
        desk.settings.warehouse,
        ctx.operator,
        stay,
        facts.stay.version,
        lock_timeout_s=min(desk.settings.lock_timeout_s, 10),
    )
    return _render(
        desk,
        ctx,
        "item.html",
        it=it,
        facts=facts,
        stay_key=f"{stay[0]}/{stay[1]}",
        limit_fen=limit,
        mine=bool(it and ctx.operator in it.approved_by),
        can_decide=ctx.role in ("reviewer", "approver"),
        yuan=yuan,
        age=age,
        scrub=scrub,
    )


@page()
def decide(desk: Desk, ctx: Ctx) -> Response:
    from storage.review import open_items, record_decision

    stay = _stay_of(ctx)
    if ctx.role == "auditor":
        raise Refused(403, "Auditors read the desk; they do not decide.")
    decision = ctx.form.get("decision", "")
    if decision not in ("approve", "reject"):
        raise Refused(400, "Choose approve or reject.")
    note = ctx.form.get("note", "").strip()
    if not note:
        raise Refused(400, "A note is required: what was checked, with whom.")
    version = _int(ctx.form.get("version"), "version")
    enrollment = ctx.form.get("enrollment") or None
    limit = desk.limit_fen()
    if decision == "approve" and ctx.role != "approver":
        # The approval that completes four eyes is an approver's (a desk permission; the
        # decision rules themselves are record_decision's).
        open_now = [
            i
            for i in open_items(desk.settings.warehouse, limit_fen=limit)
            if (i.hospital_code, i.settlement_id) == stay
        ]
        waiting = open_now[0] if open_now else None
        if (
            waiting is not None
            and waiting.approvals_needed > 1
            and waiting.approvals >= 1
            and ctx.operator not in waiting.approved_by  # that refusal is record_decision's
        ):
            raise Refused(403, "The second approval above the limit is an approver's.")
    recorded = record_decision(
        desk.settings.warehouse,
        stay=stay,
        decision=decision,
        operator=ctx.operator,  # the signed-in operator, never a form field
        note=note,
        enrollment_id=enrollment if decision == "approve" else None,
        version=version,
        limit_fen=limit,
        lock_timeout_s=min(desk.settings.lock_timeout_s, 10),
    )
    notice = "rejected" if decision == "reject" else "approved"
    if not recorded.takes_effect:
        notice = "waiting"
    query = urlencode({"notice": notice, "stay": f"{stay[0]}/{stay[1]}"})
    return RedirectResponse(f"/queue?{query}", status_code=303)


@page()
def decision_log(desk: Desk, ctx: Ctx) -> Response:
    from storage.desk import decision_log as read_log
    from storage.review import REASONS

    q = ctx.request.query_params
    decision = q.get("decision") or None
    if decision not in (None, "approve", "reject"):
        raise Refused(400, "decision must be approve or reject")
    reason = q.get("reason") or None
    if reason is not None and reason not in REASONS:
        raise Refused(400, f"reason must be one of {', '.join(REASONS)}")
    operator = (q.get("operator") or "").strip().lower() or None
    since: date | None = None
    if q.get("since"):
        try:
            since = date.fromisoformat(q["since"])
        except ValueError:
            raise Refused(400, "since must be a date YYYY-MM-DD") from None
    rows = read_log(
        desk.settings.warehouse, operator=operator, decision=decision, reason=reason, since=since
    )
    return _render(
        desk,
        ctx,
        "log.html",
        rows=rows,
        reasons=REASONS,
        decision=decision or "",
        reason=reason or "",
        operator_filter=operator or "",
        since=q.get("since", ""),
        scrub=scrub,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    desk: Desk = request.app.state.desk
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    message = "No such page." if status == 404 else "That request is not possible here."
    response = _render(desk, None, "error.html", status, message=message)
    access(request, status, time.monotonic())
    return _finish(desk, request, response, desk.sessions.read(request.cookies.get(COOKIE)))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s on %s %s", type(exc).__name__, request.method, scrub(request.url.path)[:200])
    desk: Desk = request.app.state.desk
    response = _render(desk, None, "error.html", 500, message="Something went wrong.")
    return _finish(desk, request, response, None)


def create_app(
    settings: Settings,
    *,
    key: bytes | None = None,
    idle_minutes: float = 30,
    absolute_hours: float = 8,
    brake: Brake | None = None,
) -> Starlette:
    """The desk for one warehouse. ``key`` signs sessions: random per process unless
    ``CLAIMS_DESK_KEY`` (hex) is set."""
    if key is None:
        env_key = os.environ.get("CLAIMS_DESK_KEY", "")
        try:
            key = bytes.fromhex(env_key) if env_key else secrets.token_bytes(32)
        except ValueError:
            raise ConfigError("CLAIMS_DESK_KEY must be hex (e.g. `openssl rand -hex 32`)") from None
        if len(key) < 32:
            raise ConfigError("CLAIMS_DESK_KEY must be at least 32 bytes (64 hex digits)")
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    desk = Desk(
        settings=settings,
        sessions=Sessions(key, idle_s=idle_minutes * 60, absolute_s=absolute_hours * 3600),
        brake=brake or Brake(),
        env=env,
        guard=threading.Lock(),
    )
    routes = [
        Route("/", home, methods=["GET"]),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/queue", queue, methods=["GET"]),
        Route("/log", decision_log, methods=["GET"]),
        Route("/item/{hospital}/{settlement}", item, methods=["GET"]),
        Route("/item/{hospital}/{settlement}/decide", decide, methods=["POST"]),
    ]
    app = Starlette(
        debug=False,
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_found, Exception: _server_error},
    )
    app.state.desk = desk
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the desk with uvicorn: our own access log (no query strings), no server header."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_config=None,
        log_level="info",
    )
