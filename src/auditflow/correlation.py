"""The correlation id of a batch's path: made at ingest, carried in the `x-auditflow-correlation-id`
message header through analysis, notification and delivery, and put on every log line emitted while
that batch is handled (a context variable read by a logging filter).

With tracing on, the id is the batch's trace id, so a log line leads to its trace and back.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

CORRELATION_HEADER = "x-auditflow-correlation-id"
_MAX_LENGTH = 64  # a header from elsewhere cannot blow up every log line

_current: ContextVar[str | None] = ContextVar("auditflow_correlation_id", default=None)


def new_correlation_id() -> str:
    """32 hex digits, the shape of a trace id. Unique, not secret: no system call per batch."""
    return f"{random.getrandbits(128):032x}"  # nosec B311  # an id to follow logs by, not a secret


def current_correlation_id() -> str | None:
    return _current.get()


@contextlib.contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Log lines in this block (and in tasks it starts) carry `correlation_id`."""
    token = _current.set(correlation_id)
    try:
        yield
    finally:
        _current.reset(token)


def header_value(headers: Mapping[str, Any], name: str) -> str | None:
    """A text header as str (AMQP may hand strings over as bytes), or None."""
    value = headers.get(name)
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def message_correlation_id(headers: Mapping[str, Any]) -> str | None:
    value = header_value(headers, CORRELATION_HEADER)
    return value[:_MAX_LENGTH] if value is not None else None


def batch_correlation_id(headers: Iterable[Mapping[str, Any]]) -> str:
    """The id a consumed batch logs under: its first message's (a batch joining several messages
    logs under the first one's; with tracing on, its span links the others), else a new one (a
    producer that does not stamp it, a dead letter from before)."""
    for message in headers:
        value = message_correlation_id(message)
        if value is not None:
            return value
    return new_correlation_id()


class BatchCorrelation:
    """Log lines while a consumed batch is handled carry its correlation id. A class rather than a
    generator: every consumed batch passes here."""

    __slots__ = ("_token", "correlation_id")

    def __init__(self, headers: Iterable[Mapping[str, Any]]) -> None:
        self.correlation_id = batch_correlation_id(headers)

    def __enter__(self) -> str:
        self._token = _current.set(self.correlation_id)
        return self.correlation_id

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


class CorrelationFilter(logging.Filter):
    """Puts the current correlation id on each record as `correlation_id` (None outside a batch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = _current.get()
        return True
