"""Batched, idempotent alert writes: a few multi-row statements per batch (binary COPY through a
staging table on PostgreSQL, pg_copy.py), inside the caller's transaction. An upsert leaves status
and history alone, except that new activity on a resolved alert reopens it with a history entry
(`_reopens`)."""

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
from auditflow.backends.store.merge import CONFLICT_TARGET, conflict_updates, dedupe
from auditflow.backends.store.schema import alert_events, alert_history, alerts, to_ms
from auditflow.backends.store.transitions import AlertTransition, TransitionHook, TransitionKind
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


async def _sqlite_stored_state(
    conn: AsyncConnection, ids: Sequence[UUID]
) -> tuple[dict[UUID, tuple[int, str]], dict[UUID, int]]:
    """Occurrences and status of every stored alert of the batch, and its `opened_at`. The write
    transaction holds SQLite's only write lock, so nothing read here can go stale before the commit."""
    found: dict[UUID, tuple[int, str]] = {}
    opened: dict[UUID, int] = {}
    for part in chunks(ids):
        query = sa.select(alerts.c.alert_id, alerts.c.occurrences, alerts.c.status, alerts.c.opened_at).where(
            alerts.c.alert_id.in_(part)
        )
        for alert_id, count, status, opened_at in (await conn.execute(query)).all():
            found[alert_id] = (count, status)
            opened[alert_id] = opened_at
    return found, opened


async def _sqlite_upsert(conn: AsyncConnection, batch: list[Alert], now_ms: int) -> None:
    statement = sqlite_insert(alerts)
    statement = statement.on_conflict_do_update(
        index_elements=list(CONFLICT_TARGET), set_=conflict_updates(statement.excluded, "sqlite")
    )
    await conn.execute(statement, [alert_row(alert, now_ms) for alert in batch])


async def _stored_events(conn: AsyncConnection, ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
    if conn.dialect.name == "postgresql":
        return await pg_copy.stored_event_ids(conn, ids)
    stored: dict[UUID, set[UUID]] = {alert_id: set() for alert_id in ids}
    for part in chunks(ids):
        query = sa.select(alert_events.c.alert_id, alert_events.c.event_id).where(alert_events.c.alert_id.in_(part))
        for alert_id, event_id in await conn.execute(query):
            stored[alert_id].add(event_id)
    return stored


async def _new_events(conn: AsyncConnection, batch: list[Alert], inserted: set[UUID]) -> list[tuple[UUID, list[Event]]]:
    """Per alert with events to store: all sample events of a new alert (the model caps them); for a
    known alert, the unseen ones up to the cap. The upsert has locked the alert rows, so the stored
    counts are current."""
    known = []
    if len(inserted) < len(batch):  # else every alert is new: nothing stored to subtract
        known = [alert.alert_id for alert in batch if alert.sample_events and alert.alert_id not in inserted]
    stored = await _stored_events(conn, known) if known else {}
    found: list[tuple[UUID, list[Event]]] = []
    for alert in batch:
        if not alert.sample_events:
            continue
        seen = stored.get(alert.alert_id) if stored else None
        if seen is None:
            # Keyed by the id's integer: hashed in C, unlike the UUID itself.
            found.append((alert.alert_id, list({event.event_id.int: event for event in alert.sample_events}.values())))
            continue
        fresh = {event.event_id: event for event in alert.sample_events if event.event_id not in seen}
        room = max(MAX_SAMPLE_EVENTS - len(seen), 0)
        if fresh and room:
            found.append((alert.alert_id, list(fresh.values())[:room]))
    return found


REOPEN_ACTOR = "auditflow"


def _reopens(merged: list[Alert], before: dict[UUID, tuple[int, str]]) -> list[tuple[UUID, int]]:
    """An alert an analyst resolved goes back to open when it receives new activity (a higher
    occurrence count; a redelivery or replay carries no more than what is stored): new hits must
    not pile up silently on a closed alert. Returns the ids and how many occurrences were added."""
    reopened: list[tuple[UUID, int]] = []
    for alert in merged:
        stored = before.get(alert.alert_id)
        if stored is not None and stored[1] == "resolved" and alert.occurrences > stored[0]:
            reopened.append((alert.alert_id, alert.occurrences - stored[0]))
    return reopened


async def _reopen(conn: AsyncConnection, reopened: list[tuple[UUID, int]], now_ms: int) -> set[UUID]:
    """Reopen the alerts, each with a history entry saying why. Their rows are locked already."""
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


async def _pg_upsert(
    conn: AsyncConnection, merged: list[Alert], now_ms: int, *, every: bool
) -> tuple[set[UUID], dict[UUID, tuple[int, str]], set[UUID], dict[UUID, int]]:
    """The batch's key rows first (they tell the new alerts), the new alerts copied straight into
    their table, then the known ones merged through the staging table. Returns the new ids, the
    stored state read before the merge (`every` as in `stored_state`), the reopened ids and every
    alert's `opened_at`."""
    rows = [pg_copy.alert_values(alert, now_ms) for alert in merged]
    known = await pg_copy.take_keys(conn, rows)
    new_rows = [row for row in rows if row[0] not in known] if known else rows
    if new_rows:
        await pg_copy.insert_new(conn, new_rows)
    opened = {row[0]: row[-1] for row in rows}
    if not known:
        return set(opened), {}, set(), opened
    await pg_copy.stage_known(conn, [row for row in rows if row[0] in known])
    before = await pg_copy.stored_state(conn, every=every)
    reopened = await _reopen(conn, _reopens(merged, before), now_ms)
    opened.update(await pg_copy.upsert_staged(conn))
    return opened.keys() - known, before, reopened, opened


async def write_batch(
    conn: AsyncConnection, batch: Sequence[Alert], now_ms: int, hook: TransitionHook | None = None
) -> UpsertResult:
    """Upsert a batch inside the caller's transaction; `hook` records what changed in it.

    What is stored before the upsert is read once, with the rows locked on PostgreSQL: every
    stored alert of the batch when the hook needs the counts (and on SQLite, where it also tells
    which alerts are new), else only the resolved alerts the batch reopens."""
    merged = dedupe(batch)
    if conn.dialect.name == "postgresql":
        inserted, before, reopened, opened = await _pg_upsert(conn, merged, now_ms, every=hook is not None)
    else:
        before, stored_opened = await _sqlite_stored_state(conn, [alert.alert_id for alert in merged])
        reopened = await _reopen(conn, _reopens(merged, before), now_ms)
        await _sqlite_upsert(conn, merged, now_ms)
        inserted = {alert.alert_id for alert in merged} - before.keys()
        opened = {alert.alert_id: stored_opened.get(alert.alert_id, to_ms(alert.first_seen)) for alert in merged}
    events = await _new_events(conn, merged, inserted)
    if events and conn.dialect.name == "postgresql":
        await pg_copy.insert_events(conn, events, opened)
    elif events:
        event_rows = [event_row(alert_id, event, opened[alert_id]) for alert_id, found in events for event in found]
        await conn.execute(sqlite_insert(alert_events).on_conflict_do_nothing(), event_rows)
    if hook is not None:
        transitions = _transitions(merged, inserted, reopened, before)
        if transitions:
            await hook.record(conn, transitions, now_ms)
    new_by_severity = Counter(alert.severity.value for alert in merged if alert.alert_id in inserted)
    return UpsertResult(
        inserted=len(inserted), updated=len(merged) - len(inserted), new_by_severity=dict(new_by_severity)
    )
