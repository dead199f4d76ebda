"""The alert store's tables as SQLAlchemy Core metadata, shared by queries and the migration check.

Timestamps are integer epoch milliseconds: ordering, range filters and bucketing by integer
division then behave identically on SQLite and PostgreSQL. The Alembic revisions are the source of
truth for the database; a test compares them with this metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

# JSON documents as JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
# Native uuid on PostgreSQL, 32 hex characters on SQLite; both sort like the UUID's bytes.
AlertId = sa.Uuid(as_uuid=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY.
HistoryId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SORT_KEY = ("first_seen", "alert_id")
FILTERED_COLUMNS = ("severity", "rule_id", "user_id", "server_hostname")

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", AlertId, primary_key=True),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("rule_name", sa.String(255), nullable=False),
    sa.Column("rule_kind", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("severity_rank", sa.SmallInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("group", Json, nullable=False),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("server_hostname", sa.String(255), nullable=True),
    sa.Column("first_seen", sa.BigInteger(), nullable=False),
    sa.Column("last_seen", sa.BigInteger(), nullable=False),
    sa.Column("occurrences", sa.BigInteger(), nullable=False),
    sa.Column("event_ids", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.BigInteger(), nullable=False),
    # `first_seen` of the alert's first write, never changed afterwards (first_seen itself may move
    # earlier on a merge): PostgreSQL partitions alerts and their events by its month, so it is part
    # of their primary keys there (docs/operations/retention.md).
    sa.Column("opened_at", sa.BigInteger(), nullable=False),
)

# Every API filter is an equality (or IN) on one column, followed by the sort key, so each index
# serves both the filter and the keyset ORDER BY ... LIMIT without a sort.
for _name in (*FILTERED_COLUMNS, None):
    _columns = [alerts.c[_name]] if _name else []
    sa.Index(
        f"ix_alerts_{_name or 'first_seen'}",
        *_columns,
        alerts.c.first_seen.desc(),
        alerts.c.alert_id.desc(),
    )
# What retention looks for: resolved alerts of a severity not changed since a cutoff. Only resolved
# alerts are indexed (a new alert adds no entry); retention states RESOLVED as a literal too, so that
# even a generic plan can use the index.
RESOLVED = alerts.c.status == sa.literal_column("'resolved'")
sa.Index(
    "ix_alerts_retention",
    alerts.c.severity,
    alerts.c.updated_at,
    postgresql_where=RESOLVED,
    sqlite_where=RESOLVED,
)

# Status: every new alert is open, so only the triaged ones are indexed (no index entry per insert).
# A filter on open alerts walks ix_alerts_first_seen, whose newest entries they are; a filter without
# `open` states TRIAGED as well (queries.py), so that even a generic plan can use this index.
TRIAGED = alerts.c.status != sa.literal_column("'open'")  # a literal: a partial index needs one to match
sa.Index(
    "ix_alerts_status_triaged",
    alerts.c.status,
    alerts.c.first_seen.desc(),
    alerts.c.alert_id.desc(),
    postgresql_where=TRIAGED,
    sqlite_where=TRIAGED,
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    # No foreign key: rows are only written in the transaction that upserted their alert, and the
    # constraint check was half of the database's cost of storing evidence (docs/performance.md).
    sa.Column("alert_id", AlertId, primary_key=True),
    sa.Column("event_id", sa.Uuid(as_uuid=True), primary_key=True),
    sa.Column("ts", sa.BigInteger(), nullable=False),
    # JSON text on PostgreSQL too (not jsonb): read whole, never searched, and checked for less than
    # converting it would cost on every write.
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("opened_at", sa.BigInteger(), nullable=False),  # the alert's: its partition key on PostgreSQL
)

# One row per alert id with the alert's `opened_at`. A unique constraint of a partitioned table must
# hold the partition key, so on PostgreSQL this table is what keeps an alert id unique across the
# monthly partitions: every writer takes (or locks) the id's row here before it writes the alert, and
# uses the `opened_at` it finds. SQLite's alerts table is not partitioned and leaves it empty.
alert_keys = sa.Table(
    "alert_keys",
    metadata,
    sa.Column("alert_id", AlertId, primary_key=True),
    # Indexed for retention, which looks for the keys a dropped month left behind.
    sa.Column("opened_at", sa.BigInteger(), nullable=False, index=True),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", HistoryId, primary_key=True, autoincrement=True),
    # No foreign key: on PostgreSQL alert_id alone is not a unique key of the partitioned alerts table.
    # Retention deletes an alert's history with the alert.
    sa.Column("alert_id", AlertId, nullable=False, index=True),
    sa.Column("at", sa.BigInteger(), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
)

# Dashboard sign-ins, kept beside the alerts so that `auditflow run` needs nothing else. The key is
# the SHA-256 of the cookie's session id: a copy of the table does not sign anyone in.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("stamp", sa.String(64), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False, index=True),
)

# Dead letters of the whole pipeline, moved here from the broker's dead-letter queue so that they
# are durable in the embedded mode and listable, pageable and replayable in both modes.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Uuid(as_uuid=True), primary_key=True),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("received_at", sa.BigInteger(), nullable=False),
    sa.Column("headers", Json, nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
)
sa.Index("ix_dead_letters_received_at", dead_letters.c.received_at.desc(), dead_letters.c.id.desc())

# The notification outbox: one row per message to send, written in the transaction of the alert
# change that causes it, so a message is never lost nor sent for a change that rolled back.
# No foreign key, like alert_events: rows are written only with their alert.
notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("delivery_id", sa.Uuid(as_uuid=True), primary_key=True),
    sa.Column("alert_id", AlertId, nullable=True, index=True),  # none for a digest: its items name the alerts
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
    sa.Column("lease_until", sa.BigInteger(), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.Column("sent_at", sa.BigInteger(), nullable=True),
    # When the last attempt ended (sent or failed): the time of `last_error`, and a channel's health.
    sa.Column("last_attempt_at", sa.BigInteger(), nullable=True),
)
# What the dispatcher polls: pending rows by due time.
sa.Index(
    "ix_notification_deliveries_due",
    notification_deliveries.c.status,
    notification_deliveries.c.next_attempt_at,
)
# At most one digest collects a route's changes for a channel at a time (status `open`, until its window
# closes and a dispatcher seals it into a `pending` delivery); writers that race to open one meet here.
OPEN_DIGEST = notification_deliveries.c.status == "open"
sa.Index(
    "ux_notification_deliveries_open_digest",
    notification_deliveries.c.route,
    notification_deliveries.c.channel,
    unique=True,
    sqlite_where=OPEN_DIGEST,
    postgresql_where=OPEN_DIGEST,
)

# The alert changes a digest bundles, one row per change, channel and digest route, written in the alert
# change's transaction like a single delivery (and with an id derived the same way, so a change reported
# twice is one item).
notification_digest_items = sa.Table(
    "notification_digest_items",
    metadata,
    sa.Column("item_id", sa.Uuid(as_uuid=True), primary_key=True),
    sa.Column("digest_id", sa.Uuid(as_uuid=True), nullable=False, index=True),
    sa.Column("alert_id", AlertId, nullable=False, index=True),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Exact epoch milliseconds (integer arithmetic: float timestamps can round down by one)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Normalized: 0 <= seconds < 86400 and 0 <= microseconds < 10**6 whatever the sign of days, so
    # only the microseconds need flooring; faster than dividing two timedeltas.
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(value: int) -> datetime:
    return _EPOCH + value * _MILLISECOND
