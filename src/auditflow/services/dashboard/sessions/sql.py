"""Sessions in the alert store's database (`dashboard_sessions`, migration 0002): SQLite for
`auditflow run`, PostgreSQL for a distributed dashboard without Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from auditflow.backends.store.engine import WRITE_OPTION, create_store_engine, database_url, mapped_errors
from auditflow.backends.store.migrate import upgrade_connection
from auditflow.backends.store.schema import dashboard_sessions
from auditflow.services.dashboard.sessions.base import SessionRecord, SessionStore
from auditflow.tls import TlsOptions

_table = dashboard_sessions


class SqlSessionStore(SessionStore):
    """Connects on first use, so the dashboard starts while the database is down. A SQLite file is
    migrated then (nothing else may have created it); PostgreSQL is migrated by `auditflow migrate`
    or by `auditflow run`, as for the alerts."""

    def __init__(
        self, url: str, *, ttl: int, clock: Callable[[], float] = time.time, tls: TlsOptions | None = None
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self.url = url
        self.tls = tls
        self._migrate = database_url(url, asynchronous=True).get_backend_name() == "sqlite"
        self._engine: AsyncEngine | None = None
        self._ready = asyncio.Lock()

    async def _engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """The reading engine and the writing one (on SQLite, writes take the lock at BEGIN)."""
        async with self._ready:
            if self._engine is None:
                with mapped_errors("start"):
                    engine = create_store_engine(self.url, self.tls)
                    if self._migrate:
                        try:
                            async with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                                await conn.run_sync(upgrade_connection)
                        except BaseException:
                            await engine.dispose()
                            raise
                self._engine = engine
            return self._engine, self._engine.execution_options(**{WRITE_OPTION: True})

    async def ping(self) -> None:
        engine = (await self._engines())[0]
        with mapped_errors("session ping"):
            async with engine.connect() as conn:
                await conn.execute(sa.select(sa.func.count()).select_from(_table).where(_table.c.key == ""))

    async def _put(self, key: str, record: SessionRecord) -> None:
        engine = (await self._engines())[1]
        with mapped_errors("session write"):
            async with engine.begin() as conn:
                # Expired rows go at sign-in time: an indexed range delete, usually of nothing.
                await conn.execute(sa.delete(_table).where(_table.c.expires_at <= self.now()))
                await conn.execute(
                    sa.insert(_table).values(
                        key=key, user_name=record.user, stamp=record.stamp, csrf=record.csrf, expires_at=record.expires
                    )
                )

    async def _load(self, key: str) -> SessionRecord | None:
        engine = (await self._engines())[0]
        with mapped_errors("session read"):
            async with engine.connect() as conn:
                query = sa.select(_table.c.user_name, _table.c.stamp, _table.c.csrf, _table.c.expires_at)
                row = (await conn.execute(query.where(_table.c.key == key))).one_or_none()
        if row is None:
            return None
        return SessionRecord(user=row.user_name, stamp=row.stamp, csrf=row.csrf, expires=int(row.expires_at))

    async def _remove(self, key: str) -> None:
        engine = (await self._engines())[1]
        with mapped_errors("session delete"):
            async with engine.begin() as conn:
                await conn.execute(sa.delete(_table).where(_table.c.key == key))

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            with mapped_errors("close"):
                await engine.dispose()
