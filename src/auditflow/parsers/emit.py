"""How the program parsers make events: one `Message` per log line (its header fields and text)
builds every event of that line with the shared vocabulary (`details.event.*`, `process.*`, ...).

Events are built with `Event.model_construct`: the parsers guarantee the types and the event type
pattern, and this module guarantees what validation would otherwise check (UTC timestamps, string
lengths, the size of `details`), which keeps the per-line cost low enough for bulk ingestion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson

from auditflow.model.event import MAX_DETAILS_BYTES, Event, Severity
from auditflow.model.timeutil import to_utc
from auditflow.parsers.base import SourceContext, event_id_for

# Model limits (kept in step with auditflow.model.event).
MAX_HOSTNAME = 255
MAX_USER = 255
MAX_SERVICE = 128
# Below this many characters a line cannot push `details` past its limit, whatever it holds:
# a character may take six bytes in JSON (`\u0001`), and a line is stored up to four times
# (`event.original`, `message`, and a sudo command as `command` and `process.command_line`).
_CHEAP_LINE = MAX_DETAILS_BYTES // 32


_new = object.__new__
_set = object.__setattr__
_ALL_FIELDS = frozenset(Event.model_fields)


def cap(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]


def clean_text(value: str) -> str:
    """Make text safe to store: no NUL characters (PostgreSQL text refuses them) and no lone
    surrogates (from undecodable bytes; JSON encoders refuse them)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _replace_surrogates(value)
    return value


def _replace_surrogates(value: str) -> str:
    # Bytes a source decoded with surrogateescape go back to bytes, each invalid one becoming one
    # U+FFFD; any other lone surrogate is passed through as bytes that decode to U+FFFD as well.
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class Message:
    """One log line as the program parsers see it: header fields, the message text, and how to
    make its events. `dataset` names the parser family (`sshd`, `sudo`, ...) for `event.dataset`."""

    __slots__ = ("context", "dataset", "host", "key", "pid", "program", "raw", "service", "text", "timestamp")

    def __init__(
        self,
        program: str,
        text: str,
        *,
        timestamp: datetime,  # aware, UTC, whole milliseconds (`to_utc`)
        host: str | None,
        pid: int | None,
        raw: str,
        context: SourceContext,
        key: str | None,
        service: str | None = None,
    ) -> None:
        self.program = program
        self.text = text
        self.timestamp = timestamp
        self.host = host
        self.pid = pid
        self.raw = raw
        self.context = context
        self.key = key
        self.service = cap(service or program, MAX_SERVICE)
        self.dataset = self.service

    def event(
        self,
        event_type: str,
        action: str,
        *,
        result: str | None = None,
        user: str | None = None,
        severity: Severity = Severity.INFO,
        index: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        """One event of this line. `result` is SUCCESS/FAILURE (or None where neither applies),
        `extra` adds detail keys (nested dicts are merged one level deep, e.g. `user`)."""
        outcome = "success" if result == "SUCCESS" else "failure" if result == "FAILURE" else "unknown"
        process: dict[str, Any] = {"name": self.program}
        if self.pid is not None:
            process["pid"] = self.pid
        host = self.host or self.context.host
        details: dict[str, Any] = {
            "event": {"original": self.raw, "action": action, "outcome": outcome, "dataset": self.dataset},
            "process": process,
            "message": self.text,
        }
        if host is not None:
            if len(host) > MAX_HOSTNAME:
                host = host[:MAX_HOSTNAME]
            details["host"] = {"hostname": host}
        if user is not None:
            if len(user) > MAX_USER:
                user = user[:MAX_USER]
            details["user"] = {"name": user}
        if extra:
            for name, value in extra.items():
                current = details.get(name)
                if isinstance(current, dict) and isinstance(value, dict):
                    details[name] = {**current, **value}
                else:
                    details[name] = value
        if len(self.raw) > _CHEAP_LINE:
            _fit_details(details)
        return construct_event(
            event_type=event_type,
            event_id=event_id_for(self.key, index) if self.key is not None else uuid4(),
            timestamp=self.timestamp,
            source_service=self.service,
            server_hostname=host,
            user_id=user,
            severity=severity,
            action_result=result,
            details=details,
        )


def _construct_directly(**values: Any) -> Event:
    """What `Event.model_construct` does when every field is given, without its per-field loop
    (a third of the cost of parsing a line)."""
    event = _new(Event)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(_ALL_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def _direct_construction_works() -> bool:
    """The direct construction relies on pydantic's instance layout: it is used only when it makes
    exactly what `model_construct` makes (checked once, at import)."""
    values: dict[str, Any] = {
        "event_type": "probe",
        "event_id": uuid4(),
        "timestamp": to_utc(datetime(2026, 1, 1, tzinfo=UTC)),
        "source_service": "probe",
        "server_hostname": None,
        "user_id": None,
        "severity": Severity.INFO,
        "action_result": None,
        "details": {"event": {"original": "probe"}},
    }
    if set(values) != set(Event.model_fields):
        return False
    try:
        direct, reference = _construct_directly(**values), Event.model_construct(**values)
        return (
            direct == reference
            and direct.model_fields_set == reference.model_fields_set
            and direct.model_dump_json() == reference.model_dump_json()
        )
    except Exception:  # any layout change: fall back to the public constructor
        return False


def _fit_details(details: dict[str, Any]) -> None:
    """Shorten the long texts of a very long line (the line, its message, a command) until
    `details` fits the event size limit; `event.truncated` says that it happened."""
    while len(orjson.dumps(details)) > MAX_DETAILS_BYTES:
        if not _halve_long_strings(details):
            break
        details["event"]["truncated"] = True


def _halve_long_strings(node: dict[str, Any]) -> bool:
    changed = False
    for name, value in node.items():
        if isinstance(value, str) and len(value) > 64:
            node[name] = value[: len(value) // 2]
            changed = True
        elif isinstance(value, dict):
            changed = _halve_long_strings(value) or changed
    return changed


construct_event = _construct_directly if _direct_construction_works() else Event.model_construct
