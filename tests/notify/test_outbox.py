"""Outbox rows are written in the alert's own transaction, once per matching route and channel, for
new alerts, escalations that cross a threshold, reopened and resolved alerts, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import notification_deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.backends.store.transitions import AlertTransition
from auditflow.errors import NotFound
from auditflow.model.alert import AlertStatus, AlertUpdate
from auditflow.model.event import Severity
from auditflow.notify.outbox import OutboxWriter, depth, list_deliveries
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import make_routing, routing_dict


async def rows(store: SqlAlertStore) -> list[tuple[str, str, str]]:
    async with store.connection(write=False) as conn:
        query = sa.select(
            notification_deliveries.c.route, notification_deliveries.c.event, notification_deliveries.c.status
        ).order_by(notification_deliveries.c.created_at, notification_deliveries.c.route)
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def test_a_new_alert_writes_one_row_per_matching_route(store: SqlAlertStore) -> None:
    warning = make_alert(severity=Severity.WARNING)
    critical = make_alert(severity=Severity.CRITICAL)
    await store.upsert_alerts([warning, critical])
    assert sorted(await rows(store)) == [
        ("all", "new", "pending"),
        ("all", "new", "pending"),
        ("critical", "new", "pending"),
    ]
    assert await depth(store) == 3
    [delivery] = await list_deliveries(store, warning.alert_id)
    assert (delivery.route, delivery.channel, delivery.attempts, delivery.sent_at) == ("all", "soc", 0, None)


async def test_a_redelivered_alert_writes_nothing_more(store: SqlAlertStore) -> None:
    alert = make_alert()
    await store.upsert_alerts([alert])
    await store.upsert_alerts([alert])
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 2})])  # older, fewer occurrences
    assert await rows(store) == [("all", "new", "pending")]


async def test_escalation_only_when_a_threshold_is_crossed(store: SqlAlertStore) -> None:
    alert = make_alert(occurrences=3)
    await store.upsert_alerts([alert])
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 9})])  # below 10: nothing
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 12})])  # crosses 10
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 50})])  # 10 < 50 < 100: nothing
    assert [event for _, event, _ in await rows(store)] == ["new", "escalation"]
    async with store.connection(write=False) as conn:
        query = sa.select(notification_deliveries.c.payload).where(notification_deliveries.c.event == "escalation")
        payload = (await conn.execute(query)).scalar_one()
    assert (payload["previous_occurrences"], payload["alert"]["occurrences"]) == (9, 12)
    assert payload["alert_url"] == f"https://auditflow.example/alerts/{alert.alert_id}"


async def test_resolving_and_reopening_are_notified(store: SqlAlertStore) -> None:
    alert = make_alert(occurrences=3)
    await store.upsert_alerts([alert])
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.ACKNOWLEDGED), "ana")
    await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.RESOLVED), "ana")
    await store.update_alert(alert.alert_id, AlertUpdate(note="looked again"), "ana")  # no status change
    await store.upsert_alerts([alert.model_copy(update={"occurrences": 4})])
    events = [d.event for d in await list_deliveries(store, alert.alert_id)]
    assert events == ["new", "resolved", "reopened"]


async def test_the_throttle_keeps_one_message_per_alert_and_interval(database_url: str, secret_env: str) -> None:
    store = SqlAlertStore(database_url)
    async with store:
        await store.migrate()
        raw = routing_dict("http://127.0.0.1:9/hook")
        raw["routes"][0].update(throttle="PT1H", escalate_at=[5, 6, 7])
        store.transition_hook = OutboxWriter(Routing.model_validate(raw))
        alert = make_alert(occurrences=3)
        for occurrences in (3, 5, 6, 7):
            await store.upsert_alerts([alert.model_copy(update={"occurrences": occurrences})])
        await store.update_alert(alert.alert_id, AlertUpdate(status=AlertStatus.RESOLVED), "ana")
        await store.upsert_alerts([alert.model_copy(update={"occurrences": 8})])
        # Escalations and the reopen within the hour of the first message are held back; a resolve
        # is what an analyst did and always goes.
        assert [event for _, event, _ in await rows(store)] == ["new", "resolved"]


class FailingAfterRecord(OutboxWriter):
    async def record(self, conn: AsyncConnection, transitions: Sequence[AlertTransition], now_ms: int) -> None:
        await super().record(conn, transitions, now_ms)
        raise RuntimeError("the transaction fails after the outbox row was written")


async def test_a_failed_transaction_leaves_neither_alert_nor_delivery(store: SqlAlertStore) -> None:
    store.transition_hook = FailingAfterRecord(make_routing())
    with pytest.raises(RuntimeError):
        await store.upsert_alerts([make_alert()])
    assert await store.count() == 0
    assert await rows(store) == []


async def test_deliveries_of_an_unknown_alert_are_not_found(store: SqlAlertStore) -> None:
    with pytest.raises(NotFound):
        await list_deliveries(store, uuid4())
    alert = make_alert(severity=Severity.INFO, tags=[])
    store.transition_hook = None
    await store.upsert_alerts([alert])
    assert await list_deliveries(store, alert.alert_id) == []  # known alert, nothing routed
