"""Parser for `journalctl -o json` output: one journal entry per line, whose MESSAGE goes to the
program parsers shared with syslog (picked by SYSLOG_IDENTIFIER, else _COMM), with _HOSTNAME, _PID
and __REALTIME_TIMESTAMP as the header. Entries of the audit transport carry kernel and user-space
audit records: they are rebuilt as audit.log records and assembled by the auditd parser."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson

from auditflow.model.event import Event
from auditflow.model.limits import MAX_EVENT_TIME
from auditflow.model.timeutil import to_millis
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.auditd_record import parse_record
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.emit import clean_text
from auditflow.parsers.programs import parse_message

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Microseconds since the epoch, bounded so that a corrupt value cannot overflow datetime.
# The latest event time the pipeline accepts (`auditflow.model.limits.MAX_EVENT_TIME`).
_MAX_MICROS = (to_millis(MAX_EVENT_TIME) - 1) * 1000


def _text(value: Any) -> str | None:
    """A field's text: journalctl writes a repeated field as a list of its values (the first one
    counts here) and a value that is not valid UTF-8 as a list of byte values."""
    if isinstance(value, list) and value and not all(isinstance(b, int) for b in value):
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        return clean_text(bytes(value).decode("utf-8", "replace"))
    return None


def _micros(value: Any) -> int | None:
    text = _text(value)
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) > _MAX_MICROS:
        return None
    return int(text)


def _pid(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 10 else None


class JournaldParser:
    name: ClassVar[str] = "journald"

    def __init__(self, context: SourceContext | None = None) -> None:
        self.context = context or SourceContext()
        self._audit = AuditdParser(self.context)

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed:
        line = clean_text(line).strip()
        if not line:
            return []
        try:
            entry = orjson.loads(line.replace("\\u0000", "\\ufffd") if "\\u0000" in line else line)
        except orjson.JSONDecodeError:
            return Unparsed("journald-not-json")
        if not isinstance(entry, dict):
            return Unparsed("journald-not-an-entry")
        message = _text(entry.get("MESSAGE"))
        if message is None:
            return Unparsed("journald-no-message")
        if _text(entry.get("_TRANSPORT")) == "audit":
            return self._audit_record(entry, message, line, key)
        micros = _micros(entry.get("__REALTIME_TIMESTAMP"))
        if micros is None:
            return Unparsed("journald-bad-timestamp")
        program = _text(entry.get("SYSLOG_IDENTIFIER")) or _text(entry.get("_COMM"))
        if not program:
            return Unparsed("journald-no-program")
        return parse_message(
            program,
            message,
            timestamp=_EPOCH + timedelta(microseconds=micros),
            host=_text(entry.get("_HOSTNAME")),
            pid=_pid(entry.get("_PID")) or _pid(entry.get("SYSLOG_PID")),
            raw=line,
            context=self.context,
            key=key,
        )

    def flush(self) -> Sequence[Event]:
        return self._audit.flush()

    def pending_key(self) -> str | None:
        return self._audit.pending_key()

    def _audit_record(
        self, entry: dict[str, Any], message: str, line: str, key: str | None
    ) -> Sequence[Event] | Unparsed:
        # journald stores "TYPE body" and moves the audit(sec.ms:serial) stamp into fields
        micros = _micros(entry.get("_SOURCE_REALTIME_TIMESTAMP")) or _micros(entry.get("__REALTIME_TIMESTAMP"))
        serial = _text(entry.get("_AUDIT_ID"))
        record_type, _, body = message.partition(" ")
        if micros is None or serial is None or not (serial.isascii() and serial.isdigit()) or not record_type:
            return Unparsed("journald-audit-incomplete")
        seconds, rest = divmod(micros, 1_000_000)
        host = _text(entry.get("_HOSTNAME"))
        record = parse_record(f"type={record_type} msg=audit({seconds}.{rest // 1000:03d}:{serial}): {body}")
        if isinstance(record, Unparsed):
            return Unparsed("journald-audit-unreadable")
        # the journal entry is the original line; the host names the node as remote logging would
        return self._audit.add(dataclasses.replace(record, raw=line, node=host), key)
