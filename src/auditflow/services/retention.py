"""Periodic alert retention inside the notification service (and `auditflow run`): one run every
`retention_interval` seconds while the store is up. On PostgreSQL every replica tries, and the one
that gets the database's retention lock works while the others skip their turn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from auditflow.backends.store.retention import RetentionReport, run_retention
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.dependencies import Dependency
from auditflow.errors import AuditFlowError

log = logging.getLogger("auditflow.retention")


class RetentionService:
    def __init__(
        self,
        store: SqlAlertStore,
        store_dependency: Dependency,
        policy: Mapping[str, int],
        *,
        interval: float,
        batch_size: int,
    ) -> None:
        self.store = store
        self.store_dependency = store_dependency
        self.policy = dict(policy)
        self.interval = interval
        self.batch_size = batch_size
        self.last_report: RetentionReport | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def run_once(self) -> RetentionReport:
        report = await run_retention(self.store, self.policy, batch_size=self.batch_size)
        self.last_report = report
        if report.skipped:
            log.info("retention skipped: %s", report.skipped)
        else:
            log.info(
                "retention removed %d alert(s), %d event(s), %d history entr(ies) in %.1f s; dropped partitions: %s",
                report.total("alerts"),
                report.total("alert_events"),
                report.total("alert_history"),
                report.seconds,
                ", ".join(report.dropped_partitions) or "none",
            )
        return report

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self.store_dependency.wait_up()
            try:
                await self.run_once()
            except AuditFlowError as error:
                # The store went away or refused: the next turn tries again.
                log.warning("retention run failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def aclose(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
