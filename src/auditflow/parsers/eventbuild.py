"""Builds an `Event` from what a structured parser (auditd, Kubernetes audit) extracted, without
ever raising: top-level strings are capped to the model's limits and over-large `details` are cut
down the way the program parsers do it (`event.truncated`), so any input becomes an event or a
clear `Unparsed`, never an exception in the pipeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

import orjson

from auditflow.model.event import MAX_DETAILS_BYTES, Event, Severity
from auditflow.model.limits import json_problem
from auditflow.model.timeutil import to_utc
from auditflow.parsers.base import event_id_for
from auditflow.parsers.emit import MAX_HOSTNAME, MAX_SERVICE, MAX_USER, cap, construct_event

# What is kept of the raw text when details would pass the size limit; its length is recorded.
_ORIGINAL_KEEP = 8 * 1024


def _fit(details: dict[str, Any]) -> dict[str, Any]:
    """`details` itself when it fits the limit and can be stored, else a copy with the raw text
    shortened and, if that is not enough, only the event block left."""
    problem = json_problem(details)
    if problem is not None:
        # Nested too deep or an integer past 64 bits in the copied input: keep the line, say why.
        event = dict(details.get("event") or {})
        return {"event": {**event, "truncated": True, "dropped": problem[:200]}}
    if len(orjson.dumps(details)) <= MAX_DETAILS_BYTES:
        return details
    event = dict(details.get("event") or {})
    original = str(event.get("original", ""))
    event.update(original=original[:_ORIGINAL_KEEP], original_length=len(original), truncated=True)
    smaller = {**details, "event": event}
    if len(orjson.dumps(smaller)) <= MAX_DETAILS_BYTES:
        return smaller
    return {"event": event}


def make_event(
    *,
    event_type: str,
    timestamp: datetime,
    details: dict[str, Any],
    key: str | None,
    index: int,
    source_service: str,
    server_hostname: str | None,
    user_id: str | None = None,
    action_result: str | None = None,
    severity: Severity = Severity.INFO,
) -> Event:
    """An event whose fields the caller made valid (a constant event type, an aware timestamp,
    JSON-native details of clean text); built unvalidated like the program parsers' events,
    because this function enforces what validation would check."""
    return construct_event(
        event_type=event_type,
        event_id=event_id_for(key, index) if key is not None else uuid4(),
        timestamp=to_utc(timestamp),
        source_service=cap(source_service, MAX_SERVICE),
        server_hostname=cap(server_hostname, MAX_HOSTNAME) if server_hostname else None,
        user_id=cap(user_id, MAX_USER) if user_id else None,
        severity=severity,
        action_result=action_result,
        details=_fit(details),
    )
