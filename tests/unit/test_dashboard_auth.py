"""The bounded password-check pool, and CSRF and cookie checks of the dashboard (the throttle has its
contract suite in tests/contract/test_throttle.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from auditflow.services.dashboard.auth import is_secure
from auditflow.services.dashboard.csrf import check_csrf, tokens_match
from auditflow.services.dashboard.passwords import PasswordCheckPool, PasswordChecksBusy


async def test_the_pool_runs_at_most_its_workers_and_refuses_beyond_its_queue() -> None:
    pool = PasswordCheckPool(workers=2, queue=3)
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def check(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1
        return value

    try:
        tasks = [asyncio.create_task(pool.run(check, i)) for i in range(8)]
        await asyncio.sleep(0.1)
        assert pool.admitted == 5
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(r for r in results if isinstance(r, int)) == [0, 1, 2, 3, 4]
        assert sum(isinstance(r, PasswordChecksBusy) for r in results) == 3
        assert peak == 2
        assert pool.admitted == 0
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_request_keeps_its_slot_until_the_check_ends() -> None:
    pool = PasswordCheckPool(workers=1, queue=0)
    release = threading.Event()
    try:
        task = asyncio.create_task(pool.run(release.wait, 5))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        # The thread still holds its memory: a new check must not start beside it.
        assert pool.admitted == 1
        with pytest.raises(PasswordChecksBusy):
            await pool.run(time.sleep, 0)
        release.set()
        for _ in range(100):
            if pool.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert await pool.run(len, "ok") == 2
    finally:
        release.set()
        pool.close()


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
