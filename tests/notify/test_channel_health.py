"""Channel health read from the outbox on SQLite and PostgreSQL: idle before anything was attempted,
failing with the last error and its time after a failed attempt, ok once sent, dead rows counted;
the per-channel outbox depth gauge says what the channels list says; the test payload's shape and
the per-channel test throttle; and the upgrade to revision 0005 (the last attempt time)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from auditflow.backends.store.engine import WRITE_OPTION, create_sync_engine
from auditflow.backends.store.migrate import upgrade_connection
from auditflow.backends.store.schema import notification_deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.backends.store.transitions import SNAPSHOT_FIELDS
from auditflow.model.event import Severity
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.health import ChannelDesk, ChannelList
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.routing import Routing
from auditflow.notify.testsend import ChannelTestThrottle, ChannelTestThrottled, payload_for_test
from tests.factories import make_alert
from tests.notify.conftest import SECRET, SECRET_ENV, routing_dict
from tests.notify.receiver import Answer, WebhookReceiver

QUIET_URL = "https://hooks.example:8443/services/T000/B000/XXXXSECRETPATH?token=sekrit"


def two_channels(url: str, **delivery: Any) -> Routing:
    """`soc` gets every alert; `quiet` (with secrets in its URL) only critical ones."""
    raw = routing_dict(url, **delivery)
    raw["channels"]["quiet"] = {"type": "webhook", "url": QUIET_URL, "secret_env": SECRET_ENV}
    raw["routes"][1]["channels"] = ["quiet"]
    return Routing.model_validate(raw)


def depth_metric(channel: str, status: str) -> float | None:
    return REGISTRY.get_sample_value("auditflow_notify_outbox_channel_depth", {"channel": channel, "status": status})


def by_name(listed: ChannelList) -> dict[str, Any]:
    return {channel.name: channel for channel in listed.channels}


async def settle(dispatcher: Dispatcher, store: SqlAlertStore, done: Any) -> ChannelList:
    desk = ChannelDesk(store, lambda: dispatcher.routing)
    async with asyncio.timeout(10):
        while True:
            await dispatcher.run_once()
            listed = await desk.list()
            if done(by_name(listed)["soc"].health):
                return listed
            await asyncio.sleep(0.05)


async def test_health_goes_from_idle_to_failing_to_ok(store: SqlAlertStore) -> None:
    # The first attempt of every delivery fails with 500, the retry succeeds.
    with WebhookReceiver(SECRET, lambda n, _key: Answer(500 if n == 1 else 200)) as receiver:
        routing = two_channels(receiver.url)
        store.transition_hook = OutboxWriter(routing)
        dispatcher = Dispatcher(store, routing)
        desk = ChannelDesk(store, lambda: routing)
        try:
            before = by_name(await desk.list())
            assert before["soc"].health.status == "idle"
            assert before["quiet"].health.status == "idle"
            assert before["soc"].routes == ["all"]
            assert before["quiet"].routes == ["critical"]
            assert before["quiet"].target == "https://hooks.example:8443"
            assert before["soc"].target == receiver.url.removesuffix("/hook")
            assert before["soc"].timeout_seconds == 1.0

            await store.upsert_alerts([make_alert(severity=Severity.WARNING)])
            failing = by_name(await settle(dispatcher, store, lambda h: h.status != "idle"))["soc"].health
            assert failing.status == "failing"
            assert failing.pending == 1
            assert failing.last_error == "HTTP 500: {}"
            assert failing.last_error_at is not None
            assert failing.last_sent_at is None
            assert depth_metric("soc", "pending") == 1

            ok = by_name(await settle(dispatcher, store, lambda h: h.status == "ok"))["soc"].health
            assert (ok.pending, ok.dead, ok.sent_last_hour) == (0, 0, 1)
            assert ok.last_sent_at is not None
            assert ok.last_sent_at >= failing.last_error_at
            assert ok.last_error is None  # the row that failed was sent since
            assert depth_metric("soc", "pending") == 0  # back to 0, not left at its last value
            assert by_name(await desk.list())["quiet"].health.status == "idle"
        finally:
            await dispatcher.aclose()


async def test_dead_deliveries_are_counted_and_keep_the_channel_failing(store: SqlAlertStore) -> None:
    with WebhookReceiver(SECRET, lambda _n, _key: Answer(503)) as receiver:
        routing = two_channels(receiver.url, max_attempts=1)
        store.transition_hook = OutboxWriter(routing)
        dispatcher = Dispatcher(store, routing)
        try:
            await store.upsert_alerts([make_alert(), make_alert()])
            listed = await settle(dispatcher, store, lambda h: h.dead == 2)
        finally:
            await dispatcher.aclose()
    soc = by_name(listed)["soc"].health
    assert (soc.status, soc.pending, soc.dead, soc.sent_last_hour) == ("failing", 0, 2, 0)
    assert soc.last_error == "gave up after 1 attempts: HTTP 503: {}"
    assert depth_metric("soc", "dead") == 2
    assert listed.model_dump_json().count("sekrit") == 0
    assert "SECRETPATH" not in listed.model_dump_json()


async def test_without_routing_the_list_is_empty_and_says_why(store: SqlAlertStore) -> None:
    desk = ChannelDesk(store, lambda: None)
    listed = await desk.list()
    assert (listed.configured, listed.channels) == (False, [])
    assert listed.detail is not None
    assert "AUDITFLOW_NOTIFY_CONFIG" in listed.detail


def test_the_test_payload_has_the_single_alert_shape() -> None:
    payload = payload_for_test()
    assert (payload["event"], payload["route"], payload["alert_url"], payload["previous_occurrences"]) == (
        "test",
        None,
        None,
        0,
    )
    alert = payload["alert"]
    assert alert["rule_id"] == "auditflow-test"
    assert set(alert) == SNAPSHOT_FIELDS  # the shape a real alert change has in a message
    assert "not a real alert" in alert["description"]
    assert payload_for_test()["alert"]["alert_id"] != alert["alert_id"]


def test_one_test_per_channel_per_interval() -> None:
    now = [100.0]
    throttle = ChannelTestThrottle(interval=5.0, clock=lambda: now[0])
    throttle.take("soc")
    throttle.take("ops")  # another channel is not held back
    now[0] += 3.2
    with pytest.raises(ChannelTestThrottled) as refused:
        throttle.take("soc")
    assert refused.value.retry_after == 2
    assert "retry in 2 s" in str(refused.value)
    now[0] += 1.8
    throttle.take("soc")


def test_the_upgrade_gives_sent_rows_their_attempt_time(database_url: str) -> None:
    """Rows written before revision 0005: a sent one's last attempt is its send, a pending one has none."""
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn, conn.execution_options(**{WRITE_OPTION: True}).begin():
            upgrade_connection(conn, "0004")
            base = {"alert_id": uuid4(), "route": "all", "channel": "soc", "event": "new", "attempts": 1}
            base |= {"next_attempt_at": 5, "payload": {}, "created_at": 1}
            sent, pending = uuid4(), uuid4()
            conn.execute(
                # The table's own types (JSON payload, UUIDs); the new column is not named, as before 0005.
                notification_deliveries.insert(),
                [
                    {**base, "delivery_id": sent, "status": "sent", "sent_at": 1234},
                    {**base, "delivery_id": pending, "status": "pending", "sent_at": None},
                ],
            )
        with engine.connect() as conn, conn.execution_options(**{WRITE_OPTION: True}).begin():
            upgrade_connection(conn)
            table = notification_deliveries
            rows = dict(conn.execute(sa.select(table.c.delivery_id, table.c.last_attempt_at)).all())
    finally:
        engine.dispose()
    assert rows == {sent: 1234, pending: None}


async def test_every_channel_type_is_listed_without_its_secrets(
    store: SqlAlertStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack's and apprise's URLs are secrets themselves: only the kind of destination is shown; an
    email channel shows its SMTP server, never its password."""
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.com/services/T000/B000/SLACKSECRET")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-sekrit")
    monkeypatch.setenv("APPRISE_URLS", "json://user:apprise-sekrit@127.0.0.1:9/")
    raw = routing_dict("http://127.0.0.1:9/hook")
    raw["channels"].update(
        {
            "slack": {"type": "slack", "url_env": "SLACK_URL"},
            "mail": {
                "type": "email",
                "host": "smtp.example.org",
                "security": "tls",
                "username": "auditflow",
                "password_env": "SMTP_PASSWORD",
                "from": "auditflow@example.org",
                "to": ["soc@example.org", "oncall@example.org"],
            },
            "pager": {"type": "apprise", "urls_env": "APPRISE_URLS"},
        }
    )
    raw["routes"][0]["channels"] = ["soc", "slack", "mail", "pager"]
    routing = Routing.model_validate(raw)
    listed = await ChannelDesk(store, lambda: routing).list()
    targets = {channel.name: channel.target for channel in listed.channels}
    assert targets == {
        "soc": "http://127.0.0.1:9",
        "slack": "Slack incoming webhook (URL from a secret)",
        "mail": "smtp://smtp.example.org:465 (2 recipients)",
        "pager": "apprise URLs (from a secret)",
    }
    text = listed.model_dump_json()
    for secret in ("SLACKSECRET", "smtp-sekrit", "apprise-sekrit", "SLACK_URL", "SMTP_PASSWORD"):
        assert secret not in text
