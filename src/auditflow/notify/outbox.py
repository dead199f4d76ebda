"""The transactional outbox: rows written by the alert store's transition hook in the alert's own
transaction, claimed by dispatchers under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the write
lock on SQLite), and finished as sent, retried later or dead."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import alerts
from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.schema import notification_digest_items as digest_items
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.backends.store.transitions import AlertTransition
from auditflow.errors import NotFound
from auditflow.notify import digest
from auditflow.notify.models import DeliveryView
from auditflow.notify.routing import Routing
from auditflow.tracing import TRACE_PAYLOAD_KEY, outbox_trace

# Delivery ids derive from what caused them, so a row written twice (two writers reporting the same
# change) collapses into one, and the id doubles as the receiver's idempotency key.
_ID_NAMESPACE = UUID("6f1d6a52-3c1e-4c8e-9a57-0d7f1f0b6a01")
_THROTTLED = {"escalation", "reopened"}


def _ms(interval: timedelta) -> int:
    return int(interval.total_seconds() * 1000)


class OutboxWriter:
    """The store's transition hook: one row per matching route and channel."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing

    async def record(self, conn: AsyncConnection, transitions: Sequence[AlertTransition], now_ms: int) -> None:
        recent = await self._recent(conn, transitions, now_ms)
        rows: list[dict[str, Any]] = []
        digested: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for change in transitions:
            for route in self.routing.routes:
                # Cheapest test first: most escalations cross no threshold and need no snapshot.
                if change.kind not in route.events:
                    continue
                if change.kind == "escalation" and not route.crosses(change.previous_occurrences, change.occurrences):
                    continue
                if not route.matches(change.alert):
                    continue
                if change.kind in _THROTTLED and (change.alert_id, route.name) in recent:
                    continue
                recent.add((change.alert_id, route.name))  # one per route and batch as well
                if route.digest is None:
                    rows.extend(self._rows(change, route.name, route.channels, now_ms))
                    continue
                message = self._message(change)
                for channel in route.channels:
                    digested[(route.name, channel)].append(
                        {
                            "item_id": self._delivery_id(change, route.name, channel, now_ms),
                            "alert_id": change.alert_id,
                            "event": change.kind,
                            "payload": message,
                        }
                    )
        if rows:
            insert = pg_insert(deliveries) if conn.dialect.name == "postgresql" else sqlite_insert(deliveries)
            await conn.execute(insert.on_conflict_do_nothing(index_elements=[deliveries.c.delivery_id]), rows)
        if digested:
            intervals = {route.name: _ms(route.digest) for route in self.routing.routes if route.digest is not None}
            await digest.add_items(conn, digested, intervals, now_ms)

    @staticmethod
    def _delivery_id(change: AlertTransition, route: str, channel: str, now_ms: int) -> UUID:
        # A resolve can happen again after a reopen with the same count: its time tells them apart.
        cause = f"{change.alert_id}/{route}/{change.kind}/{change.occurrences}"
        if change.kind == "resolved":
            cause += f"/{now_ms}"
        return uuid5(_ID_NAMESPACE, f"{cause}/{channel}")

    def _message(self, change: AlertTransition) -> dict[str, Any]:
        """A single message without its route: what a digest lists."""
        return {
            "event": change.kind,
            "alert": change.alert,
            "alert_url": self.routing.alert_url(str(change.alert_id)),
            "previous_occurrences": change.previous_occurrences,
        }

    def _rows(self, change: AlertTransition, route: str, channels: Sequence[str], now_ms: int) -> list[dict[str, Any]]:
        payload = {**self._message(change), "route": route}
        if (trace := outbox_trace()) is not None:
            payload[TRACE_PAYLOAD_KEY] = trace  # private: the dispatcher removes it before sending
        return [
            {
                "delivery_id": self._delivery_id(change, route, channel, now_ms),
                "alert_id": change.alert_id,
                "route": route,
                "channel": channel,
                "event": change.kind,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now_ms,
                "lease_until": None,
                "claimed_by": None,
                "last_error": None,
                "payload": payload,
                "created_at": now_ms,
                "sent_at": None,
            }
            for channel in channels
        ]

    async def _recent(
        self, conn: AsyncConnection, transitions: Sequence[AlertTransition], now_ms: int
    ) -> set[tuple[UUID, str]]:
        """(alert, route) pairs that had a message within their route's throttle interval."""
        longest = max((route.throttle for route in self.routing.routes), default=None)
        ids = sorted({change.alert_id for change in transitions if change.kind in _THROTTLED})
        if not ids or not longest:
            return set()
        since = now_ms - _ms(longest)
        query = (
            sa.select(deliveries.c.alert_id, deliveries.c.route, sa.func.max(deliveries.c.created_at))
            .where(deliveries.c.alert_id.in_(ids), deliveries.c.created_at > since)
            .group_by(deliveries.c.alert_id, deliveries.c.route)
        )
        throttle = {route.name: _ms(route.throttle) for route in self.routing.routes}
        return {
            (alert_id, route)
            for alert_id, route, last in (await conn.execute(query)).all()
            if now_ms - last < throttle.get(route, 0)
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: UUID
    channel: str
    event: str
    attempts: int
    payload: dict[str, Any]
    created_at: int


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: UUID
    status: str  # sent | pending | dead
    next_attempt_at: int
    error: str | None = None


async def claim(
    store: SqlAlertStore, owner: str, limit: int, lease_ms: int, now_ms: int, max_attempts: int
) -> list[Claimed]:
    """Reserve up to `limit` due rows for `owner` until the lease ends. A claim counts as an attempt,
    so a row whose sender keeps dying mid-send is declared dead instead of being claimed forever.

    One statement, one round trip: an UPDATE of the due rows (picked with FOR UPDATE SKIP LOCKED on
    PostgreSQL, so that replicas skip each other's rows) returning them."""
    async with store.connection(write=True) as conn:
        parameters = {
            "c_owner": owner,
            "c_limit": limit,
            "c_now": now_ms,
            "c_lease_until": now_ms + lease_ms,
            "c_max": max_attempts,
            "c_dead": f"gave up after {max_attempts} attempts: the dispatcher stopped during the last one",
        }
        rows = list((await conn.execute(_claim_statement(conn.dialect.name), parameters)).all())
    # RETURNING gives no order: send oldest first, as claimed. A row whose last attempt died is dead now.
    rows.sort(key=lambda row: (row.next_attempt_at, row.delivery_id))
    return [
        Claimed(row.delivery_id, row.channel, row.event, row.attempts, row.payload, row.created_at)
        for row in rows
        if row.status == "pending"
    ]


@functools.cache
def _claim_statement(dialect: str) -> sa.Update:
    """The claim, built once per dialect (its values are bound at each execution)."""
    now = sa.bindparam("c_now", type_=sa.BigInteger())
    due = (
        sa.select(deliveries.c.delivery_id)
        .where(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.delivery_id)
        .limit(sa.bindparam("c_limit", type_=sa.Integer()))
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    spent = deliveries.c.attempts >= sa.bindparam("c_max", type_=sa.Integer())
    return (
        deliveries.update()
        .where(deliveries.c.delivery_id.in_(due.scalar_subquery()))
        .values(
            # A row whose last attempt died with its dispatcher ends here; the others are leased.
            status=sa.case((spent, "dead"), else_=deliveries.c.status),
            last_error=sa.case((spent, sa.bindparam("c_dead", type_=sa.Text())), else_=deliveries.c.last_error),
            next_attempt_at=sa.case((spent, now), else_=deliveries.c.next_attempt_at),  # a dead row: when it ended
            last_attempt_at=sa.case((spent, now), else_=deliveries.c.last_attempt_at),
            lease_until=sa.case((spent, None), else_=sa.bindparam("c_lease_until", type_=sa.BigInteger())),
            claimed_by=sa.case((spent, None), else_=sa.bindparam("c_owner", type_=sa.String())),
            attempts=sa.case((spent, deliveries.c.attempts), else_=deliveries.c.attempts + 1),
        )
        .returning(
            deliveries.c.delivery_id,
            deliveries.c.channel,
            deliveries.c.event,
            deliveries.c.attempts,
            deliveries.c.payload,
            deliveries.c.created_at,
            deliveries.c.status,
            deliveries.c.next_attempt_at,
        )
    )


async def finish(store: SqlAlertStore, owner: str, outcomes: Sequence[Outcome], now_ms: int) -> int:
    """Record what happened to claimed rows in one statement; a row whose lease another dispatcher
    took over is left to it. Returns how many rows were still ours."""
    if not outcomes:
        return 0
    async with store.connection(write=True) as conn:
        if conn.dialect.name == "postgresql":
            result = await conn.execute(_finish_from_arrays(), _finish_arrays(owner, outcomes, now_ms))
        else:
            result = await conn.execute(
                _FINISH_ONE.values(last_attempt_at=now_ms), _finish_rows(owner, outcomes, now_ms)
            )
    return result.rowcount


# SQLite: one statement executed for many rows, in process.
_FINISH_ONE = (
    deliveries.update()
    .where(deliveries.c.delivery_id == sa.bindparam("b_id"), deliveries.c.claimed_by == sa.bindparam("b_owner"))
    .values(
        status=sa.bindparam("b_status"),
        next_attempt_at=sa.bindparam("b_next"),
        last_error=sa.bindparam("b_error"),
        sent_at=sa.bindparam("b_sent"),
        lease_until=None,
        claimed_by=None,
    )
)


def _finish_rows(owner: str, outcomes: Sequence[Outcome], now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "b_id": outcome.delivery_id,
            "b_owner": owner,
            "b_status": outcome.status,
            "b_next": outcome.next_attempt_at,
            "b_error": outcome.error,
            "b_sent": now_ms if outcome.status == "sent" else None,
        }
        for outcome in outcomes
    ]


def _finish_arrays(owner: str, outcomes: Sequence[Outcome], now_ms: int) -> dict[str, Any]:
    ids, statuses, nexts, errors = [], [], [], []
    for outcome in outcomes:
        ids.append(outcome.delivery_id)
        statuses.append(outcome.status)
        nexts.append(outcome.next_attempt_at)
        errors.append(outcome.error)
    return {
        "f_owner": owner,
        "f_now": now_ms,
        "f_ids": ids,
        "f_statuses": statuses,
        "f_nexts": nexts,
        "f_errors": errors,
    }


@functools.cache
def _finish_from_arrays() -> sa.Update:
    """PostgreSQL: the outcomes as four arrays joined to the rows, one statement whatever their number
    (a statement per row cost the dispatcher more CPU than a row's HTTP request)."""
    now = sa.bindparam("f_now", type_=sa.BigInteger())
    given = sa.select(
        sa.func.unnest(sa.bindparam("f_ids", type_=ARRAY(sa.Uuid()))).label("delivery_id"),
        sa.func.unnest(sa.bindparam("f_statuses", type_=ARRAY(sa.String()))).label("status"),
        sa.func.unnest(sa.bindparam("f_nexts", type_=ARRAY(sa.BigInteger()))).label("next_attempt_at"),
        sa.func.unnest(sa.bindparam("f_errors", type_=ARRAY(sa.Text()))).label("last_error"),
    ).subquery("given")
    return (
        deliveries.update()
        .where(
            deliveries.c.delivery_id == given.c.delivery_id,
            deliveries.c.claimed_by == sa.bindparam("f_owner", type_=sa.String()),
        )
        .values(
            status=given.c.status,
            next_attempt_at=given.c.next_attempt_at,
            last_error=given.c.last_error,
            sent_at=sa.case((given.c.status == "sent", now), else_=None),
            last_attempt_at=now,
            lease_until=None,
            claimed_by=None,
        )
    )


async def release(store: SqlAlertStore, owner: str, delivery_ids: Sequence[UUID]) -> int:
    """Hand back claimed rows that were never sent (a dispatcher stopping, or a lease too short for what
    is left of it): due again at once for any dispatcher, and the claim no longer counts as an attempt.
    A row another dispatcher took over meanwhile is left to it. Returns how many were released."""
    if not delivery_ids:
        return 0
    statement = (
        deliveries.update()
        .where(
            deliveries.c.delivery_id.in_(list(delivery_ids)),
            deliveries.c.claimed_by == owner,
            deliveries.c.status == "pending",
        )
        .values(lease_until=None, claimed_by=None, attempts=deliveries.c.attempts - 1)
    )
    async with store.connection(write=True) as conn:
        result = await conn.execute(statement)
    return result.rowcount


async def depth(store: SqlAlertStore) -> int:
    """Changes waiting to be sent: pending single deliveries, and the items of digests not sent yet."""
    async with store.connection(write=False) as conn:
        singles = (
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(deliveries.c.status == "pending", deliveries.c.event != "digest")
        )
        in_digests = (
            sa.select(sa.func.count())
            .select_from(digest_items.join(deliveries, digest_items.c.digest_id == deliveries.c.delivery_id))
            .where(deliveries.c.status.in_(("open", "pending")))
        )
        return int((await conn.execute(singles)).scalar_one()) + int((await conn.execute(in_digests)).scalar_one())


async def list_deliveries(store: SqlAlertStore, alert_id: UUID) -> list[DeliveryView]:
    """The deliveries of one alert, oldest first, with the digests that carry (or will carry) its changes;
    NotFound when the alert does not exist."""
    async with store.connection(write=False) as conn:
        in_digests = sa.select(digest_items.c.digest_id).where(digest_items.c.alert_id == alert_id)
        query = (
            sa.select(deliveries)
            .where(sa.or_(deliveries.c.alert_id == alert_id, deliveries.c.delivery_id.in_(in_digests)))
            .order_by(deliveries.c.created_at, deliveries.c.delivery_id)
        )
        rows = (await conn.execute(query)).mappings().all()
        if not rows:
            exists = await conn.execute(sa.select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id))
            if exists.first() is None:
                raise NotFound(f"alert {alert_id} not found")
    return [DeliveryView.from_row(row, alert_id) for row in rows]
