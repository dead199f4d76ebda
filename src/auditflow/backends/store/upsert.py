"""Batched, idempotent alert writes: a few multi-row statements per batch (COPY through a staging
table on PostgreSQL), inside the caller's transaction. An upsert leaves status and history alone,
except that new activity on a resolved alert reopens it with a history entry (`_reopen_resolved`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store import pg_copy
from auditflow.backends.store.base import UpsertResult
from auditflow.backends.store.merge import conflict_updates, dedupe
from auditflow.backends.store.schema import alert_events, alert_history, alerts, to_ms
from auditflow.backends.store.transitions import (
    AlertTransition,
    TransitionHook,
    TransitionKind,
    stored_counts,
)
from auditflow.model.alert import MAX_SAMPLE_EVENTS, Alert
from auditflow.model.event import Event

# Bound parameters per IN (...) list: far below SQLite's and PostgreSQL's limits.
IN_CHUNK = 1000


def alert_row(alert: Alert, now_ms: int) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "rule_name": alert.rule_name,
        "rule_kind": alert.rule_kind,
        "severity": alert.severity.value,
        "severity_rank": alert.severity.rank,
        "status": alert.status.value,
        "description": alert.description,
        "group": alert.group,
        "user_id": alert.user_id,
        "server_hostname": alert.server_hostname,
        "first_seen": to_ms(alert.first_seen),
        "last_seen": to_ms(alert.last_seen),
        "occurrences": alert.occurrences,
        "event_ids": [str(event_id) for event_id in alert.event_ids],
        "tags": alert.tags,
        "created_at": now_ms,
        "updated_at": now_ms,
        "opened_at": to_ms(alert.first_seen),  # kept by a known alert: not in the conflict's SET
    }


def event_row(alert_id: UUID, event: Event, opened_at: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "event_id": event.event_id,
        "ts": to_ms(event.timestamp),
        "payload": event.model_dump(),  # serialized by the engine's orjson serializer
        "opened_at": opened_at,
    }


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _sqlite_upsert(conn: AsyncConnection, batch: list[Alert], now_ms: int) -> tuple[set[UUID], dict[UUID, int]]:
    ids = [alert.alert_id for alert in batch]
    existing: dict[UUID, int] = {}
    # The write transaction holds SQLite's only write lock, so this read cannot go stale.
    for part in chunks(ids):
        query = sa.select(alerts.c.alert_id, alerts.c.opened_at).where(alerts.c.alert_id.in_(part))
        existing.update((alert_id, opened_at) for alert_id, opened_at in await conn.execute(query))
    statement = sqlite_insert(alerts)
    statement = statement.on_conflict_do_update(
        index_elements=[alerts.c.alert_id], set_=conflict_updates(statement.excluded, "sqlite")
    )
    await conn.execute(statement, [alert_row(alert, now_ms) for alert in batch])
    opened = {alert.alert_id: existing.get(alert.alert_id, to_ms(alert.first_seen)) for alert in batch}
    return set(ids) - existing.keys(), opened


async def _stored_events(conn: AsyncConnection, ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
    stored: dict[UUID, set[UUID]] = {alert_id: set() for alert_id in ids}
    for part in chunks(ids):
        query = sa.select(alert_events.c.alert_id, alert_events.c.event_id).where(alert_events.c.alert_id.in_(part))
        for alert_id, event_id in await conn.execute(query):
            stored[alert_id].add(event_id)
    return stored


async def _new_events(conn: AsyncConnection, batch: list[Alert], inserted: set[UUID]) -> list[tuple[UUID, Event]]:
    """All sample events of a new alert (the model caps them); for a known alert, the unseen ones up
    to the cap. The upsert has locked the alert rows, so the stored counts are current."""
    known = [alert.alert_id for alert in batch if alert.sample_events and alert.alert_id not in inserted]
    stored = await _stored_events(conn, known) if known else {}
    events: list[tuple[UUID, Event]] = []
    for alert in batch:
        seen = stored.get(alert.alert_id, set())
        fresh = {event.event_id: event for event in alert.sample_events if event.event_id not in seen}
        room = max(MAX_SAMPLE_EVENTS - len(seen), 0)
        events.extend((alert.alert_id, event) for event in list(fresh.values())[:room])
    return events


REOPEN_ACTOR = "auditflow"


async def _reopen_resolved(conn: AsyncConnection, merged: list[Alert], now_ms: int) -> set[UUID]:
    """An alert an analyst resolved goes back to open when it receives new activity (a higher
    occurrence count; a redelivery or replay carries no more than what is stored), with a history
    entry saying why: new hits must not pile up silently on a closed alert."""
    incoming = {alert.alert_id: alert.occurrences for alert in merged}
    reopened: list[tuple[UUID, int]] = []
    for part in chunks(list(incoming)):
        query = sa.select(alerts.c.alert_id, alerts.c.occurrences).where(
            alerts.c.alert_id.in_(part), alerts.c.status == "resolved"
        )
        if conn.dialect.name == "postgresql":
            # Lock the rows (in id order, like the upsert) so concurrent writers reopen them once.
            query = query.order_by(alerts.c.alert_id).with_for_update()
        for alert_id, stored in (await conn.execute(query)).all():
            if incoming[alert_id] > stored:
                reopened.append((alert_id, incoming[alert_id] - stored))
    if not reopened:
        return set()
    for part in chunks([alert_id for alert_id, _ in reopened]):
        await conn.execute(alerts.update().where(alerts.c.alert_id.in_(part)).values(status="open", updated_at=now_ms))
    await conn.execute(
        alert_history.insert(),
        [
            {
                "alert_id": alert_id,
                "at": now_ms,
                "actor": REOPEN_ACTOR,
                "from_status": "resolved",
                "to_status": "open",
                "note": f"reopened: {added} new occurrence(s) after it was resolved",
            }
            for alert_id, added in reopened
        ],
    )
    return {alert_id for alert_id, _ in reopened}


def _transitions(
    merged: list[Alert], inserted: set[UUID], reopened: set[UUID], before: dict[UUID, tuple[int, str]]
) -> list[AlertTransition]:
    """New, reopened, or more occurrences than stored; an alert another writer inserted after our
    read has no known count and reports nothing here (its inserter reported it as new)."""
    found: list[AlertTransition] = []
    for alert in merged:
        kind: TransitionKind
        previous, status = before.get(alert.alert_id, (0, alert.status.value))
        if alert.alert_id in inserted:
            kind, previous = "new", 0
        elif alert.alert_id in reopened:
            kind, status = "reopened", "open"
        elif alert.alert_id in before and alert.occurrences > previous:
            kind = "escalation"  # the analyst's status stays, so the message shows it
        else:
            continue
        found.append(AlertTransition(kind, alert.alert_id, alert, status, previous, alert.occurrences))
    return found


async def write_batch(
    conn: AsyncConnection, batch: Sequence[Alert], now_ms: int, hook: TransitionHook | None = None
) -> UpsertResult:
    """Upsert a batch inside the caller's transaction; `hook` records what changed in it."""
    merged = dedupe(batch)
    before = await stored_counts(conn, [alert.alert_id for alert in merged], IN_CHUNK) if hook else {}
    reopened = await _reopen_resolved(conn, merged, now_ms)
    if conn.dialect.name == "postgresql":
        inserted, opened = await pg_copy.upsert_alerts(conn, merged, now_ms)
    else:
        inserted, opened = await _sqlite_upsert(conn, merged, now_ms)
    events = await _new_events(conn, merged, inserted)
    if events and conn.dialect.name == "postgresql":
        await pg_copy.insert_events(conn, events, opened)
    elif events:
        rows = [event_row(alert_id, event, opened[alert_id]) for alert_id, event in events]
        await conn.execute(sqlite_insert(alert_events).on_conflict_do_nothing(), rows)
    if hook is not None:
        transitions = _transitions(merged, inserted, reopened, before)
        if transitions:
            await hook.record(conn, transitions, now_ms)
    new_by_severity = Counter(alert.severity.value for alert in merged if alert.alert_id in inserted)
    return UpsertResult(
        inserted=len(inserted), updated=len(merged) - len(inserted), new_by_severity=dict(new_by_severity)
    )
