"""The sign-in throttle in Redis, shared by every dashboard replica. Each key is a sorted set whose
members are failures and reservations scored by when they stop counting; one Lua call counts and
reserves, so concurrent attempts on any replica cannot pass the limit together. A reservation
whose replica died stops counting after `hold` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auditflow.errors import BackendError, BackendUnavailable
from auditflow.services.dashboard.throttle.base import Attempt, LoginThrottle, Outcome

# KEYS: user-and-address key, address key.
# ARGV: operation, now (ms), window (ms), hold (ms), user limit, address limit, attempt token.
_SCRIPT = """
local op, now, window, hold = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pending, failure = 'p:' .. ARGV[7], 'f:' .. ARGV[7]
local ttl = window + hold
if op == 'reserve' then
  local limits = {tonumber(ARGV[5]), tonumber(ARGV[6])}
  for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= limits[i] then return 0 end
  end
  for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + hold, pending)
    redis.call('PEXPIRE', key, ttl)
  end
  return 1
end
for _, key in ipairs(KEYS) do redis.call('ZREM', key, pending) end
if op == 'failed' then
  for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + window, failure)
    redis.call('PEXPIRE', key, ttl)
  end
elseif op == 'succeeded' then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, 1, 2) == 'f:' then redis.call('ZREM', KEYS[1], member) end
  end
end
return 1
"""


class RedisLoginThrottle(LoginThrottle):
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "auditflow:",
        limit: int = 5,
        address_limit: int = 20,
        window: float = 60.0,
        hold: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(limit, address_limit, window, clock)
        self._prefix = f"{key_prefix}dashboard-signin:"
        self._hold_ms = int(hold * 1000)
        self._client = aioredis.Redis.from_url(
            url, decode_responses=False, max_connections=16, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self._script = self._client.register_script(_SCRIPT)

    async def _call(self, operation: str, attempt: Attempt) -> bool:
        keys = [self._prefix + key for key in attempt.keys]
        args: list[str | int] = [
            operation,
            int(self._clock() * 1000),
            int(self.window * 1000),
            self._hold_ms,
            self.limit,
            self.address_limit,
            attempt.token,
        ]
        try:
            return bool(await self._script(keys=keys, args=args))
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BackendUnavailable(f"sign-in throttle {operation} failed: {error}") from error
        except RedisError as error:
            raise BackendError(f"sign-in throttle {operation} failed: {error}") from error

    async def _reserve(self, attempt: Attempt) -> bool:
        return await self._call("reserve", attempt)

    async def settle(self, attempt: Attempt, outcome: Outcome) -> None:
        await self._call(outcome.value, attempt)

    async def aclose(self) -> None:
        await self._client.aclose()
