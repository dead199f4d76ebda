"""One-shot ingestion: read log files (plain or gzip) or standard input, parse each line with the
chosen or detected format, and submit the events in batches to a running instance over HTTP or to
a fresh embedded pipeline. Event ids derive from (file identity, offset), so ingesting the same file
twice raises nothing new: the pipeline de-duplicates by id."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from itertools import chain, islice
from typing import IO, Any, Protocol

from auditflow.errors import AuditFlowError
from auditflow.model.event import Event
from auditflow.model.timeutil import utcnow
from auditflow.parsers.base import SourceContext
from auditflow.sources.files import (
    FINGERPRINT_BYTES,
    LineStream,
    decode_line,
    fingerprint,
    iter_lines,
    local_host,
    open_lines,
)
from auditflow.sources.lines import FormatDetector, LineConverter, LineCounts, ParserFactory

STDIN = "-"
NEWLINE = b"\n"
DETECT_SAMPLE_LINES = 50


class IngestError(AuditFlowError):
    """The input cannot be ingested; the message names the file (and line) at fault."""


class EventSink(Protocol):
    """Where parsed events go: `send` returns once they are accepted (raises IngestError otherwise)."""

    def send(self, events: Sequence[Event], lines: Sequence[int], name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestOptions:
    fmt: str = "auto"
    host: str | None = None
    year: int | None = None
    tz: tzinfo = UTC
    forward_unparsed: bool = False
    batch_size: int = 1000


@dataclass(slots=True)
class FileResult:
    name: str
    fmt: str
    counts: LineCounts = field(default_factory=LineCounts)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.fmt, **self.counts.as_dict()}


@dataclass(slots=True)
class IngestResult:
    files: list[FileResult] = field(default_factory=list)
    sent: int = 0

    @property
    def totals(self) -> LineCounts:
        total = LineCounts()
        for result in self.files:
            total.lines += result.counts.lines
            total.events += result.counts.events
            total.forwarded_raw += result.counts.forwarded_raw
            for reason, count in result.counts.unparsed.items():
                total.unparsed[reason] = total.unparsed.get(reason, 0) + count
        return total

    @property
    def understood(self) -> int:
        totals = self.totals
        return totals.lines - sum(totals.unparsed.values())


@dataclass(frozen=True, slots=True)
class _Input:
    name: str
    stream: LineStream
    reference_time: datetime
    identity: Callable[[bytes], str]  # first line -> the key prefix of the input's lines
    size: int | None
    raw: IO[bytes] | None = None  # the file under a decompressing reader, closed with it


Progress = Callable[[str, int, int | None], None]  # (name, bytes read, total bytes)


def ingest_paths(
    paths: Sequence[str],
    sink: EventSink,
    options: IngestOptions,
    *,
    create_parser: ParserFactory,
    detect_format: FormatDetector,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest every path (`-` is standard input) in order; raises IngestError naming the path."""
    result = IngestResult()
    for path in paths:
        source = _open(path, options.host)
        try:
            result.files.append(_ingest_one(source, sink, options, result, create_parser, detect_format, progress))
        finally:
            if source.raw is not None:
                source.stream.close()
                source.raw.close()
    return result


def _open(path: str, host: str | None) -> _Input:
    machine = host or local_host()
    if path == STDIN:
        stream = open_lines(sys.stdin.buffer, "<stdin>")

        def stdin_identity(first: bytes) -> str:
            # No inode to go by: the same piped content gets the same ids, so a re-run is harmless.
            return f"{machine}:stdin:{fingerprint(first + NEWLINE)}"

        return _Input("<stdin>", stream, utcnow(), stdin_identity, None)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by ingest_paths
        stat = os.fstat(raw.fileno())
        head = raw.read(FINGERPRINT_BYTES)
        raw.seek(0)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    mark = fingerprint(head) or fingerprint(head + b"\n")
    prefix = f"{machine}:{stat.st_dev}:{stat.st_ino}:{mark}"
    reference = datetime.fromtimestamp(stat.st_mtime, UTC)
    return _Input(path, open_lines(raw, path), reference, lambda _first: prefix, stat.st_size, raw)


def _ingest_one(
    source: _Input,
    sink: EventSink,
    options: IngestOptions,
    result: IngestResult,
    create_parser: ParserFactory,
    detect_format: FormatDetector,
    progress: Progress | None,
) -> FileResult:
    try:
        lines = iter_lines(source.stream)
        sample = list(islice(lines, DETECT_SAMPLE_LINES))
    except (OSError, EOFError) as exc:
        raise IngestError(f"{source.name}: cannot read: {exc}") from None
    fmt = options.fmt
    if fmt == "auto":
        try:
            fmt = detect_format([decode_line(line) for _, line in sample]) if sample else "syslog"
        except ValueError as exc:
            raise IngestError(f"{source.name}: cannot tell the format ({exc}); name it with --format") from None
    context = SourceContext(host=options.host, year=options.year, tz=options.tz, reference_time=source.reference_time)
    converter = LineConverter(create_parser(fmt, context), context, forward_unparsed=options.forward_unparsed)
    prefix = source.identity(sample[0][1] if sample else b"")
    pending: list[Event] = []
    numbers: list[int] = []
    for number, (offset, raw) in enumerate(_guarded(chain(sample, lines), source.name), 1):
        made = converter.convert(decode_line(raw), f"{prefix}@{offset}")
        pending.extend(made)
        numbers.extend([number] * len(made))
        if len(pending) >= options.batch_size:
            result.sent += _send(sink, pending, numbers, source.name)
            if progress is not None:
                progress(source.name, _position(source.stream), source.size)
    tail = converter.flush()
    pending.extend(tail)
    numbers.extend([converter.stats.lines] * len(tail))
    result.sent += _send(sink, pending, numbers, source.name)
    if progress is not None:
        progress(source.name, source.size or _position(source.stream), source.size)
    file_result = FileResult(source.name, fmt)
    file_result.counts.add(converter.stats)
    file_result.counts.forwarded_raw = converter.forwarded
    return file_result


def _guarded(lines: Iterator[tuple[int, bytes]], name: str) -> Iterator[tuple[int, bytes]]:
    try:
        yield from lines
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
        raise IngestError(f"{name}: cannot read further: {exc}") from None


def _send(sink: EventSink, events: list[Event], numbers: list[int], name: str) -> int:
    if not events:
        return 0
    sink.send(events, numbers, name)
    count = len(events)
    events.clear()
    numbers.clear()
    return count


def _position(stream: LineStream) -> int:
    raw = getattr(stream, "fileobj", stream)  # the compressed position of a gzip reader
    try:
        return int(raw.tell())
    except (OSError, ValueError, AttributeError):
        return 0
