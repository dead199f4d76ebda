"""Read side of the alert store: filtered keyset pages, alert details and dashboard statistics.

Pages are ordered newest first by (first_seen DESC, alert_id DESC); the cursor is the sort key of
the last item, so a page never skips or repeats rows even when many alerts share a first_seen.
Time filters are half-open: since <= first_seen < until.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import TRIAGED, alert_events, alert_history, alerts, from_ms, to_ms
from auditflow.errors import NotFound
from auditflow.model.alert import (
    AlertChange,
    AlertDetail,
    AlertPage,
    AlertQuery,
    AlertStats,
    AlertStatus,
    AlertSummary,
    CountItem,
    TimeBucket,
)
from auditflow.model.event import Event, Severity

MAX_BUCKETS = 10_000
# What `encode_cursor` makes is about 70 characters; anything much longer was not made by it.
MAX_CURSOR_LENGTH = 200
TOP_N = 10
_LIKE_ESCAPE = "\\"
_SUMMARY_COLUMNS = [column for column in alerts.c if column.name not in {"severity_rank", "event_ids"}]


def encode_cursor(first_seen_ms: int, alert_id: UUID) -> str:
    raw = f"{first_seen_ms}:{alert_id.hex}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[int, UUID]:
    """The sort key inside a cursor; ValueError for anything not made by `encode_cursor`."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        first_seen, alert_id = raw.split(":")
        # A bigint column: a larger number would make the driver fail rather than match nothing.
        if not -(2**63) <= int(first_seen) < 2**63:
            raise ValueError("out of range")
        return int(first_seen), UUID(hex=alert_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ValueError("invalid cursor: pass the next_cursor of a previous page unchanged") from error


def escape_like(text: str) -> str:
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_")
    )


def _time_range(since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(alerts.c.first_seen >= to_ms(since))
        # Implied, never narrowing: opened_at is the first_seen of the alert's first write, and a merge
        # only moves first_seen earlier. It lets PostgreSQL skip the months before `since`.
        conditions.append(alerts.c.opened_at >= to_ms(since))
    if until is not None:
        conditions.append(alerts.c.first_seen < to_ms(until))
    return conditions


def filters(query: AlertQuery) -> list[sa.ColumnElement[bool]]:
    conditions = _time_range(query.since, query.until)
    if query.severity:
        conditions.append(alerts.c.severity.in_([severity.value for severity in query.severity]))
    if query.status:
        conditions.append(alerts.c.status.in_([status.value for status in query.status]))
        if AlertStatus.OPEN not in query.status:
            conditions.append(TRIAGED)  # implied, and it lets any plan use ix_alerts_status_triaged
    for name in ("rule_id", "user_id", "server_hostname"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(alerts.c[name] == value)
    if query.text:
        pattern = f"%{escape_like(query.text)}%"
        searched = (alerts.c.rule_name, alerts.c.description, alerts.c.user_id, alerts.c.server_hostname)
        conditions.append(sa.or_(*(column.ilike(pattern, escape=_LIKE_ESCAPE) for column in searched)))
    return conditions


def summary(row: Any) -> AlertSummary:
    values = dict(row._mapping)
    for name in ("first_seen", "last_seen", "created_at", "updated_at"):
        values[name] = from_ms(values[name])
    return AlertSummary.model_validate(values)


async def fetch_page(conn: AsyncConnection, query: AlertQuery) -> AlertPage:
    conditions = filters(query)
    if query.cursor is not None:
        first_seen, alert_id = decode_cursor(query.cursor)
        key = sa.tuple_(alerts.c.first_seen, alerts.c.alert_id)
        conditions.append(key < sa.tuple_(sa.literal(first_seen, sa.BigInteger()), sa.literal(alert_id, sa.Uuid())))
    statement = (
        sa.select(*_SUMMARY_COLUMNS)
        .where(*conditions)
        .order_by(alerts.c.first_seen.desc(), alerts.c.alert_id.desc())
        .limit(query.limit + 1)  # one more than asked tells whether another page exists
    )
    rows = (await conn.execute(statement)).all()
    items = [summary(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        next_cursor = encode_cursor(last.first_seen, last.alert_id)
    return AlertPage(items=items, next_cursor=next_cursor)


async def fetch_detail(conn: AsyncConnection, alert_id: UUID) -> AlertDetail:
    row = (
        await conn.execute(sa.select(*_SUMMARY_COLUMNS, alerts.c.event_ids).where(alerts.c.alert_id == alert_id))
    ).first()
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    events = await conn.execute(
        sa.select(alert_events.c.payload)
        .where(alert_events.c.alert_id == alert_id)
        .order_by(alert_events.c.ts, alert_events.c.event_id)
    )
    history = await conn.execute(
        sa.select(alert_history).where(alert_history.c.alert_id == alert_id).order_by(alert_history.c.id)
    )
    return AlertDetail(
        **summary(row).model_dump(),
        event_ids=row.event_ids,
        events=[Event.model_validate(payload) for payload in events.scalars()],
        history=[
            AlertChange(
                at=from_ms(change.at),
                actor=change.actor,
                from_status=change.from_status,
                to_status=change.to_status,
                note=change.note,
            )
            for change in history
        ],
    )


async def _counts(conn: AsyncConnection, column: Any, conditions: list[Any], limit: int | None = None) -> list[Any]:
    count = sa.func.count().label("count")
    statement = sa.select(column, count).where(*conditions).group_by(column).order_by(count.desc(), column).limit(limit)
    return list(await conn.execute(statement))


async def compute_stats(
    conn: AsyncConnection, since: datetime | None, until: datetime | None, bucket_seconds: int
) -> AlertStats:
    if bucket_seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    bucket_ms = bucket_seconds * 1000
    conditions = _time_range(since, until)
    by_severity = {severity.value: 0 for severity in Severity}
    by_severity.update(dict(await _counts(conn, alerts.c.severity, conditions)))
    by_status = {status.value: 0 for status in AlertStatus}
    by_status.update(dict(await _counts(conn, alerts.c.status, conditions)))

    count = sa.func.count().label("count")
    rules = await conn.execute(
        sa.select(alerts.c.rule_id, sa.func.max(alerts.c.rule_name), count)
        .where(*conditions)
        .group_by(alerts.c.rule_id)
        .order_by(count.desc(), alerts.c.rule_id)
    )
    top: dict[str, list[CountItem]] = {}
    for name in ("user_id", "server_hostname"):
        column = alerts.c[name]
        rows = await _counts(conn, column, [*conditions, column.is_not(None)], TOP_N)
        top[name] = [CountItem(key=key, count=n) for key, n in rows]

    bucket = (alerts.c.first_seen // sa.literal(bucket_ms, sa.BigInteger())).label("bucket")
    bucket_counts = {
        int(key): n
        for key, n in await conn.execute(sa.select(bucket, sa.func.count()).where(*conditions).group_by(bucket))
    }
    return AlertStats(
        total=sum(by_status.values()),
        by_severity=by_severity,
        by_status=by_status,
        by_rule=[CountItem(key=rule_id, label=name, count=n) for rule_id, name, n in rules],
        top_users=top["user_id"],
        top_hosts=top["server_hostname"],
        buckets=_fill_buckets(bucket_counts, since, until, bucket_ms),
        bucket_seconds=bucket_seconds,
    )


def _fill_buckets(
    counts: dict[int, int], since: datetime | None, until: datetime | None, bucket_ms: int
) -> list[TimeBucket]:
    """Every bucket of the range, empty ones with 0, so a chart's time axis has no holes."""
    first = to_ms(since) // bucket_ms if since is not None else min(counts, default=None)
    last = (to_ms(until) - 1) // bucket_ms if until is not None else max(counts, default=None)
    if first is None or last is None:
        return []  # no alerts and an open end: the range is unknown
    if last - first + 1 > MAX_BUCKETS:
        raise ValueError(
            f"{last - first + 1} buckets of {bucket_ms // 1000} s in the range; the limit is {MAX_BUCKETS}:"
            " narrow since/until or use larger buckets"
        )
    return [TimeBucket(start=from_ms(key * bucket_ms), count=counts.get(key, 0)) for key in range(first, last + 1)]
