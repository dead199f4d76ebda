"""The embedded process with a routing file: an event that raises an alert reaches the receiver, and
`GET /api/v1/alerts/{id}/deliveries` shows the delivery (or the digest that carries it); without a routing
file nothing is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.runtime import Runtime
from tests.notify.conftest import SECRET, routing_dict
from tests.notify.receiver import WebhookReceiver

TOKEN = "operator-secret-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def embedded(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(load_settings(data_dir=tmp_path, generator_rate=0, **settings), "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client
    finally:
        await runtime.aclose()


async def raise_alert(client: httpx.AsyncClient) -> str:
    event = {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}}
    assert (await client.post("/api/v1/events", json=event, headers=HEADERS)).status_code == 202
    async with asyncio.timeout(10):
        while True:
            items = (await client.get("/api/v1/alerts", headers=HEADERS)).json()["items"]
            if items:
                return str(items[0]["alert_id"])
            await asyncio.sleep(0.02)


@pytest.fixture
def receiver() -> Any:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


async def test_an_alert_is_delivered_and_its_deliveries_are_listed(
    tmp_path: Path, secret_env: str, receiver: WebhookReceiver
) -> None:
    routing_file = tmp_path / "routing.yaml"
    routing = routing_dict(receiver.url)
    routing["routes"] = routing["routes"][:1]
    routing_file.write_text(yaml.safe_dump(routing))
    async for client in embedded(tmp_path, notify_config=routing_file):
        alert_id = await raise_alert(client)
        async with asyncio.timeout(10):
            while not receiver.accepted_keys():
                await asyncio.sleep(0.02)
            while True:
                answer = await client.get(f"/api/v1/alerts/{alert_id}/deliveries", headers=HEADERS)
                assert answer.status_code == 200, answer.text
                if [d["status"] for d in answer.json()] == ["sent"]:
                    break
                await asyncio.sleep(0.02)
        [delivery] = answer.json()
        [request] = receiver.seen()
        assert request.key == delivery["delivery_id"]
        assert request.body["alert"]["alert_id"] == alert_id
        assert (delivery["route"], delivery["channel"], delivery["event"], delivery["attempts"]) == (
            "all",
            "soc",
            "new",
            1,
        )
        resolved = await client.patch(f"/api/v1/alerts/{alert_id}", json={"status": "resolved"}, headers=HEADERS)
        assert resolved.status_code == 200
        async with asyncio.timeout(10):
            while len(receiver.accepted_keys()) < 2:
                await asyncio.sleep(0.02)
        assert receiver.seen()[-1].event == "resolved"


async def test_a_digest_route_shows_its_digest_and_sends_it_when_the_window_closes(
    tmp_path: Path, secret_env: str, receiver: WebhookReceiver
) -> None:
    routing_file = tmp_path / "routing.yaml"
    routing = routing_dict(receiver.url)
    routing["routes"] = [{"name": "batched", "channels": ["soc"], "digest": "1s"}]
    routing_file.write_text(yaml.safe_dump(routing))
    async for client in embedded(tmp_path, notify_config=routing_file):
        alert_id = await raise_alert(client)
        answer = await client.get(f"/api/v1/alerts/{alert_id}/deliveries", headers=HEADERS)
        assert answer.status_code == 200, answer.text
        [waiting] = answer.json()
        assert (waiting["event"], waiting["status"], waiting["alert_id"]) == ("digest", "pending", alert_id)
        assert waiting["next_attempt_at"] is not None  # when the window closes
        async with asyncio.timeout(10):
            while not receiver.accepted_keys():
                await asyncio.sleep(0.02)
            while True:
                [delivery] = (await client.get(f"/api/v1/alerts/{alert_id}/deliveries", headers=HEADERS)).json()
                if delivery["status"] == "sent":
                    break
                await asyncio.sleep(0.02)
        [request] = receiver.seen()
        assert request.key == delivery["delivery_id"] == waiting["delivery_id"]
        assert (request.event, request.body["count"]) == ("digest", 1)
        assert request.body["items"][0]["alert"]["alert_id"] == alert_id


async def test_without_a_routing_file_nothing_is_queued(tmp_path: Path) -> None:
    async for client in embedded(tmp_path):
        alert_id = await raise_alert(client)
        answer = await client.get(f"/api/v1/alerts/{alert_id}/deliveries", headers=HEADERS)
        assert (answer.status_code, answer.json()) == (200, [])
        missing = await client.get("/api/v1/alerts/00000000-0000-4000-8000-000000000000/deliveries", headers=HEADERS)
        assert missing.status_code == 404


def test_a_bad_routing_file_stops_the_start_with_its_name(tmp_path: Path) -> None:
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text("channels: {}\nroutes: []\n")
    with pytest.raises(Exception, match=rf"{routing_file}: routes: List should have at least 1 item"):
        Runtime(load_settings(data_dir=tmp_path, notify_config=routing_file), "run")
