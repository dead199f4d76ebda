"""UTC timestamp handling shared by every contract: parse RFC 3339, always emit `...Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

_ZERO = timedelta(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_utc(value: datetime) -> datetime:
    """Normalise to an aware UTC datetime at millisecond precision (the precision of every wire
    format and window computation); naive values are taken to be UTC already."""
    # Hot path (every event field, every serialisation): most values are already UTC at whole ms.
    if value.microsecond % 1000 == 0 and value.tzinfo is not None and value.utcoffset() == _ZERO:
        return value
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a single `Z` suffix and millisecond precision.

    The original prototype appended `Z` to an already offset-aware isoformat and produced
    `+00:00Z`; converting first and formatting by hand makes that impossible.
    """
    # isoformat of a zero-offset value ends in "+00:00": replace exactly that suffix.
    return to_utc(value).isoformat(timespec="milliseconds")[:-6] + "Z"


def utcnow() -> datetime:
    return to_utc(datetime.now(UTC))


def to_millis(value: datetime) -> int:
    """Epoch milliseconds, in integer arithmetic (float timestamps can land a millisecond short)."""
    return (to_utc(value) - _EPOCH) // _MILLISECOND


def from_millis(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _validated_utc(value: datetime) -> datetime:
    try:
        return to_utc(value)
    except OverflowError:
        # An offset that moves the value past year 1 or 9999, e.g. 9999-12-31T23:59:59-01:00.
        raise ValueError("the time in UTC is outside the range of dates (years 1 to 9999)") from None


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_validated_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "RFC 3339, UTC (`Z`)"}),
]


_DATE_START = re.compile(r"\s*\d{4}-\d")


def _rfc3339_text(value: object) -> object:
    # Lax parsing would take `0`, `0.5` or "1700000000" as Unix time; input documented as an
    # RFC 3339 string refuses them rather than guess the unit.
    if isinstance(value, int | float) or (isinstance(value, str) and _DATE_START.match(value) is None):
        raise ValueError("expected an RFC 3339 date and time, e.g. 2026-12-02T16:27:33Z")
    return value


# What clients send (event times, query bounds): an RFC 3339 string (or, from Python, a datetime).
Rfc3339Datetime = Annotated[UtcDatetime, BeforeValidator(_rfc3339_text)]
