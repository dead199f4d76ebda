"""Window ops and helpers shared by the window-state contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from auditflow.backends.state import Hit, WindowOp, WindowState
from auditflow.backends.state.cluster import RedisClusterWindowState, cluster_key
from auditflow.backends.state.memory import MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState, window_key
from tests.conftest import REDIS_URL
from tests.factories import op


def seq(event_id: str, ts: int, matched: tuple[int, ...], group: str = "g1") -> WindowOp:
    """A two-step sequence op: two events of step 0, then one of step 1."""
    return op("sequence", event_id, ts, group=group, steps=(2, 1), matched=matched)


class Backend:
    """Hands out started states that share one backend: the same instance for memory, new
    clients on one key prefix for Redis and a Redis Cluster (as separate analysis replicas would be)."""

    def __init__(self, kind: str, prefix: str, url: str = REDIS_URL) -> None:
        self.kind = kind
        self.prefix = prefix
        self.url = url
        self._states: list[WindowState] = []
        self._memory = MemoryWindowState("memory://", key_prefix=prefix)

    async def state(self, **options: Any) -> WindowState:
        """A started state; `options` go to the constructor (a new memory state when given)."""
        state: WindowState
        if self.kind == "memory":
            if not options:
                return self._memory
            state = MemoryWindowState(key_prefix=self.prefix, **options)
        elif self.kind == "cluster":
            state = RedisClusterWindowState(self.url, key_prefix=self.prefix, **options)
        else:
            state = RedisWindowState(self.url, key_prefix=self.prefix, **options)
        await state.start()
        self._states.append(state)
        return state

    def key(self, kind: str, rule_id: str, group_key: str) -> str:
        """The full name of one of a group's keys ("w", "p", "a", ...) in Redis."""
        base = cluster_key(rule_id, group_key) if self.kind == "cluster" else window_key(rule_id, group_key)
        return f"{self.prefix}{kind}:{base}"

    @asynccontextmanager
    async def client(self) -> AsyncIterator[aioredis.Redis | RedisCluster]:
        """A raw client of the backend's Redis or Redis Cluster."""
        client: aioredis.Redis | RedisCluster
        if self.kind == "cluster":
            client = RedisCluster.from_url(self.url.replace("redis+cluster://", "redis://").split(",")[0])
        else:
            client = aioredis.Redis.from_url(self.url)
        try:
            yield client
        finally:
            await client.aclose()

    async def keys(self) -> list[bytes]:
        """Every key under the prefix, on every master."""
        async with self.client() as client:  # a Cluster's scan covers every master
            return [key async for key in client.scan_iter(match=f"{self.prefix}*", count=1000)]

    async def clean(self) -> None:
        keys = await self.keys()
        async with self.client() as client:
            for key in keys:
                await client.delete(key)

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
    keys = await backend.keys()
    async with backend.client() as client:
        return {key: await client.dump(key) for key in sorted(keys)}
