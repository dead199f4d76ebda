"""Sessions in Redis, for dashboard replicas that share no database: one key per session under the
state key prefix, expiring with the session."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auditflow.errors import BackendError, BackendUnavailable
from auditflow.services.dashboard.sessions.base import SessionRecord, SessionStore
from auditflow.tls import TlsOptions


@contextmanager
def _mapped(operation: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise BackendUnavailable(f"session store {operation} failed: {error}") from error
    except RedisError as error:
        raise BackendError(f"session store {operation} failed: {error}") from error


class RedisSessionStore(SessionStore):
    def __init__(
        self,
        url: str,
        *,
        ttl: int,
        key_prefix: str = "auditflow:",
        clock: Callable[[], float] = time.time,
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self.url = url
        self._prefix = f"{key_prefix}dashboard-session:"
        # redis-py takes ssl_* keywords only for rediss:// (a plain connection refuses them).
        options = tls.redis_options() if tls is not None and url.startswith("rediss") else {}
        # Connections open on first use, so the dashboard starts while Redis is down.
        self._client = aioredis.Redis.from_url(
            url, decode_responses=False, max_connections=16, socket_timeout=5.0, socket_connect_timeout=5.0, **options
        )

    async def ping(self) -> None:
        with _mapped("ping"):
            await self._client.ping()

    async def _put(self, key: str, record: SessionRecord) -> None:
        value = orjson.dumps({"u": record.user, "s": record.stamp, "c": record.csrf, "e": record.expires})
        with _mapped("write"):
            await self._client.set(self._prefix + key, value, exat=record.expires)

    async def _load(self, key: str) -> SessionRecord | None:
        with _mapped("read"):
            value = await self._client.get(self._prefix + key)
        if value is None:
            return None
        try:
            body = orjson.loads(value)
            return SessionRecord(user=str(body["u"]), stamp=str(body["s"]), csrf=str(body["c"]), expires=int(body["e"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Not written by us: treat as signed out rather than fail every page.
            return None

    async def _remove(self, key: str) -> None:
        with _mapped("delete"):
            await self._client.delete(self._prefix + key)

    async def aclose(self) -> None:
        with _mapped("close"):
            await self._client.aclose()
