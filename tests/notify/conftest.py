"""Fixtures of the notification tests: a migrated store on SQLite and on the real PostgreSQL, and
routing files that point at a local receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from auditflow.backends.store.schema import alerts
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.backends.store.transitions import snapshot
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.models import DeliveryView
from auditflow.notify.outbox import OutboxWriter, list_deliveries
from auditflow.notify.routing import Routing
from tests.conftest import POSTGRES_ADMIN_URL, require_server
from tests.factories import make_alert

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SECRET = "whsec-test-0123456789"
SECRET_ENV = "AUDITFLOW_TEST_WEBHOOK_SECRET"


def _admin(statement: sql.Composed) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(statement)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'notify.sqlite3'}"
        return
    require_server("postgres")
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique_name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=unique_name).render_as_string(hide_password=False)
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(unique_name)))


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET


def routing_dict(url: str, **delivery: Any) -> dict[str, Any]:
    """One webhook channel; a route for everything and one for critical alerts only."""
    return {
        "dashboard_url": "https://auditflow.example/",
        "channels": {"soc": {"type": "webhook", "url": url, "secret_env": SECRET_ENV, "timeout": 1}},
        "routes": [
            {"name": "all", "channels": ["soc"], "events": ["new", "escalation", "reopened", "resolved"]},
            {"name": "critical", "channels": ["soc"], "min_severity": "CRITICAL"},
        ],
        "delivery": {"initial_backoff": 0.05, "max_backoff": 0.2, "poll_interval": 0.05, **delivery},
    }


def make_routing(url: str = "http://127.0.0.1:9/hook", **delivery: Any) -> Routing:
    return Routing.model_validate(routing_dict(url, **delivery))


@pytest.fixture
async def store(database_url: str, secret_env: str) -> AsyncIterator[SqlAlertStore]:
    store = SqlAlertStore(database_url)
    await store.start()
    try:
        await store.migrate()
        store.transition_hook = OutboxWriter(make_routing())
        yield store
    finally:
        await store.aclose()


def alert_payload(
    event: str = "new", *, route: str | None = "all", url: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An outbox row's payload for one alert change, as the outbox writes it (fields override the alert)."""
    alert = make_alert(**fields)
    return {
        "event": event,
        "route": route,
        "alert": snapshot(alert, status="open"),
        "alert_url": url if url is not None else f"https://auditflow.example/alerts/{alert.alert_id}",
        "previous_occurrences": 0,
    }


def digest_payload(count: int, **fields: Any) -> dict[str, Any]:
    """A digest of `count` alert changes (the contract's digest shape)."""
    items = []
    for _ in range(count):
        item = alert_payload(**fields)
        del item["route"]
        items.append(item)
    return {
        "event": "digest",
        "route": "all",
        "count": count,
        "window_start": "2026-12-02T17:00:00Z",
        "window_end": "2026-12-02T18:00:00Z",
        "items": items,
    }


def sample_test_payload() -> dict[str, Any]:
    """The contract's test message: a clearly fake sample alert."""
    payload = alert_payload(
        "test", route=None, rule_id="auditflow-test", rule_name="AuditFlow test notification", severity="INFO"
    )
    payload["alert_url"] = None
    return payload


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    """A migrated SQLite store without a routing: each test sets its own `transition_hook`."""
    store = SqlAlertStore(f"sqlite:///{tmp_path / 'channels.sqlite3'}")
    await store.start()
    try:
        await store.migrate()
        yield store
    finally:
        await store.aclose()


def single_route(url: str, **delivery: object) -> Routing:
    raw = routing_dict(url, **delivery)
    raw["routes"] = raw["routes"][:1]
    return Routing.model_validate(raw)


@pytest.fixture
async def outbox_store(database_url: str, secret_env: str) -> AsyncIterator[SqlAlertStore]:
    store = SqlAlertStore(database_url)
    await store.start()
    try:
        await store.migrate()
        yield store
    finally:
        await store.aclose()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: a port just bound and released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def until_settled(dispatcher: Dispatcher, rounds: int = 200) -> None:
    """Run batches until no row is pending (waiting out back-off between them)."""
    for _ in range(rounds):
        await dispatcher.run_once()
        pending = [d for d in await all_deliveries(dispatcher.store) if d.status == "pending"]
        if not pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("deliveries still pending")


async def all_deliveries(store: SqlAlertStore) -> list[DeliveryView]:
    """What the deliveries API shows, for every alert (a digest once per alert it carries)."""
    async with store.connection(write=False) as conn:
        ids = list((await conn.execute(alerts.select().with_only_columns(alerts.c.alert_id))).scalars())
    return [delivery for alert_id in ids for delivery in await list_deliveries(store, alert_id)]
