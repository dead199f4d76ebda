"""Backend specifics of the window state: Redis errors, script reloading, key expiry, URLs."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from auditflow.backends.state import WindowState, create_state
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState, window_key
from auditflow.errors import BackendError, BackendUnavailable
from tests.conftest import REDIS_URL
from tests.contract.state.ops import Backend, seq
from tests.factories import op


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    async with RedisWindowState("redis://127.0.0.1:1/0", key_prefix="unused:") as state:
        with pytest.raises(BackendUnavailable):
            await state.ping()
        with pytest.raises(BackendUnavailable):
            await state.apply([op("match", "e1", 0)])


async def test_redis_error_reply_raises_backend_error(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    await state.ping()
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.set(f"{redis_backend.prefix}w:{window_key('r1', 'g1')}", b"not a sorted set")
    await client.aclose()
    with pytest.raises(BackendError):
        await state.apply([op("match", "e1", 0)])


async def test_redis_script_is_loaded_again_after_noscript(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    assert isinstance(state, RedisWindowState)
    script = state._script
    assert script is not None
    script.sha = "0" * 40  # as if the server had lost its script cache
    assert len(await state.apply([op("match", "e1", 0)])) == 1


async def test_ping_succeeds_on_a_reachable_backend(state: WindowState) -> None:
    await state.ping()


async def test_every_redis_key_expires(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    await state.apply(
        [
            op("match", "m1", 0, rule="m", window=1_000, suppress=5_000),
            op("threshold", "t1", 0, rule="t", window=2_000, suppress=0, count=1),
            op("threshold", "d1", 0, rule="d", window=2_000, suppress=0, count=1, distinct="alice"),
            seq("s1", 0, (0,)),
            seq("s2", 1, (0, 1)),
            seq("s3", 2, (1,)),
        ]
    )
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{redis_backend.prefix}*", count=1000)]
    ttls = [(key.decode().removeprefix(redis_backend.prefix).split(":", 1)[0], await client.pttl(key)) for key in keys]
    await client.aclose()
    assert sorted({kind for kind, _ in ttls}) == ["a", "d", "n", "p", "s0", "s1", "w"]
    # w, a of "m"; w, p of "t" and w, p, d of "d" (no suppression); w, p, s0, s1, a of the
    # sequence, and the arrival counter
    assert len(ttls) == 13
    assert all(0 < ttl <= 60_000 + DEFAULT_GRACE_MS for _, ttl in ttls), ttls


def test_state_urls_choose_the_backend() -> None:
    assert isinstance(create_state("memory://"), MemoryWindowState)
    redis_state = create_state("redis://127.0.0.1:6379/0", key_prefix="p:")
    assert isinstance(redis_state, RedisWindowState)
    assert redis_state.key_prefix == "p:"
    with pytest.raises(ValueError, match="unsupported"):
        create_state("memcached://127.0.0.1")
