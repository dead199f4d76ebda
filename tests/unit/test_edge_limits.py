"""The rules of what an event may hold, on the model, the broker decoder and the log parsers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from auditflow.backends.store.queries import decode_cursor, encode_cursor
from auditflow.codec import decode_events
from auditflow.model.event import Event
from auditflow.model.limits import MAX_DETAILS_DEPTH, TIME_BOUNDS_CONTEXT, EventTimeBounds
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.syslog import SyslogParser


def nested(depth: int) -> dict[str, Any]:
    """`details` that is `depth` objects deep (`{}` is 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def problem(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        Event.model_validate({"event_type": "user_login", **fields})
    errors = caught.value.errors()
    assert len(errors) == 1
    return f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']}"


@pytest.mark.parametrize("field", ["user_id", "server_hostname", "source_service", "action_result"])
def test_nul_in_a_text_field_is_refused_by_name(field: str) -> None:
    assert problem(**{field: "ro\x00ot"}).startswith(f"{field}: ")
    assert "NUL" in problem(**{field: "ro\x00ot"})


@pytest.mark.parametrize(
    ("details", "where"),
    [
        ({"path": "/etc/\x00shadow"}, "details.path"),
        ({"k\x00": 1}, "key"),
        ({"list": ["ok", "\ud800"]}, "details.list[1]"),
        ({"n": 2**63}, "details.n: integer outside the 64-bit range"),
        ({"n": [-(2**63) - 1]}, "details.n[0]"),
        ({"x": float("inf")}, "details.x"),
    ],
)
def test_unstorable_details_are_refused_with_their_path(details: dict[str, Any], where: str) -> None:
    assert where in problem(details=details)


def test_details_depth_limit() -> None:
    Event(event_type="x", details=nested(MAX_DETAILS_DEPTH))
    assert f"nested more than {MAX_DETAILS_DEPTH} levels" in problem(details=nested(MAX_DETAILS_DEPTH + 1))
    # Past orjson's own recursion limit, which used to surface as an exception instead of a message.
    assert "nested more than" in problem(details=nested(300))


def test_64_bit_integers_at_the_limits_are_kept() -> None:
    event = Event(event_type="x", details={"max": 2**63 - 1, "min": -(2**63)})
    assert event.details == {"max": 2**63 - 1, "min": -(2**63)}


@pytest.mark.parametrize(
    "stamp", ["9999-12-31T23:59:59-01:00", "9999-12-31T12:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"]
)
def test_timestamps_outside_the_computable_range_are_refused(stamp: str) -> None:
    assert problem(timestamp=stamp).startswith("timestamp: ")


def test_time_bounds_apply_only_where_intake_passes_them() -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    bounds = {TIME_BOUNDS_CONTEXT: EventTimeBounds.from_seconds(max_future=300, max_age=3600)}
    Event.model_validate({"event_type": "x", "timestamp": ahead})  # stored alerts keep their events
    with pytest.raises(ValidationError, match="in the future"):
        Event.model_validate({"event_type": "x", "timestamp": ahead}, context=bounds)
    Event.model_validate({"event_type": "x", "timestamp": ahead - timedelta(minutes=6)}, context=bounds)
    old = datetime.now(UTC) - timedelta(hours=2)
    with pytest.raises(ValidationError, match="older than the accepted maximum age of 1 hour"):
        Event.model_validate({"event_type": "x", "timestamp": old}, context=bounds)
    unlimited = {TIME_BOUNDS_CONTEXT: bounds[TIME_BOUNDS_CONTEXT].without_age_limit()}
    Event.model_validate({"event_type": "x", "timestamp": old}, context=unlimited)


def test_broker_decoder_rejects_only_the_bad_event() -> None:
    good = {"event_type": "file_modified", "user_id": "alice", "details": {"resource": "/etc/shadow"}}
    bad = {"event_type": "file_modified", "user_id": "ro\u0000ot", "details": {"resource": "/etc/shadow"}}
    decoded = decode_events(orjson.dumps([bad, good]))
    assert [event.user_id for event in decoded.items] == ["alice"]
    assert [(r.index, "user_id" in r.reason) for r in decoded.rejected] == [(0, True)]


def test_broker_decoder_names_a_large_integer_instead_of_rounding_it() -> None:
    body = b'[{"event_type":"x","details":{"n":123456789012345678901234567890}},{"event_type":"y"}]'
    decoded = decode_events(body)
    assert [event.event_type for event in decoded.items] == ["y"]
    assert "details.n: integer outside the 64-bit range" in decoded.rejected[0].reason


def test_broker_decoder_applies_the_future_limit_it_is_given() -> None:
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = orjson.dumps([{"event_type": "x", "timestamp": ahead}, {"event_type": "y"}])
    assert len(decode_events(body).items) == 2
    decoded = decode_events(body, time_bounds=EventTimeBounds.from_seconds(300, 0))
    assert [event.event_type for event in decoded.items] == ["y"]
    assert "timestamp" in decoded.rejected[0].reason


def test_cursor_with_an_out_of_range_number_is_invalid() -> None:
    from base64 import urlsafe_b64encode
    from uuid import uuid4

    key = uuid4()
    assert decode_cursor(encode_cursor(123, key)) == (123, key)
    forged = urlsafe_b64encode(f"{'9' * 400}:{key.hex}".encode()).decode()
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(forged)
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor("A" * 5000)


def test_syslog_timestamps_out_of_range_are_bad_timestamps() -> None:
    parser = SyslogParser(SourceContext())
    for stamp in ("9999-12-31T23:59:59-01:00", "9999-12-31T06:00:00Z"):
        line = f"{stamp} host sshd[1]: Failed password for root from 10.0.0.1 port 22 ssh2"
        assert parser.feed(line) == Unparsed("bad-timestamp")


def test_auditd_time_past_the_range_is_a_bad_timestamp() -> None:
    line = "type=USER_AUTH msg=audit(253402300000.000:7): pid=1 uid=0 msg='acct=\"root\" res=failed'"
    assert AuditdParser(SourceContext()).feed(line) == Unparsed("auditd-bad-timestamp")


def k8s_line(**extra: Any) -> str:
    record = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/configmaps",
        "verb": "create",
        "user": {"username": "alice"},
        "stageTimestamp": "2026-12-02T14:47:33.100Z",
        **extra,
    }
    return orjson.dumps(record).decode()


def test_k8s_audit_deep_or_huge_request_objects_still_make_a_valid_event() -> None:
    parser = K8sAuditParser(SourceContext())
    for extra in ({"requestObject": nested(100)}, {"requestObject": {"n": 2**63 + 5}}):
        events = parser.feed(k8s_line(**extra))
        assert not isinstance(events, Unparsed)
        (event,) = events
        assert event.details["event"]["truncated"] is True
        Event.model_validate(event.model_dump())


def test_k8s_audit_time_past_the_range_is_a_bad_timestamp() -> None:
    line = k8s_line(stageTimestamp="9999-12-31T23:59:59-01:00")
    assert K8sAuditParser(SourceContext()).feed(line) == Unparsed("k8s-audit-bad-timestamp")


def test_text_that_spells_an_escaped_nul_is_kept() -> None:
    event = Event(event_type="x", user_id="a\\u0000b", details={"line": "a\\u0000b"})
    assert event.details["line"] == "a\\u0000b"


@pytest.mark.parametrize("stamp", [0, 1.5, "0.5", "1700000000", "2.2250738585072014e-308", "-1e5"])
def test_event_times_are_rfc3339_strings_not_unix_numbers(stamp: object) -> None:
    assert "RFC 3339" in problem(timestamp=stamp)
