"""Alert store details that need no server: URLs, SQLite set-up, error mapping, cursors, merging."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import exc

from auditflow.backends.store import create_store, pg_copy
from auditflow.backends.store.engine import create_store_engine, create_sync_engine, database_url, mapped_errors
from auditflow.backends.store.merge import dedupe, merge_alerts, merge_ids
from auditflow.backends.store.migrate import alembic_config, current_revision, head_revision, migrate_url
from auditflow.backends.store.queries import decode_cursor, encode_cursor, escape_like
from auditflow.backends.store.schema import alert_events, alerts, from_ms, to_ms
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import BackendError, BackendUnavailable, SchemaNotReady
from auditflow.model.alert import MAX_ALERT_EVENT_IDS, Alert, AlertQuery, AlertUpdate
from auditflow.model.event import Event
from tests.factories import make_alert, make_event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("url", "driver", "database"),
    [
        ("sqlite:///data/alerts.sqlite3", "sqlite+aiosqlite", "data/alerts.sqlite3"),
        ("postgresql://user:secret@db:5432/auditflow", "postgresql+psycopg", "auditflow"),
        ("postgres://user@db/auditflow", "postgresql+psycopg", "auditflow"),
    ],
)
def test_store_urls_get_async_drivers(url: str, driver: str, database: str) -> None:
    translated = database_url(url, asynchronous=True)
    assert (translated.drivername, translated.database) == (driver, database)


def test_sync_sqlite_url_uses_the_standard_driver() -> None:
    assert database_url("sqlite:///x.db", asynchronous=False).drivername == "sqlite"


def test_unsupported_scheme_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme"):
        SqlAlertStore("mysql://db/auditflow")


def test_factory_builds_the_sql_store(tmp_path: Path) -> None:
    assert isinstance(create_store(sqlite_url(tmp_path / "a.db")), SqlAlertStore)


async def test_sqlite_engine_creates_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "alerts.sqlite3"
    engine = create_store_engine(sqlite_url(path))
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        await engine.dispose()
    assert path.parent.is_dir()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10_000, "foreign_keys": 1}


async def test_methods_before_start_report_unavailable(tmp_path: Path) -> None:
    store = SqlAlertStore(sqlite_url(tmp_path / "a.db"))
    with pytest.raises(BackendUnavailable, match="not started"):
        await store.ping()
    with pytest.raises(BackendUnavailable):
        await store.list_alerts(AlertQuery())
    await store.aclose()  # closing what never started is harmless


async def test_unreachable_postgres_is_unavailable_and_leaves_nothing_open() -> None:
    store = SqlAlertStore("postgresql://postgres@127.0.0.1:1/auditflow")
    with pytest.raises(BackendUnavailable, match="alert store ping failed"):
        await store.start()
    with pytest.raises(BackendUnavailable, match="not started"):
        await store.ping()


async def test_unwritable_sqlite_directory_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailable, match="start failed"):
        await SqlAlertStore(sqlite_url(blocker / "alerts.sqlite3")).start()


async def test_a_database_without_schema_waits_for_a_migration(tmp_path: Path) -> None:
    # Unavailable, not an error: workers hold their batch until `auditflow migrate` ran, instead of
    # counting deliveries and dead-lettering alerts that nothing is wrong with.
    async with SqlAlertStore(sqlite_url(tmp_path / "a.db")) as store:
        with pytest.raises(SchemaNotReady, match="run auditflow migrate") as caught:
            await store.count()
    assert isinstance(caught.value, BackendUnavailable)


def test_migrate_url_reaches_head_and_is_repeatable(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli" / "alerts.sqlite3")
    migrate_url(url)
    migrate_url(url)
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision() is not None
            assert "alerts" in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_offline_migration_renders_postgres_sql() -> None:
    config = alembic_config("postgresql://postgres@db/auditflow")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()
    assert "CREATE TABLE alerts" in script
    assert "JSONB" in script
    assert "UUID" in script


def test_driver_errors_are_mapped() -> None:
    outage = exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    with pytest.raises(BackendUnavailable, match="refused"), mapped_errors("ping"):
        raise outage
    with pytest.raises(BackendError, match="duplicate"), mapped_errors("upsert"):
        raise exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("duplicate key"))
    locked = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    with pytest.raises(BackendUnavailable, match="locked"), mapped_errors("upsert"):
        raise locked
    with pytest.raises(BackendUnavailable), mapped_errors("start"):
        raise OSError("read-only file system")
    with pytest.raises(BackendError), mapped_errors("list"):
        raise exc.ArgumentError("bad statement")
    with pytest.raises(ValueError, match="mine"), mapped_errors("list"):
        raise ValueError("mine")


@given(first_seen=st.integers(0, 2**42), alert_id=st.uuids())
def test_cursor_round_trips(first_seen: int, alert_id: UUID) -> None:
    cursor = encode_cursor(first_seen, alert_id)
    assert "=" not in cursor
    assert decode_cursor(cursor) == (first_seen, alert_id)


def test_like_wildcards_are_escaped() -> None:
    assert escape_like(r"50%_a\b") == r"50\%\_a\\b"


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_milliseconds_are_exact(value: datetime) -> None:
    truncated = value.replace(microsecond=value.microsecond // 1000 * 1000)
    assert from_ms(to_ms(value)) == truncated


def _alert(alert_id: UUID, occurrences: int, first: int, last: int, ids: list[UUID]) -> Alert:
    return Alert(
        alert_id=alert_id,
        rule_id="r",
        rule_name="R",
        rule_kind="threshold",
        severity="WARNING",
        description=f"{occurrences} hits",
        first_seen=T0 + timedelta(seconds=first),
        last_seen=T0 + timedelta(seconds=first + last),
        occurrences=occurrences,
        event_ids=ids,
    )


versions = st.builds(
    lambda occurrences, first, last, ids: (occurrences, first, last, ids),
    st.integers(1, 1000),
    st.integers(0, 100),
    st.integers(0, 100),
    st.lists(st.sampled_from([uuid4() for _ in range(8)]), max_size=8, unique=True),
)


@given(a=versions, b=versions)
def test_in_batch_merge_is_order_independent_for_counters(
    a: tuple[int, int, int, list[UUID]], b: tuple[int, int, int, list[UUID]]
) -> None:
    alert_id = uuid4()
    one, two = _alert(alert_id, *a), _alert(alert_id, *b)
    left, right = merge_alerts(one, two), merge_alerts(two, one)
    for merged in (left, right):
        assert merged.occurrences == max(one.occurrences, two.occurrences)
        assert merged.first_seen == min(one.first_seen, two.first_seen)
        assert merged.last_seen == max(one.last_seen, two.last_seen)
    assert set(left.event_ids) == set(right.event_ids) == set(one.event_ids) | set(two.event_ids)
    assert left.event_ids[: len(one.event_ids)] == one.event_ids


def test_merge_ids_keeps_order_and_caps() -> None:
    old = [uuid4() for _ in range(80)]
    new = old[-10:] + [uuid4() for _ in range(40)]
    merged = merge_ids(old, new)
    assert merged == [*old, *new[10:]][:MAX_ALERT_EVENT_IDS]


def test_dedupe_returns_one_alert_per_id_in_id_order() -> None:
    ids = sorted(uuid4() for _ in range(3))
    batch = [_alert(ids[2], 1, 0, 0, []), _alert(ids[0], 2, 0, 0, []), _alert(ids[2], 5, 0, 0, [])]
    merged = dedupe(batch)
    assert [alert.alert_id for alert in merged] == [ids[0], ids[2]]
    assert merged[1].occurrences == 5


events = st.builds(
    lambda user, details, result, millis: make_event(
        T0 + timedelta(milliseconds=millis), user_id=user, details=details, action_result=result
    ),
    st.one_of(st.none(), st.text(min_size=1, max_size=20).filter(lambda text: "\x00" not in text)),
    st.dictionaries(
        st.text(max_size=8).filter(lambda text: "\x00" not in text),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none(), st.lists(st.integers(0, 9), max_size=3)),
        max_size=4,
    ),
    st.sampled_from([None, "SUCCESS", "FAILURE"]),
    st.integers(0, 10**9),
)


@given(event=events)
def test_event_payload_is_the_document_of_the_model_dump(event: Event) -> None:
    # The binary COPY path encodes the model's values in one call: the stored document must be the
    # one the engine's serializer makes of model_dump(), and must read back as the same event.
    assert pg_copy.event_payload(event) == pg_copy.json_bytes(event.model_dump())
    assert Event.model_validate(orjson.loads(pg_copy.event_payload(event))) == event


def test_copy_rows_follow_their_tables() -> None:
    alert = make_alert(user_id=None)
    row = pg_copy.alert_values(alert, 7)
    assert len(row) == len(alerts.c) == len(pg_copy.wire_types(alerts))
    assert dict(zip([column.name for column in alerts.c], row, strict=True))["user_id"] is None
    assert dict(zip([column.name for column in alerts.c], row, strict=True))["opened_at"] == to_ms(alert.first_seen)
    event_row = pg_copy.event_values(alert.alert_id, alert.sample_events[0], 42)
    assert len(event_row) == len(alert_events.c)
    assert event_row[-1] == 42
    assert pg_copy.wire_types(alert_events) == ["uuid", "uuid", "int8", "json", "int8"]


async def test_sqlite_writers_take_turns_instead_of_timing_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A triage update while another write of this process holds the SQLite write lock longer than
    the busy timeout waits for its turn; it used to fail with 'database is locked' (a 503)."""
    import asyncio

    import auditflow.backends.store.engine as engine_module

    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    store = SqlAlertStore(sqlite_url(tmp_path / "turns.db"))
    await store.start()
    await store.migrate()
    try:
        alert_id = uuid4()
        await store.upsert_alerts([_alert(alert_id, 1, 1_000, 1_000, [uuid4()])])
        holding = asyncio.Event()

        async def long_write() -> None:
            async with store._write() as conn:
                await conn.execute(sa.text("UPDATE alerts SET occurrences = occurrences"))
                holding.set()
                await asyncio.sleep(0.3)

        writer = asyncio.create_task(long_write())
        await holding.wait()
        detail = await store.update_alert(alert_id, AlertUpdate(note="looked at it"), "ana")
        await writer
        assert [change.note for change in detail.history] == ["looked at it"]
    finally:
        await store.aclose()
