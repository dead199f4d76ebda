"""What to do while a dependency is down and work is held: one back-off policy (full-jitter
exponential), one way to wait that a stop signal ends, and the held-operation loop built on them.

Dependency supervision, the services' held operations, the brokers' handler retry and the queue
worker all wait through this module, so they share one formula and one notion of "stopping".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from auditflow.errors import BackendUnavailable

log = logging.getLogger("auditflow.retry")

# The exponent is capped so that a long outage cannot overflow the float.
_MAX_EXPONENT = 30


def _uniform(low: float, high: float) -> float:
    return random.uniform(low, high)  # noqa: S311 - jitter, not crypto  # nosec B311


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential back-off: attempt n waits `floor + U(0, min(maximum, initial * 2**n))`.

    Full jitter spreads the replicas that saw the same outage, so they do not reconnect in step.
    The floor is for operations whose dependency may answer pings and still fail the call.
    `uniform` is injectable so that tests can pin the jitter.
    """

    initial: float
    maximum: float
    floor: float = 0.0
    uniform: Callable[[float, float], float] = field(default=_uniform, compare=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum <= 0 or self.floor < 0:
            raise ValueError(f"back-off needs initial > 0, maximum > 0, floor >= 0, not {self!r}")

    def ceiling(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int) -> float:
        return self.floor + self.uniform(0.0, self.ceiling(attempt))


# Reconnecting a dependency: `maximum` comes from the `dependency_retry_max` setting.
DEPENDENCY_INITIAL_S = 0.2
# Retrying one held operation (a batch's state call, publish or store write).
OPERATION_BACKOFF = Backoff(initial=0.05, maximum=5.0, floor=0.05)
# Calling a broker handler again while it reports a dependency down.
HANDLER_BACKOFF = Backoff(initial=0.1, maximum=5.0)
# Restarting a queue consumer after the broker failed it or it crashed.
CONSUMER_BACKOFF = Backoff(initial=0.5, maximum=5.0, floor=0.5)


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`, or less when `stop` is set; True when stopped."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def wait_unless_stopped(stop: asyncio.Event, awaitable: Awaitable[object]) -> bool:
    """Wait for `awaitable` or for `stop`, whichever comes first; True when stopped first."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stopper):
            task.cancel()
        await asyncio.gather(waiter, stopper, return_exceptions=True)
    return not (waiter.done() and not waiter.cancelled())


@dataclass(slots=True)
class Attempts:
    """The attempt counter of one retry loop: `pause()` waits the policy's next delay unless stopped."""

    backoff: Backoff
    stop: asyncio.Event
    sleep: Callable[[asyncio.Event, float], Awaitable[bool]] = pause  # injectable: tests do not sleep
    attempt: int = 0

    async def pause(self) -> bool:
        """Wait before the next attempt; True when the stop signal ended the wait."""
        delay = self.backoff.delay(self.attempt)
        self.attempt += 1
        return await self.sleep(self.stop, delay)

    def reset(self) -> None:
        self.attempt = 0


class Supervised(Protocol):
    """What a held operation needs from the supervisor of its dependency."""

    @property
    def is_up(self) -> bool: ...

    def mark_down(self, error: BaseException | str) -> None: ...

    async def wait_up(self) -> None: ...


async def call_with_recovery(
    operation: Callable[[], Awaitable[object]],
    dependency: Supervised,
    stopping: asyncio.Event,
    *,
    backoff: Backoff = OPERATION_BACKOFF,
    sleep: Callable[[asyncio.Event, float], Awaitable[bool]] = pause,
) -> None:
    """Run `operation`, and while its dependency is unavailable wait for recovery and try again.

    Holding the batch (instead of failing it back to the broker) keeps its delivery count honest and,
    with a bounded prefetch, stops consumption while the dependency is down. On shutdown it gives up
    by raising, so the broker redelivers the batch elsewhere.
    """
    attempts = Attempts(backoff, stopping, sleep)
    while True:
        try:
            await operation()
            return
        except BackendUnavailable as exc:
            dependency.mark_down(exc)
            if stopping.is_set():
                raise
            await attempts.pause()
            await wait_unless_stopped(stopping, dependency.wait_up())
            if stopping.is_set() and not dependency.is_up:
                raise
