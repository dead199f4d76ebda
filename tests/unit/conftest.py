"""Fixtures of the unit suite: the embedded alert store (SQLite in a temporary directory), so that
code reading alerts runs against the real filtering, paging and status changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auditflow.backends.store.sql import SqlAlertStore


@pytest.fixture
async def alert_store(tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    """A started, migrated and empty store; closing it early simulates an outage."""
    store = SqlAlertStore(f"sqlite:///{tmp_path / 'store' / 'alerts.sqlite3'}")
    await store.start()
    try:
        await store.migrate()
        yield store
    finally:
        await store.aclose()
