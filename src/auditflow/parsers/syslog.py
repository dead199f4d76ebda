"""Syslog lines: the RFC 3164 header (`Dec  2 16:27:33 host prog[pid]: msg`, also with the ISO 8601
timestamps of rsyslog's high-precision format, and with an optional leading `<PRI>`) and RFC 5424
(`<34>1 2026-12-02T16:27:33.003Z host app procid msgid [sd] msg`). The header is parsed here and
the message handed to the program parsers.

RFC 3164 timestamps have neither year nor zone: the year is `SourceContext.year`, else inferred
from `SourceContext.reference_time` (a file's modification time; a line is never later than the
file it is in, so a December line in a file written in January is from the year before), else
from the current time the same way; the zone is `SourceContext.tz`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from auditflow.model.event import Event
from auditflow.model.limits import timestamp_problem
from auditflow.model.timeutil import to_utc
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.emit import Message, clean_text
from auditflow.parsers.programs import (
    PROGRAMS,
    SSHD_PROGRAMS,
    MessageParser,
    dispatch,
    generic_entry,
    legacy_pam_entry,
)

_RFC3164 = re.compile(
    r"(?:<\d{1,3}>)?"
    r"(?:([A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d)"
    r"|(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?))"
    r" (\S+) ([^\s\[\]:]+)(?:\[(\d{1,10})\])?: ?(.*)",
    re.DOTALL,
)
_RFC5424 = re.compile(r"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)", re.DOTALL)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
# A line may be a little later than its file's modification time (clock skew, a zone mistaken).
_FUTURE_SLACK = timedelta(days=1)
_CACHE_LIMIT = 4096

EMPTY = Unparsed("empty")
NO_HEADER = Unparsed("no-header")
BAD_TIMESTAMP = Unparsed("bad-timestamp")
UNKNOWN_PROGRAM = Unparsed("unknown-program")
NOT_SSHD = Unparsed("not-sshd")


class SyslogParser:
    """Syslog lines of any program; those no program parser knows are generic `syslog_message` events."""

    name: ClassVar[str] = "syslog"
    only_sshd: ClassVar[bool] = False

    def __init__(self, context: SourceContext | None = None) -> None:
        self.context = context or SourceContext()
        # Many lines share a second: the parsed RFC 3164 timestamp is kept by its text.
        self._times: dict[str, datetime | None] = {}
        self._programs = (
            {name: entry for name, entry in PROGRAMS.items() if name in SSHD_PROGRAMS} if self.only_sshd else PROGRAMS
        )

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed:
        line = clean_text(line.rstrip("\r\n"))
        if not line:
            return EMPTY
        if line.startswith("<") and (header := _RFC5424.match(line)) is not None:
            return self._rfc5424(line, header, key)
        match = _RFC3164.match(line)
        if match is None:
            return NO_HEADER
        bsd, iso, host, program, pid, text = match.groups()
        # The per-line path inlines the program lookup and the timestamp cache (it runs for every line).
        entry = self._programs.get(program)
        if entry is None:
            resolved = self._program(program, host)
            if isinstance(resolved, Unparsed):
                return resolved
            entry = resolved
        if bsd is not None:
            timestamp = self._times.get(bsd)
            if timestamp is None:
                timestamp = self._bsd_time(bsd)
        else:
            timestamp = self._iso_time(iso)
        if timestamp is None:
            return BAD_TIMESTAMP
        service, parse = entry
        msg = Message(
            program,
            text,
            timestamp=timestamp,
            host=host,
            pid=int(pid) if pid is not None else None,
            raw=line,
            context=self.context,
            key=key,
            service=service,
        )
        return dispatch(msg, parse)

    def flush(self) -> Sequence[Event]:
        return ()

    def pending_key(self) -> str | None:
        return None  # every line is complete in itself

    def _program(self, program: str, host: str) -> tuple[str, MessageParser] | Unparsed:
        entry = self._programs.get(program) or legacy_pam_entry(program)
        if self.only_sshd:
            return entry if entry is not None and entry[0] == "sshd" else NOT_SSHD
        if entry is not None:
            return entry
        if host.endswith(":"):
            # `Dec  2 16:27:33 sshd[42]: pam_unix(...)`: no host, the program's tag was read as one
            # (a receiver retries such lines without a host)
            return UNKNOWN_PROGRAM
        return generic_entry(program)

    def _rfc5424(self, line: str, header: re.Match[str], key: str | None) -> Sequence[Event] | Unparsed:
        stamp, host, program, procid, _msgid, rest = header.groups()
        text = _skip_structured_data(rest)
        if text is None:
            return NO_HEADER
        entry = self._program(program, host)
        if isinstance(entry, Unparsed):
            return entry
        timestamp = None if stamp == "-" else self._iso_time(stamp)
        if timestamp is None:
            return BAD_TIMESTAMP
        service, parse = entry
        msg = Message(
            program,
            text.removeprefix("\ufeff"),
            timestamp=timestamp,
            host=None if host == "-" else host,
            pid=int(procid) if procid.isdigit() and len(procid) <= 10 else None,
            raw=line,
            context=self.context,
            key=key,
            service=service,
        )
        return dispatch(msg, parse)

    def _bsd_time(self, text: str) -> datetime | None:
        if text in self._times:
            return self._times[text]
        if len(self._times) >= _CACHE_LIMIT:
            self._times.clear()
        value = rfc3164_time(text, self.context)
        if value is not None and timestamp_problem(value) is not None:  # e.g. --year 1900
            value = None
        self._times[text] = value
        return value

    def _iso_time(self, text: str) -> datetime | None:
        try:
            value = datetime.fromisoformat(text.replace(",", "."))
        except ValueError:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.context.tz)
        try:
            value = to_utc(value)
        except OverflowError:  # an offset that moves the value past year 1 or 9999
            return None
        return value if timestamp_problem(value) is None else None


class SshdParser(SyslogParser):
    """Syslog lines of the OpenSSH server only; any other program's line is `not-sshd`."""

    name: ClassVar[str] = "sshd"
    only_sshd: ClassVar[bool] = True


def syslog_program(line: str) -> str | None:
    """The program name of a syslog line (RFC 3164 or 5424), None when it has no syslog header."""
    if line.startswith("<") and (header := _RFC5424.match(line)) is not None:
        return header.group(3)
    match = _RFC3164.match(line)
    return None if match is None else match.group(4)


def rfc3164_time(text: str, context: SourceContext) -> datetime | None:
    """`Dec  2 16:27:33` as a UTC datetime, completed with the context's year (or the inferred
    one) and zone; None when it names no real date."""
    month_name, day, clock = text.split()
    month = _MONTHS.get(month_name)
    if month is None:
        return None
    hour, minute, second = (int(part) for part in clock.split(":"))
    try:
        if context.year is not None:
            return to_utc(datetime(context.year, month, int(day), hour, minute, second, tzinfo=context.tz))
        reference = (context.reference_time or datetime.now(UTC)).astimezone(context.tz)
        value = datetime(reference.year, month, int(day), hour, minute, second, tzinfo=context.tz)
        if value > reference + _FUTURE_SLACK:
            value = value.replace(year=reference.year - 1)
    except ValueError:  # day 31 of a short month, 29 February of a common year, hour 25
        return None
    return to_utc(value)


def _skip_structured_data(rest: str) -> str | None:
    """The message after RFC 5424 structured data (`-` or `[id k="v" ...]...`), None when the
    structured data is malformed. Values may hold escaped quotes and brackets."""
    if rest.startswith("-"):
        return rest[2:] if rest.startswith("- ") else ("" if rest == "-" else None)
    position = 0
    length = len(rest)
    while position < length and rest[position] == "[":
        position += 1
        in_value = False
        while position < length:
            char = rest[position]
            if in_value:
                if char == "\\":
                    position += 1
                elif char == '"':
                    in_value = False
            elif char == '"':
                in_value = True
            elif char == "]":
                break
            position += 1
        else:
            return None
        position += 1
    if position == 0:
        return None
    if position == length:
        return ""
    return rest[position + 1 :] if rest[position] == " " else None
