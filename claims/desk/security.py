"""Sessions, CSRF tokens and the sign-in brake of the review desk (stdlib only).

A session is a signed cookie, not a server-side row: ``payload.signature`` with HMAC-SHA256 under
a key that lives in the desk's process (a restart signs everybody out). It carries the operator,
a CSRF token and two expiries: idle (renewed on each request) and absolute.

>>> box = Sessions(b"k" * 32, idle_s=60, absolute_s=3600)
>>> cookie = box.issue(Session("liu", "token", 0, 0), now=100.0)
>>> box.read(cookie, now=150.0).operator
'liu'
>>> box.read(cookie, now=161.0) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, replace

COOKIE = "claims_desk"


@dataclass(frozen=True)
class Session:
    operator: str  # '' before sign-in: the session then only carries the sign-in form's token
    csrf: str
    issued_at: float
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issue and read signed session cookies."""

    def __init__(self, key: bytes, *, idle_s: float, absolute_s: float) -> None:
        self._key = key
        self.idle_s = idle_s
        self.absolute_s = absolute_s

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def new(self, operator: str = "", *, now: float | None = None) -> Session:
        at = time.time() if now is None else now
        return Session(operator, secrets.token_urlsafe(32), at, at + self.idle_s)

    def issue(self, session: Session, *, now: float | None = None) -> str:
        """The cookie value, its idle expiry renewed (never past the absolute one)."""
        at = time.time() if now is None else now
        expires = min(at + self.idle_s, session.issued_at + self.absolute_s)
        data = {"op": session.operator, "csrf": session.csrf, "iat": session.issued_at}
        body = _b64(json.dumps({**data, "exp": expires}, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session of a cookie that is ours and has not expired, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["op"]), str(data["csrf"]), float(data["iat"]), 0.0)
            session = replace(session, expires_at=float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        at = time.time() if now is None else now
        if at >= session.expires_at or at >= session.issued_at + self.absolute_s:
            return None
        return session


def same_token(sent: str | None, expected: str) -> bool:
    """A form's CSRF token against the session's (constant time; a missing one never matches)."""
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent), expected)


class Brake:
    """Failed sign-ins slow down further attempts: per operator name and per client address, a
    wait that doubles with each failure (1 s, 2 s, 4 s … at most ``longest_s``); a success clears
    the name's count. While a wait runs, attempts are refused without checking the password."""

    def __init__(self, *, first_s: float = 1.0, longest_s: float = 300.0) -> None:
        self.first_s = first_s
        self.longest_s = longest_s
        self._failures: dict[str, tuple[int, float]] = {}
        self._guard = threading.Lock()

    def wait_s(self, *keys: str, now: float | None = None) -> float:
        """Seconds to wait before another attempt for these keys (0: go ahead)."""
        at = time.monotonic() if now is None else now
        with self._guard:
            until = max((self._failures.get(k, (0, 0.0))[1] for k in keys), default=0.0)
        return max(0.0, until - at)

    def failed(self, *keys: str, now: float | None = None) -> float:
        """Count a failure; the wait it imposes."""
        at = time.monotonic() if now is None else now
        longest = 0.0
        with self._guard:
            for k in keys:
                count = self._failures.get(k, (0, 0.0))[0] + 1
                wait = min(self.first_s * 2 ** (count - 1), self.longest_s)
                self._failures[k] = (count, at + wait)
                longest = max(longest, wait)
            if len(self._failures) > 10_000:  # bounded memory under a spray of names
                self._failures = dict(list(self._failures.items())[-5_000:])
        return longest

    def succeeded(self, key: str) -> None:
        with self._guard:
            self._failures.pop(key, None)
