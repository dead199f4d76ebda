"""The dispatcher: claims due outbox rows, sends them through their channel, and records each
outcome: sent, retried later (full-jitter back-off, or the receiver's Retry-After) or dead after the
last attempt with the reason. Any number of dispatchers can share one outbox.

Running (`start`), the three steps overlap: the next batch is claimed while the rows in hand are sent,
`concurrency` workers take rows as they finish the previous one, and outcomes are recorded in batches
while sending goes on. What a dispatcher holds is bounded (`IN_HAND_BATCHES` batches claimed and not
yet sent), so a dispatcher killed mid-way leaves few rows to wait for their lease."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from prometheus_client import Counter, Histogram

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
from auditflow.notify.routing import Delivery, Routing
from auditflow.retry import Attempts, Backoff, Supervised, pause, wait_unless_stopped

if TYPE_CHECKING:  # aiohttp is imported by the processes that send, not by every one that can
    from auditflow.notify.http import HttpClient

log = logging.getLogger("auditflow.notify")

# Waiting for the store while it is down: the same policy as other held operations.
STORE_BACKOFF = Backoff(initial=0.2, maximum=10.0)
# The outbox depth gauge is a COUNT over the pending rows: at most this often, not after every batch.
DEPTH_INTERVAL_S = 1.0
# Rows a running dispatcher holds claimed and not yet sent, in batches: one being sent while the next
# is claimed. (Sent rows wait at most RECORD_LINGER_S, or half a batch, for their outcome's statement.)
IN_HAND_BATCHES = 2
# After a claim that found some rows but not a full batch, the next look comes this soon (at most the
# poll interval): rows are being written, and the poll interval would be their added latency.
ACTIVE_POLL_S = 0.1
# Outcomes wait at most this long for others to be recorded with them in one statement.
RECORD_LINGER_S = 0.1
# A row is not sent when less than its channel's timeout and this margin is left of its lease (it sat
# behind slow requests): it is handed back instead, so that no other dispatcher can claim it mid-send.
LEASE_MARGIN_MS = 500


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


# A metric's child per label values, looked up once rather than on every delivery.
@functools.cache
def _counter(channel: str, result: str) -> Counter:
    return DELIVERIES.labels(channel, result)


@functools.cache
def _latency(channel: str) -> Histogram:
    return DELIVERY_LATENCY.labels(channel)


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
        seal_due = 0.0
        flow = _Flow(self)
        gauge = asyncio.create_task(self._publish_depth(), name="notify-outbox-depth")
        try:
            while not self._stop.is_set():
                self.reload()
                flow.resize()
                poll = self.routing.delivery.poll_interval.total_seconds()
                if self.dependency is not None and not self.dependency.is_up:
                    await wait_unless_stopped(self._stop, self.dependency.wait_up())
                    continue
                asked = got = 0
                try:
                    await self.purge_if_due()
                    if time.monotonic() >= seal_due:  # digest windows are minutes: once per poll is plenty
                        seal_due = time.monotonic() + poll
                        await digest.seal_due(self.store, _ms(self.clock()))
                    asked, got = await flow.refill()
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
                if got < asked:  # nothing more is due now; an outbox that had rows is looked at again sooner
                    await pause(self._stop, poll if not got else min(poll, ACTIVE_POLL_S))
                elif not asked:  # enough in hand: until the workers run the queue low or free room
                    await wait_unless_stopped(self._stop, flow.wait_for_room(poll))
        finally:
            gauge.cancel()
            await flow.close()
            await asyncio.gather(gauge, return_exceptions=True)

    async def _publish_depth(self) -> None:
        """The outbox depth gauges, beside the claim loop so that their COUNTs never hold up a claim."""
        while True:
            if self.dependency is None or self.dependency.is_up:
                try:
                    await record_outbox_depth(self.store)
                except BackendError as exc:  # the claim loop reports the store's state
                    log.debug("outbox depth not published: %s", exc)
            if await pause(self._stop, DEPTH_INTERVAL_S):
                return

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
            async with limit:
                return await self.deliver(row)

        outcomes = await asyncio.gather(*(deliver(row) for row in claimed))
        await outbox.finish(self.store, self.owner, outcomes, _ms(self.clock()))
        return len(claimed)

    async def deliver(self, row: Claimed) -> Outcome:
        """Send one claimed row and decide its outcome (not recorded yet)."""
        payload, trace = tracing.split_trace(row.payload)
        if payload is not row.payload:
            row = dataclasses.replace(row, payload=payload)
        with tracing.delivering(trace, row.channel, str(row.delivery_id), row.attempts) as span:
            outcome = self._outcome(row, await self._send(row))
            tracing.record_outcome(span, outcome.status, outcome.error)
            return outcome

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
            _counter(row.channel, "retried").inc()
        return await sender.send(row.delivery_id, row.event, row.payload)

    def _outcome(self, row: Claimed, result: SendResult) -> Outcome:
        now = self.clock()
        if result.ok:
            log.debug("delivery %s to %s sent (attempt %d)", row.delivery_id, row.channel, row.attempts)
            _counter(row.channel, "sent").inc()
            _latency(row.channel).observe(max(now - row.created_at / 1000, 0.0))
            return Outcome(row.delivery_id, "sent", _ms(now))
        policy = self.routing.delivery
        if row.attempts >= policy.max_attempts:
            _counter(row.channel, "dead").inc()
            log.error("delivery %s to %s is dead: %s", row.delivery_id, row.channel, result.error)
            return Outcome(row.delivery_id, "dead", _ms(now), f"gave up after {row.attempts} attempts: {result.error}")
        _counter(row.channel, "failed").inc()
        if result.retry_after is not None:
            delay = min(result.retry_after, policy.max_backoff.total_seconds())
        else:
            delay = self.backoff.delay(row.attempts - 1)
        return Outcome(row.delivery_id, "pending", _ms(now + delay), result.error)


class _Flow:
    """The sending side of a running dispatcher: claimed rows wait in a queue for `concurrency`
    workers, and their outcomes are recorded in batches by one task while the next rows are sent."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.rows: asyncio.Queue[tuple[Claimed, int] | None] = asyncio.Queue()  # with the latest start (ms)
        self.in_hand = 0  # claimed and not yet sent (queued or in flight)
        self.outcomes: list[Outcome] = []
        self.unsent: list[UUID] = []  # to hand back
        self.room = asyncio.Event()  # the queue ran low
        self.recorded = asyncio.Event()  # something to record (or closing)
        self.batch = asyncio.Event()  # enough to record now
        self.closing = False
        self.workers: dict[int, asyncio.Task[None]] = {}
        self.recorder = asyncio.create_task(self._record(), name="notify-recorder")

    @property
    def policy(self) -> Delivery:
        return self.dispatcher.routing.delivery

    def _low(self) -> int:
        """Claim again when no more than this many rows wait: the workers' next round."""
        return max(self.policy.concurrency, self.policy.batch_size // 2)

    def _half(self) -> int:
        """Half a batch: the smallest claim worth a statement, and the outcomes recorded together."""
        return max(1, self.policy.batch_size // 2)

    def _done_with_one(self) -> None:
        self.in_hand -= 1
        # Room for a claim again (with more requests in flight than the queue's low mark, the queue
        # alone would not say so).
        if self.in_hand == IN_HAND_BATCHES * self.policy.batch_size - self._half():
            self.room.set()

    def resize(self) -> None:
        """As many workers as the routing's concurrency (a worker past it stops after its row)."""
        for number in range(self.policy.concurrency):
            task = self.workers.get(number)
            if task is None or task.done():
                self.workers[number] = asyncio.create_task(self._work(number), name=f"notify-sender-{number}")

    async def refill(self) -> tuple[int, int]:
        """Claim the next batch if the workers run low and the bound allows; (asked, got)."""
        policy = self.policy
        self.room.clear()  # from here on, only what changes after this look wakes the claim loop
        asked = min(policy.batch_size, IN_HAND_BATCHES * policy.batch_size - self.in_hand)
        # Not a sliver of a batch either: a claim costs about the same for 5 rows as for 100.
        if self.rows.qsize() > self._low() or asked < self._half():
            return 0, 0
        dispatcher = self.dispatcher
        now = _ms(dispatcher.clock())
        lease = _ms(policy.lease.total_seconds())
        claimed = await outbox.claim(dispatcher.store, dispatcher.owner, asked, lease, now, policy.max_attempts)
        timeout = max(
            (_ms(channel.timeout.total_seconds()) for channel in dispatcher.routing.channels.values()), default=0
        )
        start_by = now + lease - timeout - LEASE_MARGIN_MS
        self.in_hand += len(claimed)
        for row in claimed:
            self.rows.put_nowait((row, start_by))
        return asked, len(claimed)

    async def wait_for_room(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.room.wait(), seconds)

    async def _work(self, number: int) -> None:
        dispatcher = self.dispatcher
        while number < self.policy.concurrency:
            item = await self.rows.get()
            if item is None:
                return
            row, start_by = item
            if self.rows.qsize() == self._low():  # crossing it: once per batch, not once per row
                self.room.set()
            if _ms(dispatcher.clock()) > start_by:
                self._done_with_one()
                log.warning(
                    "delivery %s to %s handed back unsent: it waited behind slow requests until less than"
                    " the channel's timeout was left of its lease (delivery.lease, concurrency)",
                    row.delivery_id,
                    row.channel,
                )
                self.unsent.append(row.delivery_id)
                self.recorded.set()
                continue
            try:
                outcome = await dispatcher.deliver(row)
            except Exception as exc:  # a sender's bug: a failed attempt, so that the row ends dead
                log.exception("delivery %s to %s failed unexpectedly", row.delivery_id, row.channel)
                outcome = dispatcher._outcome(row, SendResult(False, f"{exc.__class__.__name__}: {exc}"))
            self._done_with_one()
            self.outcomes.append(outcome)
            self.recorded.set()
            if len(self.outcomes) >= self._half():
                self.batch.set()

    async def _record(self) -> None:
        """Record outcomes (and hand back unsent rows) in batches: each statement takes what gathered
        while the previous one ran, waiting up to RECORD_LINGER_S for half a batch."""
        dispatcher = self.dispatcher
        failures = 0
        while True:
            await self.recorded.wait()
            self.recorded.clear()
            if not self.outcomes and not self.unsent:
                if self.closing:
                    return
                continue
            if not self.closing and len(self.outcomes) < self._half():
                with contextlib.suppress(TimeoutError):  # until enough gathered: a transaction each costs CPU
                    await asyncio.wait_for(self.batch.wait(), RECORD_LINGER_S)
            self.batch.clear()
            outcomes, self.outcomes = self.outcomes, []
            unsent, self.unsent = self.unsent, []
            try:
                if outcomes:
                    await outbox.finish(dispatcher.store, dispatcher.owner, outcomes, _ms(dispatcher.clock()))
                if unsent:
                    await outbox.release(dispatcher.store, dispatcher.owner, unsent)
            except BackendError as exc:
                failures += 1
                if not self.closing:
                    log.warning("recording %d notification outcomes failed, trying again: %s", len(outcomes), exc)
                    # Still ours until the lease ends; a dispatcher that takes a row over is not overwritten.
                    self.outcomes[:0] = outcomes
                    self.unsent[:0] = unsent
                    self.recorded.set()
                    await asyncio.sleep(STORE_BACKOFF.delay(failures - 1))
                    continue
                log.error(
                    "%d notification outcomes not recorded; their rows return after the lease: %s", len(outcomes), exc
                )
            else:
                failures = 0
            if self.outcomes or self.unsent or self.closing:
                self.recorded.set()

    async def close(self) -> None:
        """Stop: rows not started go back at once, those being sent finish and are recorded."""
        while not self.rows.empty():
            item = self.rows.get_nowait()
            if item is not None:
                self.unsent.append(item[0].delivery_id)
        workers = [task for task in self.workers.values() if not task.done()]
        for _ in workers:
            self.rows.put_nowait(None)
        await asyncio.gather(*workers, return_exceptions=True)
        self.closing = True
        self.recorded.set()
        self.batch.set()
        await self.recorder
