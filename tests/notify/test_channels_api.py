"""The channels API of the embedded process: the list and one channel with routes and health and no
secret, 404s naming the channel, an empty list that says why without a routing file, and test sends
(the contract's test payload, signed, straight to the receiver), refused sends reported as 200 with
ok=false, the per-channel rate limit with Retry-After, and the caller in the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.errors import BackendError, NotFound
from auditflow.model.alert import AlertQuery
from auditflow.notify.testsend import ChannelTestThrottled
from auditflow.runtime import Runtime
from auditflow.security import DASHBOARD_SCOPES, ApiToken, Scope
from auditflow.services.dashboard.source import HttpAlertSource
from tests.notify.conftest import SECRET, SECRET_ENV, closed_port_url, routing_dict
from tests.notify.receiver import WebhookReceiver

ADMIN = "ops-secret-0123456789abcdef"
READER = "reader-secret-0123456789abc"
TOKENS = [
    ApiToken(name="ops", scopes=frozenset({Scope.ADMIN, Scope.READ, Scope.INGEST}), secret=SecretStr(ADMIN)),
    ApiToken(name="reader", scopes=frozenset({Scope.READ}), secret=SecretStr(READER)),
]
SECRET_URL_PART = "T0SECRETPATH"


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def write_routing(tmp_path: Path, soc_url: str) -> Path:
    raw = routing_dict(soc_url)
    # A second channel whose URL carries secrets in its path and query, used by the critical route.
    raw["channels"]["down"] = {
        "type": "webhook",
        "url": f"{closed_port_url()}/{SECRET_URL_PART}?token=sekrit",
        "secret_env": SECRET_ENV,
        "timeout": 1,
    }
    raw["routes"][1]["channels"] = ["soc", "down"]
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def embedded_app(tmp_path: Path, tokens: list[ApiToken], **settings: Any) -> AsyncIterator[FastAPI]:
    runtime = Runtime(load_settings(data_dir=tmp_path, generator_rate=0, **settings), "run")
    app = create_app(runtime, tokens, manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    try:
        yield app
    finally:
        await runtime.aclose()


async def embedded(
    tmp_path: Path, tokens: list[ApiToken] = TOKENS, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async for app in embedded_app(tmp_path, tokens, **settings):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client


@pytest.fixture
def receiver() -> Any:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
async def client(tmp_path: Path, secret_env: str, receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    async for client in embedded(tmp_path, notify_config=write_routing(tmp_path, receiver.url)):
        yield client


async def test_the_list_names_channels_routes_and_health_without_secrets(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    answer = await client.get("/api/v1/channels", headers=auth(READER))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["configured"] is True
    channels = {channel["name"]: channel for channel in body["channels"]}
    assert list(channels) == ["soc", "down"]
    assert channels["soc"]["type"] == "webhook"
    assert channels["soc"]["routes"] == ["all", "critical"]
    assert channels["down"]["routes"] == ["critical"]
    assert channels["soc"]["target"] == receiver.url.removesuffix("/hook")
    assert channels["down"]["target"].startswith("http://127.0.0.1:")
    assert channels["soc"]["health"] == {
        "status": "idle",
        "pending": 0,
        "dead": 0,
        "sent_last_hour": 0,
        "last_sent_at": None,
        "last_error": None,
        "last_error_at": None,
    }
    for secret in (SECRET, SECRET_ENV, SECRET_URL_PART, "sekrit", "/hook"):
        assert secret not in answer.text
    one = await client.get("/api/v1/channels/down", headers=auth(READER))
    assert one.status_code == 200
    assert one.json() == channels["down"]


async def test_health_follows_real_deliveries(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    event = {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}}
    assert (await client.post("/api/v1/events", json=event, headers=auth(ADMIN))).status_code == 202
    async with asyncio.timeout(10):
        while True:
            health = (await client.get("/api/v1/channels/soc", headers=auth(READER))).json()["health"]
            if health["status"] == "ok" and health["pending"] == 0:  # the routes' deliveries are all recorded
                break
            await asyncio.sleep(0.05)
    assert health["sent_last_hour"] == len(receiver.accepted_keys()) >= 1
    assert health["pending"] == 0
    assert health["last_sent_at"] is not None


async def test_an_unknown_channel_is_a_404_naming_it(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/api/v1/channels/nope"), ("POST", "/api/v1/channels/nope/test")):
        answer = await client.request(method, path, headers=auth(ADMIN))
        assert answer.status_code == 404
        assert answer.json()["detail"] == "channel 'nope' is not in the routing file"


async def test_a_test_send_reaches_the_receiver_signed_with_the_test_payload(
    client: httpx.AsyncClient, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="auditflow.notify"):
        answer = await client.post("/api/v1/channels/soc/test", headers=auth(ADMIN))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["channel"], body["ok"], body["error"]) == ("soc", True, None)
    assert body["duration_ms"] >= 0
    [request] = receiver.seen()
    assert request.signature_ok
    assert request.event == "test"
    assert request.body["event"] == "test"
    assert request.body["route"] is None
    assert request.body["alert_url"] is None
    assert request.body["previous_occurrences"] == 0
    assert request.body["alert"]["rule_id"] == "auditflow-test"
    assert request.body["delivery_id"] == request.key
    assert "test notification through channel 'soc' requested by ops: sent" in caplog.text
    # Not through the outbox: nothing pending, nothing counted as sent.
    health = (await client.get("/api/v1/channels/soc", headers=auth(READER))).json()["health"]
    assert (health["pending"], health["sent_last_hour"]) == (0, 0)


async def test_test_sends_are_rate_limited_per_channel(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    assert (await client.post("/api/v1/channels/soc/test", headers=auth(ADMIN))).status_code == 200
    again = await client.post("/api/v1/channels/soc/test", headers=auth(ADMIN))
    assert again.status_code == 429
    assert 1 <= int(again.headers["Retry-After"]) <= 5
    assert "channel 'soc' was tested less than 5 s ago" in again.json()["detail"]
    assert len(receiver.seen()) == 1
    # Another channel has its own allowance.
    assert (await client.post("/api/v1/channels/down/test", headers=auth(ADMIN))).status_code == 200


async def test_a_refused_test_send_is_a_200_with_the_error(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/channels/down/test", headers=auth(ADMIN))
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is False
    assert body["error"].startswith("ConnectError")
    assert SECRET_URL_PART not in answer.text
    assert "sekrit" not in answer.text


async def test_a_test_send_needs_admin(client: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    answer = await client.post("/api/v1/channels/soc/test", headers=auth(READER))
    assert answer.status_code == 403
    assert receiver.seen() == []


async def test_without_a_routing_file_the_list_is_empty_and_says_so(tmp_path: Path) -> None:
    async for client in embedded(tmp_path):
        answer = await client.get("/api/v1/channels", headers=auth(READER))
        assert answer.status_code == 200
        body = answer.json()
        assert (body["configured"], body["channels"]) == (False, [])
        assert "notifications are not configured" in body["detail"]
        one = await client.get("/api/v1/channels/soc", headers=auth(READER))
        assert one.status_code == 404
        assert "channel 'soc' not found: notifications are not configured" in one.json()["detail"]
        assert (await client.post("/api/v1/channels/soc/test", headers=auth(ADMIN))).status_code == 404


async def test_the_list_follows_a_reloaded_routing_file(tmp_path: Path, secret_env: str) -> None:
    path = write_routing(tmp_path, "https://hooks.example/a")
    async for client in embedded(tmp_path, notify_config=path, rules_reload_interval=0.05):
        raw = yaml.safe_load(path.read_text())
        raw["channels"]["extra"] = {"type": "webhook", "url": "https://other.example/x", "secret_env": SECRET_ENV}
        raw["routes"][0]["channels"] = ["extra"]
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        async with asyncio.timeout(10):
            while True:
                listed = (await client.get("/api/v1/channels", headers=auth(READER))).json()
                if "extra" in [channel["name"] for channel in listed["channels"]]:
                    break
                await asyncio.sleep(0.05)
        extra = (await client.get("/api/v1/channels/extra", headers=auth(READER))).json()
        assert (extra["routes"], extra["target"]) == (["all"], "https://other.example")


async def test_the_distributed_dashboard_reads_channels_and_sends_tests_through_the_api(
    tmp_path: Path, secret_env: str, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    dashboard = ApiToken(name="dashboard", scopes=DASHBOARD_SCOPES | {Scope.ADMIN}, secret=SecretStr("d" * 32))
    plain = ApiToken(name="plain-dashboard", scopes=DASHBOARD_SCOPES, secret=SecretStr("p" * 32))
    path = write_routing(tmp_path, receiver.url)
    async for app in embedded_app(tmp_path, [*TOKENS, dashboard, plain], notify_config=path):
        # The API as the dashboard of `auditflow serve dashboard` reaches it, over its HTTP client.
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://t")
        source = HttpAlertSource("http://t", "d" * 32, transport=transport)
        refused = HttpAlertSource("http://t", "p" * 32, transport=transport)
        try:
            listed = await source.channels()
            assert [channel.name for channel in listed.channels] == ["soc", "down"]
            with caplog.at_level(logging.WARNING, logger="auditflow.notify"):
                result = await source.test_channel("soc", "alice")
            assert (result.channel, result.ok) == ("soc", True)
            assert "requested by alice via dashboard: sent" in caplog.text
            with pytest.raises(ChannelTestThrottled) as throttled:
                await source.test_channel("soc", "alice")
            assert 1 <= throttled.value.retry_after <= 5
            with pytest.raises(NotFound, match="channel 'nope' is not in the routing file"):
                await source.test_channel("nope", "alice")
            with pytest.raises(BackendError, match="lacks the 'admin' scope"):
                await refused.test_channel("down", "bob")
            event = {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}}
            assert (await client.post("/api/v1/events", json=event, headers=auth(ADMIN))).status_code == 202
            async with asyncio.timeout(10):
                while not (page := await source.list_alerts(AlertQuery())).items:
                    await asyncio.sleep(0.05)
                while not (deliveries := await source.deliveries(page.items[0].alert_id)):
                    await asyncio.sleep(0.05)
            assert {(d.route, d.channel) for d in deliveries} >= {("all", "soc")}
        finally:
            await source.aclose()
            await refused.aclose()
            await client.aclose()


async def test_a_secret_gone_since_start_is_a_failed_test_not_a_crash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    answer = await client.post("/api/v1/channels/soc/test", headers=auth(ADMIN))
    assert answer.status_code == 200
    assert answer.json()["ok"] is False
    assert answer.json()["error"] == f"environment variable {SECRET_ENV} is empty or unset"
