"""Engines for the alert store: URL translation, SQLite pragmas and locking, driver-error mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auditflow.errors import BackendError, BackendUnavailable, SchemaNotReady
from auditflow.filemodes import PRIVATE_DIR_MODE, ensure_private_file
from auditflow.tls import TlsOptions

# Write transactions on SQLite take the write lock at BEGIN: a deferred transaction that read
# first and then writes fails with SQLITE_BUSY at once when another connection committed in
# between, whereas BEGIN IMMEDIATE waits for busy_timeout like any other lock.
WRITE_OPTION = "auditflow_write"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def json_dumps(value: Any) -> str:
    """Compact JSON; datetimes as RFC 3339 with `Z`, UUIDs as strings (stored event payloads)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()


def database_url(url: str, *, asynchronous: bool) -> URL:
    """The SQLAlchemy URL (with driver) for a store URL: `sqlite:///path` or `postgresql://...`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}; use sqlite:/// or postgresql://")


def _prepare_sqlite_file(url: URL) -> None:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        path = Path(url.database).expanduser()
        # A directory created here is private; an existing one is the operator's (it may be shared).
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        ensure_private_file(path)
        for suffix in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                ensure_private_file(companion)


def _engine_options(url: URL, *, pooled: bool, tls: TlsOptions | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}
    if tls is not None and url.get_backend_name() == "postgresql":
        options["connect_args"] = tls.libpq_params()
    if not pooled:
        options["poolclass"] = sa.NullPool
    elif url.get_backend_name() == "postgresql":
        options.update(pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=1800, pool_timeout=10)
    return options


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN out of the driver's hands so that _on_begin decides DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_store_engine(url: str, tls: TlsOptions | None = None) -> AsyncEngine:
    sa_url = database_url(url, asynchronous=True)
    if sa_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(sa_url)
    engine = create_async_engine(sa_url, **_engine_options(sa_url, pooled=True, tls=tls))
    if sa_url.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine.sync_engine)
    return engine


def create_sync_engine(url: str, tls: TlsOptions | None = None) -> sa.Engine:
    """A blocking engine for one-off work such as `auditflow migrate`."""
    sa_url = database_url(url, asynchronous=False)
    if sa_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(sa_url)
    engine = sa.create_engine(sa_url, **_engine_options(sa_url, pooled=False, tls=tls))
    if sa_url.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine)
    return engine


# PostgreSQL's undefined_table and undefined_column: a schema older than the code, not a bug.
_MISSING_SCHEMA_SQLSTATES = {"42P01", "42703"}


def _is_missing_schema(error: exc.DBAPIError) -> bool:
    cause = error.orig
    if isinstance(cause, sqlite3.OperationalError):
        return str(cause).startswith(("no such table", "no such column"))
    return getattr(cause, "sqlstate", None) in _MISSING_SCHEMA_SQLSTATES


def _is_unavailable(error: exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.OperationalError):
        # "no such table" and friends are operational errors in sqlite3 but retrying will not help.
        return "no such" not in str(error.orig)
    return isinstance(error, exc.OperationalError | exc.InterfaceError)


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into BackendUnavailable / BackendError."""
    try:
        yield
    except exc.DBAPIError as error:
        cause = error.orig or error
        if _is_missing_schema(error):
            message = f"alert store {operation} failed: the schema is not migrated: run auditflow migrate"
            raise SchemaNotReady(message) from error
        message = f"alert store {operation} failed: {cause.__class__.__name__}: {_first_line(cause)}"
        if _is_unavailable(error):
            raise BackendUnavailable(message) from error
        raise BackendError(message) from error
    except (exc.TimeoutError, exc.DisconnectionError, ConnectionError, TimeoutError, OSError) as error:
        raise BackendUnavailable(f"alert store {operation} failed: {_first_line(error)}") from error
    except exc.SQLAlchemyError as error:
        raise BackendError(f"alert store {operation} failed: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__
