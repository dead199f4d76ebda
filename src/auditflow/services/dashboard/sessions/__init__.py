"""Server-side dashboard sessions, chosen by URL scheme like every other backend."""

from __future__ import annotations

from urllib.parse import urlsplit

from auditflow.config import Settings
from auditflow.services.dashboard.sessions.base import SessionRecord, SessionStore, session_key
from auditflow.services.dashboard.sessions.memory import MemorySessionStore

__all__ = [
    "MemorySessionStore",
    "SessionRecord",
    "SessionStore",
    "create_session_store",
    "session_key",
    "session_store_url",
]


def session_store_url(settings: Settings, *, has_alert_store: bool) -> str:
    """Where the sessions of a dashboard process live.

    A process that holds the alert store (`auditflow run`) keeps them in its database. A stand-alone
    dashboard only reaches the notification API, so it uses the Redis that the analysis replicas
    share when AUDITFLOW_STATE_URL names one: every replica then sees every session. Otherwise it
    falls back to the database URL (a SQLite file in the data directory unless one is configured).
    """
    if settings.session_store_url:
        return settings.session_store_url
    if not has_alert_store and urlsplit(settings.state_url).scheme in {"redis", "rediss"}:
        return settings.state_url
    return settings.effective_database_url


def create_session_store(url: str, settings: Settings) -> SessionStore:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "memory":
        return MemorySessionStore(ttl=settings.session_ttl)
    if scheme in {"redis", "rediss"}:
        from auditflow.services.dashboard.sessions.redis import RedisSessionStore

        # The sessions' Redis is the window state's (or one like it): the same TLS options apply.
        return RedisSessionStore(
            url, ttl=settings.session_ttl, key_prefix=settings.state_key_prefix, tls=settings.tls_for("state")
        )
    from auditflow.services.dashboard.sessions.sql import SqlSessionStore

    return SqlSessionStore(url, ttl=settings.session_ttl, tls=settings.tls_for("database"))
