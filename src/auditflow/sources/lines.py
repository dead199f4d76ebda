"""From lines to events, the same for `ingest` and the agent: the parser chosen by format (or
detected from a sample), counts by outcome, and optionally lines no parser understood forwarded as
raw events so that nothing read is silently dropped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditflow.model.event import Event, Severity
from auditflow.model.timeutil import utcnow
from auditflow.parsers.base import LogParser, ParserStats, SourceContext, Unparsed, event_id_for

ParserFactory = Callable[[str, SourceContext], LogParser]
FormatDetector = Callable[[Sequence[str]], str]

UNPARSED_EVENT_TYPE = "log_line_unparsed"
# Lines longer than this are cut before parsing (and counted): no daemon writes such a line, and an
# unbounded line would make the memory a source needs unbounded.
MAX_LINE_BYTES = 64 * 1024
# A forwarded raw line is cut to this many characters: the event's details must stay under 64 KiB.
MAX_RAW_CHARS = 16 * 1024


def encode_event(event: Event) -> bytes:
    """One event as JSON, straight from its validated fields (as the in-process broker does)."""
    try:
        return orjson.dumps(event.__dict__, option=orjson.OPT_UTC_Z)
    except TypeError:  # details holding objects only the model's serializer knows
        return event.model_dump_json().encode()


def registry() -> tuple[tuple[str, ...], ParserFactory, FormatDetector]:
    """The registered formats, the parser factory and the format detector of `auditflow.parsers`."""
    from auditflow.parsers import registry as parsers

    return tuple(parsers.FORMATS), parsers.create_parser, parsers.detect_format


@dataclass(slots=True)
class LineCounts:
    """What a source made of its input, summed over files; printed by ingest, exported by the agent."""

    lines: int = 0
    events: int = 0
    unparsed: dict[str, int] = field(default_factory=dict)
    forwarded_raw: int = 0

    def add(self, stats: ParserStats) -> None:
        self.lines += stats.lines
        self.events += stats.events
        for reason, count in stats.unparsed.items():
            self.unparsed[reason] = self.unparsed.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "events": self.events,
            "unparsed": dict(sorted(self.unparsed.items())),
            "forwarded_raw": self.forwarded_raw,
        }


class LineConverter:
    """One input's parser plus its counts; `convert` never raises on any line."""

    def __init__(self, parser: LogParser, context: SourceContext, *, forward_unparsed: bool = False) -> None:
        self.parser = parser
        self.context = context
        self.forward_unparsed = forward_unparsed
        self.stats = ParserStats()
        self.forwarded = 0
        self.last_unparsed: str | None = None  # the reason the latest line was not understood

    def convert(self, line: str, key: str | None) -> list[Event]:
        if len(line) > MAX_LINE_BYTES:
            outcome: Sequence[Event] | Unparsed = Unparsed("line-too-long")
        else:
            try:
                outcome = self.parser.feed(line, key)
            except Exception as exc:  # a parser bug must not stop a source
                outcome = Unparsed(f"parser-error:{type(exc).__name__}")
        self.stats.count(outcome)
        if not isinstance(outcome, Unparsed):
            self.last_unparsed = None
            return list(outcome)
        self.last_unparsed = outcome.reason
        if not self.forward_unparsed:
            return []
        self.forwarded += 1
        return [self._raw_event(line, key, outcome.reason)]

    def flush(self) -> list[Event]:
        events = list(self.parser.flush())
        self.stats.events += len(events)
        return events

    def _raw_event(self, line: str, key: str | None, reason: str) -> Event:
        values: dict[str, Any] = {
            "event_type": UNPARSED_EVENT_TYPE,
            "timestamp": utcnow(),
            "server_hostname": self.context.host,
            "source_service": self.context.source_service,
            "severity": Severity.INFO,
            "details": {
                "event": {"original": line[:MAX_RAW_CHARS], "dataset": self.parser.name, "reason": reason},
            },
        }
        if key is not None:
            values["event_id"] = event_id_for(key, 0)
        return Event(**values)
