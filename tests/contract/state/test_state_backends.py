"""Backend specifics of the window state: Redis errors, script reloading, key expiry, URLs."""

from __future__ import annotations

from uuid import uuid5

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from auditflow.backends.state import WindowState, create_state
from auditflow.backends.state.base import ALERT_NAMESPACE, WindowOp, derived_alert_id
from auditflow.backends.state.cluster import RedisClusterWindowState, cluster_key
from auditflow.backends.state.cluster_url import ClusterUrl, parse_cluster_url
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState
from auditflow.errors import BackendError, BackendUnavailable
from tests.contract.state.ops import Backend, seq
from tests.factories import op


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    async with RedisWindowState("redis://127.0.0.1:1/0", key_prefix="unused:") as state:
        with pytest.raises(BackendUnavailable):
            await state.ping()
        with pytest.raises(BackendUnavailable):
            await state.apply([op("match", "e1", 0)])


async def test_redis_error_reply_raises_backend_error(shared_backend: Backend) -> None:
    state = await shared_backend.state()
    await state.ping()
    async with shared_backend.client() as client:
        await client.set(shared_backend.key("w", "r1", "g1"), b"not a sorted set")
    with pytest.raises(BackendError):
        await state.apply([op("match", "e1", 0)])


async def test_redis_script_is_loaded_again_after_noscript(shared_backend: Backend) -> None:
    state = await shared_backend.state()
    if isinstance(state, RedisClusterWindowState):
        await state.apply([op("match", "e0", 0)])
        async with shared_backend.client() as client:
            assert isinstance(client, RedisCluster)
            await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)  # as after a failover
    else:
        assert isinstance(state, RedisWindowState)
        script = state._script
        assert script is not None
        script.sha = "0" * 40  # as if the server had lost its script cache
    ops = [op("match", f"e{i}", 0, group=f"g{i}") for i in range(1, 30)]
    assert [hit.op_index for hit in await state.apply(ops)] == list(range(29))


async def test_ping_succeeds_on_a_reachable_backend(state: WindowState) -> None:
    await state.ping()


async def test_every_redis_key_expires(shared_backend: Backend) -> None:
    state = await shared_backend.state()
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
    keys = await shared_backend.keys()
    async with shared_backend.client() as client:
        ttls = [
            (key.decode().removeprefix(shared_backend.prefix).split(":", 1)[0], await client.pttl(key)) for key in keys
        ]
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
    cluster_state = create_state("rediss+cluster://u:pw@10.0.0.1:7000,[::1]:7001?wait_replicas=1", key_prefix="p:")
    assert isinstance(cluster_state, RedisClusterWindowState)
    assert cluster_state.parsed == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("::1", 7001)),
        tls=True,
        username="u",
        password="pw",
        wait_replicas=1,
        wait_timeout_ms=100,
    )


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+cluster://", "host:port"),
        ("redis+cluster://h1:7000,h2", "'h2'"),
        ("redis+cluster://h1:7000/1", "database"),
        ("redis+cluster://h1:7000?wait=1", "unknown"),
        ("redis+cluster://h1:7000?wait_replicas=x", "wait_replicas"),
    ],
)
def test_a_bad_cluster_url_is_refused_with_what_is_wrong(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_cluster_url(url)


def test_a_cluster_key_prefix_cannot_hold_a_hash_tag() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisClusterWindowState("redis+cluster://127.0.0.1:7000", key_prefix="{p}:")


def test_cluster_keys_carry_the_group_as_an_unambiguous_hash_tag() -> None:
    assert cluster_key("r", "a}b") == "{1:r:a%7Db}"
    assert cluster_key("r", "a%7Db") == "{1:r:a%257Db}"
    assert key_slot(b"p:w:" + cluster_key("r", "g").encode()) == key_slot(b"p:a:" + cluster_key("r", "g").encode())


async def test_unreachable_cluster_raises_backend_unavailable() -> None:
    state = RedisClusterWindowState("redis+cluster://127.0.0.1:1", key_prefix="unused:", retries=1)
    async with state:
        with pytest.raises(BackendUnavailable):
            await state.ping()
        with pytest.raises(BackendUnavailable):
            await state.apply([op("match", "e1", 0)])


async def test_every_key_of_a_group_lives_in_the_slot_of_its_counter(cluster_backend: Backend) -> None:
    state = await cluster_backend.state()
    assert isinstance(state, RedisClusterWindowState)
    groups = [f"user-{i}}}{{x" for i in range(12)]  # braces in group keys too
    ops = [seq(f"{g}-e{n}", n, (0,) if n < 2 else (1,), group=g) for g in groups for n in range(3)]
    hits = await state.apply(ops)
    assert [hit.op_index for hit in hits] == [3 * i + 2 for i in range(12)]
    keys = await cluster_backend.keys()
    slots = {key_slot(key) for key in keys}
    assert len(slots) > 3  # spread over the cluster
    for group in groups:
        slot = key_slot(cluster_backend.key("w", "r1", group).encode())
        mine = [key for key in keys if group.replace("}", "%7D").encode() in key]
        assert len(mine) == 5  # w, p, s0, s1, a
        assert {key_slot(key) for key in mine} == {slot}
        assert key_slot(state.counter_key(slot).encode()) == slot


@pytest.mark.parametrize(
    ("rule", "group"),
    [
        ("r1", '["alice","web-1"]'),
        ("r:2", '["a}b","%7D","%25","{x}",":"]'),
        ("rule-\u00e9", '["\u00fc\u00df\\u0000",null]'),
    ],
)
async def test_an_empty_alert_id_opens_the_derived_one(state: WindowState, rule: str, group: str) -> None:
    def derived(event_id: str, ts: int) -> WindowOp:
        return op("match", event_id, ts, rule=rule, group=group)._replace(new_alert_id="")

    expected = derived_alert_id(rule, group, "e1")
    assert expected == str(uuid5(ALERT_NAMESPACE, f"{rule}\x1f{group}\x1fe1"))
    [opened] = await state.apply([derived("e1", 1_000)])
    assert (opened.alert_id, opened.new) == (expected, True)
    # A repeat and a redelivery name the alert by the id it was opened with.
    repeat, replay = await state.apply([derived("e2", 1_001), derived("e1", 1_000)])
    assert (repeat.alert_id, repeat.new, replay.alert_id, replay.replayed) == (expected, False, expected, True)


async def test_an_alert_opened_with_an_explicit_id_keeps_it_for_derived_ops(state: WindowState) -> None:
    """Ops with ids computed by the caller (as earlier versions sent them) and ops leaving the id to
    the backend share keys: the stored id is the one the alert opened with."""
    [opened] = await state.apply([op("threshold", "e1", 1_000)])
    assert opened.alert_id == "alert-e1"
    [repeat] = await state.apply([op("threshold", "e2", 1_001)._replace(new_alert_id="")])
    assert (repeat.alert_id, repeat.new, repeat.occurrences) == ("alert-e1", False, 2)
