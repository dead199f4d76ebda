"""Dashboard sessions and sign-in throttling: an HMAC-SHA256-signed cookie carrying user, role, expiry
and CSRF token, and an in-memory limiter of failed sign-ins per client address and per user name."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response

from auditflow.services.dashboard.csrf import new_token
from auditflow.services.dashboard.users import Role

SESSION_COOKIE = "auditflow_session"
SESSION_TTL_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: Role
    expires: int
    csrf: str

    @property
    def can_triage(self) -> bool:
        return self.role is Role.ANALYST


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Encodes sessions as `payload.signature`; anything altered, expired or malformed decodes to None."""

    def __init__(self, secret: bytes, *, ttl: int = SESSION_TTL_SECONDS, clock: Callable[[], float] = time.time):
        # A key of its own, so the configured secret could sign other things without confusion.
        self._key = hmac.new(secret, b"auditflow dashboard session v1", hashlib.sha256).digest()
        self._ttl = ttl
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, user: str, role: Role) -> Session:
        return Session(user=user, role=role, expires=int(self._clock()) + self._ttl, csrf=new_token())

    def encode(self, session: Session) -> str:
        body = {"u": session.user, "r": str(session.role), "e": session.expires, "c": session.csrf}
        payload = _b64(orjson.dumps(body))
        return f"{payload}.{self._sign(payload)}"

    def decode(self, value: str | None) -> Session | None:
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            body = orjson.loads(_unb64(payload))
            session = Session(user=str(body["u"]), role=Role(body["r"]), expires=int(body["e"]), csrf=str(body["c"]))
        except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
            return None
        if session.expires <= self._clock():
            return None
        return session

    @property
    def ttl(self) -> int:
        return self._ttl


def is_secure(conn: HTTPConnection) -> bool:
    """True behind TLS, including a TLS-terminating proxy that says so."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return conn.url.scheme == "https" or forwarded == "https"


def cookie_path(conn: HTTPConnection) -> str:
    return conn.scope.get("root_path", "") or "/"


def set_cookie(conn: HTTPConnection, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=cookie_path(conn),
        httponly=True,
        samesite="lax",
        secure=is_secure(conn),
    )


def clear_cookie(conn: HTTPConnection, response: Response, name: str) -> None:
    response.delete_cookie(name, path=cookie_path(conn), httponly=True, samesite="lax", secure=is_secure(conn))


class LoginThrottle:
    """Refuses sign-in attempts once a key (client address or user name) failed `limit` times within
    `window` seconds. In memory: each dashboard process counts its own attempts."""

    def __init__(self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def blocked(self, *keys: str) -> bool:
        now = self._clock()
        return any(len(self._recent(key, now) or ()) >= self.limit for key in keys)

    def record_failure(self, *keys: str) -> None:
        now = self._clock()
        if len(self._failures) > 10_000:
            # Bound memory under a spray of addresses and names: forget the expired entries.
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
