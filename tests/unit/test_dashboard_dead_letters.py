"""The dashboard's dead letters page over the embedded source and a real SQLite store: behind the
sign-in, linked from the navigation, escaped, paged with the store's cursor, read-only for every role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings
from auditflow.model.status import Readiness
from auditflow.model.timeutil import to_millis, utcnow
from auditflow.services.dashboard import LocalAlertSource, build_dashboard
from tests.unit.dashboard_support import ENTRIES, READINESS, RULES, XSS_DETAIL, XSS_USER, sign_in


def letter(
    minutes_ago: int, *, reason: str = "poison: RuntimeError: detector fault", body: str = "[]"
) -> StoredDeadLetter:
    at = to_millis(utcnow()) - minutes_ago * 60_000
    return StoredDeadLetter(uuid4(), "audit_events", reason, at, {}, body.encode())


@pytest.fixture
async def client(tmp_path: Path, alert_store: SqlAlertStore) -> AsyncIterator[httpx.AsyncClient]:
    async def readiness() -> Readiness:
        return READINESS

    source = LocalAlertSource(alert_store, lambda: RULES, readiness)
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    app = build_dashboard(settings, source, poll_interval=0.01, stream_lifetime=0.05)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            yield http
    finally:
        await app.state.dashboard.aclose()


async def test_the_page_needs_a_session_and_is_in_the_navigation(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dead-letters")).status_code == 303
    await sign_in(client)
    page = await client.get("/dead-letters")
    assert page.status_code == 200
    assert 'href="/dead-letters" class="active" aria-current="page">Dead letters</a>' in page.text
    assert "No dead letters" in page.text
    assert 'href="/dead-letters"' in (await client.get("/alerts")).text


async def test_reason_and_body_are_escaped(client: httpx.AsyncClient, alert_store: SqlAlertStore) -> None:
    hostile = letter(1, reason=f"invalid event at index 0: {XSS_USER}", body=f'[{{"x": "{XSS_DETAIL}"}}]')
    await alert_store.add_dead_letters([hostile])
    await sign_in(client, "vic")  # a viewer sees it too: the page only reads
    html = (await client.get("/dead-letters")).text
    assert str(hostile.id) in html
    assert XSS_USER not in html
    assert "<script>alert(1)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<form" not in html.split("</header>", 1)[1]  # no replay or purge form for any role


async def test_pages_follow_the_cursor_and_a_bad_cursor_is_explained(
    client: httpx.AsyncClient, alert_store: SqlAlertStore
) -> None:
    await alert_store.add_dead_letters([letter(minute, reason=f"poison: number {minute:02d}") for minute in range(30)])
    await sign_in(client)
    first = await client.get("/dead-letters")
    assert first.text.count('class="dead-letter-row"') == 25
    assert "30 stored" in first.text
    assert "poison: number 00" in first.text
    start = first.text.index('href="/dead-letters?cursor=') + len('href="')
    second = await client.get(first.text[start : first.text.index('"', start)].replace("&amp;", "&"))
    assert second.text.count('class="dead-letter-row"') == 5
    assert "poison: number 29" in second.text
    assert "← Newest" in second.text
    bad = await client.get("/dead-letters", params={"cursor": "garbage"})
    assert bad.status_code == 200
    assert "not valid any more" in bad.text
    assert bad.text.count('class="dead-letter-row"') == 25


async def test_an_outage_renders_the_error_page(client: httpx.AsyncClient, alert_store: SqlAlertStore) -> None:
    await sign_in(client)
    await alert_store.aclose()  # the store is gone: "not started" is BackendUnavailable
    assert (await client.get("/dead-letters")).status_code == 503
