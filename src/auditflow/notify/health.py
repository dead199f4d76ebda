"""What the channels API, the dashboard's Channels page and the outbox metrics show of each channel:
its routes, where it sends (scheme and host only: never a secret or a full URL) and its health
read from the outbox. `ChannelDesk` also runs test sends, throttled and logged with who asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, Field

from auditflow.backends.store.schema import from_ms
from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import NotFound
from auditflow.model.timeutil import UtcDatetime
from auditflow.notify import outbox
from auditflow.notify.metrics import OUTBOX_CHANNEL_DEPTH, OUTBOX_DEPTH
from auditflow.notify.routing import AppriseChannel, Channel, EmailChannel, Routing, SlackChannel
from auditflow.notify.testsend import ChannelTestResult, ChannelTestThrottle, send_test

log = logging.getLogger("auditflow.notify")

NOT_CONFIGURED = "notifications are not configured: set AUDITFLOW_NOTIFY_CONFIG to a routing file"
HOUR_MS = 3600 * 1000
DEPTH_STATUSES = ("pending", "dead")


class ChannelHealth(BaseModel):
    status: Literal["ok", "failing", "idle"] = Field(
        description="failing: the last attempt failed; ok: the last attempt was sent; idle: nothing attempted yet"
    )
    pending: int = Field(description="Deliveries waiting to be sent (the outbox depth of this channel)")
    dead: int = Field(description="Deliveries given up after the last attempt")
    sent_last_hour: int
    last_sent_at: UtcDatetime | None
    last_error: str | None = Field(description="The newest error of a delivery that is still pending or dead")
    last_error_at: UtcDatetime | None


class ChannelView(BaseModel):
    name: str
    type: str
    target: str = Field(
        description="Where it sends, without secrets: a webhook's scheme and host, an email channel's SMTP server"
    )
    timeout_seconds: float
    routes: list[str] = Field(description="The routes that send to this channel")
    health: ChannelHealth


class ChannelList(BaseModel):
    configured: bool = Field(description="False when this service has no routing file: `channels` is empty")
    detail: str | None = Field(None, description="Why the list is empty when notifications are not configured")
    channels: list[ChannelView]


def _target(channel: Channel) -> str:
    """Where a channel sends, without anything secret: Slack's and apprise's URLs are secrets
    themselves, so only the kind of destination is named."""
    if isinstance(channel, SlackChannel):
        return "Slack incoming webhook (URL from a secret)"
    if isinstance(channel, AppriseChannel):
        return "apprise URLs (from a secret)"
    if isinstance(channel, EmailChannel):
        host = f"[{channel.host}]" if ":" in channel.host else channel.host
        recipients = len(channel.to)
        return f"smtp://{host}:{channel.smtp_port} ({recipients} recipient{'s' if recipients != 1 else ''})"
    parts = urlsplit(channel.url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


async def depth_by_channel(store: SqlAlertStore) -> dict[tuple[str, str], int]:
    """(channel, status) -> rows, for the pending and dead rows (by the status index)."""
    query = (
        sa.select(deliveries.c.channel, deliveries.c.status, sa.func.count())
        .where(deliveries.c.status.in_(DEPTH_STATUSES))
        .group_by(deliveries.c.channel, deliveries.c.status)
    )
    async with store.connection(write=False) as conn:
        return {(channel, status): int(count) for channel, status, count in (await conn.execute(query)).all()}


_shown: set[tuple[str, str]] = set()


async def record_outbox_depth(store: SqlAlertStore) -> dict[tuple[str, str], int]:
    """Set the outbox depth gauges (the total pending, and per channel and status) from one query; a
    channel whose rows are gone drops back to 0 rather than keeping its last value."""
    counts = await depth_by_channel(store)
    OUTBOX_DEPTH.set(await outbox.depth(store))  # counts the items of unsent digests, not the digests
    for key in _shown - counts.keys():
        OUTBOX_CHANNEL_DEPTH.labels(*key).set(0)
    for key, count in counts.items():
        OUTBOX_CHANNEL_DEPTH.labels(*key).set(count)
    _shown.update(counts)
    return counts


async def _sent(store: SqlAlertStore, since_ms: int) -> dict[str, tuple[int, int | None]]:
    recent = sa.func.sum(sa.case((deliveries.c.sent_at >= since_ms, 1), else_=0))
    query = (
        sa.select(deliveries.c.channel, recent, sa.func.max(deliveries.c.sent_at))
        .where(deliveries.c.status == "sent")
        .group_by(deliveries.c.channel)
    )
    async with store.connection(write=False) as conn:
        return {channel: (int(n or 0), last) for channel, n, last in (await conn.execute(query)).all()}


async def _last_errors(store: SqlAlertStore) -> dict[str, tuple[str, int | None]]:
    newest = (
        sa.func.row_number()
        .over(
            partition_by=deliveries.c.channel,
            order_by=(deliveries.c.last_attempt_at.desc().nulls_last(), deliveries.c.delivery_id),
        )
        .label("n")
    )
    ranked = (
        sa.select(deliveries.c.channel, deliveries.c.last_error, deliveries.c.last_attempt_at, newest)
        .where(deliveries.c.status.in_(DEPTH_STATUSES), deliveries.c.last_error.is_not(None))
        .subquery()
    )
    query = sa.select(ranked.c.channel, ranked.c.last_error, ranked.c.last_attempt_at).where(ranked.c.n == 1)
    async with store.connection(write=False) as conn:
        return {channel: (error, at) for channel, error, at in (await conn.execute(query)).all()}


def _status(last_sent: int | None, error_at: int | None, has_error: bool) -> Literal["ok", "failing", "idle"]:
    if has_error and (last_sent is None or error_at is None or error_at >= last_sent):
        return "failing"
    return "ok" if last_sent is not None else "idle"


async def channel_views(store: SqlAlertStore, routing: Routing, now_ms: int) -> list[ChannelView]:
    """Every channel of `routing`, in the file's order, with its health from the outbox."""
    depth = await record_outbox_depth(store)
    sent = await _sent(store, now_ms - HOUR_MS)
    errors = await _last_errors(store)
    views = []
    for name, channel in routing.channels.items():
        recent, last_sent = sent.get(name, (0, None))
        error, error_at = errors.get(name, (None, None))
        health = ChannelHealth(
            status=_status(last_sent, error_at, error is not None),
            pending=depth.get((name, "pending"), 0),
            dead=depth.get((name, "dead"), 0),
            sent_last_hour=recent,
            last_sent_at=from_ms(last_sent) if last_sent is not None else None,
            last_error=error,
            last_error_at=from_ms(error_at) if error_at is not None else None,
        )
        views.append(
            ChannelView(
                name=name,
                type=channel.type,
                target=_target(channel),
                timeout_seconds=channel.timeout.total_seconds(),
                routes=[route.name for route in routing.routes if name in route.channels],
                health=health,
            )
        )
    return views


class ChannelDesk:
    """The channels of the routing that is active now (`routing()` is None when notifications are
    off), for the API and the dashboard of this process."""

    def __init__(
        self,
        store: SqlAlertStore,
        routing: Callable[[], Routing | None],
        *,
        throttle: ChannelTestThrottle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.routing = routing
        self.throttle = throttle or ChannelTestThrottle()
        self.clock = clock

    async def list(self) -> ChannelList:
        routing = self.routing()
        if routing is None:
            return ChannelList(configured=False, detail=NOT_CONFIGURED, channels=[])
        return ChannelList(configured=True, channels=await channel_views(self.store, routing, int(self.clock() * 1000)))

    def _routing_with(self, name: str) -> Routing:
        routing = self.routing()
        if routing is None:
            raise NotFound(f"channel {name!r} not found: {NOT_CONFIGURED}")
        if name not in routing.channels:
            raise NotFound(f"channel {name!r} is not in the routing file")
        return routing

    async def get(self, name: str) -> ChannelView:
        self._routing_with(name)
        listed = await self.list()
        for view in listed.channels:
            if view.name == name:
                return view
        raise NotFound(f"channel {name!r} is not in the routing file")  # removed by a reload in between

    async def test(self, name: str, actor: str) -> ChannelTestResult:
        """Send the test payload through `name` now; NotFound, or ChannelTestThrottled when the
        channel was tested within the last few seconds."""
        routing = self._routing_with(name)
        self.throttle.take(name)
        from auditflow.notify.http import HttpClient  # aiohttp only when a test is sent

        async with HttpClient() as client:
            result = await send_test(routing, name, client)
        # Who sent what where: a test reaches a real receiver.
        log.warning(
            "test notification through channel %r requested by %s: %s in %d ms",
            name,
            actor,
            "sent" if result.ok else f"failed ({result.error})",
            result.duration_ms,
        )
        return result
