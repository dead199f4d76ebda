"""Alert store: SQLite (embedded) and PostgreSQL through one SQLAlchemy Core schema."""

from __future__ import annotations

from auditflow.backends.store.base import AlertStore

__all__ = ["AlertStore", "create_store"]


def create_store(url: str) -> AlertStore:
    from auditflow.backends.store.sql import SqlAlertStore

    return SqlAlertStore(url)
