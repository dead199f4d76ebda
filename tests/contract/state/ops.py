"""Window ops and helpers shared by the window-state contract suite."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from auditflow.backends.state import Hit, WindowOp, WindowState
from auditflow.backends.state.memory import MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState
from tests.conftest import REDIS_URL
from tests.factories import op


def seq(event_id: str, ts: int, matched: tuple[int, ...], group: str = "g1") -> WindowOp:
    """A two-step sequence op: two events of step 0, then one of step 1."""
    return op("sequence", event_id, ts, group=group, steps=(2, 1), matched=matched)


class Backend:
    """Hands out started states that share one backend: the same instance for memory, new
    clients on one key prefix for Redis (as separate analysis replicas would be)."""

    def __init__(self, kind: str, prefix: str) -> None:
        self.kind = kind
        self.prefix = prefix
        self._states: list[WindowState] = []
        self._memory = MemoryWindowState("memory://", key_prefix=prefix)

    async def state(self) -> WindowState:
        if self.kind == "memory":
            return self._memory
        state = RedisWindowState(REDIS_URL, key_prefix=self.prefix)
        await state.start()
        self._states.append(state)
        return state

    async def aclose(self) -> None:
        for state in self._states:
            await state.aclose()


async def apply_each(state: WindowState, ops: Sequence[WindowOp]) -> list[Hit | None]:
    """Apply ops one batch each; the hit of each op, or None."""
    results: list[Hit | None] = []
    for one in ops:
        hits = await state.apply([one])
        results.append(hits[0] if hits else None)
    return results


def fired(results: Sequence[Hit | None]) -> list[bool]:
    return [hit is not None for hit in results]


async def stored(backend: Backend) -> dict[bytes, bytes | None] | int:
    """What the backend holds: every key under the prefix with its value (Redis), the number of
    keys (memory)."""
    if backend.kind == "memory":
        return len(backend._memory)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{backend.prefix}*", count=1000)]
        return {key: await client.dump(key) for key in sorted(keys)}
    finally:
        await client.aclose()
