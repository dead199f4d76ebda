from __future__ import annotations

import orjson

from auditflow.codec import decode_alerts, decode_events, encode_events
from auditflow.model import Event


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
