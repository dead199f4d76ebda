"""Parser for the Kubernetes API server audit log: one audit.k8s.io/v1 `Event` JSON object per line
(the log backend's `--audit-log-path` file, or a webhook receiver writing the same lines)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from auditflow.model.event import Event
from auditflow.model.limits import timestamp_problem
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.emit import clean_text
from auditflow.parsers.eventbuild import make_event

# RequestReceived and ResponseStarted repeat the request that ResponseComplete reports in full.
_REPORTED_STAGES = frozenset({"ResponseComplete", "Panic"})
_OTHER_STAGES = frozenset({"RequestReceived", "ResponseStarted"})
# Copied under details.kubernetes.audit with the audit log's own names, so rules written against
# the API server's schema (Sigma: verb, objectRef.resource) apply directly. requestObject (level
# Request and above) is what tells a binding to cluster-admin from any other; responseObject
# repeats it and is left in event.original.
_KEPT = (
    "auditID", "level", "stage", "verb", "requestURI", "objectRef", "user", "impersonatedUser",
    "sourceIPs", "userAgent", "responseStatus", "annotations", "requestObject",
    "requestReceivedTimestamp", "stageTimestamp",
)  # fmt: skip


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        # naive stamps are UTC; converting here keeps an out-of-range offset from failing later
        parsed = parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None
    return parsed if timestamp_problem(parsed) is None else None


def _without_nul(line: str) -> str:
    # an escaped NUL would decode into text that PostgreSQL refuses to store
    return line.replace("\\u0000", "\\ufffd") if "\\u0000" in line else line


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class K8sAuditParser:
    name: ClassVar[str] = "k8s-audit"

    def __init__(self, context: SourceContext | None = None) -> None:
        self.context = context or SourceContext()

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed:
        line = clean_text(line).strip()
        if not line:
            return []
        try:
            record = orjson.loads(_without_nul(line))
        except orjson.JSONDecodeError:
            return Unparsed("k8s-audit-not-json")
        if not isinstance(record, dict) or record.get("kind") != "Event":
            return Unparsed("k8s-audit-not-an-event")
        if not str(record.get("apiVersion", "")).startswith("audit.k8s.io/"):
            return Unparsed("k8s-audit-unknown-api-version")
        stage = record.get("stage")
        if stage in _OTHER_STAGES:
            return []
        if stage not in _REPORTED_STAGES:
            return Unparsed("k8s-audit-unknown-stage")
        timestamp = _timestamp(record.get("stageTimestamp")) or _timestamp(record.get("requestReceivedTimestamp"))
        if timestamp is None:
            return Unparsed("k8s-audit-bad-timestamp")
        return [self._event(line, record, timestamp, key)]

    def flush(self) -> Sequence[Event]:
        return []

    def pending_key(self) -> str | None:
        return None  # one JSON line is one whole request

    def _event(self, line: str, record: dict[str, Any], timestamp: datetime, key: str | None) -> Event:
        user = _dict(record.get("user"))
        username = user.get("username") if isinstance(user.get("username"), str) else None
        code = _dict(record.get("responseStatus")).get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            success: bool | None = code < 400
        else:
            # a Panic stage has no response: the request failed
            success = False if record.get("stage") == "Panic" else None
        verb = record.get("verb")
        details: dict[str, Any] = {
            "event": {
                "original": line,
                "action": verb if isinstance(verb, str) else "unknown",
                "outcome": "unknown" if success is None else "success" if success else "failure",
                "dataset": "k8s-audit",
            },
            "kubernetes": {"audit": {name: record[name] for name in _KEPT if name in record}},
        }
        if username is not None:
            details["user"] = {"name": username}
            impersonated = _dict(record.get("impersonatedUser")).get("username")
            if isinstance(impersonated, str):
                details["user"]["target"] = {"name": impersonated}
        source_ips = record.get("sourceIPs")
        if isinstance(source_ips, list) and source_ips and isinstance(source_ips[0], str):
            details["source"] = {"ip": source_ips[0]}
        if isinstance(agent := record.get("userAgent"), str):
            details["user_agent"] = {"original": agent}
        if isinstance(uri := record.get("requestURI"), str):
            details["url"] = {"original": uri}
        return make_event(
            event_type="k8s_audit",
            timestamp=timestamp,
            details=details,
            key=key,
            index=0,
            source_service="kube-apiserver",
            server_hostname=self.context.host or "kubernetes",
            user_id=username,
            action_result=None if success is None else "SUCCESS" if success else "FAILURE",
        )
