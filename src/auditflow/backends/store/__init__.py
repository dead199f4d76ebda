"""Alert store: SQLite (embedded) and PostgreSQL through one SQLAlchemy Core schema."""

from __future__ import annotations

from auditflow.backends.store.base import AlertStore
from auditflow.tls import TlsOptions

__all__ = ["AlertStore", "create_store"]


def create_store(url: str, *, tls: TlsOptions | None = None) -> AlertStore:
    """The store for a database URL (SQLite or PostgreSQL); an unsupported scheme raises here."""
    from auditflow.backends.store.sql import SqlAlertStore

    return SqlAlertStore(url, tls=tls)
