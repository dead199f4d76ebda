"""Synthetic event generator: a seeded factory of realistic audit events with attack scenarios mixed in,
and a service that publishes them at a rate that can be changed while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from auditflow.errors import BackendUnavailable
from auditflow.lifecycle import AsyncLifecycle
from auditflow.metrics import GENERATOR_DROPPED, GENERATOR_EVENTS
from auditflow.model.event import Event
from auditflow.model.timeutil import utcnow
from auditflow.services.scenarios import BENIGN, MEAN_SCENARIO_LENGTH, SCENARIOS, Fields

logger = logging.getLogger("auditflow.generator")

BENIGN_LABEL = "benign"
# After a stall (slow publish, busy loop) at most this much time is made up in one tick: an overloaded
# pipeline gets fewer events, not bigger bursts.
MAX_CATCH_UP_SECONDS = 0.25
Publish = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass(slots=True)
class GeneratedBatch:
    events: list[Event]
    by_scenario: Counter[str] = field(default_factory=Counter)


class EventFactory:
    """Produces validated synthetic events; the same seed (and clock) gives the same stream.

    `attack_share` is the share of *events* that belong to attack scenarios. Scenarios are
    emitted whole: one that does not fit in a batch is finished at the start of the next.
    """

    def __init__(
        self, seed: int | None = None, attack_share: float = 0.05, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        if not 0 <= attack_share <= 1:
            raise ValueError("attack_share must be between 0 and 1")
        # Not for security: reproducible synthetic data is the point.
        self._rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data  # nosec B311
        self._clock = clock
        # Weighted by repetition: `choice` on a list is several times cheaper than `choices`.
        self._benign = [builder for builder, weight in BENIGN for _ in range(weight)]
        self._scenario_names = list(SCENARIOS)
        # A draw yields one benign event or a whole scenario; pick the draw probability so that
        # scenario events make up `attack_share` of the events.
        mean = MEAN_SCENARIO_LENGTH
        self._scenario_probability = attack_share / (mean * (1 - attack_share) + attack_share)
        self._pending: deque[tuple[str, Event]] = deque()

    def _event(self, fields: Fields, timestamp: datetime) -> Event:
        event_id = UUID(int=self._rng.getrandbits(128), version=4)
        return Event.model_validate({**fields, "event_id": event_id, "timestamp": timestamp})

    def benign_event(self) -> Event:
        builder = self._rng.choice(self._benign)
        return self._event(builder(self._rng), self._clock())

    def scenario(self, name: str) -> list[Event]:
        """One attack scenario's events, oldest first, the last one stamped now."""
        steps = SCENARIOS[name](self._rng)
        now, last = self._clock(), steps[-1][0]
        return [self._event(fields, now - timedelta(milliseconds=last - offset)) for offset, fields in steps]

    def generate(self, n: int) -> GeneratedBatch:
        """Exactly `n` events, with the number per scenario label (`benign` or a scenario name)."""
        batch = GeneratedBatch([])
        while len(batch.events) < n:
            if not self._pending:
                if self._rng.random() < self._scenario_probability:
                    name = self._rng.choice(self._scenario_names)
                    self._pending.extend((name, event) for event in self.scenario(name))
                else:
                    self._pending.append((BENIGN_LABEL, self.benign_event()))
            label, event = self._pending.popleft()
            batch.events.append(event)
            batch.by_scenario[label] += 1
        return batch

    def next_batch(self, n: int) -> list[Event]:
        return self.generate(n).events


class GeneratorSettings(BaseModel):
    """The generator's runtime settings, as read and written by `GET`/`PUT /api/v1/generator`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    events_per_second: float = Field(
        ge=0, le=1_000_000, strict=True, description="Synthetic events per second; 0 pauses"
    )
    # Strict: the document says boolean, and `0` or "no" is more likely a mistake than a wish.
    enabled: StrictBool = Field(True, description="False pauses the generator without losing its rate")


GeneratorState = Literal["stopped", "paused", "running", "backing_off"]


@dataclass(slots=True)
class GeneratorStats:
    published: int = 0
    dropped: int = 0  # generated for a tick whose publish failed; never retried, so no backlog builds
    failures: int = 0


class GeneratorService(AsyncLifecycle):
    """Publishes synthetic events at `events_per_second`, one batch per tick.

    Each tick turns the elapsed time into a number of due events, carrying the fraction, so both
    0.5 and 50,000 events/s come out right. A failed publish drops that tick's events (counted in
    `stats.dropped`) and backs off exponentially: an unreachable broker never builds a backlog.
    Rate 0 or `enabled=False` parks the loop on an event until `update()` or `aclose()`.
    """

    def __init__(
        self,
        publish: Publish,
        *,
        events_per_second: float,
        enabled: bool = True,
        seed: int | None = None,
        attack_share: float = 0.05,
        tick_seconds: float = 0.1,
        max_tick_seconds: float = 1.0,
        chunk_size: int = 1000,
        max_batch: int = 50_000,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        factory: EventFactory | None = None,
    ) -> None:
        self._publish = publish
        self._settings = GeneratorSettings(events_per_second=events_per_second, enabled=enabled)
        self._factory = factory or EventFactory(seed, attack_share)
        self._tick, self._max_tick = tick_seconds, max_tick_seconds
        self._chunk_size, self._max_batch = chunk_size, max_batch
        self._backoff_initial, self._backoff_max = backoff_initial, backoff_max
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._state: GeneratorState = "stopped"
        self.stats = GeneratorStats()

    @property
    def settings(self) -> GeneratorSettings:
        return self._settings

    @property
    def state(self) -> GeneratorState:
        return self._state

    async def update(self, events_per_second: float | None = None, enabled: bool | None = None) -> GeneratorSettings:
        """Apply new settings at once (the loop wakes up); raises pydantic.ValidationError when invalid."""
        changes = {"events_per_second": events_per_second, "enabled": enabled}
        merged = self._settings.model_dump() | {k: v for k, v in changes.items() if v is not None}
        self._settings = GeneratorSettings.model_validate(merged)
        logger.info(
            "generator settings: %s events/s, %s",
            self._settings.events_per_second,
            "enabled" if self._settings.enabled else "disabled",
        )
        self._wake.set()
        return self._settings

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="auditflow-generator")

    async def aclose(self) -> None:
        """Stop the loop; a publish in flight completes first."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        await task
        self._state = "stopped"

    async def _wait(self, seconds: float | None) -> None:
        """Until `seconds` pass or `update()`/`aclose()` wakes the loop (None: only the latter)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _interval(self, rate: float) -> float:
        # Tick fast enough for smooth output, but no faster than one event per tick at low rates.
        return min(max(self._tick, 1.0 / rate), self._max_tick)

    async def _run(self) -> None:
        last: float | None = None
        rate = carry = backoff = 0.0
        while not self._stopping:
            now = self._clock()
            if last is not None and rate > 0:
                # At the rate of the period that just ended (an update may have changed it since).
                due = carry + rate * min(now - last, max(MAX_CATCH_UP_SECONDS, 2 * self._interval(rate)))
                count = int(due)
                carry = due - count
                if count and await self._emit(count):
                    backoff = 0.0
                elif count:
                    backoff = min(self._backoff_max, backoff * 2 or self._backoff_initial)
                    self._state = "backing_off"
                    await self._wait(backoff)
                    # The time spent backing off is skipped, not owed: no backlog builds up.
                    now, carry = self._clock(), 0.0
                    if self._stopping:
                        break
            last = now
            settings = self._settings
            rate = settings.events_per_second if settings.enabled else 0.0
            if rate == 0:
                self._state, last, carry = "paused", None, 0.0
                await self._wait(None)
                continue
            self._state = "running"
            await self._wait(self._interval(rate))

    async def _emit(self, count: int) -> bool:
        if count > self._max_batch:
            # The factory cannot keep up: skip rather than let batches (and memory) grow without bound.
            logger.debug("generator behind: %d events due, producing %d", count, self._max_batch)
            count = self._max_batch
        events: list[Event] = []
        by_scenario: Counter[str] = Counter()
        while len(events) < count:
            part = self._factory.generate(min(self._chunk_size, count - len(events)))
            events.extend(part.events)
            by_scenario.update(part.by_scenario)
            if len(events) < count:
                await asyncio.sleep(0)  # let the API and analysis run between chunks of a large tick
        try:
            await self._publish(events)
        except Exception as exc:
            self.stats.failures += 1
            self.stats.dropped += count
            GENERATOR_DROPPED.inc(count)
            if isinstance(exc, BackendUnavailable):
                logger.warning("generator publish failed, %d events dropped: %s", count, exc)
            else:
                logger.exception("generator publish failed unexpectedly, %d events dropped", count)
            return False
        self.stats.published += count
        for label, number in by_scenario.items():
            GENERATOR_EVENTS.labels(scenario=label).inc(number)
        return True
