"""Dead letters through the API of the embedded pipeline: listed with paging, replayed to their
queue (and back when they fail again), purged, counted in the metrics, and behind the token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

import orjson
import pytest

from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.model.event import Event
from tests.component.conftest import Embedded

POISON_HOST = "poison-host"


def file_event(host: str) -> dict[str, Any]:
    return {"event_type": "file_modified", "server_hostname": host, "details": {"resource": "/etc/shadow"}}


def inject_fault(embedded: Embedded) -> Callable[[], None]:
    """The detector fails on any batch holding the poison event; returns the fix."""
    assert embedded.runtime.analysis is not None
    detector = embedded.runtime.analysis.detector
    process = detector.process

    async def faulty(events: Sequence[Event]) -> Any:
        if any(e.server_hostname == POISON_HOST for e in events):
            raise RuntimeError("detector fault")
        return await process(events)

    detector.process = faulty  # type: ignore[method-assign]
    return lambda: setattr(detector, "process", process)


async def letters(embedded: Embedded, expected: int, **params: Any) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            await embedded.runtime.settle()
            response = await embedded.client.get("/api/v1/dead-letters", params=params)
            assert response.status_code == 200, response.text
            page: dict[str, Any] = response.json()
            if page["total"] >= expected:
                return page
            await asyncio.sleep(0.05)


async def publish_raw(embedded: Embedded, *bodies: bytes) -> None:
    assert embedded.runtime.broker is not None
    await embedded.runtime.broker.publish(embedded.runtime.settings.events_queue, list(bodies))


async def test_a_poison_event_is_listed_replayed_after_a_fix_and_then_alerts(embedded: Embedded) -> None:
    fix = inject_fault(embedded)
    assert (await embedded.post_events([file_event("good-1"), file_event(POISON_HOST)])).status_code == 202
    page = await letters(embedded, 1)
    [letter] = page["items"]
    assert page["total"] == 1
    assert page["next_cursor"] is None
    assert letter["queue"] == embedded.runtime.settings.events_queue
    assert letter["reason"] == "poison: RuntimeError: detector fault"
    assert [e["server_hostname"] for e in orjson.loads(letter["body"])] == [POISON_HOST]
    assert {a["server_hostname"] for a in await embedded.alerts()} == {"good-1"}

    # Replayed while the fault is still there: it fails again and comes back as a new letter.
    replay = await embedded.client.post("/api/v1/dead-letters/replay", json={"ids": [letter["id"]]})
    assert replay.json() == {"replayed": 1, "purged": 0, "remaining": 0}
    [again] = (await letters(embedded, 1))["items"]
    assert again["id"] != letter["id"]
    assert again["headers"]["x-auditflow-replay-of"] == letter["id"]

    fix()
    replay = await embedded.client.post("/api/v1/dead-letters/replay", json={"all": True})
    assert replay.status_code == 200, replay.text
    assert replay.json()["replayed"] == 1
    assert {a["server_hostname"] for a in await embedded.alerts()} == {"good-1", POISON_HOST}
    assert (await letters(embedded, 0))["total"] == 0

    metrics = (await embedded.client.get("/metrics")).text
    queue = embedded.runtime.settings.events_queue
    assert f'auditflow_dead_letters_total{{queue="{queue}",reason="poison"}} ' in metrics
    assert "auditflow_dead_letters_stored 0.0" in metrics


async def test_pages_follow_the_cursor_and_purge_removes_for_good(embedded: Embedded) -> None:
    await publish_raw(embedded, b"{broken", b"[1]", b'"text"')
    first = await letters(embedded, 3, limit=2)
    assert len(first["items"]) == 2
    second = await letters(embedded, 3, limit=2, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    items = first["items"] + second["items"]
    assert len({i["id"] for i in items}) == 3
    assert {i["reason"].split(":")[0] for i in items} == {
        "malformed JSON",
        "invalid event at index 0",
        "body must be a JSON object or array",
    }
    purge = await embedded.client.post("/api/v1/dead-letters/purge", json={"ids": [items[0]["id"]]})
    assert purge.json() == {"replayed": 0, "purged": 1, "remaining": 2}
    purge = await embedded.client.post("/api/v1/dead-letters/purge", json={"all": True})
    assert purge.json() == {"replayed": 0, "purged": 2, "remaining": 0}


async def test_bad_requests_are_refused_with_the_field_named(embedded: Embedded) -> None:
    bad_cursor = await embedded.client.get("/api/v1/dead-letters", params={"cursor": "nope"})
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    nothing = await embedded.client.post("/api/v1/dead-letters/replay", json={})
    assert nothing.status_code == 422
    assert "ids" in nothing.json()["detail"][0]["msg"]
    unknown = await embedded.client.post("/api/v1/dead-letters/purge", json={"every": True})
    assert unknown.status_code == 422
    assert (await embedded.client.get("/api/v1/dead-letters", params={"limit": 101})).status_code == 422


@pytest.mark.parametrize(("method", "path"), [("GET", ""), ("POST", "/replay"), ("POST", "/purge")])
async def test_every_route_needs_a_token(embedded: Embedded, method: str, path: str) -> None:
    response = await embedded.client.request(
        method, f"/api/v1/dead-letters{path}", json={"all": True}, headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401


async def test_a_letter_from_a_queue_the_pipeline_does_not_consume_is_not_replayed(embedded: Embedded) -> None:
    assert embedded.runtime.store is not None
    stray = StoredDeadLetter(uuid4(), "some_other_queue", "poison: x", 1, {}, b"[]")
    assert await embedded.runtime.store.add_dead_letters([stray, stray]) == 1
    replay = await embedded.client.post("/api/v1/dead-letters/replay", json={"all": True})
    assert replay.json() == {"replayed": 0, "purged": 0, "remaining": 1}
