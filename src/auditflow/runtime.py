"""Assembly and lifecycle of one process: which backends and services it runs (all of them in the
embedded mode, one in `serve <service>`), their supervised dependencies, readiness, and an orderly
shutdown that stops intake, drains, flushes and closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from auditflow.backends.broker import Broker, create_broker
from auditflow.backends.broker.memory import MemoryBroker
from auditflow.backends.state import WindowState, create_state
from auditflow.backends.store import AlertStore, create_store
from auditflow.config import Settings
from auditflow.dependencies import Dependency, redact_url
from auditflow.model.event import Event
from auditflow.model.limits import EventTimeBounds
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.health import ChannelDesk
from auditflow.notify.routing import Routing
from auditflow.notify.wiring import Notifications
from auditflow.roles import (
    BROKER_ROLES,
    ROLES,
    RULE_FILE_ROLES,
    STATE_ROLES,
    STORE_ROLES,
    Role,
    ServiceName,
    broker_impact,
)
from auditflow.rules import RuleWatcher
from auditflow.services.analysis import AnalysisService
from auditflow.services.dead_letters import DeadLetterWorker
from auditflow.services.generator import GeneratorService
from auditflow.services.ingest import Ingestor
from auditflow.services.notification import NotificationService
from auditflow.services.retention import RetentionService
from auditflow.services.worker import QueueWorker

if TYPE_CHECKING:
    from auditflow.sources.syslog_server import SyslogServer

log = logging.getLogger("auditflow.runtime")


@dataclass
class Runtime:
    settings: Settings
    service: ServiceName
    roles: Role = field(init=False)
    broker: Broker | None = None
    state: WindowState | None = None
    store: AlertStore | None = None
    rules: RuleWatcher | None = None
    ingestor: Ingestor | None = None
    generator: GeneratorService | None = None
    analysis: AnalysisService | None = None
    notification: NotificationService | None = None
    syslog: SyslogServer | None = None
    dead_letters: DeadLetterWorker | None = None
    retention: RetentionService | None = None  # periodic alert retention, where this process writes alerts
    notifications: Notifications | None = None
    dispatcher: Dispatcher | None = None  # the notifications' dispatcher, where this process sends
    channels: ChannelDesk | None = None  # the channels API and the dashboard's Channels page
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    migrates_store: bool = False  # this process migrates the store at start (embedded mode, SQLite)
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.roles = ROLES[self.service]
        s = self.settings
        retry = {"retry_max": s.dependency_retry_max}
        if self.roles & BROKER_ROLES:
            self.broker = create_broker(
                s.broker_url,
                max_deliveries=s.max_deliveries,
                dead_letter_queue=s.dead_letter_queue,
                tls=s.tls_for("broker"),
            )
            if isinstance(self.broker, MemoryBroker):
                self.broker.max_queue_bytes = s.memory_queue_max_bytes
            self.dependencies["broker"] = Dependency(
                "broker",
                start=_start_and_ping(self.broker),
                ping=self.broker.ping,
                critical=True,
                impact=broker_impact(self.roles),
                detail=redact_url(s.broker_url),
                **retry,
            )
        if self.roles & STATE_ROLES:
            self.state = create_state(s.state_url, key_prefix=s.state_key_prefix, tls=s.tls_for("state"))
            self.dependencies["state"] = Dependency(
                "state",
                start=_start_and_ping(self.state),
                ping=self.state.ping,
                critical=True,
                impact="threshold and sequence detection paused; events wait in the queue",
                detail=redact_url(s.state_url),
                **retry,
            )
        if self.roles & STORE_ROLES:
            self.store = create_store(s.effective_database_url, tls=s.tls_for("database"))
            store = self.store
            migrate = self.service == "run" or s.effective_database_url.startswith("sqlite")
            self.migrates_store = migrate

            async def start_store() -> None:
                await store.start()
                await store.ping()
                if migrate:
                    await store.migrate()
                await store.check_schema()

            async def ping_store() -> None:
                # A database restored from an old backup, or recreated, must turn readiness off too.
                await store.ping()
                await store.check_schema()

            self.dependencies["store"] = Dependency(
                "store",
                start=start_store,
                ping=ping_store,
                critical=True,
                impact="alerts are not stored or served; alerts wait in the queue",
                detail=redact_url(s.effective_database_url),
                **retry,
            )
        if self.roles & RULE_FILE_ROLES:
            self.rules = RuleWatcher(s.rules_path, s.rules_reload_interval)
        if Role.INGEST in self.roles:
            assert self.broker is not None
            self.ingestor = Ingestor(
                self.broker,
                self.dependencies["broker"],
                s.events_queue,
                batch_size=s.publish_batch_size,
                max_wait=s.intake_max_wait_ms / 1000,
                time_bounds=EventTimeBounds.from_seconds(s.event_max_future, s.event_max_age),
            )
        if Role.GENERATOR in self.roles:
            assert self.ingestor is not None, "the generator publishes through the ingest path"
            ingestor = self.ingestor

            async def publish_generated(events: Sequence[Event]) -> None:
                await ingestor.submit(events, source="generator")

            self.generator = GeneratorService(
                publish_generated,
                events_per_second=s.generator_rate,
                enabled=True,
                seed=s.generator_seed,
                attack_share=s.generator_attack_share,
            )
        if Role.SYSLOG in self.roles:
            assert self.ingestor is not None, "syslog messages are published through the ingest path"
            # Imported here: only this process needs the parsers.
            from auditflow.sources.syslog_server import SyslogServer

            self.syslog = SyslogServer(s, self.ingestor)
        if Role.ANALYSIS in self.roles:
            assert self.broker is not None
            assert self.state is not None
            assert self.rules is not None
            watcher = self.rules
            self.analysis = AnalysisService(
                self.broker,
                self.dependencies["broker"],
                self.state,
                self.dependencies["state"],
                lambda: watcher.ruleset,
                events_queue=s.events_queue,
                alerts_queue=s.alerts_queue,
                dead_letter_queue=s.dead_letter_queue,
                prefetch=s.broker_prefetch,
                batch_size=s.consume_batch_size,
                linger_ms=s.consume_linger_ms,
                publish_batch_size=s.publish_batch_size,
                time_bounds=EventTimeBounds.from_seconds(s.event_max_future, 0),
            )
        if Role.NOTIFICATION in self.roles:
            assert self.broker is not None
            assert self.store is not None
            self.notification = NotificationService(
                self.broker,
                self.dependencies["broker"],
                self.store,
                self.dependencies["store"],
                alerts_queue=s.alerts_queue,
                dead_letter_queue=s.dead_letter_queue,
                prefetch=s.broker_prefetch,
                batch_size=s.consume_batch_size,
                linger_ms=s.store_flush_ms,
                store_batch_size=s.store_batch_size,
            )
            # Dead letters go where the alerts go: durable, listed and replayed from the store.
            self.dead_letters = DeadLetterWorker(
                self.broker,
                self.dependencies["broker"],
                self.store,
                self.dependencies["store"],
                dead_letter_queue=s.dead_letter_queue,
                prefetch=s.broker_prefetch,
                batch_size=s.consume_batch_size,
                linger_ms=s.store_flush_ms,
            )

            policy = s.retention_policy()
            if policy:
                from auditflow.backends.store.sql import SqlAlertStore

                assert isinstance(self.store, SqlAlertStore)
                self.retention = RetentionService(
                    self.store,
                    self.dependencies["store"],
                    policy,
                    interval=s.retention_interval,
                    batch_size=s.retention_batch_size,
                )

        write = Role.NOTIFICATION in self.roles
        dispatch = Role.DISPATCHER in self.roles or (write and s.notify_dispatch)
        if s.notify_config is not None and (write or dispatch):
            assert self.store is not None
            # Outbox rows join the store's alert writes; the dispatcher sends them and reloads the file.
            self.notifications = Notifications(
                self.store,
                self.dependencies["store"],
                s.notify_config,
                s.rules_reload_interval,
                write=write,
                dispatch=dispatch,
            )
            self.dispatcher = self.notifications.dispatcher
        if Role.ALERTS_API in self.roles:
            from auditflow.backends.store.sql import SqlAlertStore

            assert isinstance(self.store, SqlAlertStore)  # the outbox lives in the alert store's database
            self.channels = ChannelDesk(self.store, self._routing)

    def _routing(self) -> Routing | None:
        """The routing this process applies now (it follows the file's reloads)."""
        return self.notifications.watch.routing if self.notifications is not None else None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything without waiting for any dependency."""
        if self.rules is not None:
            await self.rules.start()
        for dependency in self.dependencies.values():
            dependency.run()
        for worker in self._workers():
            await worker.start()
        if self.generator is not None:
            await self.generator.start()
        if self.syslog is not None:
            await self.syslog.start()
        if self.notifications is not None:
            await self.notifications.start()
        if self.retention is not None:
            await self.retention.start()

    async def wait_ready(self) -> None:
        """Wait until every dependency is up (wrap in `asyncio.timeout` to bound it)."""
        await asyncio.gather(*(d.wait_up() for d in self.dependencies.values()))

    async def aclose(self) -> None:
        """Stop intake, drain what this process holds, flush and close, within the grace period."""
        deadline = time.monotonic() + self.settings.shutdown_grace * 0.8
        if self.generator is not None:
            await self.generator.aclose()
        if self.syslog is not None:
            await self.syslog.aclose()
        if self.broker is not None and self.broker.in_process:
            # In-memory queues die with the process: finish their work before stopping the workers.
            await self._drain_memory_queues(deadline)
        if self.retention is not None:
            await self.retention.aclose()
        for worker in self._workers():
            await worker.stop()
        if self.notifications is not None:
            await self.notifications.aclose()
        for dependency in self.dependencies.values():
            await dependency.aclose()
        for closer in self._closers():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer(), max(0.5, deadline - time.monotonic()))
        if self.rules is not None:
            await self.rules.aclose()

    def _workers(self) -> list[QueueWorker]:
        """In pipeline order, so that a shutdown stops the producers of a queue before its consumer."""
        return [w for w in (self.analysis, self.notification, self.dead_letters) if w is not None]

    def _closers(self) -> list[Callable[[], Awaitable[None]]]:
        return [c.aclose for c in (self.broker, self.state, self.store) if c is not None]

    async def _drain_memory_queues(self, deadline: float) -> None:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self.settle()
        except TimeoutError:
            log.warning("shutdown grace ran out with work still queued in memory")

    async def settle(self, poll: float = 0.01) -> None:
        """Return once this process's queues are empty and no batch is in flight (the embedded mode,
        the bench and tests use it to know that everything submitted so far is stored)."""
        assert self.broker is not None
        queues = [self.settings.events_queue, self.settings.alerts_queue]
        if self.dead_letters is not None:
            queues.append(self.settings.dead_letter_queue)
        workers = self._workers()
        # A batch being collected (linger) is neither queued nor in flight: stay quiet longer than that.
        poll = max(poll, max(self.settings.consume_linger_ms, self.settings.store_flush_ms) / 1000)
        quiet_rounds = 0
        while quiet_rounds < 2:
            depths = [await self.broker.queue_depth(q) for q in queues]
            busy = any(depths) or any(w.in_flight for w in workers)
            quiet_rounds = 0 if busy else quiet_rounds + 1
            await asyncio.sleep(poll)

    # --- status -----------------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        statuses = [dependency.status() for dependency in self.dependencies.values()]
        if self.rules is not None:
            statuses.append(self._rules_dependency())
        if self.ingestor is not None:
            statuses.append(self._intake_status(self.ingestor))
        if self.notifications is not None:
            statuses.append(self.notifications.status())
        critical_down = any(s.status == "down" and s.critical for s in statuses)
        any_down = any(s.status == "down" for s in statuses)
        overall: Literal["ready", "degraded", "not_ready"] = (
            "not_ready" if critical_down else "degraded" if any_down else "ready"
        )
        return Readiness(status=overall, service=self.service, dependencies=statuses)

    def _rules_dependency(self) -> DependencyStatus:
        assert self.rules is not None
        error = self.rules.last_error
        ruleset = self.rules.ruleset
        count = len(ruleset.warnings)
        skipped = f" ({count} rule{'' if count == 1 else 's'} not loaded: GET /api/v1/rules lists why)" if count else ""
        return DependencyStatus(
            name="rules",
            status="down" if error else "up",
            critical=False,
            detail=ruleset.source + skipped,
            last_error=error,
            impact="the last rules change was refused; the previous rules stay active" if error else None,
        )

    @staticmethod
    def _intake_status(ingestor: Ingestor) -> DependencyStatus:
        # Not critical: the rest of the process (alerts API, dashboard) works on; the load balancer
        # and the clients learn from the 503s of the ingest endpoint itself.
        refusing = ingestor.refusing()
        return DependencyStatus(
            name="intake",
            status="down" if refusing else "up",
            critical=False,
            detail=ingestor.queue,
            last_error=refusing,
            impact="event submissions answer 503 with Retry-After; clients retry" if refusing else None,
        )

    def rules_status(self) -> RulesStatus:
        return self.rules.status() if self.rules is not None else RulesStatus(rules=[])

    def rule_info(self, rule_id: str) -> RuleInfo | None:
        return self.rules.rule_info(rule_id) if self.rules is not None else None


def _start_and_ping(backend: Broker | WindowState) -> Callable[[], Awaitable[None]]:
    """Some clients connect lazily (a Redis pool): a backend counts as up only once it answered."""

    async def start() -> None:
        await backend.start()
        await backend.ping()

    return start


__all__ = ["Runtime"]
