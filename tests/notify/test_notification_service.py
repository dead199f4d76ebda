"""The distributed notification service (`serve notification`: RabbitMQ and PostgreSQL) with a routing
file: alerts consumed from the queue are stored and delivered, a redelivered alert is not sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy.engine import make_url

from auditflow.backends.store.migrate import migrate_url
from auditflow.codec import encode_alerts
from auditflow.config import load_settings
from auditflow.runtime import Runtime
from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, delete_rabbitmq_topology, require_server
from tests.factories import make_alert
from tests.notify.conftest import SECRET, routing_dict
from tests.notify.receiver import WebhookReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
def postgres_database(unique_name: str) -> Iterator[str]:
    require_server("postgres")
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique_name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=unique_name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(unique_name)))


async def test_the_notification_service_delivers_what_it_consumes(
    tmp_path: Path, postgres_database: str, unique_name: str, secret_env: str
) -> None:
    require_server("rabbitmq")
    alerts_queue, dead_letters = f"{unique_name}_alerts", f"{unique_name}_dlq"
    with WebhookReceiver(SECRET) as receiver:
        routing = routing_dict(receiver.url)
        routing["routes"] = routing["routes"][:1]
        routing_file = tmp_path / "routing.yaml"
        routing_file.write_text(yaml.safe_dump(routing))
        settings = load_settings(
            data_dir=tmp_path,
            broker_url=RABBITMQ_URL,
            database_url=postgres_database,
            alerts_queue=alerts_queue,
            dead_letter_queue=dead_letters,
            notify_config=routing_file,
            api_tokens="svc:read:notification-token-0123456789",
        )
        migrate_url(postgres_database)  # `auditflow migrate`, before a distributed start
        runtime = Runtime(settings, "notification")
        assert runtime.dispatcher is not None
        await runtime.start()
        try:
            await runtime.wait_ready()
            assert runtime.broker is not None
            alerts = [make_alert() for _ in range(20)]
            await runtime.broker.publish(alerts_queue, [encode_alerts(alerts[:10]), encode_alerts(alerts)])
            async with asyncio.timeout(30):
                while len(receiver.accepted_keys()) < 20:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # time for a stray second message, if there were one
            requests = receiver.seen()
        finally:
            await runtime.aclose()
            await delete_rabbitmq_topology({alerts_queue, dead_letters}, {f"{dead_letters}.dlx"})
    assert len(requests) == 20  # the first ten arrived twice and were stored once, notified once
    assert {request.body["alert"]["alert_id"] for request in requests} == {str(alert.alert_id) for alert in alerts}
