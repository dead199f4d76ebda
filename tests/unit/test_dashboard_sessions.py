"""Dashboard sessions held on the server: sign-out and a new password end them, the sign-in throttle
cannot be raced, password checks are bounded, and a session store outage is answered, not crashed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings, load_settings
from auditflow.errors import BackendUnavailable
from auditflow.model.alert import AlertQuery, AlertStatus
from auditflow.runtime import Runtime
from auditflow.security import ApiToken
from auditflow.services.dashboard import build_dashboard, mount_dashboard
from auditflow.services.dashboard.sessions import (
    MemorySessionStore,
    SessionRecord,
    create_session_store,
    session_store_url,
)
from auditflow.services.dashboard.sessions.redis import RedisSessionStore
from auditflow.services.dashboard.sessions.sql import SqlSessionStore
from auditflow.services.dashboard.throttle import MemoryLoginThrottle
from auditflow.services.dashboard.throttle.redis import RedisLoginThrottle
from auditflow.services.dashboard.users import User
from tests.factories import make_alert
from tests.unit.dashboard_support import CHEAP, ENTRIES, PASSWORD, RecordingSource, csrf_of, sign_in


@pytest.fixture
async def source(alert_store: SqlAlertStore) -> RecordingSource:
    await alert_store.upsert_alerts([make_alert()])
    return RecordingSource(alert_store)


def settings_for(tmp_path: Path, entries: list[str] | None = None, **options: Any) -> Settings:
    users = [SecretStr(e) for e in entries or ENTRIES]
    return Settings(data_dir=tmp_path, dashboard_users=users, **options)


@pytest.fixture
async def app(tmp_path: Path, source: RecordingSource) -> AsyncIterator[FastAPI]:
    dashboard = build_dashboard(settings_for(tmp_path), source)
    yield dashboard
    await dashboard.state.dashboard.aclose()


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def slow_checks(app: FastAPI, seconds: float) -> None:
    """Make every password check take `seconds`, so that concurrent sign-ins overlap for sure."""
    users = app.state.dashboard.users
    authenticate = users.authenticate

    def slow(name: str, password: str) -> User | None:
        time.sleep(seconds)
        result: User | None = authenticate(name, password)
        return result

    users.authenticate = slow


async def test_sign_out_ends_the_session_for_a_copied_cookie(app: FastAPI, alert_store: SqlAlertStore) -> None:
    [alert] = (await alert_store.list_alerts(AlertQuery())).items
    async with client_of(app) as client:
        await sign_in(client)
        stolen = client.cookies["auditflow_session"]
        page = await client.get(f"/alerts/{alert.alert_id}")
        old_csrf = csrf_of(page.text)
        assert (await client.post("/logout", data={"csrf_token": old_csrf})).status_code == 303
    async with client_of(app) as replay:
        replay.cookies.set("auditflow_session", stolen)
        assert (await replay.get("/alerts")).status_code == 303
        assert (await replay.get("/overview/data.json")).status_code == 401
        form = {"csrf_token": old_csrf, "status": "resolved", "note": "replayed"}
        response = await replay.post(f"/alerts/{alert.alert_id}", data=form)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    assert (await alert_store.get_alert(alert.alert_id)).status is AlertStatus.OPEN


async def test_a_new_password_ends_sessions_and_others_survive_a_restart(
    tmp_path: Path, source: RecordingSource
) -> None:
    first = build_dashboard(settings_for(tmp_path), source)
    async with aclosing(first.state.dashboard), client_of(first) as client, client_of(first) as other:
        await sign_in(client, "ana")
        ana = client.cookies["auditflow_session"]
        await sign_in(other, "vic")
        vic = other.cookies["auditflow_session"]
    # The same data directory after a restart (or another replica): ana's password was changed.
    changed = [f"ana:analyst:{CHEAP.hash('a new password')}", ENTRIES[1]]
    second = build_dashboard(settings_for(tmp_path, changed), source)
    async with aclosing(second.state.dashboard), client_of(second) as client:
        client.cookies.set("auditflow_session", ana)
        assert (await client.get("/alerts")).status_code == 303
        client.cookies.set("auditflow_session", vic)
        assert (await client.get("/alerts")).status_code == 200


async def attempts(app: FastAPI, count: int, users: list[str], password: str) -> list[httpx.Response]:
    """`count` sign-ins that all reach the server before any password check ends."""
    clients = [client_of(app) for _ in range(count)]
    try:
        pages = await asyncio.gather(*(c.get("/login") for c in clients))
        posts = []
        for i, (client, page) in enumerate(zip(clients, pages, strict=True)):
            form = {"username": users[i % len(users)], "password": password, "csrf_token": csrf_of(page.text)}
            posts.append(client.post("/login", data=form))
        return list(await asyncio.gather(*posts))
    finally:
        for c in clients:
            await c.aclose()


async def test_concurrent_wrong_passwords_cannot_race_the_throttle(app: FastAPI) -> None:
    slow_checks(app, 0.2)
    responses = await attempts(app, 12, ["ana"], "wrong")
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 7}
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    # From this address ana is locked out, even with the right password...
    async with client_of(app) as client:
        assert (await sign_in(client, "ana", PASSWORD)).status_code == 429
        # ...but another user from the same address is not.
        assert (await sign_in(client, "vic", PASSWORD)).status_code == 303


async def test_password_checks_are_bounded_and_the_excess_gets_503(tmp_path: Path, source: RecordingSource) -> None:
    settings = settings_for(tmp_path, password_check_concurrency=1, password_check_queue=1)
    app = build_dashboard(settings, source)
    users = app.state.dashboard.users
    authenticate = users.authenticate
    release = threading.Event()

    def held(name: str, password: str) -> User | None:
        release.wait(10)
        result: User | None = authenticate(name, password)
        return result

    users.authenticate = held
    clients = [client_of(app) for _ in range(4)]
    try:
        async with aclosing(app.state.dashboard):
            pages = await asyncio.gather(*(c.get("/login") for c in clients))
            tasks = []
            for i, (client, page) in enumerate(zip(clients, pages, strict=True)):
                form = {"username": ["ana", "vic"][i % 2], "password": PASSWORD, "csrf_token": csrf_of(page.text)}
                tasks.append(asyncio.create_task(client.post("/login", data=form)))
            # One check runs (held), one waits; the other two are turned away without waiting.
            async with asyncio.timeout(10):
                while sum(task.done() for task in tasks) < 2:
                    await asyncio.sleep(0.01)
            release.set()
            responses = await asyncio.gather(*tasks)
            assert Counter(r.status_code for r in responses) == {303: 2, 503: 2}
            busy = next(r for r in responses if r.status_code == 503)
            assert busy.headers["retry-after"] == "2"
            assert "Too many sign-ins at once" in busy.text
            # Turned away unchecked, so it did not count as a failure either.
            assert await app.state.dashboard.throttle.reserve("ana", "127.0.0.1") is not None
    finally:
        release.set()
        for client in clients:
            await client.aclose()


class BrokenStore(MemorySessionStore):
    async def _load(self, key: str) -> SessionRecord | None:
        raise BackendUnavailable("session store down")


async def test_a_session_store_outage_is_a_503_and_the_sign_in_page_still_loads(
    tmp_path: Path, source: RecordingSource
) -> None:
    app = build_dashboard(settings_for(tmp_path), source, sessions=BrokenStore(ttl=3600))
    async with aclosing(app.state.dashboard), client_of(app) as client:
        client.cookies.set("auditflow_session", "x" * 43)
        response = await client.get("/alerts")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert (await client.get("/login")).status_code == 200


async def test_signing_in_again_ends_the_previous_session(app: FastAPI) -> None:
    async with client_of(app) as client:
        await sign_in(client, "ana")
        previous = client.cookies["auditflow_session"]
    async with client_of(app) as client:
        page = await client.get("/login")
        client.cookies.set("auditflow_session", previous)
        form = {"username": "vic", "password": PASSWORD, "csrf_token": csrf_of(page.text)}
        response = await client.post("/login", data=form)
        assert response.status_code == 303
        assert response.cookies["auditflow_session"] != previous
    assert await app.state.dashboard.sessions.get(previous) is None


@pytest.mark.parametrize(
    ("options", "has_alert_store", "expected"),
    [
        ({}, True, "sqlite:///{data}/auditflow.sqlite3"),
        ({"state_url": "redis://cache:6379/0"}, True, "sqlite:///{data}/auditflow.sqlite3"),
        ({"state_url": "redis://cache:6379/0"}, False, "redis://cache:6379/0"),
        ({"database_url": "postgresql://db/auditflow"}, False, "postgresql://db/auditflow"),
        ({}, False, "sqlite:///{data}/auditflow.sqlite3"),
        ({"state_url": "redis://cache/0", "session_store_url": "memory://"}, False, "memory://"),
    ],
)
def test_the_session_store_follows_the_mode(
    tmp_path: Path, options: dict[str, Any], has_alert_store: bool, expected: str
) -> None:
    settings = settings_for(tmp_path, **options)
    assert session_store_url(settings, has_alert_store=has_alert_store) == expected.format(data=tmp_path.as_posix())


async def test_each_scheme_gets_its_backend(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, session_ttl=900)
    kinds = {
        "memory://": MemorySessionStore,
        "redis://127.0.0.1:6379/0": RedisSessionStore,
        f"sqlite:///{tmp_path}/s.sqlite3": SqlSessionStore,
        "postgresql://db/auditflow": SqlSessionStore,
    }
    for url, kind in kinds.items():
        store = create_session_store(url, settings)
        assert isinstance(store, kind)
        assert store.ttl == 900
        await store.aclose()


def test_an_unknown_session_store_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported scheme 'mysql'"):
        settings_for(tmp_path, session_store_url="mysql://db/x")


async def test_a_stand_alone_dashboard_reports_its_session_store_in_readiness(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, alerts_api_url="http://notification:8000", state_url="redis://127.0.0.1:1/0"
    )
    runtime = Runtime(settings, "dashboard")
    dashboard = mount_dashboard(FastAPI(), runtime, tokens=[ApiToken.operator("t" * 32)], users=None)
    try:
        # Replicas share the sessions and the sign-in count.
        assert isinstance(dashboard.sessions, RedisSessionStore)
        assert isinstance(dashboard.throttle, RedisLoginThrottle)
        sessions = runtime.dependencies["sessions"]
        assert sessions.critical
        assert sessions.detail == "redis://127.0.0.1:1"
        with pytest.raises(BackendUnavailable):
            await dashboard.sessions.ping()
    finally:
        await dashboard.aclose()
    embedded = Runtime(load_settings(data_dir=tmp_path, generator_rate=0), "run")
    dashboard = mount_dashboard(FastAPI(), embedded, tokens=[ApiToken.operator("t" * 32)], users=None)
    try:
        # Kept in the alert store, which is supervised already.
        assert "sessions" not in embedded.dependencies
        assert isinstance(dashboard.sessions, SqlSessionStore)
        assert isinstance(dashboard.throttle, MemoryLoginThrottle)
        await dashboard.sessions.ping()
    finally:
        await dashboard.aclose()


async def test_signing_out_ends_an_open_live_stream(tmp_path: Path, source: RecordingSource) -> None:
    app = build_dashboard(settings_for(tmp_path), source, poll_interval=0.01, stream_lifetime=30)
    dashboard = app.state.dashboard
    async with aclosing(dashboard), client_of(app) as client:
        await sign_in(client)
        session_id = client.cookies["auditflow_session"]

        async def sign_out_elsewhere() -> None:
            await asyncio.sleep(0.2)
            await dashboard.sessions.delete(session_id)

        started = time.monotonic()
        signing_out = asyncio.create_task(sign_out_elsewhere())
        response = await client.get("/events/stream")
        await signing_out
        assert time.monotonic() - started < 10
        assert response.text.rstrip().endswith('event: bye\ndata: {"reconnect":true}')
        assert (await client.get("/events/stream")).status_code == 401
