"""Poison isolation, the acceptance test of the hardening issue: one event that breaks its batch
rides among 1,000 good ones, and not one of their alerts is lost, in analysis and in notification,
on the embedded backends and on RabbitMQ with PostgreSQL. The poison is produced by a fault
injected for one specific event or alert (the API refuses the inputs that would break the real
backends), and on PostgreSQL also by an alert the database refuses, published to the queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from auditflow.app import create_app
from auditflow.backends.store.base import UpsertResult
from auditflow.backends.store.migrate import migrate_url
from auditflow.config import load_settings
from auditflow.errors import BackendError
from auditflow.model.alert import Alert, AlertQuery
from auditflow.model.event import Event
from auditflow.runtime import Runtime
from tests.component.dead_letter_support import drop_rabbitmq, postgres_database
from tests.conftest import RABBITMQ_URL, require_server

TOKEN = "poison-test-token-0123456789abcdef"
GOOD = 1000
POISON_HOST = "poison-host"
WAIT = 60.0


def file_event(host: str) -> dict[str, Any]:
    return {
        "event_type": "file_modified",
        "server_hostname": host,
        "user_id": "root",
        "details": {"resource": "/etc/shadow"},
    }


def mixed_batch() -> list[dict[str, Any]]:
    """1,000 good events, each its own alert (one host each), with the poison in the middle."""
    events = [file_event(f"good-{i:04d}") for i in range(GOOD)]
    events.insert(GOOD // 2, file_event(POISON_HOST))
    return events


@pytest.fixture(params=["memory", pytest.param("rabbitmq-postgres", marks=pytest.mark.postgres)])
async def pipeline(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> AsyncIterator[Pipeline]:
    overrides: dict[str, Any] = {"data_dir": tmp_path, "generator_rate": 0, "api_tokens": TOKEN}
    stack = contextlib.ExitStack()
    if request.param != "memory":
        require_server("rabbitmq")
        require_server("postgres")
        overrides |= {
            "broker_url": RABBITMQ_URL,
            "database_url": stack.enter_context(postgres_database(unique_name)),
            "events_queue": f"{unique_name}.events",
            "alerts_queue": f"{unique_name}.alerts",
            "dead_letter_queue": f"{unique_name}.dead",
        }
    settings = load_settings(**overrides)
    runtime = Runtime(settings, "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    try:
        async with asyncio.timeout(WAIT):
            await runtime.wait_ready()
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield Pipeline(runtime, client)
    finally:
        await runtime.aclose()
        if request.param != "memory":
            s = runtime.settings
            await drop_rabbitmq({s.events_queue, s.alerts_queue, s.dead_letter_queue}, {f"{s.dead_letter_queue}.dlx"})
        stack.close()


class Pipeline:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.client = client

    async def wait_for(self, alerts: int, dead_letters: int) -> tuple[set[str], list[dict[str, Any]]]:
        """The hosts of the stored alerts and the stored dead letters, once both counts are reached."""
        assert self.runtime.store is not None
        hosts: set[str] = set()
        letters: list[dict[str, Any]] = []
        async with asyncio.timeout(WAIT):
            while True:
                page = await self.runtime.store.list_alerts(AlertQuery(limit=500, rule_id="sensitive-file-modified"))
                hosts = {a.server_hostname or "" for a in page.items}
                while page.next_cursor:
                    page = await self.runtime.store.list_alerts(
                        AlertQuery(limit=500, rule_id="sensitive-file-modified", cursor=page.next_cursor)
                    )
                    hosts |= {a.server_hostname or "" for a in page.items}
                response = await self.client.get("/api/v1/dead-letters", params={"limit": 100})
                assert response.status_code == 200, response.text
                letters = response.json()["items"]
                if len(hosts) >= alerts and len(letters) >= dead_letters:
                    return hosts, letters
                await asyncio.sleep(0.2)


def good_hosts() -> set[str]:
    return {f"good-{i:04d}" for i in range(GOOD)}


async def test_one_poison_event_loses_no_alert_in_analysis(pipeline: Pipeline) -> None:
    assert pipeline.runtime.analysis is not None
    detector = pipeline.runtime.analysis.detector
    process = detector.process

    async def faulty(events: Sequence[Event]) -> Any:
        if any(e.server_hostname == POISON_HOST for e in events):
            raise RuntimeError("rule engine fault on this event")
        return await process(events)

    detector.process = faulty  # type: ignore[method-assign]
    response = await pipeline.client.post("/api/v1/events", json=mixed_batch())
    assert response.status_code == 202, response.text
    hosts, letters = await pipeline.wait_for(GOOD, 1)
    assert hosts == good_hosts()  # not one good alert lost, and none for the poison
    assert len(letters) == 1
    letter = letters[0]
    assert letter["queue"] == pipeline.runtime.settings.events_queue
    assert letter["reason"].startswith("poison: RuntimeError: rule engine fault")
    assert [e["server_hostname"] for e in orjson.loads(letter["body"])] == [POISON_HOST]


async def test_one_poison_alert_loses_no_alert_in_notification(pipeline: Pipeline) -> None:
    store = pipeline.runtime.store
    assert store is not None
    upsert = store.upsert_alerts

    async def refusing(alerts: Sequence[Alert]) -> UpsertResult:
        if any(a.server_hostname == POISON_HOST for a in alerts):
            raise BackendError("alert store upsert failed: the database refuses this alert")
        return await upsert(alerts)

    store.upsert_alerts = refusing  # type: ignore[method-assign]
    response = await pipeline.client.post("/api/v1/events", json=mixed_batch())
    assert response.status_code == 202, response.text
    hosts, letters = await pipeline.wait_for(GOOD, 1)
    assert hosts == good_hosts()
    assert len(letters) == 1
    assert letters[0]["queue"] == pipeline.runtime.settings.alerts_queue
    assert letters[0]["reason"].startswith("poison: BackendError")
    assert [a["server_hostname"] for a in orjson.loads(letters[0]["body"])] == [POISON_HOST]


def raw_alert(host: str, user: str = "root") -> dict[str, Any]:
    return {
        "alert_id": str(uuid.uuid4()),
        "rule_id": "sensitive-file-modified",
        "rule_name": "Sensitive file modified",
        "rule_kind": "match",
        "severity": "CRITICAL",
        "description": f"/etc/shadow modified on {host}",
        "user_id": user,
        "server_hostname": host,
        "first_seen": "2026-12-02T10:00:00Z",
        "last_seen": "2026-12-02T10:00:00Z",
        "occurrences": 1,
    }


@pytest.mark.postgres
async def test_an_alert_postgresql_refuses_loses_no_other_alert(tmp_path: Path, unique_name: str) -> None:
    """The issue's report: a NUL in a user id, refused by PostgreSQL, once sank the whole batch. Here
    it comes straight from the queue, in one message with 1,000 good alerts (no validation at the edge
    can stop a producer that writes to the broker itself)."""
    require_server("rabbitmq")
    require_server("postgres")
    with postgres_database(unique_name) as database_url:
        migrate_url(database_url)
        settings = load_settings(
            data_dir=tmp_path,
            generator_rate=0,
            api_tokens=TOKEN,
            broker_url=RABBITMQ_URL,
            database_url=database_url,
            events_queue=f"{unique_name}.events",
            alerts_queue=f"{unique_name}.alerts",
            dead_letter_queue=f"{unique_name}.dead",
        )
        runtime = Runtime(settings, "notification")
        await runtime.start()
        try:
            async with asyncio.timeout(WAIT):
                await runtime.wait_ready()
            alerts = [raw_alert(f"good-{i:04d}") for i in range(GOOD)]
            alerts.insert(GOOD // 2, raw_alert(POISON_HOST, user="ro\x00ot"))
            assert runtime.broker is not None
            await runtime.broker.publish(settings.alerts_queue, [orjson.dumps(alerts)])
            assert runtime.store is not None
            store = runtime.store
            async with asyncio.timeout(WAIT):
                while await store.count() < GOOD or await store.count_dead_letters() < 1:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # nothing more arrives
            assert await store.count() == GOOD
            page = await store.list_dead_letters(10)
            [letter] = page.items
            assert letter.queue == settings.alerts_queue
            # Refused by the database (poison) or, once the model refuses NUL, by validation.
            assert letter.reason.startswith(("poison: ", "invalid alert"))
            assert "NUL" in letter.reason or "invalid alert" in letter.reason
            assert "\\u0000" in letter.body
            assert [a["server_hostname"] for a in orjson.loads(letter.body)] == [POISON_HOST]
        finally:
            await runtime.aclose()
            await drop_rabbitmq(
                {settings.events_queue, settings.alerts_queue, settings.dead_letter_queue},
                {f"{settings.dead_letter_queue}.dlx"},
            )
