"""UTC timestamp handling shared by every contract: parse RFC 3339, always emit `...Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema


def to_utc(value: datetime) -> datetime:
    """Normalise to an aware UTC datetime at millisecond precision (the precision of every wire
    format and window computation); naive values are taken to be UTC already."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a single `Z` suffix and millisecond precision.

    The original prototype appended `Z` to an already offset-aware isoformat and produced
    `+00:00Z`; converting first and formatting by hand makes that impossible.
    """
    value = to_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def utcnow() -> datetime:
    return to_utc(datetime.now(UTC))


def to_millis(value: datetime) -> int:
    return int(to_utc(value).timestamp() * 1000)


def from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "RFC 3339, UTC (`Z`)"}),
]
