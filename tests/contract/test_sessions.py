"""The dashboard's SessionStore contract, one suite over memory, SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from auditflow.backends.store.engine import create_sync_engine
from auditflow.backends.store.migrate import migrate_url
from auditflow.errors import BackendUnavailable
from auditflow.services.dashboard.sessions import MemorySessionStore, SessionStore, session_key
from auditflow.services.dashboard.sessions.redis import RedisSessionStore
from auditflow.services.dashboard.sessions.sql import SqlSessionStore
from tests.conftest import REDIS_URL, require_server
from tests.databases import postgres_database

TTL = 600
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
BACKENDS.append(pytest.param("redis", marks=pytest.mark.redis))


class Clock:
    """Real time to start with (Redis expires keys by its own clock), moved forward by the tests."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    require_server("postgres")
    name = f"t{uuid4().hex[:12]}"
    with postgres_database(name) as url:
        migrate_url(url)
        yield url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str, clock: Clock
) -> AsyncIterator[Callable[[], SessionStore]]:
    """Opens stores of the backend under test over the same data, as replicas or restarts would."""
    backend = request.param
    shared = MemorySessionStore(ttl=TTL, clock=clock)
    opened: list[SessionStore] = []

    def make() -> SessionStore:
        store: SessionStore
        if backend == "memory":
            return shared  # one process's memory: there is nothing to share it with
        if backend == "sqlite":
            store = SqlSessionStore(f"sqlite:///{tmp_path / 'data' / 'auditflow.sqlite3'}", ttl=TTL, clock=clock)
        elif backend == "postgres":
            store = SqlSessionStore(request.getfixturevalue("postgres_url"), ttl=TTL, clock=clock)
        else:
            require_server("redis")
            store = RedisSessionStore(REDIS_URL, ttl=TTL, key_prefix=f"{unique_name}:", clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()
    if backend == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{unique_name}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


pytestmark = pytest.mark.parametrize("make_store", BACKENDS, indirect=True)


async def test_a_session_is_found_by_its_id_only(make_store: Callable[[], SessionStore], clock: Clock) -> None:
    store = make_store()
    await store.ping()
    session_id, record = await store.create("ana", "stamp-1")
    other_id, other = await store.create("ana", "stamp-1")
    assert len(session_id) == 43
    assert session_id != other_id
    assert record.csrf != other.csrf
    assert record.expires == int(clock.now) + TTL
    assert await store.get(session_id) == record
    assert await store.get(other_id) == other
    for unknown in (None, "", "x" * 43, session_id[:-1], session_id + "x", "a.b", "é" * 43):
        assert await store.get(unknown) is None


async def test_sign_out_deletes_for_every_replica(make_store: Callable[[], SessionStore]) -> None:
    first, second = make_store(), make_store()
    session_id, record = await first.create("ana", "stamp-1")
    kept_id, _ = await first.create("vic", "stamp-2")
    assert await second.get(session_id) == record
    await second.delete(session_id)
    await second.delete(session_id)  # twice, or an unknown id: nothing happens
    await second.delete("y" * 43)
    assert await first.get(session_id) is None
    assert await second.get(session_id) is None
    assert await first.get(kept_id) is not None


async def test_sessions_end_at_their_expiry(make_store: Callable[[], SessionStore], clock: Clock) -> None:
    store = make_store()
    session_id, _ = await store.create("ana", "stamp-1")
    clock.now += TTL - 1
    assert await store.get(session_id) is not None
    clock.now += 1
    assert await store.get(session_id) is None


async def test_the_store_holds_no_usable_session_id(
    make_store: Callable[[], SessionStore], request: pytest.FixtureRequest, unique_name: str
) -> None:
    store = make_store()
    session_id, _ = await store.create("ana", "stamp-1")
    backend = request.node.callspec.params["make_store"]
    if backend == "redis":
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        keys = [key async for key in client.scan_iter(match=f"{unique_name}:*")]
        ttl = await client.ttl(keys[0])
        await client.aclose()
        assert keys == [f"{unique_name}:dashboard-session:{session_key(session_id)}"]
        assert session_id not in keys[0]
        assert 0 < ttl <= TTL
    elif backend in {"sqlite", "postgres"}:
        assert isinstance(store, SqlSessionStore)
        engine = create_sync_engine(store.url)
        with engine.connect() as conn:
            keys = list(conn.execute(sa.text("SELECT key FROM dashboard_sessions")).scalars())
        engine.dispose()
        assert session_key(session_id) in keys
        assert session_id not in keys
    else:
        pytest.skip("memory is read by nothing but this process")


async def test_sql_sessions_purge_expired_rows_at_sign_in(make_store: Callable[[], SessionStore], clock: Clock) -> None:
    store = make_store()
    if not isinstance(store, SqlSessionStore):
        pytest.skip("expiry of Redis keys and memory records is not row-based")
    old_id, _ = await store.create("ana", "stamp-1")
    clock.now += TTL
    await store.create("ana", "stamp-1")
    engine = create_sync_engine(store.url)
    with engine.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT key FROM dashboard_sessions")).scalars())
    engine.dispose()
    assert session_key(old_id) not in keys


async def test_an_unreachable_store_raises_backend_unavailable(
    make_store: Callable[[], SessionStore], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = request.node.callspec.params["make_store"]
    store: SessionStore
    if backend == "redis":
        store = RedisSessionStore("redis://127.0.0.1:1/0", ttl=TTL)
    elif backend == "postgres":
        store = SqlSessionStore("postgresql://nobody@127.0.0.1:1/none", ttl=TTL)
    elif backend == "sqlite":
        blocker = tmp_path / "file"
        blocker.write_text("")
        store = SqlSessionStore(f"sqlite:///{blocker / 'sub' / 'db.sqlite3'}", ttl=TTL)
    else:
        pytest.skip("memory is always reachable")
    try:
        with pytest.raises(BackendUnavailable):
            await store.ping()
        with pytest.raises(BackendUnavailable):
            await store.get("x" * 43)
        with pytest.raises(BackendUnavailable):
            await store.create("ana", "stamp-1")
    finally:
        await store.aclose()
