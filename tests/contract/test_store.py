"""The AlertStore contract, one suite run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from auditflow.backends.store.engine import create_sync_engine
from auditflow.backends.store.migrate import current_revision, head_revision, migrate_url
from auditflow.backends.store.partitions import include_name
from auditflow.backends.store.schema import metadata
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import BackendError, BackendUnavailable, NotFound
from auditflow.model.alert import (
    MAX_ALERT_EVENT_IDS,
    MAX_SAMPLE_EVENTS,
    Alert,
    AlertQuery,
    AlertStatus,
    AlertSummary,
    AlertUpdate,
)
from auditflow.model.event import Severity
from tests.conftest import require_server
from tests.databases import postgres_database
from tests.factories import T0, make_alert, make_event

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# --- fixtures: each backend resolves only its own server -------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """One migrated database for the module; each test starts from empty tables."""
    require_server("postgres")
    name = f"t{uuid4().hex[:12]}"
    with postgres_database(name) as url:
        migrate_url(url)
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[SqlAlertStore]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'alerts.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = SqlAlertStore(url)
    await store.start()
    try:
        await store.migrate()
        if backend == "postgres":
            with psycopg.connect(url, autocommit=True) as conn:
                for table in ("alert_history", "alert_events", "alert_keys", "alerts"):
                    conn.execute(f"DELETE FROM {table}")  # cheaper than TRUNCATE on tiny tables
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def fresh_url(backend: str, tmp_path: Any, unique_name: str) -> Iterator[str]:
    """A database nothing has touched yet."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'alerts.sqlite3'}"
        return
    require_server("postgres")
    with postgres_database(unique_name) as url:
        yield url


# --- helpers ---------------------------------------------------------------------------------


async def all_items(store: SqlAlertStore, limit: int = 500, **filters: Any) -> list[AlertSummary]:
    """Every page of a query; a page with a cursor is full and no alert comes twice."""
    items: list[AlertSummary] = []
    seen: set[UUID] = set()
    cursor: str | None = None
    while True:
        page = await store.list_alerts(AlertQuery(limit=limit, cursor=cursor, **filters))
        items.extend(page.items)
        assert seen.isdisjoint(item.alert_id for item in page.items), "an alert came twice"
        seen.update(item.alert_id for item in page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit
        cursor = page.next_cursor


async def ids(store: SqlAlertStore, **filters: Any) -> set[UUID]:
    return {item.alert_id for item in await all_items(store, **filters)}


# --- schema ----------------------------------------------------------------------------------


async def test_migrate_brings_a_fresh_database_to_head(fresh_url: str) -> None:
    stores = [SqlAlertStore(fresh_url), SqlAlertStore(fresh_url)]
    try:
        for store in stores:
            await store.start()
        # Replicas starting together: the migrations run once, one after the other, without error.
        await asyncio.gather(*(store.migrate() for store in stores))
        await stores[0].migrate()  # a later run is a no-op
        assert await stores[0].count() == 0
    finally:
        for store in stores:
            await store.aclose()
    engine = create_sync_engine(fresh_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            assert compare_metadata(context, metadata) == []  # migrations == schema.py
            tables = sa.inspect(conn).get_table_names()
        assert {"alerts", "alert_events", "alert_history"} <= set(tables)
    finally:
        engine.dispose()


# --- upserts ---------------------------------------------------------------------------------


async def test_redelivering_a_batch_changes_nothing(store: SqlAlertStore) -> None:
    batch = [make_alert(first_seen=T0 + timedelta(seconds=i)) for i in range(3)]
    first = await store.upsert_alerts(batch)
    again = await store.upsert_alerts(batch)
    assert (first.inserted, first.updated) == (3, 0)
    assert (again.inserted, again.updated) == (0, 3)
    assert await store.count() == 3
    detail = await store.get_alert(batch[0].alert_id)
    assert [event.event_id for event in detail.events] == [event.event_id for event in batch[0].sample_events]
    assert detail.event_ids == batch[0].event_ids
    assert detail.occurrences == 3


async def test_a_value_the_database_refuses_is_a_backend_error_and_stores_nothing(
    backend: str, store: SqlAlertStore
) -> None:
    # PostgreSQL refuses NUL in text (SQLite stores it): a data error, not an outage, so that the
    # worker isolates the alert instead of holding the batch as if the database were down.
    # Events with NUL are refused at intake now (model.limits); the store stays safe on its own.
    poison = make_alert().model_copy(update={"user_id": "ro\x00ot"})
    if backend != "postgres":
        await store.upsert_alerts([poison])
        assert await store.count() == 1
        return
    with pytest.raises(BackendError) as refused:
        await store.upsert_alerts([poison, make_alert(first_seen=T0 + timedelta(seconds=1))])
    assert not isinstance(refused.value, BackendUnavailable)
    assert await store.count() == 0


async def test_new_alerts_are_counted_by_severity_and_repeats_are_not(store: SqlAlertStore) -> None:
    stored = make_alert(severity="WARNING")
    assert (await store.upsert_alerts([stored])).new_by_severity == {"WARNING": 1}
    batch = [stored, *(make_alert(first_seen=T0 + timedelta(seconds=i), severity="CRITICAL") for i in (1, 2))]
    batch.append(make_alert(first_seen=T0 + timedelta(seconds=3), severity="INFO"))
    result = await store.upsert_alerts(batch)
    assert result.new_by_severity == {"CRITICAL": 2, "INFO": 1}
    assert (await store.upsert_alerts(batch)).new_by_severity == {}


async def test_empty_batch_is_a_no_op(store: SqlAlertStore) -> None:
    result = await store.upsert_alerts([])
    assert (result.inserted, result.updated) == (0, 0)


@pytest.mark.parametrize("order", ["older_first", "newer_first"])
async def test_merge_takes_max_and_min_in_any_order(store: SqlAlertStore, order: str) -> None:
    alert_id = uuid4()
    shared = [uuid4() for _ in range(3)]
    older = make_alert(
        alert_id,
        first_seen=T0 + timedelta(seconds=1),
        last_seen=T0 + timedelta(seconds=5),
        occurrences=3,
        event_ids=shared,
        description="3 failed logins",
    )
    extra = [uuid4() for _ in range(2)]
    newer = make_alert(
        alert_id,
        first_seen=T0,
        last_seen=T0 + timedelta(seconds=9),
        occurrences=7,
        event_ids=[*shared, *extra],
        description="7 failed logins",
    )
    deliveries = [older, newer] if order == "older_first" else [newer, older]
    for alert in deliveries:
        await store.upsert_alerts([alert])
    detail = await store.get_alert(alert_id)
    assert detail.occurrences == 7
    assert detail.first_seen == T0
    assert detail.last_seen == T0 + timedelta(seconds=9)
    assert detail.description == "7 failed logins"
    assert detail.event_ids == [*shared, *extra]


async def test_event_ids_merge_keeps_stored_ones_first_and_caps(store: SqlAlertStore) -> None:
    stored = [uuid4() for _ in range(60)]
    incoming = stored[30:] + [uuid4() for _ in range(60)]
    alert_id = uuid4()
    await store.upsert_alerts([make_alert(alert_id, event_ids=stored)])
    await store.upsert_alerts([make_alert(alert_id, event_ids=incoming[:MAX_ALERT_EVENT_IDS])])
    detail = await store.get_alert(alert_id)
    assert detail.event_ids == [*stored, *incoming[30:]][:MAX_ALERT_EVENT_IDS]


async def test_duplicate_ids_in_one_batch_are_merged(store: SqlAlertStore) -> None:
    alert_id = uuid4()
    first = make_alert(alert_id, occurrences=3, last_seen=T0 + timedelta(seconds=2))
    second = make_alert(alert_id, occurrences=5, first_seen=T0 - timedelta(seconds=1), last_seen=T0)
    other = make_alert()
    result = await store.upsert_alerts([first, second, other])
    assert (result.inserted, result.updated) == (2, 0)
    detail = await store.get_alert(alert_id)
    assert (detail.occurrences, detail.first_seen, detail.last_seen) == (
        5,
        T0 - timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    )
    assert len(detail.events) == 6
    assert detail.event_ids == first.event_ids + second.event_ids


async def test_sample_events_are_added_once_up_to_the_cap(store: SqlAlertStore) -> None:
    alert_id = uuid4()
    early = [make_event(T0 + timedelta(seconds=i)) for i in range(15)]
    late = [make_event(T0 + timedelta(seconds=100 + i)) for i in range(15)]
    await store.upsert_alerts([make_alert(alert_id, events=early)])
    await store.upsert_alerts([make_alert(alert_id, events=late, occurrences=30)])
    await store.upsert_alerts([make_alert(alert_id, events=late, occurrences=30)])
    detail = await store.get_alert(alert_id)
    assert len(detail.events) == MAX_SAMPLE_EVENTS
    assert detail.events == [*early, *late][:MAX_SAMPLE_EVENTS]  # parsed back intact, oldest first


async def test_status_and_history_survive_upserts(store: SqlAlertStore) -> None:
    alert = make_alert()
    await store.upsert_alerts([alert])
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED), actor="ana")
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 9, "status": AlertStatus.OPEN})])
    detail = await store.get_alert(alert.alert_id)
    assert detail.status is AlertStatus.ACKNOWLEDGED
    assert detail.occurrences == 9
    assert len(detail.history) == 1


async def test_new_activity_reopens_a_resolved_alert_once(store: SqlAlertStore) -> None:
    alert = make_alert(occurrences=3)
    await store.upsert_alerts([alert])
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.RESOLVED, note="done"), actor="ana")
    # A redelivery (or crash replay) carries nothing new: the alert stays resolved.
    await store.upsert_alerts([alert])
    assert (await store.get_alert(alert.alert_id)).status is AlertStatus.RESOLVED
    more = alert.model_copy(update={"occurrences": 5, "last_seen": T0 + timedelta(minutes=1)})
    await store.upsert_alerts([more])
    await store.upsert_alerts([more])
    detail = await store.get_alert(alert.alert_id)
    assert detail.status is AlertStatus.OPEN
    assert detail.occurrences == 5
    reopen = detail.history[-1]
    assert (reopen.actor, reopen.from_status, reopen.to_status) == ("auditflow", AlertStatus.RESOLVED, AlertStatus.OPEN)
    assert reopen.note == "reopened: 2 new occurrence(s) after it was resolved"
    assert len(detail.history) == 2


async def test_new_activity_leaves_an_acknowledged_alert_acknowledged(store: SqlAlertStore) -> None:
    alert = make_alert(occurrences=3)
    await store.upsert_alerts([alert])
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED), actor="ana")
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 8})])
    assert (await store.get_alert(alert.alert_id)).status is AlertStatus.ACKNOWLEDGED


async def test_concurrent_writers_lose_no_update(backend: str, store: SqlAlertStore) -> None:
    second = SqlAlertStore(store.url)
    await second.start()
    try:
        alert_ids = [uuid4() for _ in range(10)]
        halves = [[uuid4() for _ in range(5)] for _ in range(2)]

        def versions(part: int) -> list[Alert]:
            return [make_alert(alert_id, occurrences=3 + part, event_ids=halves[part]) for alert_id in alert_ids]

        await asyncio.gather(
            *(target.upsert_alerts(versions(part)) for part, target in enumerate([store, second]) for _ in range(3))
        )
    finally:
        await second.aclose()
    for alert_id in alert_ids:
        detail = await store.get_alert(alert_id)
        assert detail.occurrences == 4
        assert set(detail.event_ids) == set(halves[0]) | set(halves[1])


# --- listing ---------------------------------------------------------------------------------


async def seed_varied(store: SqlAlertStore) -> dict[str, Alert]:
    alerts = {
        "critical_shadow": make_alert(
            first_seen=T0,
            severity=Severity.CRITICAL,
            rule_id="sensitive-file",
            rule_name="Sensitive file modified",
            user_id="root",
            server_hostname="db-1",
            description="/etc/shadow modified",
        ),
        "warning_alice": make_alert(first_seen=T0 + timedelta(minutes=1)),
        "warning_bob": make_alert(
            first_seen=T0 + timedelta(minutes=2), user_id="bob", server_hostname="web-2", description="bob"
        ),
        "error_sudo": make_alert(
            first_seen=T0 + timedelta(minutes=3),
            severity=Severity.ERROR,
            rule_id="sudo-destructive",
            rule_name="Destructive sudo",
            user_id=None,
            server_hostname=None,
            group={},
            description="rm -rf / via sudo",
        ),
    }
    await store.upsert_alerts(list(alerts.values()))
    await store.update_alert(alerts["warning_bob"].alert_id, AlertUpdate(status=AlertStatus.RESOLVED), actor="ana")
    return alerts


async def test_every_filter_selects_exactly_its_alerts(store: SqlAlertStore) -> None:
    alerts = await seed_varied(store)

    def pick(*names: str) -> set[UUID]:
        return {alerts[name].alert_id for name in names}

    expectations: list[tuple[dict[str, Any], set[UUID]]] = [
        ({}, pick(*alerts)),
        ({"severity": [Severity.CRITICAL]}, pick("critical_shadow")),
        ({"severity": [Severity.ERROR, Severity.WARNING]}, pick("error_sudo", "warning_alice", "warning_bob")),
        ({"rule_id": "failed-login-burst"}, pick("warning_alice", "warning_bob")),
        ({"status": [AlertStatus.RESOLVED]}, pick("warning_bob")),
        (
            {"status": [AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]},
            pick("critical_shadow", "warning_alice", "error_sudo"),
        ),
        ({"user_id": "alice"}, pick("warning_alice")),
        ({"server_hostname": "db-1"}, pick("critical_shadow")),
        # since is inclusive, until exclusive
        ({"since": T0 + timedelta(minutes=1)}, pick("warning_alice", "warning_bob", "error_sudo")),
        ({"until": T0 + timedelta(minutes=1)}, pick("critical_shadow")),
        (
            {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=3)},
            pick("warning_alice", "warning_bob"),
        ),
        ({"rule_id": "failed-login-burst", "status": [AlertStatus.OPEN]}, pick("warning_alice")),
        ({"rule_id": "no-such-rule"}, set()),
    ]
    for filters, expected in expectations:
        assert await ids(store, **filters) == expected, filters


async def test_since_finds_an_alert_whose_first_seen_a_merge_moved_earlier(store: SqlAlertStore) -> None:
    # The stored partition key (opened_at) stays at the first write's first_seen, 10 minutes after T0;
    # the since filter must follow the merged first_seen, 5 minutes after T0.
    first = make_alert(first_seen=T0 + timedelta(minutes=10), last_seen=T0 + timedelta(minutes=10))
    await store.upsert_alerts([first])
    earlier = first.model_copy(update={"first_seen": T0 + timedelta(minutes=5), "occurrences": 2})
    await store.upsert_alerts([earlier])
    assert await ids(store, since=T0 + timedelta(minutes=5)) == {first.alert_id}
    assert await ids(store, since=T0 + timedelta(minutes=4)) == {first.alert_id}
    assert await ids(store, since=T0 + timedelta(minutes=6)) == set()
    assert await ids(store, since=T0 + timedelta(minutes=10)) == set()


async def test_items_are_newest_first_with_aware_utc_timestamps(store: SqlAlertStore) -> None:
    await seed_varied(store)
    items = await all_items(store)
    assert [item.first_seen for item in items] == sorted((item.first_seen for item in items), reverse=True)
    for item in items:
        for value in (item.first_seen, item.last_seen, item.created_at, item.updated_at):
            assert value.utcoffset() == timedelta(0)


async def test_text_search_is_case_insensitive_and_literal(store: SqlAlertStore) -> None:
    alerts = {
        "percent": make_alert(description="CPU at 100% on host"),
        "underscore": make_alert(description="disk_full on /var"),
        "lookalike": make_alert(description="diskXfull and 100 percent"),
        "user": make_alert(description="nothing", user_id="Mallory"),
        "host": make_alert(description="nothing", user_id=None, server_hostname="Bastion-7"),
        "rule": make_alert(description="nothing", rule_name="Privileged Account Created"),
    }
    await store.upsert_alerts(list(alerts.values()))
    cases = {
        "100%": {"percent"},
        "%": {"percent"},
        "k_f": {"underscore"},
        "DISK": {"underscore", "lookalike"},
        "mallory": {"user"},
        "bastion": {"host"},
        "privileged account": {"rule"},
        "\\": set(),
    }
    for text, expected in cases.items():
        assert await ids(store, text=text) == {alerts[name].alert_id for name in expected}, text


async def test_pagination_visits_every_alert_once_despite_equal_first_seen(store: SqlAlertStore) -> None:
    # Ten alerts share one first_seen: only the alert_id tie-breaker keeps pages apart.
    times = [T0] * 10 + [T0 + timedelta(seconds=i) for i in range(1, 11)]
    batch = [make_alert(first_seen=at) for at in times]
    await store.upsert_alerts(batch)
    expected = sorted(batch, key=lambda alert: (alert.first_seen, alert.alert_id), reverse=True)
    for limit in (1, 3, 5, 7, 20, 21):
        items = await all_items(store, limit=limit)
        assert [item.alert_id for item in items] == [alert.alert_id for alert in expected], limit
    last = await store.list_alerts(AlertQuery(limit=20))
    assert last.next_cursor is None  # exactly one full page: nothing after it


async def test_pagination_with_a_filter(store: SqlAlertStore) -> None:
    batch = [make_alert(first_seen=T0 + timedelta(seconds=i % 4), user_id=f"u{i % 2}") for i in range(12)]
    await store.upsert_alerts(batch)
    items = await all_items(store, limit=2, user_id="u1")
    assert len(items) == 6
    assert {item.alert_id for item in items} == {alert.alert_id for alert in batch if alert.user_id == "u1"}


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        "",
        base64.urlsafe_b64encode(b"12:not-a-uuid").decode(),
        base64.urlsafe_b64encode(b"soon:" + uuid4().hex.encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["not-base64", "empty", "bad-uuid", "bad-time", "not-utf8"],
)
async def test_invalid_cursor_is_a_value_error(store: SqlAlertStore, cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_alerts(AlertQuery(cursor=cursor))


# --- triage ----------------------------------------------------------------------------------


async def test_updates_record_history(store: SqlAlertStore) -> None:
    alert = make_alert()
    await store.upsert_alerts([alert])
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED, note="looking"), "ana")
    await store.update_alert(alert.alert_id, AlertUpdate(note="false positive"), "bo")
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED, note="still"), "bo")
    # A blank note is no note, here as at the API: the status change alone is recorded.
    detail = await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.RESOLVED, note=" "), "ana")
    assert detail.status is AlertStatus.RESOLVED
    assert [(c.actor, c.from_status, c.to_status, c.note) for c in detail.history] == [
        ("ana", AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, "looking"),
        ("bo", None, None, "false positive"),
        ("bo", None, None, "still"),  # same status: only the note is recorded
        ("ana", AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED, None),
    ]
    assert all(change.at.utcoffset() == timedelta(0) for change in detail.history)
    assert detail.updated_at >= detail.created_at


async def test_missing_alert_is_not_found(store: SqlAlertStore) -> None:
    with pytest.raises(NotFound):
        await store.get_alert(uuid4())
    with pytest.raises(NotFound):
        await store.update_alert(uuid4(), AlertUpdate(note="x"), "ana")


# --- statistics ------------------------------------------------------------------------------


async def test_stats_count_by_dimension_and_fill_empty_buckets(store: SqlAlertStore) -> None:
    alerts = await seed_varied(store)  # at T0, +1 min, +2 min, +3 min
    more = [make_alert(first_seen=T0 + timedelta(minutes=10), user_id=f"user{i:02d}") for i in range(11)]
    await store.upsert_alerts(more)
    stats = await store.stats(T0 - timedelta(minutes=5), T0 + timedelta(minutes=15), bucket_seconds=300)
    assert stats.total == 15
    assert stats.bucket_seconds == 300
    assert stats.by_severity == {"INFO": 0, "WARNING": 13, "ERROR": 1, "CRITICAL": 1}
    assert stats.by_status == {"open": 14, "acknowledged": 0, "resolved": 1}
    assert [(r.key, r.label, r.count) for r in stats.by_rule] == [
        ("failed-login-burst", "Failed login burst", 13),
        ("sensitive-file", "Sensitive file modified", 1),
        ("sudo-destructive", "Destructive sudo", 1),
    ]
    assert len(stats.top_users) == 10
    assert (stats.top_users[0].key, stats.top_users[0].count) == ("alice", 1)
    assert [(h.key, h.count) for h in stats.top_hosts] == [("web-1", 12), ("db-1", 1), ("web-2", 1)]
    assert [(b.start, b.count) for b in stats.buckets] == [
        (T0 - timedelta(minutes=5), 0),
        (T0, 4),
        (T0 + timedelta(minutes=5), 0),
        (T0 + timedelta(minutes=10), 11),
    ]
    assert alerts  # seeded

    narrow = await store.stats(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3), bucket_seconds=60)
    assert narrow.total == 2
    assert [(b.start, b.count) for b in narrow.buckets] == [
        (T0 + timedelta(minutes=1), 1),
        (T0 + timedelta(minutes=2), 1),
    ]
    open_ended = await store.stats(None, None, bucket_seconds=3600)
    assert [(b.start, b.count) for b in open_ended.buckets] == [(T0, 15)]


async def test_stats_refuse_bad_buckets(store: SqlAlertStore) -> None:
    with pytest.raises(ValueError, match="bucket_seconds"):
        await store.stats(None, None, bucket_seconds=0)
    with pytest.raises(ValueError, match="buckets"):
        await store.stats(T0 - timedelta(days=365), T0, bucket_seconds=1)
    empty = await store.stats(None, None, bucket_seconds=60)
    assert (empty.total, empty.buckets) == (0, [])


async def test_count_and_ping(store: SqlAlertStore) -> None:
    await store.ping()
    await store.upsert_alerts([make_alert(), make_alert()])
    assert await store.count() == 2
