"""Session cookies, sign-in throttling and CSRF token checks of the dashboard."""

from __future__ import annotations

import base64

import orjson
import pytest
from fastapi import HTTPException
from starlette.requests import Request

from auditflow.services.dashboard.auth import LoginThrottle, SessionCodec, is_secure
from auditflow.services.dashboard.csrf import check_csrf, tokens_match
from auditflow.services.dashboard.users import Role


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_round_trip() -> None:
    codec = SessionCodec(b"k" * 32)
    session = codec.issue("ana", Role.ANALYST)
    assert codec.decode(codec.encode(session)) == session
    assert len(session.csrf) >= 24


def test_a_session_with_an_edited_role_is_rejected() -> None:
    codec = SessionCodec(b"k" * 32)
    cookie = codec.encode(codec.issue("vic", Role.VIEWER))
    payload, signature = cookie.split(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["r"] = "analyst"
    forged = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    assert codec.decode(f"{forged}.{signature}") is None


@pytest.mark.parametrize("value", [None, "", "nodot", "a.b.c", "!!!.???", "e30.AAAA"])
def test_garbage_cookies_decode_to_no_session(value: str | None) -> None:
    assert SessionCodec(b"k" * 32).decode(value) is None


def test_another_secret_or_an_expired_session_is_rejected() -> None:
    clock = Clock()
    codec = SessionCodec(b"k" * 32, ttl=60, clock=clock)
    cookie = codec.encode(codec.issue("ana", Role.ANALYST))
    assert SessionCodec(b"other-secret-value" * 2).decode(cookie) is None
    clock.now += 59
    assert codec.decode(cookie) is not None
    clock.now += 1
    assert codec.decode(cookie) is None


def test_throttle_blocks_after_the_limit_and_forgets_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=3, window=60, clock=clock)
    for _ in range(2):
        throttle.record_failure("ip:1", "user:ana")
    assert not throttle.blocked("ip:1", "user:ana")
    throttle.record_failure("ip:1", "user:ana")
    assert throttle.blocked("ip:1")
    assert throttle.blocked("ip:2", "user:ana")  # the same name from another address
    assert not throttle.blocked("ip:2", "user:bob")
    clock.now += 60
    assert not throttle.blocked("ip:1", "user:ana")


def test_throttle_reset_clears_one_key() -> None:
    throttle = LoginThrottle(limit=1, window=60, clock=Clock())
    throttle.record_failure("ip:1", "user:ana")
    throttle.reset("user:ana")
    assert not throttle.blocked("user:ana")
    assert throttle.blocked("ip:1")


@pytest.mark.parametrize(
    ("expected", "provided", "ok"),
    [("tok", "tok", True), ("tok", "tok2", False), ("tok", "", False), (None, "tok", False), ("tok", None, False)],
)
def test_csrf_tokens_must_match(expected: str | None, provided: object, ok: bool) -> None:
    assert tokens_match(expected, provided) is ok
    if ok:
        check_csrf(expected, provided)
    else:
        with pytest.raises(HTTPException) as caught:
            check_csrf(expected, provided)
        assert caught.value.status_code == 403


@pytest.mark.parametrize(
    ("scheme", "headers", "secure"),
    [
        ("http", [], False),
        ("https", [], True),
        ("http", [(b"x-forwarded-proto", b"https")], True),
        ("http", [(b"x-forwarded-proto", b"http")], False),
    ],
)
def test_secure_cookies_behind_tls(scheme: str, headers: list[tuple[bytes, bytes]], secure: bool) -> None:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": ("h", 80),
        "path": "/",
        "headers": headers,
        "query_string": b"",
    }
    assert is_secure(Request(scope)) is secure
