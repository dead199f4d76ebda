"""Notifications in one process: the routing file and its hot reload, the outbox writer joined to
the store's alert writes (the roles that store alerts) and the dispatcher (the roles that send).

The notification service both writes and sends unless `notify_dispatch` is off; `auditflow serve
dispatcher` only sends. Without a dispatcher the file is still polled here, so that the writer
follows its changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from auditflow.backends.store import AlertStore
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.lifecycle import AsyncLifecycle
from auditflow.model.status import DependencyStatus
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.reload import RoutingFile
from auditflow.notify.routing import Routing
from auditflow.retry import Supervised, pause

log = logging.getLogger("auditflow.notify")


class Notifications(AsyncLifecycle):
    def __init__(
        self,
        store: AlertStore,
        dependency: Supervised,
        routing_file: Path,
        reload_s: float,
        *,
        write: bool,
        dispatch: bool,
    ) -> None:
        if not isinstance(store, SqlAlertStore):
            raise TypeError("notifications need the SQL alert store (SQLite or PostgreSQL)")
        # A bad file at start-up stops the start; a missing secret too, where this process sends.
        self.watch = RoutingFile(routing_file, reload_s, resolve_secrets=dispatch)
        self.writer: OutboxWriter | None = None
        if write:
            self.writer = OutboxWriter(self.watch.routing)
            store.transition_hook = self.writer
        self.dispatcher: Dispatcher | None = None
        if dispatch:
            self.dispatcher = Dispatcher(
                store, self.watch.routing, dependency=dependency, watch=self.watch, on_reload=self._apply
            )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _apply(self, routing: Routing) -> None:
        if self.writer is not None:
            self.writer.routing = routing

    async def start(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.start()  # its loop polls the file and hands changes to the writer
        elif self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._watch(), name="notify-routing-watch")

    async def _watch(self) -> None:
        while not await pause(self._stop, self.watch.interval_s):
            try:
                routing = self.watch.poll()
            except Exception:  # a poll must never end the watch
                log.exception("routing file check failed")
                continue
            if routing is not None:
                self._apply(routing)

    async def aclose(self) -> None:
        """Stop sending: a batch in flight finishes and is recorded (or its lease runs out)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self.dispatcher is not None:
            await self.dispatcher.aclose()

    def status(self) -> DependencyStatus:
        return self.watch.status()


__all__ = ["Notifications"]
