"""Fixtures of the unit suite: the embedded alert store (SQLite in a temporary directory), so that
code reading alerts runs against the real filtering, paging and status changes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auditflow.backends.store.sql import SqlAlertStore, migrate_url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the newest revision, migrated once and copied for each test."""
    path = tmp_path_factory.mktemp("template") / "alerts.sqlite3"
    migrate_url(f"sqlite:///{path}")
    return path


@pytest.fixture
async def alert_store(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[SqlAlertStore]:
    """A started, migrated and empty store; closing it early simulates an outage."""
    path = tmp_path / "store" / "alerts.sqlite3"
    path.parent.mkdir()
    shutil.copyfile(migrated_sqlite, path)
    store = SqlAlertStore(f"sqlite:///{path}")
    await store.start()
    try:
        await store.migrate()  # a no-op at head: proves the copy is current
        yield store
    finally:
        await store.aclose()
