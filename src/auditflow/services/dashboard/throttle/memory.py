"""The sign-in throttle in this process's memory: `auditflow run`, or a single dashboard replica.
Reserving has no await inside, so on the event loop it is atomic."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from auditflow.services.dashboard.throttle.base import Attempt, LoginThrottle, Outcome

# Past this many keys, idle ones are dropped (a spray of addresses and names must not grow memory).
_PRUNE_ABOVE = 10_000


@dataclass(slots=True)
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class MemoryLoginThrottle(LoginThrottle):
    def __init__(
        self, limit: int = 5, address_limit: int = 20, window: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(limit, address_limit, window, clock)
        self._counters: dict[str, _Counter] = {}

    async def _reserve(self, attempt: Attempt) -> bool:
        now = self._clock()
        if len(self._counters) > _PRUNE_ABOVE:
            for key in list(self._counters):
                self._count(key, now)
        user_key, address_key = attempt.keys
        if self._count(user_key, now) >= self.limit or self._count(address_key, now) >= self.address_limit:
            return False
        for key in attempt.keys:
            self._counters.setdefault(key, _Counter()).in_flight += 1
        return True

    async def settle(self, attempt: Attempt, outcome: Outcome) -> None:
        now = self._clock()
        for key in attempt.keys:
            counter = self._counters.setdefault(key, _Counter())
            counter.in_flight -= 1
            if outcome is Outcome.FAILED:
                counter.failures.append(now)
        if outcome is Outcome.SUCCEEDED:
            self._counters[attempt.keys[0]].failures.clear()

    def _count(self, key: str, now: float) -> int:
        counter = self._counters.get(key)
        if counter is None:
            return 0
        while counter.failures and counter.failures[0] <= now - self.window:
            counter.failures.popleft()
        if not counter.failures and not counter.in_flight:
            del self._counters[key]
            return 0
        return len(counter.failures) + counter.in_flight
