"""Alert retention on SQLite and PostgreSQL: expired resolved alerts go with their events and history,
alerts that are not resolved never go, batches are bounded, and on PostgreSQL whole monthly partitions
are dropped only when nothing in them must stay, partitions exist ahead of time, and an alert id keeps
one row (and one partition) whatever first_seen its redeliveries carry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from auditflow.backends.store import partitions
from auditflow.backends.store.migrate import migrate_url
from auditflow.backends.store.retention import DAY_MS, run_retention
from auditflow.backends.store.schema import alert_events, alert_history, alert_keys, alerts, to_ms
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.cli import main
from auditflow.metrics import RETENTION_REMOVED
from auditflow.model.alert import Alert, AlertStatus, AlertUpdate
from auditflow.model.event import Severity
from tests.conftest import require_server
from tests.databases import postgres_database
from tests.factories import make_alert

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
POLICY = {"INFO": 30, "WARNING": 30, "ERROR": 90}  # CRITICAL: kept forever


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    require_server("postgres")
    with postgres_database(f"t{uuid4().hex[:12]}") as url:
        migrate_url(url)
        yield url


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[SqlAlertStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("alert_history", "alert_events", "alert_keys", "alerts"):
                conn.execute(f"DELETE FROM {table}")
    store = SqlAlertStore(url)
    await store.start()
    try:
        await store.migrate()
        yield store
    finally:
        await store.aclose()


async def sql(store: SqlAlertStore, statement: Any, params: dict[str, Any] | None = None) -> Any:
    async with store.connection(write=True) as conn:
        result = await conn.execute(statement, params or {})
        return result.all() if result.returns_rows else result.rowcount


async def count(store: SqlAlertStore, table: sa.Table) -> int:
    [(rows,)] = await sql(store, sa.select(sa.func.count()).select_from(table))
    return int(rows)


async def age(store: SqlAlertStore, alert: Alert, days: int) -> None:
    """The alert was last changed `days` before NOW."""
    statement = alerts.update().where(alerts.c.alert_id == alert.alert_id).values(updated_at=NOW_MS - days * DAY_MS)
    await sql(store, statement)


async def resolve(store: SqlAlertStore, alert: Alert) -> None:
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.RESOLVED, note="done"), actor="ana")


async def stored_ids(store: SqlAlertStore) -> set[UUID]:
    return {row.alert_id for row in await sql(store, sa.select(alerts.c.alert_id))}


async def ensure_months(store: SqlAlertStore, *months: partitions.Month) -> None:
    if store.dialect == "postgresql":
        async with store.connection(write=True) as conn:
            await conn.run_sync(partitions.ensure_months, months)


# --- both dialects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1000, 2])
async def test_expired_resolved_alerts_go_with_their_events_and_history(store: SqlAlertStore, batch_size: int) -> None:
    first_seen = NOW - timedelta(days=100)
    await ensure_months(store, partitions.month_of(to_ms(first_seen)))
    batch = {
        "old_resolved": make_alert(first_seen=first_seen),
        "old_resolved_2": make_alert(first_seen=first_seen),
        "old_resolved_3": make_alert(first_seen=first_seen),
        "old_open": make_alert(first_seen=first_seen),
        "old_acknowledged": make_alert(first_seen=first_seen),
        "recent_resolved": make_alert(first_seen=first_seen),
        "error_45_days": make_alert(first_seen=first_seen, severity=Severity.ERROR),
        "critical_kept_forever": make_alert(first_seen=first_seen, severity=Severity.CRITICAL),
    }
    await store.upsert_alerts(list(batch.values()))
    for name, alert in batch.items():
        if name != "old_open":
            await resolve(store, alert)
        await age(store, alert, 5 if name == "recent_resolved" else 45)
    await store.update_alert(
        batch["old_acknowledged"].alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED), actor="ana"
    )
    await age(store, batch["old_acknowledged"], 45)
    expired = {batch[name].alert_id for name in ("old_resolved", "old_resolved_2", "old_resolved_3")}
    events_before, history_before = await count(store, alert_events), await count(store, alert_history)

    preview = await run_retention(store, POLICY, batch_size=batch_size, dry_run=True, now_ms=NOW_MS)
    assert preview.removed["WARNING"] == {"alerts": 3, "alert_events": 9, "alert_history": 3}
    assert preview.total("alerts") == 3
    assert await stored_ids(store) == {alert.alert_id for alert in batch.values()}, "a dry run changed something"

    removed_before = RETENTION_REMOVED.labels(table="alerts")._value.get()
    report = await run_retention(store, POLICY, batch_size=batch_size, now_ms=NOW_MS)
    assert report.removed["WARNING"] == {"alerts": 3, "alert_events": 9, "alert_history": 3}
    assert report.total("alerts") == 3
    assert RETENTION_REMOVED.labels(table="alerts")._value.get() == removed_before + 3
    kept = {alert.alert_id for alert in batch.values()} - expired
    assert await stored_ids(store) == kept
    assert await count(store, alert_events) == events_before - 9
    assert await count(store, alert_history) == history_before - 3
    remaining = {row.alert_id for row in await sql(store, sa.select(alert_events.c.alert_id))}
    assert remaining == kept  # every kept alert keeps its evidence
    # A second run finds nothing more; the detail of a kept alert still reads.
    again = await run_retention(store, POLICY, batch_size=batch_size, now_ms=NOW_MS)
    assert again.total("alerts") == 0
    detail = await store.get_alert(batch["old_acknowledged"].alert_id)
    assert len(detail.events) == 3
    assert len(detail.history) == 2


async def test_open_alerts_are_never_removed(store: SqlAlertStore) -> None:
    first_seen = NOW - timedelta(days=3000)
    await ensure_months(store, partitions.month_of(to_ms(first_seen)))
    batch = [make_alert(first_seen=first_seen, severity=severity) for severity in Severity]
    await store.upsert_alerts(batch)
    for alert in batch:
        await age(store, alert, 3000)
    report = await run_retention(store, {severity.value: 1 for severity in Severity}, now_ms=NOW_MS)
    assert report.total("alerts") == 0
    assert partitions.partition_name("alerts", partitions.month_of(to_ms(first_seen))) not in report.dropped_partitions
    assert await stored_ids(store) == {alert.alert_id for alert in batch}


async def test_a_redelivered_alert_after_retention_is_stored_again(store: SqlAlertStore) -> None:
    alert = make_alert(first_seen=NOW - timedelta(days=60))
    await ensure_months(store, partitions.month_of(to_ms(alert.first_seen)))
    await store.upsert_alerts([alert])
    await resolve(store, alert)
    await age(store, alert, 40)
    assert (await run_retention(store, POLICY, now_ms=NOW_MS)).total("alerts") == 1
    await store.upsert_alerts([alert])
    detail = await store.get_alert(alert.alert_id)
    assert detail.status == AlertStatus.OPEN
    assert len(detail.events) == 3
    assert detail.history == []


def test_the_cli_reports_per_severity(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    runner = CliRunner()
    monkeypatch.setenv("AUDITFLOW_RETENTION_DAYS", "0")
    result = runner.invoke(main, ["retention", "run", "--database-url", url])
    assert result.exit_code == 0
    assert "every alert is kept" in result.output
    monkeypatch.setenv("AUDITFLOW_RETENTION_DAYS", "30")
    monkeypatch.setenv("AUDITFLOW_RETENTION_DAYS_BY_SEVERITY", '{"critical": 0, "info": 7}')
    result = runner.invoke(main, ["retention", "run", "--database-url", url])
    assert result.exit_code == 1
    assert "auditflow migrate" in result.output
    assert runner.invoke(main, ["migrate", "--database-url", url]).exit_code == 0
    result = runner.invoke(main, ["retention", "run", "--dry-run", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:5]}
    assert lines == {"INFO": ["7", "0", "0", "0"], "WARNING": ["30", "0", "0", "0"], "ERROR": ["30", "0", "0", "0"]}
    result = runner.invoke(main, ["retention", "run", "--json", "--database-url", url])
    assert result.exit_code == 0
    assert '"policy_days": {"ERROR": 30, "INFO": 7, "WARNING": 30}' in result.output
    monkeypatch.setenv("AUDITFLOW_RETENTION_DAYS_BY_SEVERITY", '{"low": 3}')
    result = runner.invoke(main, ["retention", "run", "--database-url", url])
    assert result.exit_code == 1
    assert "unknown severity 'low'" in result.output


# --- PostgreSQL: partitions --------------------------------------------------------------------------

postgres_only = pytest.mark.parametrize("store", [BACKENDS[1]], indirect=True)


async def partition_names(store: SqlAlertStore, table: str) -> list[str]:
    async with store.connection(write=False) as conn:
        found = await conn.run_sync(partitions.monthly_partitions, table)
    return [partition.name for partition in found]


@pytest.fixture
async def fresh_postgres_store() -> AsyncIterator[SqlAlertStore]:
    """A store of its own: the module's database has had months dropped by other tests, in whatever
    order the workers ran them."""
    require_server("postgres")
    with postgres_database(f"t{uuid4().hex[:12]}") as url:
        migrate_url(url)
        store = SqlAlertStore(url)
        await store.start()
        try:
            yield store
        finally:
            await store.aclose()


@pytest.mark.postgres
async def test_partitions_exist_ahead_and_for_every_month_retention_sees(fresh_postgres_store: SqlAlertStore) -> None:
    store = fresh_postgres_store
    this_month = partitions.month_of(int(datetime.now(UTC).timestamp() * 1000))
    for table in partitions.PARTITIONED:
        names = await partition_names(store, table)
        for month in partitions.months_ahead(to_ms(datetime(*this_month, 1, tzinfo=UTC))):
            assert partitions.partition_name(table, month) in names
    later = to_ms(datetime(2031, 6, 10, tzinfo=UTC))
    # Alerts of months without a partition go to the default one, and move when their month is made:
    # the months ahead of a run, and the past months the default partition holds; not the far future.
    coming, past, far = (
        make_alert(first_seen=datetime(*ymd, tzinfo=UTC)) for ymd in ((2031, 8, 2), (2030, 2, 1), (2040, 1, 1))
    )
    await store.upsert_alerts([coming, past, far])
    rows = await sql(store, sa.text("SELECT DISTINCT tableoid::regclass::text FROM alerts"))
    assert rows == [("alerts_default",)]
    report = await run_retention(store, POLICY, now_ms=later)
    months = ("203002", "203105", "203106", "203107", "203108")
    assert sorted(report.created_partitions) == sorted(f"{t}_p{m}" for t in ("alerts", "alert_events") for m in months)
    where = dict(await sql(store, sa.text("SELECT alert_id, tableoid::regclass::text FROM alerts")))
    assert where == {coming.alert_id: "alerts_p203108", past.alert_id: "alerts_p203002", far.alert_id: "alerts_default"}
    events = await sql(store, sa.text("SELECT DISTINCT tableoid::regclass::text FROM alert_events"))
    assert sorted(events) == [("alert_events_default",), ("alert_events_p203002",), ("alert_events_p203108",)]
    assert len((await store.get_alert(coming.alert_id)).events) == 3


@postgres_only
async def test_an_alert_id_keeps_its_row_whatever_first_seen_a_redelivery_carries(store: SqlAlertStore) -> None:
    january, february = datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 2, 3, tzinfo=UTC)
    await ensure_months(store, (2026, 1), (2026, 2))
    alert = make_alert(first_seen=february, occurrences=3)
    await store.upsert_alerts([alert])
    # The same alert republished with an earlier first_seen (another month) and more occurrences.
    earlier = alert.model_copy(update={"first_seen": january, "occurrences": 5, "sample_events": []})
    result = await store.upsert_alerts([earlier])
    assert (result.inserted, result.updated) == (0, 1)
    rows = await sql(store, sa.select(alerts.c.opened_at, alerts.c.first_seen, alerts.c.occurrences))
    assert rows == [(to_ms(february), to_ms(january), 5)]
    assert await sql(store, sa.select(alert_keys.c.alert_id, alert_keys.c.opened_at)) == [
        (alert.alert_id, to_ms(february))
    ]


@postgres_only
async def test_a_month_of_expired_alerts_is_dropped_whole_and_one_open_alert_keeps_it(store: SqlAlertStore) -> None:
    await ensure_months(store, (2025, 1), (2025, 2))
    january = [make_alert(first_seen=datetime(2025, 1, 10, tzinfo=UTC)) for _ in range(4)]
    february = [make_alert(first_seen=datetime(2025, 2, 10, tzinfo=UTC)) for _ in range(4)]
    await store.upsert_alerts([*january, *february])
    for alert in [*january, *february[:3]]:  # one February alert stays open
        await resolve(store, alert)
    for alert in [*january, *february]:
        await age(store, alert, 300)

    preview = await run_retention(store, POLICY, dry_run=True, now_ms=NOW_MS)
    assert "alerts_p202501" in preview.dropped_partitions  # other tests' empty months may go too
    assert "alerts_p202502" not in preview.dropped_partitions
    assert preview.removed["WARNING"] == {"alerts": 7, "alert_events": 21, "alert_history": 7}

    report = await run_retention(store, POLICY, batch_size=2, now_ms=NOW_MS)
    assert "alerts_p202501" in report.dropped_partitions
    assert "alerts_p202502" not in report.dropped_partitions
    assert report.removed["WARNING"] == {"alerts": 7, "alert_events": 21, "alert_history": 7}
    assert "alerts_p202501" not in await partition_names(store, "alerts")
    assert "alert_events_p202501" not in await partition_names(store, "alert_events")
    assert "alerts_p202502" in await partition_names(store, "alerts")  # it holds an open alert
    assert await stored_ids(store) == {february[3].alert_id}
    assert await count(store, alert_history) == 0
    assert {row.alert_id for row in await sql(store, sa.select(alert_keys.c.alert_id))} == {february[3].alert_id}
    assert len((await store.get_alert(february[3].alert_id)).events) == 3
    # A January alert delivered again after the drop is stored again (in the default partition).
    await store.upsert_alerts([january[0]])
    assert len((await store.get_alert(january[0].alert_id)).events) == 3


@postgres_only
async def test_only_one_run_works_at_a_time(store: SqlAlertStore, postgres_url: str) -> None:
    from auditflow.backends.store.retention import _RETENTION_LOCK_ID

    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (_RETENTION_LOCK_ID,))
        report = await run_retention(store, POLICY, now_ms=NOW_MS)
        assert report.skipped is not None
        assert "lock" in report.skipped
    assert (await run_retention(store, POLICY, now_ms=NOW_MS)).skipped is None


async def test_the_notification_service_runs_retention_periodically(tmp_path: Any) -> None:
    import asyncio

    from auditflow.config import load_settings
    from auditflow.runtime import Runtime

    url = f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
    store = SqlAlertStore(url)
    await store.start()
    await store.migrate()
    alert = make_alert(first_seen=datetime.now(UTC) - timedelta(days=50))
    await store.upsert_alerts([alert])
    await resolve(store, alert)
    await sql(store, alerts.update().values(updated_at=to_ms(datetime.now(UTC) - timedelta(days=40))))
    await store.aclose()

    assert Runtime(load_settings(data_dir=tmp_path, database_url=url), "notification").retention is None
    settings = load_settings(data_dir=tmp_path, database_url=url, retention_days=30, retention_interval=3600)
    runtime = Runtime(settings, "notification")
    assert runtime.retention is not None
    await runtime.start()
    try:
        async with asyncio.timeout(60):
            while runtime.retention.last_report is None:
                await asyncio.sleep(0.05)
        assert runtime.retention.last_report.total("alerts") == 1
        assert runtime.store is not None
        assert await runtime.store.count() == 0
    finally:
        await runtime.aclose()
