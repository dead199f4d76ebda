"""The sign-in throttle contract, one suite over the in-memory throttle and the Redis one that
dashboard replicas share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from auditflow.errors import BackendUnavailable
from auditflow.services.dashboard.throttle import Attempt, LoginThrottle, MemoryLoginThrottle
from auditflow.services.dashboard.throttle.redis import RedisLoginThrottle
from tests.conftest import REDIS_URL, require_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[..., LoginThrottle]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make(request: pytest.FixtureRequest, clock: Clock, unique_name: str) -> AsyncIterator[Make]:
    """Throttles over one shared count: the same object in memory, replicas over Redis."""
    opened: list[LoginThrottle] = []
    shared: dict[tuple[int, int], LoginThrottle] = {}

    def make_one(limit: int = 5, address_limit: int = 20) -> LoginThrottle:
        throttle: LoginThrottle
        if request.param == "memory":
            throttle = shared.setdefault(
                (limit, address_limit), MemoryLoginThrottle(limit, address_limit, window=60, clock=clock)
            )
        else:
            require_server("redis")
            throttle = RedisLoginThrottle(
                REDIS_URL, key_prefix=f"{unique_name}:", limit=limit, address_limit=address_limit, clock=clock
            )
        opened.append(throttle)
        return throttle

    yield make_one
    for throttle in opened:
        await throttle.aclose()
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{unique_name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def fail(throttle: LoginThrottle, user: str, address: str) -> None:
    attempt = await throttle.reserve(user, address)
    assert attempt is not None
    await attempt.failed()


async def test_blocks_after_the_limit_and_forgets_after_the_window(make: Make, clock: Clock) -> None:
    throttle = make(limit=3)
    for _ in range(3):
        await fail(throttle, "ana", "10.0.0.1")
    assert await throttle.reserve("ana", "10.0.0.1") is None
    assert await throttle.reserve(" ANA ", "10.0.0.1") is None  # no fresh attempts by changing case
    clock.now += 60
    assert await throttle.reserve("ana", "10.0.0.1") is not None


async def test_guessing_from_one_address_does_not_lock_the_user_out_elsewhere(make: Make) -> None:
    throttle = make(limit=3)
    for _ in range(3):
        await fail(throttle, "admin", "203.0.113.9")
    assert await throttle.reserve("admin", "203.0.113.9") is None
    assert await throttle.reserve("admin", "10.0.0.1") is not None
    assert await throttle.reserve("admin", "2001:db8::1") is not None


async def test_one_address_is_limited_across_user_names(make: Make) -> None:
    throttle = make(limit=3, address_limit=4)
    for name in ("a", "b", "c", "d"):
        await fail(throttle, name, "203.0.113.9")
    assert await throttle.reserve("e", "203.0.113.9") is None
    assert await throttle.reserve("e", "10.0.0.1") is not None


async def test_concurrent_attempts_on_every_replica_cannot_pass_the_limit(make: Make) -> None:
    replicas = [make(), make()]
    results = await asyncio.gather(*(replicas[i % 2].reserve("ana", "10.0.0.1") for i in range(12)))
    granted = [a for a in results if a is not None]
    assert len(granted) == 5
    # A check that never ran (busy pool, client gone) gives its reservation back without counting.
    await granted[0].cancel()
    again = await replicas[1].reserve("ana", "10.0.0.1")
    assert again is not None
    for attempt in [*granted[1:], again]:
        await attempt.failed()
    assert await replicas[0].reserve("ana", "10.0.0.1") is None


async def test_success_clears_the_users_failures_and_settling_twice_does_nothing(make: Make) -> None:
    throttle = make(limit=2)
    await fail(throttle, "ana", "10.0.0.1")
    attempt = await throttle.reserve("ana", "10.0.0.1")
    assert attempt is not None
    await attempt.succeeded()
    await attempt.failed()
    await attempt.cancel()
    await fail(throttle, "ana", "10.0.0.1")
    last: Attempt | None = await throttle.reserve("ana", "10.0.0.1")
    assert last is not None


async def test_an_unreachable_redis_refuses_rather_than_lets_through() -> None:
    throttle = RedisLoginThrottle("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(BackendUnavailable):
            await throttle.reserve("ana", "10.0.0.1")
    finally:
        await throttle.aclose()
