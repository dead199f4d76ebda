"""Fixtures shared by the store's migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_server
from tests.databases import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Any, unique_name: str) -> Iterator[str]:
    """An empty database of each kind, nothing migrated yet: SQLite in the test's directory, or a
    PostgreSQL database of the test's own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.sqlite3'}"
        return
    require_server("postgres")
    with postgres_database(unique_name) as database:
        yield database
