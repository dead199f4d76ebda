"""The dashboard's Channels page and the Notifications section of an alert, over the embedded source
and a real SQLite store with a real outbox: in the navigation for every role, values escaped (a
hostile receiver's answer in last_error), the "Send test" form for analysts only, CSRF-checked,
rate-limited like the API, and reported on the page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings
from auditflow.model.status import Readiness
from auditflow.model.timeutil import to_millis, utcnow
from auditflow.notify.health import ChannelDesk
from auditflow.notify.outbox import OutboxWriter, Outcome, claim, finish
from auditflow.notify.routing import Routing
from auditflow.services.dashboard import LocalAlertSource, build_dashboard
from tests.factories import make_alert
from tests.notify.conftest import SECRET, SECRET_ENV, closed_port_url, routing_dict
from tests.notify.receiver import WebhookReceiver
from tests.unit.dashboard_support import ENTRIES, READINESS, RULES, XSS_USER, csrf_of, sign_in

ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
def routing(receiver: WebhookReceiver) -> Routing:
    raw = routing_dict(receiver.url)
    raw["channels"]["down"] = {"type": "webhook", "url": closed_port_url(), "secret_env": SECRET_ENV, "timeout": 1}
    raw["routes"][1]["channels"] = ["down"]
    return Routing.model_validate(raw)


async def dashboard_client(tmp_path: Path, source: LocalAlertSource) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    app = build_dashboard(settings, source, poll_interval=0.01, stream_lifetime=0.05)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            yield http
    finally:
        await app.state.dashboard.aclose()


async def _readiness() -> Readiness:
    return READINESS


@pytest.fixture
async def client(tmp_path: Path, alert_store: SqlAlertStore, routing: Routing) -> AsyncIterator[httpx.AsyncClient]:
    alert_store.transition_hook = OutboxWriter(routing)
    source = LocalAlertSource(
        alert_store, lambda: RULES, _readiness, channels=ChannelDesk(alert_store, lambda: routing)
    )
    async for http in dashboard_client(tmp_path, source):
        yield http


async def failed_delivery(store: SqlAlertStore, error: str) -> str:
    """An alert whose one delivery (route `all`, channel `soc`) failed with `error`."""
    alert = make_alert()
    await store.upsert_alerts([alert])
    now = to_millis(utcnow())
    [row] = await claim(store, "test", 10, 60_000, now, 8)
    await finish(store, "test", [Outcome(row.delivery_id, "pending", now + 60_000, error)], now)
    return str(alert.alert_id)


async def test_the_page_is_in_the_navigation_for_every_role(client: httpx.AsyncClient) -> None:
    assert (await client.get("/channels")).status_code == 303
    await sign_in(client, "vic")
    page = await client.get("/channels")
    assert page.status_code == 200
    assert 'href="/channels" class="active" aria-current="page">Channels</a>' in page.text
    assert 'data-channel="soc"' in page.text
    assert 'data-channel="down"' in page.text
    assert "idle" in page.text
    assert "Send test" not in page.text  # viewers read only
    assert 'href="/channels"' in (await client.get("/alerts")).text


async def test_a_hostile_last_error_is_escaped_on_both_pages(
    client: httpx.AsyncClient, alert_store: SqlAlertStore
) -> None:
    alert_id = await failed_delivery(alert_store, f"HTTP 500: {XSS_USER}")
    await sign_in(client)
    channels = await client.get("/channels")
    assert XSS_USER not in channels.text
    assert ESCAPED in channels.text
    assert "failing" in channels.text
    detail = await client.get(f"/alerts/{alert_id}")
    assert detail.status_code == 200
    assert XSS_USER not in detail.text
    assert ESCAPED in detail.text
    section = detail.text[detail.text.index('id="notifications"') :]
    assert 'class="delivery-row"' in section
    for cell in ("<td>all</td>", '<td class="mono">soc</td>', "<td>new</td>", "pending</span>"):
        assert cell in section


async def test_an_alert_without_deliveries_says_so(client: httpx.AsyncClient, alert_store: SqlAlertStore) -> None:
    alert_store.transition_hook = None
    alert = make_alert()
    await alert_store.upsert_alerts([alert])
    await sign_in(client, "vic")
    detail = await client.get(f"/alerts/{alert.alert_id}")
    assert "No notification was sent for this alert" in detail.text


async def test_an_analyst_sends_a_test_once_per_interval(
    client: httpx.AsyncClient, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    await sign_in(client)
    page = await client.get("/channels")
    assert 'action="/channels/soc/test"' in page.text
    with caplog.at_level(logging.WARNING, logger="auditflow.notify"):
        sent = await client.post("/channels/soc/test", data={"csrf_token": csrf_of(page.text)})
    assert sent.status_code == 200
    assert "the receiver accepted it in" in sent.text
    [request] = receiver.seen()
    assert request.event == "test"
    assert request.signature_ok
    assert "requested by ana: sent" in caplog.text
    again = await client.post("/channels/soc/test", data={"csrf_token": csrf_of(page.text)})
    assert again.status_code == 429
    assert 1 <= int(again.headers["Retry-After"]) <= 5
    assert "tested moments ago" in again.text
    assert len(receiver.seen()) == 1


async def test_a_failed_test_shows_the_error(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    page = await client.get("/channels")
    failed = await client.post("/channels/down/test", data={"csrf_token": csrf_of(page.text)})
    assert failed.status_code == 200
    assert "Test notification through <strong>down</strong> failed" in failed.text
    assert "ConnectError" in failed.text
    unknown = await client.post("/channels/nope/test", data={"csrf_token": csrf_of(page.text)})
    assert unknown.status_code == 404
    assert "There is no channel of that name." in unknown.text


async def test_the_test_form_needs_csrf_and_an_analyst(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    await sign_in(client)
    assert (await client.post("/channels/soc/test", data={})).status_code == 403
    assert (await client.post("/channels/soc/test", data={"csrf_token": "forged"})).status_code == 403
    await client.post("/logout", data={"csrf_token": csrf_of((await client.get("/channels")).text)})
    await sign_in(client, "vic")
    viewer = await client.post("/channels/soc/test", data={"csrf_token": csrf_of((await client.get("/channels")).text)})
    assert viewer.status_code == 403
    assert "only analysts can send test notifications" in viewer.text
    assert receiver.seen() == []


async def test_without_notifications_the_page_says_how_to_configure_them(
    tmp_path: Path, alert_store: SqlAlertStore
) -> None:
    source = LocalAlertSource(alert_store, lambda: RULES, _readiness)
    async for client in dashboard_client(tmp_path, source):
        await sign_in(client)
        page = await client.get("/channels")
        assert page.status_code == 200
        assert "Notifications are not configured" in page.text
        assert "AUDITFLOW_NOTIFY_CONFIG" in page.text
