"""The dispatcher: claims due outbox rows, sends them through their channel, and records each
outcome: sent, retried later (full-jitter back-off, or the receiver's Retry-After) or dead after the
last attempt with the reason. Any number of dispatchers can share one outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import uuid4

from auditflow import tracing
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import AuditFlowError, BackendError, BackendUnavailable
from auditflow.lifecycle import AsyncLifecycle
from auditflow.model.status import DependencyStatus
from auditflow.notify import digest, outbox, purge
from auditflow.notify.channels import Sender, SendResult, build_sender
from auditflow.notify.health import record_outbox_depth
from auditflow.notify.metrics import DELIVERIES, DELIVERY_LATENCY, PURGED
from auditflow.notify.outbox import Claimed, Outcome
from auditflow.notify.reload import RoutingFile
from auditflow.notify.routing import Routing
from auditflow.retry import Attempts, Backoff, Supervised, pause, wait_unless_stopped

if TYPE_CHECKING:  # aiohttp is imported by the processes that send, not by every one that can
    from auditflow.notify.http import HttpClient

log = logging.getLogger("auditflow.notify")

# Waiting for the store while it is down: the same policy as other held operations.
STORE_BACKOFF = Backoff(initial=0.2, maximum=10.0)
# The outbox depth gauge is a COUNT over the pending rows: at most this often, not after every batch.
DEPTH_INTERVAL_S = 1.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class Dispatcher(AsyncLifecycle):
    def __init__(
        self,
        store: SqlAlertStore,
        routing: Routing,
        *,
        client: HttpClient | None = None,
        dependency: Supervised | None = None,
        watch: RoutingFile | None = None,
        on_reload: Callable[[Routing], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.routing = routing
        self.owner = uuid4().hex  # names this dispatcher's claims
        self.clock = clock
        self.dependency = dependency  # the store's supervisor: wait for it (and its migrations) first
        self.watch = watch
        self.on_reload = on_reload
        policy = routing.delivery
        self.backoff = Backoff(policy.initial_backoff.total_seconds(), policy.max_backoff.total_seconds())
        self._own_client = client is None
        if client is None:
            from auditflow.notify.http import HttpClient

            client = HttpClient()
        self._client = client
        # Built now so that a missing secret fails at start-up, not at the first alert.
        self._senders = self._build_senders(routing)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_purge = 0.0  # by self.clock: the first round purges

    def _build_senders(self, routing: Routing) -> dict[str, Sender]:
        return {name: build_sender(channel, self._client) for name, channel in routing.channels.items()}

    def reload(self) -> None:
        """Apply a changed routing file; rows already written keep their route, and a row whose
        channel disappeared fails until it is dead."""
        if self.watch is None or (routing := self.watch.poll()) is None:
            return
        try:
            senders = self._build_senders(routing)
        except AuditFlowError as exc:  # a secret that is gone since the file was checked
            self.watch.last_error = str(exc)
            log.error("routing file change refused, the previous routing stays active: %s", exc)
            return
        self.routing, self._senders = routing, senders
        policy = routing.delivery
        self.backoff = Backoff(policy.initial_backoff.total_seconds(), policy.max_backoff.total_seconds())
        if self.on_reload is not None:
            self.on_reload(routing)

    def status(self) -> DependencyStatus:
        """For /readyz, like the rules: a refused routing change degrades, it does not stop delivery."""
        if self.watch is not None:
            return self.watch.status()
        return DependencyStatus(name="notifications", status="up", critical=False)

    async def start(self) -> None:
        """Start the claim loop (`run_once` also works without it)."""
        if self._task is not None:
            return
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="notify-dispatcher")

    async def aclose(self) -> None:
        """Stop claiming; a batch being sent finishes (each request has its timeout) and is recorded."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._own_client:
            await self._client.aclose()

    async def _run(self) -> None:
        attempts = Attempts(STORE_BACKOFF, self._stop)
        depth_due = 0.0
        while not self._stop.is_set():
            self.reload()
            poll = self.routing.delivery.poll_interval.total_seconds()
            if self.dependency is not None and not self.dependency.is_up:
                await wait_unless_stopped(self._stop, self.dependency.wait_up())
                continue
            try:
                claimed = await self.run_once()
                if time.monotonic() >= depth_due:
                    depth_due = time.monotonic() + DEPTH_INTERVAL_S
                    await record_outbox_depth(self.store)
                attempts.reset()
            except BackendUnavailable as exc:
                log.warning("notification outbox unavailable: %s", exc)
                if self.dependency is not None:
                    self.dependency.mark_down(exc)
                await attempts.pause()
                continue
            except BackendError as exc:
                log.error("notification outbox failed: %s", exc)
                await attempts.pause()
                continue
            if claimed < self.routing.delivery.batch_size:
                await pause(self._stop, poll)

    async def run_once(self) -> int:
        """Purge old rows when it is time, seal the digests whose window closed, claim one batch, send it
        and record the outcomes; returns how many rows were claimed."""
        policy = self.routing.delivery
        await self.purge_if_due()
        await digest.seal_due(self.store, _ms(self.clock()))
        claimed = await outbox.claim(
            self.store,
            self.owner,
            policy.batch_size,
            _ms(policy.lease.total_seconds()),
            _ms(self.clock()),
            policy.max_attempts,
        )
        if not claimed:
            return 0
        limit = asyncio.Semaphore(policy.concurrency)

        async def deliver(row: Claimed) -> Outcome:
            payload, trace = tracing.split_trace(row.payload)
            row = dataclasses.replace(row, payload=payload)
            async with limit:
                with tracing.delivering(trace, row.channel, str(row.delivery_id), row.attempts) as span:
                    outcome = self._outcome(row, await self._send(row))
                    tracing.record_outcome(span, outcome.status, outcome.error)
                    return outcome

        outcomes = await asyncio.gather(*(deliver(row) for row in claimed))
        await outbox.finish(self.store, self.owner, outcomes, _ms(self.clock()))
        return len(claimed)

    async def purge_if_due(self) -> int:
        """Delete sent and dead rows past their retention, at most once per `purge_interval`; returns
        how many were deleted."""
        now = self.clock()
        if now < self._next_purge:
            return 0
        policy = self.routing.delivery
        self._next_purge = now + policy.purge_interval.total_seconds()
        total = 0
        for status, keep in (("sent", policy.keep_sent), ("dead", policy.keep_dead)):
            deleted = await purge.purge(self.store, status, _ms(now - keep.total_seconds()))
            PURGED.labels(status).inc(deleted)
            total += deleted
        if total:
            log.info("purged %d finished notification deliveries", total)
        return total

    async def _send(self, row: Claimed) -> SendResult:
        sender = self._senders.get(row.channel)
        if sender is None:
            return SendResult(False, f"channel {row.channel!r} is not in the routing file")
        if row.attempts > 1:
            DELIVERIES.labels(row.channel, "retried").inc()
        return await sender.send(row.delivery_id, row.event, row.payload)

    def _outcome(self, row: Claimed, result: SendResult) -> Outcome:
        now = self.clock()
        if result.ok:
            log.debug("delivery %s to %s sent (attempt %d)", row.delivery_id, row.channel, row.attempts)
            DELIVERIES.labels(row.channel, "sent").inc()
            DELIVERY_LATENCY.labels(row.channel).observe(max(now - row.created_at / 1000, 0.0))
            return Outcome(row.delivery_id, "sent", _ms(now))
        policy = self.routing.delivery
        if row.attempts >= policy.max_attempts:
            DELIVERIES.labels(row.channel, "dead").inc()
            log.error("delivery %s to %s is dead: %s", row.delivery_id, row.channel, result.error)
            return Outcome(row.delivery_id, "dead", _ms(now), f"gave up after {row.attempts} attempts: {result.error}")
        DELIVERIES.labels(row.channel, "failed").inc()
        if result.retry_after is not None:
            delay = min(result.retry_after, policy.max_backoff.total_seconds())
        else:
            delay = self.backoff.delay(row.attempts - 1)
        return Outcome(row.delivery_id, "pending", _ms(now + delay), result.error)
