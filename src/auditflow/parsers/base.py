"""What every log parser shares: the context a source gives it (host, year, zone), the outcome of one
line (events, or the reason it was not understood), and deterministic event ids.

A parser is fed one line (or record) at a time and may hold state between lines (auditd assembles
records by serial number); `flush()` emits what is still pending at the end of the input.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import ClassVar, Protocol

from auditflow.model.event import Event

# Event ids of parsed lines are uuid5 names in this namespace, so re-reading the same line of the
# same file gives the same id and the pipeline de-duplicates a re-send.
EVENT_ID_NAMESPACE = uuid.UUID("6f0d9d3e-5b1a-4c55-9b7e-0a6c2d1f4e21")


_NAMESPACE_HASH = hashlib.sha1(EVENT_ID_NAMESPACE.bytes, usedforsecurity=False)


def event_id_for(key: str, index: int = 0) -> uuid.UUID:
    """The id of the `index`-th event made from the input position `key` (file identity and offset):
    `uuid5(EVENT_ID_NAMESPACE, f"{key}#{index}")`, computed from a pre-hashed namespace because
    this runs once per parsed event."""
    digest = _NAMESPACE_HASH.copy()
    digest.update(f"{key}#{index}".encode())
    return uuid.UUID(bytes=digest.digest()[:16], version=5)


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source knows that a line may not say.

    `host` names the machine when the line carries none (a file copied off a server); `year` and
    `tz` complete RFC 3164 timestamps, which have neither; `reference_time` (a file's modification
    time) lets the year be inferred, with December lines in a January file taken as last year.
    """

    host: str | None = None
    year: int | None = None
    tz: tzinfo = UTC
    reference_time: datetime | None = None
    source_service: str | None = None


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A line no parser understood, with a short machine-readable reason (counted by reason)."""

    reason: str


@dataclass(slots=True)
class ParserStats:
    """Counts one parser kept over its input."""

    lines: int = 0
    events: int = 0
    unparsed: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: Sequence[Event] | Unparsed) -> None:
        self.lines += 1
        if isinstance(outcome, Unparsed):
            self.unparsed[outcome.reason] = self.unparsed.get(outcome.reason, 0) + 1
        else:
            self.events += len(outcome)


class LogParser(Protocol):
    """One input's parser. `feed` answers the events a line made (an empty sequence for a line that
    was understood and says nothing worth an event) or `Unparsed` with the reason; `key` names the
    line's position in its input (file identity and offset) and makes the event ids deterministic."""

    name: ClassVar[str]

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed: ...

    def flush(self) -> Sequence[Event]: ...

    def pending_key(self) -> str | None:
        """The key of the oldest line the parser still holds unemitted (auditd assembling an event),
        None when it holds none: a source that checkpoints must not move past that line."""
        ...
