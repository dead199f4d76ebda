"""A store whose schema is not migrated: readiness and the API answer 503 `run auditflow migrate` instead
of reporting ready and failing requests with 500 on a missing table, and recover once it is migrated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from auditflow.app import create_app
from auditflow.backends.store.engine import create_sync_engine
from auditflow.backends.store.migrate import migrate_url
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import load_settings
from auditflow.errors import SchemaNotReady
from auditflow.model.alert import AlertQuery
from auditflow.runtime import Runtime
from tests.conftest import require_server
from tests.databases import postgres_database

TOKEN = "schema-test-token-0123456789"


@pytest.fixture
def empty_postgres(unique_name: str) -> Iterator[str]:
    require_server("postgres")
    name = f"t{unique_name}".lower()[:40]
    with postgres_database(name) as url:
        yield url


@pytest.fixture
async def notification(empty_postgres: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(data_dir=tmp_path, api_tokens=TOKEN, database_url=empty_postgres, dependency_retry_max=0.2)
    runtime = Runtime(settings, "notification")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client
    finally:
        await runtime.aclose()


async def _wait_for_store(client: httpx.AsyncClient, code: int, error: str | None) -> None:
    """Until /readyz answers `code` with the store's last error containing `error` (None: the store is up)."""
    seen: Any = None
    for _ in range(200):
        response = await client.get("/readyz")
        store = next(d for d in response.json()["dependencies"] if d["name"] == "store")
        seen = (response.status_code, store)
        last_error = store["last_error"] or ""
        if response.status_code == code and (store["status"] == "up" if error is None else error in last_error):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"readiness never became {code} / {error!r}: last {seen}")


@pytest.mark.postgres
async def test_unmigrated_postgres_is_not_ready_and_the_api_says_migrate(
    notification: httpx.AsyncClient, empty_postgres: str
) -> None:
    await _wait_for_store(notification, 503, "run auditflow migrate")

    response = await notification.get("/api/v1/alerts")
    assert response.status_code == 503
    assert "run auditflow migrate" in response.json()["detail"]
    assert response.headers["Retry-After"]

    await asyncio.to_thread(migrate_url, empty_postgres)
    await _wait_for_store(notification, 200, None)
    assert (await notification.get("/api/v1/alerts")).status_code == 200


async def test_sqlite_store_reports_a_missing_or_unknown_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
    store = SqlAlertStore(url)
    await store.start()
    try:
        with pytest.raises(SchemaNotReady, match="run auditflow migrate"):
            await store.check_schema()
        with pytest.raises(SchemaNotReady, match="run auditflow migrate"):
            await store.list_alerts(AlertQuery())
        await store.migrate()
        await store.check_schema()
        engine = create_sync_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
        finally:
            engine.dispose()
        with pytest.raises(SchemaNotReady, match="upgrade auditflow"):
            await store.check_schema()
    finally:
        await store.aclose()


async def test_a_process_that_migrates_its_store_says_it_is_starting_until_it_has(tmp_path: Path) -> None:
    """`auditflow run` serves while its store is still migrating: a request in that moment gets a short
    retry, not the operator's "run auditflow migrate"."""
    settings = load_settings(data_dir=tmp_path, api_tokens=TOKEN, generator_rate=0)
    runtime = Runtime(settings, "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    assert runtime.migrates_store
    store = runtime.store
    assert isinstance(store, SqlAlertStore)
    await store.start()  # opened, not migrated: the store dependency is not up yet
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
            response = await c.get("/api/v1/alerts")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "starting" in response.json()["detail"]
            await runtime.start()
            await runtime.dependencies["store"].wait_up()
            assert (await c.get("/api/v1/alerts")).status_code == 200
    finally:
        await runtime.aclose()
