"""Merge rules for an alert delivered more than once: occurrences and last_seen take the maximum,
first_seen the minimum, event ids are merged (stored first) and capped. The same rules exist in
Python, for duplicates inside one batch, and in SQL, so that concurrent writers never lose updates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from auditflow.backends.store.schema import alerts
from auditflow.model.alert import MAX_ALERT_EVENT_IDS, MAX_SAMPLE_EVENTS, Alert

# What makes an incoming alert the same as a stored one in SQLite's upsert. PostgreSQL's alerts are
# partitioned, and its key adds the partition column (pg_copy.PG_CONFLICT_TARGET).
CONFLICT_TARGET: tuple[sa.Column[Any], ...] = (alerts.c.alert_id,)

_NEW_OFFSET = 1_000_000  # orders the incoming ids after the stored ones before de-duplication

# Constant SQL (only module constants are interpolated): stored ids first, then unseen incoming
# ones, de-duplicated and capped; a redelivery that adds nothing keeps the stored array as is.
_PG_MERGED_IDS = f"""CASE WHEN alerts.event_ids @> excluded.event_ids THEN alerts.event_ids ELSE (
  SELECT COALESCE(jsonb_agg(m.value ORDER BY m.pos), '[]'::jsonb) FROM (
    SELECT u.value, min(u.pos) AS pos FROM (
      SELECT a.value, a.pos FROM jsonb_array_elements(alerts.event_ids) WITH ORDINALITY AS a(value, pos)
      UNION ALL
      SELECT b.value, b.pos + {_NEW_OFFSET}
      FROM jsonb_array_elements(excluded.event_ids) WITH ORDINALITY AS b(value, pos)
    ) AS u GROUP BY u.value ORDER BY min(u.pos) LIMIT {MAX_ALERT_EVENT_IDS}) AS m) END"""  # noqa: S608  # nosec B608

# The same merge in SQLite; constant SQL too.
_SQLITE_MERGED_IDS = f"""CASE WHEN alerts.event_ids = excluded.event_ids THEN alerts.event_ids ELSE (
  SELECT json_group_array(m.value) FROM (
    SELECT u.value AS value, min(u.pos) AS pos FROM (
      SELECT value, key AS pos FROM json_each(alerts.event_ids)
      UNION ALL
      SELECT value, key + {_NEW_OFFSET} FROM json_each(excluded.event_ids)
    ) AS u GROUP BY u.value ORDER BY pos LIMIT {MAX_ALERT_EVENT_IDS}) AS m) END"""  # noqa: S608  # nosec B608


def merge_ids(old: Iterable[UUID], new: Iterable[UUID], cap: int = MAX_ALERT_EVENT_IDS) -> list[UUID]:
    """Stored ids first, then unseen incoming ones, without duplicates, at most `cap`."""
    return list(dict.fromkeys([*old, *new]))[:cap]


def merge_alerts(old: Alert, new: Alert) -> Alert:
    """The in-batch equivalent of the SQL merge, for an alert_id that occurs twice in one batch."""
    samples = {event.event_id: event for event in [*old.sample_events, *new.sample_events]}
    return old.model_copy(
        update={
            "occurrences": max(old.occurrences, new.occurrences),
            "first_seen": min(old.first_seen, new.first_seen),
            "last_seen": max(old.last_seen, new.last_seen),
            "event_ids": merge_ids(old.event_ids, new.event_ids),
            "sample_events": list(samples.values())[:MAX_SAMPLE_EVENTS],
            "description": new.description if new.occurrences > old.occurrences else old.description,
        }
    )


def dedupe(batch: Sequence[Alert]) -> list[Alert]:
    """One alert per alert_id: PostgreSQL refuses to update a row twice in one statement."""
    by_id: dict[UUID, Alert] = {}
    for alert in batch:
        known = by_id.get(alert.alert_id)
        by_id[alert.alert_id] = alert if known is None else merge_alerts(known, alert)
    # Sorted by id, every writer locks rows in the same order: concurrent batches cannot deadlock.
    # (The ids' integers sort as the UUIDs do, compared in C.)
    return sorted(by_id.values(), key=lambda alert: alert.alert_id.int)


def conflict_updates(new: Any, dialect: str) -> dict[str, Any]:
    """SET clause of ON CONFLICT (CONFLICT_TARGET) DO UPDATE; `new` is the statement's `excluded`."""
    greatest: Any = sa.func.greatest if dialect == "postgresql" else sa.func.max  # SQLite's max() is n-ary
    least: Any = sa.func.least if dialect == "postgresql" else sa.func.min
    merged = _PG_MERGED_IDS if dialect == "postgresql" else _SQLITE_MERGED_IDS
    return {
        "occurrences": greatest(alerts.c.occurrences, new.occurrences),
        "first_seen": least(alerts.c.first_seen, new.first_seen),
        "last_seen": greatest(alerts.c.last_seen, new.last_seen),
        "event_ids": sa.literal_column(merged),
        # The publication with more occurrences is the newer one; its wording wins.
        "description": sa.case((new.occurrences > alerts.c.occurrences, new.description), else_=alerts.c.description),
        "updated_at": new.updated_at,
    }
