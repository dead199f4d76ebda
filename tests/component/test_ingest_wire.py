"""The ingest endpoint of a process whose events queue is consumed elsewhere (RabbitMQ): the usual
body is checked straight into the wire form, or, when every event carries its id and time and the
body fits one message, published as it was sent. The same events reach the broker as when the
events are built first, bad bodies are refused alike, and the alerts come out as before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from pydantic import TypeAdapter

from auditflow.codec import decode_events
from auditflow.model.event import Event
from tests.component.conftest import Embedded

_EVENTS = TypeAdapter(list[Event])


@pytest.fixture
def published(embedded: Embedded, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The runtime's ingestor as it is in front of a broker of another process (no events handed
    over in the process: the consumer decodes the bytes), and the bodies it publishes."""
    ingestor = embedded.runtime.ingestor
    assert ingestor is not None
    assert ingestor.in_process
    monkeypatch.setattr(ingestor, "_local", False)
    assert not ingestor.in_process
    broker = ingestor.broker
    bodies: list[bytes] = []
    offer = broker.offer

    async def recording(queue: str, sent: Sequence[bytes], **kwargs: Any) -> None:
        bodies.extend(sent)
        await offer(queue, sent, **kwargs)

    monkeypatch.setattr(broker, "offer", recording)
    return bodies


def _as_model_would(items: list[Mapping[str, Any]], ids: list[str], bodies: list[bytes]) -> bytes:
    """The body the model's serializer writes for `items`, with the id and time that intake chose
    for those that had none."""
    published = [item for body in bodies for item in orjson.loads(body)]
    filled = [
        {**item, "event_id": item.get("event_id", event_id), "timestamp": item.get("timestamp", sent["timestamp"])}
        for item, event_id, sent in zip(items, ids, published, strict=True)
    ]
    return _EVENTS.dump_json(_EVENTS.validate_python(filled))


async def test_the_wire_body_is_the_models_body(
    embedded: Embedded, published: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_this_way(*args: object, **kwargs: object) -> None:
        raise AssertionError("the usual body does not build the events")

    monkeypatch.setattr(embedded.runtime.ingestor, "submit", not_this_way)
    now = datetime.now(UTC).replace(microsecond=0)
    items: list[Mapping[str, Any]] = [
        {"event_type": "user_login", "user_id": "alice", "details": {"n": [1, 2.5, None], "s": "é😀"}},
        {
            "event_type": "file_modified",
            "event_id": "0B6C3C2E-4A8E-4F2B-9A57-0F1C3E7B9A21",
            "timestamp": (now - timedelta(minutes=1)).isoformat().replace("+00:00", ".123456+01:30"),
            "severity": "ERROR",
            "server_hostname": "h1",
        },
        {"event_type": "x", "timestamp": (now - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.5Z")},
    ]
    response = await embedded.post_events(items)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 3
    ids = answer["event_ids"]
    assert ids[1] == "0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a21"
    assert all(str(UUID(event_id)) == event_id for event_id in ids)
    assert len(published) == 1
    assert published[0] == _as_model_would(items, ids, published)


async def test_a_body_larger_than_a_batch_is_split_as_before(embedded: Embedded, published: list[bytes]) -> None:
    ingestor = embedded.runtime.ingestor
    assert ingestor is not None
    count = ingestor.batch_size * 2 + 1
    items: list[Mapping[str, Any]] = [{"event_type": "user_logout", "user_id": f"u{i}"} for i in range(count)]
    response = await embedded.post_events(items)
    assert response.status_code == 202, response.text
    assert [len(orjson.loads(body)) for body in published] == [ingestor.batch_size, ingestor.batch_size, 1]
    assert [item["event_id"] for body in published for item in orjson.loads(body)] == response.json()["event_ids"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'[{"event_type":"x"},{"event_type":"x","extra":1}]', ["body", 1, "extra"]),
        (b'{"event_type":"x","user_id":"ro\\u0000ot"}', ["body", "user_id"]),
        (b'[{"event_type":"x","details":{"n":123456789012345678901234567890}}]', ["body", 0, "details"]),
        (b'[{"event_type":"x","timestamp":"2999-01-01T00:00:00Z"}]', ["body", 0, "timestamp"]),
    ],
)
async def test_bad_bodies_are_refused_by_name_and_nothing_is_published(
    embedded: Embedded, published: list[bytes], body: bytes, loc: list[object]
) -> None:
    response = await embedded.client.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert published == []


async def test_a_body_the_model_must_read_is_published_through_the_events(
    embedded: Embedded, published: list[bytes]
) -> None:
    # A naive time is the model's to decide (taken as UTC): accepted, and written as the model writes it.
    at = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0, tzinfo=None)
    items: list[Mapping[str, Any]] = [{"event_type": "x", "timestamp": at.isoformat()}]
    response = await embedded.post_events(items)
    assert response.status_code == 202, response.text
    assert published == [_as_model_would(items, response.json()["event_ids"], published)]


async def test_failed_logins_through_the_wire_form_still_raise_the_alert(
    embedded: Embedded, published: list[bytes]
) -> None:
    failures = [
        {"event_type": "user_login", "user_id": "mallory", "server_hostname": "h9", "action_result": "FAILURE"}
        for _ in range(5)
    ]
    response = await embedded.post_events(failures)
    assert response.status_code == 202, response.text
    assert published
    alerts = await embedded.alerts()
    assert any(alert["rule_id"] == "failed-login-burst" for alert in alerts), alerts


async def test_a_body_with_every_id_and_time_goes_on_as_sent(embedded: Embedded, published: list[bytes]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    items: list[Mapping[str, Any]] = [
        {
            "event_type": "user_login",
            "event_id": "0B6C3C2E-4A8E-4F2B-9A57-0F1C3E7B9A2" + str(n),
            "timestamp": (now - timedelta(seconds=n)).isoformat().replace("+00:00", "+02:00"),
            "user_id": "alice",
            "details": {"n": [1, 2.5, None], "s": "é😀"},
        }
        for n in range(3)
    ]
    body = b"[\n  " + b",\n  ".join(orjson.dumps(item) for item in items) + b"\n]"
    response = await embedded.client.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    assert response.json()["event_ids"] == [f"0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a2{n}" for n in range(3)]
    assert published == [body]
    # What analysis reads from it: the events the model makes of the items.
    assert decode_events(body).items == _EVENTS.validate_python(items)


async def test_a_body_with_an_event_to_fill_in_is_written_again(embedded: Embedded, published: list[bytes]) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    items: list[Mapping[str, Any]] = [
        {"event_type": "x", "event_id": "0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a21", "timestamp": at},
        {"event_type": "x", "timestamp": at},  # no id: intake gives it one
    ]
    response = await embedded.post_events(items)
    assert response.status_code == 202, response.text
    assert published == [_as_model_would(items, response.json()["event_ids"], published)]


async def test_a_complete_body_larger_than_a_batch_is_split(embedded: Embedded, published: list[bytes]) -> None:
    ingestor = embedded.runtime.ingestor
    assert ingestor is not None
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    count = ingestor.batch_size + 1
    items = [{"event_type": "x", "event_id": str(UUID(int=i + 1, version=4)), "timestamp": at} for i in range(count)]
    response = await embedded.post_events(items)
    assert response.status_code == 202, response.text
    assert [len(orjson.loads(body)) for body in published] == [ingestor.batch_size, 1]
    assert [item["event_id"] for body in published for item in orjson.loads(body)] == response.json()["event_ids"]
