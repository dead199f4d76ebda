"""`SqlAlertStore`: the AlertStore contract on SQLite (embedded) and PostgreSQL, SQLAlchemy Core on
async engines. Every public method maps driver errors into auditflow.errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from auditflow.backends.store import dead_letters
from auditflow.backends.store.base import AlertStore, UpsertResult
from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.backends.store.engine import WRITE_OPTION, create_store_engine, database_url, mapped_errors
from auditflow.backends.store.migrate import migrate_url, schema_problem, upgrade_connection
from auditflow.backends.store.queries import compute_stats, fetch_detail, fetch_page, summary
from auditflow.backends.store.schema import alert_history, alerts, to_ms
from auditflow.backends.store.transitions import AlertTransition, TransitionHook
from auditflow.backends.store.upsert import write_batch
from auditflow.errors import BackendUnavailable, NotFound, SchemaNotReady
from auditflow.model.alert import Alert, AlertDetail, AlertPage, AlertQuery, AlertStats, AlertUpdate
from auditflow.model.dead_letter import DeadLetterPage
from auditflow.model.timeutil import utcnow
from auditflow.tls import TlsOptions

__all__ = ["SqlAlertStore", "migrate_url"]


class SqlAlertStore(AlertStore):
    """Alerts in `sqlite:///path` or `postgresql://user:pass@host/db` (also `postgres://`)."""

    def __init__(self, url: str, *, tls: TlsOptions | None = None) -> None:
        super().__init__(url)
        database_url(url, asynchronous=True)  # an unsupported scheme fails here, not at start()
        self.tls = tls
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._write_turns: asyncio.Lock | None = None
        # Set by the runtime when notifications are configured: outbox rows join the alert writes.
        self.transition_hook: TransitionHook | None = None

    @property
    def dialect(self) -> str:
        return self._require()[0].dialect.name

    def _require(self) -> tuple[AsyncEngine, AsyncEngine]:
        if self._engine is None or self._writer is None:
            raise BackendUnavailable("alert store is not started")
        return self._engine, self._writer

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._require()[0].connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        writer = self._require()[1]
        if self._write_turns is None:
            async with writer.begin() as conn:
                yield conn
            return
        # SQLite has one writer at a time, and its busy handler retries by sleeping, first come not
        # first served: under steady writes (alert batches, triage) one waiter could lose every
        # round until busy_timeout and fail. Taking turns in this process first, in arrival order,
        # leaves the busy timeout to other processes (a migration) only.
        async with self._write_turns, writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connection(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """A connection (a write transaction when `write`) for tables that live beside the alerts,
        such as the outbox; errors are mapped like the store's own."""
        with mapped_errors("outbox"):
            async with self._write() if write else self._read() as conn:
                yield conn

    async def start(self) -> None:
        if self._engine is None:
            with mapped_errors("start"):  # creating the SQLite directory can fail
                self._engine = create_store_engine(self.url, self.tls)
            self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
            self._write_turns = asyncio.Lock() if self._engine.dialect.name == "sqlite" else None
        try:
            await self.ping()
        except BaseException:
            # Leave nothing open behind a failed start: the caller retries start() later.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            with mapped_errors("close"):
                await engine.dispose()

    async def migrate(self) -> None:
        with mapped_errors("migrate"):
            async with self._write() as conn:
                await conn.run_sync(upgrade_connection)

    async def ping(self) -> None:
        with mapped_errors("ping"):
            async with self._read() as conn:
                await conn.execute(sa.text("SELECT 1"))

    async def check_schema(self) -> None:
        with mapped_errors("schema check"):
            async with self._read() as conn:
                problem = await conn.run_sync(schema_problem)
        if problem is not None:
            raise SchemaNotReady(problem)

    async def upsert_alerts(self, alerts: Sequence[Alert]) -> UpsertResult:
        if not alerts:
            return UpsertResult(inserted=0, updated=0)
        with mapped_errors("upsert"):
            async with self._write() as conn:
                return await write_batch(conn, alerts, to_ms(utcnow()), self.transition_hook)

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        with mapped_errors("list"):
            async with self._read() as conn:
                return await fetch_page(conn, query)

    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        with mapped_errors("get"):
            async with self._read() as conn:
                return await fetch_detail(conn, alert_id)

    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        with mapped_errors("update"):
            async with self._write() as conn:
                current = (
                    await conn.execute(
                        sa.select(alerts.c.status).where(alerts.c.alert_id == alert_id).with_for_update()
                    )
                ).scalar_one_or_none()
                if current is None:
                    raise NotFound(f"alert {alert_id} not found")
                now_ms = to_ms(utcnow())
                new_status = update.status.value if update.status is not None else None
                changed = new_status is not None and new_status != current
                if changed:
                    await conn.execute(
                        sa.update(alerts)
                        .where(alerts.c.alert_id == alert_id)
                        .values(status=new_status, updated_at=now_ms)
                    )
                if changed or update.note is not None:
                    await conn.execute(
                        sa.insert(alert_history).values(
                            alert_id=alert_id,
                            at=now_ms,
                            actor=actor,
                            from_status=current if changed else None,
                            to_status=new_status if changed else None,
                            note=update.note,
                        )
                    )
                if changed and new_status == "resolved" and self.transition_hook is not None:
                    await self._record_resolved(conn, alert_id, now_ms)
            # Read back after the commit: the write lock is held only for the change itself (on a
            # busy event loop, every statement in the transaction keeps other writers waiting).
            async with self._read() as conn:
                return await fetch_detail(conn, alert_id)

    async def _record_resolved(self, conn: AsyncConnection, alert_id: UUID, now_ms: int) -> None:
        """The outbox rows of a resolve, in its transaction; only the alert's own row is read, since
        evidence and history are not part of a message."""
        assert self.transition_hook is not None
        alert = summary((await conn.execute(sa.select(alerts).where(alerts.c.alert_id == alert_id))).one())
        resolved = AlertTransition("resolved", alert_id, alert, "resolved", alert.occurrences, alert.occurrences)
        await self.transition_hook.record(conn, [resolved], now_ms)

    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats:
        with mapped_errors("stats"):
            async with self._read() as conn:
                return await compute_stats(conn, since, until, bucket_seconds)

    async def count(self) -> int:
        with mapped_errors("count"):
            async with self._read() as conn:
                return int((await conn.execute(sa.select(sa.func.count()).select_from(alerts))).scalar_one())

    # --- dead letters ----------------------------------------------------------------------------

    async def add_dead_letters(self, letters: Sequence[StoredDeadLetter]) -> int:
        if not letters:
            return 0
        with mapped_errors("store dead letters"):
            async with self._write() as conn:
                return await dead_letters.insert(conn, letters)

    async def list_dead_letters(self, limit: int, cursor: str | None = None) -> DeadLetterPage:
        with mapped_errors("list dead letters"):
            async with self._read() as conn:
                return await dead_letters.page(conn, limit, cursor)

    async def take_dead_letters(
        self, ids: Sequence[UUID] | None, limit: int, *, received_until_ms: int | None = None
    ) -> list[StoredDeadLetter]:
        with mapped_errors("read dead letters"):
            async with self._read() as conn:
                return await dead_letters.fetch(conn, ids, limit, received_until_ms)

    async def delete_dead_letters(self, ids: Sequence[UUID] | None) -> int:
        with mapped_errors("delete dead letters"):
            async with self._write() as conn:
                return await dead_letters.delete(conn, ids)

    async def count_dead_letters(self) -> int:
        with mapped_errors("count dead letters"):
            async with self._read() as conn:
                return await dead_letters.count(conn)
