from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import TypeAdapter

from auditflow.backends.broker import Delivery, LocalBody
from auditflow.backends.broker.memory import HANDOVER_MAX_READY, MemoryBroker
from auditflow.codec import decode_alerts, decode_events, encode_alerts, encode_events
from auditflow.model import Event
from auditflow.model.event import Severity


class StrSubclass(str):
    __slots__ = ()


@dataclass
class Point:
    x: int
    y: int


def test_round_trip_of_an_event_batch() -> None:
    events = [Event(event_type="user_login", user_id=f"u{i}") for i in range(3)]
    decoded = decode_events(encode_events(events))
    assert decoded.items == events
    assert decoded.rejected == []


def test_a_single_object_is_accepted() -> None:
    decoded = decode_events(b'{"event_type": "user_login"}')
    assert len(decoded.items) == 1


def test_invalid_items_are_rejected_one_by_one_and_the_rest_kept() -> None:
    body = orjson.dumps([{"event_type": "ok"}, {"event_type": "BAD TYPE"}, {"event_type": "ok", "extra": 1}])
    decoded = decode_events(body)
    assert len(decoded.items) == 1
    assert [r.index for r in decoded.rejected] == [1, 2]
    assert "event_type" in decoded.rejected[0].reason
    assert "put custom data under 'details'" in decoded.rejected[1].reason


def test_malformed_json_is_rejected_whole() -> None:
    decoded = decode_events(b"{not json")
    assert decoded.items == []
    assert decoded.rejected[0].index is None
    assert decoded.rejected[0].reason.startswith("malformed JSON")


def test_a_scalar_body_is_rejected() -> None:
    decoded = decode_alerts(b"42")
    assert decoded.rejected[0].reason == "body must be a JSON object or array"


def _events(count: int) -> list[Event]:
    return [Event(event_type="user_login", user_id=f"u{i}") for i in range(count)]


def test_handed_over_items_are_used_only_when_they_are_the_right_model() -> None:
    events = _events(2)
    body = encode_events(events)
    assert all(a is b for a, b in zip(decode_events(body, known=events).items, events, strict=True))
    # Alerts handed to an event decoder (a mix-up of queues) are ignored: the bytes decide.
    decoded = decode_events(body, known=["not an event"])
    assert decoded.items == events
    assert decoded.items[0] is not events[0]


def test_a_local_body_is_the_same_bytes_and_carries_its_items_once() -> None:
    events = _events(3)
    body = encode_events(events, local=True)
    assert isinstance(body, LocalBody)
    assert decode_events(bytes(body)).items == events
    assert body.take_decoded() == events
    assert body.take_decoded() is None
    alerts_body = encode_alerts([], local=True)
    assert isinstance(alerts_body, LocalBody)
    assert decode_alerts(alerts_body, known=alerts_body.take_decoded()).items == []


async def test_the_in_process_broker_hands_items_to_the_first_delivery_only() -> None:
    events = _events(2)
    seen: list[object] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.decoded for d in batch)
        if len(seen) == 1:
            raise RuntimeError("fail once, so that the message is delivered again")
        await broker.stop_consuming("q")

    async with MemoryBroker("memory://handover") as broker:
        await broker.publish("q", [encode_events(events, local=True)])
        async with asyncio.timeout(5):
            await broker.consume("q", handler, batch_size=1, linger_ms=0)
    assert seen[0] == events
    assert seen[1] is None  # redelivered: decoded from the bytes


async def test_a_backlog_holds_bytes_not_items() -> None:
    async with MemoryBroker("memory://backlog") as broker:
        bodies = [encode_events(_events(1), local=True) for _ in range(HANDOVER_MAX_READY + 5)]
        for body in bodies:
            await broker.publish("q", [body])
        carried: list[bool] = []

        async def handler(batch: Sequence[Delivery]) -> None:
            carried.extend(d.decoded is not None for d in batch)
            if len(carried) == len(bodies):
                await broker.stop_consuming("q")

        async with asyncio.timeout(5):
            await broker.consume("q", handler, batch_size=10, linger_ms=0)
    assert carried == [True] * HANDOVER_MAX_READY + [False] * 5
    assert all(isinstance(body, LocalBody) and body.take_decoded() is None for body in bodies)


class _Colour(enum.Enum):
    RED = "red"


_DETAIL_VALUES: list[object] = [
    *(0.1, 1e16, 1e15, 1e-7, -0.0, 123456789.123, 2**63 - 1, -(2**63), 1.7976931348623157e308, 5e-324, 1e22, 3.0),
    *("é😀", '\x01\x1f\x7f\u2028\u2029"\\/</script>', "\t\n\r\b\f", "", [], {}, [[{"a": None}]], True, False, None),
    *(uuid.UUID("0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a21"), (1, "two"), _Colour.RED),
    # orjson would write these differently (or not at all): the model's serializer writes the body.
    *(datetime(2026, 1, 2, 3, 4, 5, 678912, tzinfo=UTC), StrSubclass("sub"), Point(1, 2)),
]


@pytest.mark.parametrize("value", _DETAIL_VALUES, ids=repr)
def test_the_wire_body_is_byte_for_byte_what_the_model_writes(value: object) -> None:
    offset = timezone(timedelta(hours=-3, minutes=-30))
    events = [
        Event(
            event_type="user_login",
            timestamp=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=offset),
            severity=Severity.CRITICAL,
            user_id="\u2028é",
            details={"k": value, "ü": [value, {"n": value}]},
        ),
        Event(event_type="x.y", timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        Event(event_type="x.y", timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), action_result="OK"),
        Event(event_type="x.y"),
    ]
    body = encode_events(events)
    assert body == TypeAdapter(list[Event]).dump_json(events)
    assert [event.event_id for event in decode_events(body).items] == [event.event_id for event in events]


def test_an_event_not_built_by_validation_is_written_by_the_model() -> None:
    # Neither normalised to UTC nor to milliseconds: written as the model's serializer writes it.
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    constructed = Event.model_construct(event_type="x", severity=Severity.INFO, timestamp=at)
    events = [constructed, Event(event_type="y")]
    body = encode_events(events)
    assert body == TypeAdapter(list[Event]).dump_json(events)
    assert b'"2026-01-02T01:04:05.123Z"' in body
