"""Shared window state on a Redis Cluster (`redis+cluster://host:port,host:port,...`).

Every key of one (rule, group) carries the group as its hash tag, so a group lives in one slot and
the script of redis.py applies its ops there exactly as on a single server. A batch is split by
slot, one script call per slot; the calls of one node go out as one pipeline, the nodes in
parallel, and the hits come back in op order. What a single server gives per batch, the Cluster
gives per group: the ops of one group are applied atomically and in order, those of different
groups independently (no rule reads two groups, so no hit depends on it).

Writes reach a master's replica asynchronously: a master that dies takes its last writes with it,
unless `wait_replicas` makes every call wait (`WAIT`) for that many replicas to acknowledge them,
at most `wait_timeout_ms`. See docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auditflow.backends.state.base import MAX_ENTRIES, MAX_SAMPLE_EVENTS, Hit, WindowOp, WindowState
from auditflow.backends.state.cluster_url import ClusterUrl, parse_cluster_url
from auditflow.backends.state.memory import DEFAULT_GRACE_MS
from auditflow.backends.state.redis import _SCRIPT, decode_reply, encode_op, mapped_errors, window_key
from auditflow.errors import BackendUnavailable
from auditflow.tls import TlsOptions

__all__ = ["ClusterUrl", "RedisClusterWindowState", "cluster_key", "parse_cluster_url"]

# After a WAIT that timed out, how long a node's calls go without waiting.
_SKIP_WAIT_S = 5.0

# Errors after which the topology may have changed (a failover, a node gone): the call is sent
# again once the slots have been read anew. A call whose reply was lost may have been applied;
# applying it again only replays its live alerts (base.py, 1).
_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    SlotNotCoveredError,
    OSError,
)


def cluster_key(rule_id: str, group_key: str) -> str:
    """The key suffix of one (rule, group) on a Cluster: `window_key` as the hash tag, "%" and "}"
    escaped (a tag ends at the first "}"), so the escaping stays unambiguous."""
    tag = window_key(rule_id, group_key).replace("%", "%25").replace("}", "%7D")
    return "{" + tag + "}"


_slot_tags: list[str] = []


def _slot_tag(slot: int) -> str:
    """A short string whose hash slot is `slot`: the hash tag of that slot's arrival counter."""
    if not _slot_tags:
        tags: dict[int, str] = {}
        number = 0
        while len(tags) < 16384:
            tags.setdefault(key_slot(str(number).encode()), str(number))
            number += 1
        _slot_tags.extend(tags[s] for s in range(16384))
    return _slot_tags[slot]


@contextlib.contextmanager
def _cluster_errors(operation: str) -> Iterator[None]:
    """mapped_errors, and the Cluster's own transient states as BackendUnavailable."""
    try:
        with mapped_errors(operation):
            yield
    except _TRANSIENT as exc:
        raise BackendUnavailable(f"redis cluster is unavailable: {exc}") from exc
    except RedisClusterException as exc:  # no node reachable, slots not covered
        raise BackendUnavailable(f"redis cluster is unavailable: {exc}") from exc


class RedisClusterWindowState(WindowState):
    """Window state shared through a Redis Cluster; keys live under `key_prefix`."""

    holds_payloads = False  # sent to Redis

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "auditflow:",
        grace_ms: int = DEFAULT_GRACE_MS,
        max_entries: int = MAX_ENTRIES,
        max_connections: int = 16,
        socket_timeout: float = 10.0,
        retries: int = 6,
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix)
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError("the key prefix of a Redis Cluster state cannot hold '{' or '}' (they mark hash tags)")
        self.parsed = parse_cluster_url(url)
        self.tls = tls
        self._grace_ms = grace_ms
        self._max_entries = max(1, max_entries)
        self._max_connections = max_connections
        self._socket_timeout = socket_timeout
        self._retries = retries
        self._client: RedisCluster | None = None
        self._sha: str | None = None
        self.unreplicated_calls = 0  # calls whose WAIT saw fewer than wait_replicas replicas, or not waited for
        self.unreplicated_by_node: Counter[str] = Counter()  # the same, by node name ("host:port")
        self._short_until: dict[str, float] = {}  # node -> no WAIT before this time (monotonic)

    async def start(self) -> None:
        """Create the client; it reads the slots on first use, so this succeeds while the Cluster is down."""
        if self._client is not None:
            return
        parsed = self.parsed
        options: dict[str, Any] = {}
        if parsed.tls:
            options["ssl"] = True
            if self.tls is not None:
                options.update(self.tls.redis_options())
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
            username=parsed.username,
            password=parsed.password,
            decode_responses=False,  # payloads are arbitrary bytes
            max_connections=self._max_connections,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            # MOVED and ASK are followed, a lost node makes the slots be read again; a failover
            # takes the node timeout and an election, so the retries span a few seconds.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), self._retries),
            require_full_coverage=True,
            **options,
        )
        self._sha = None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        client = self._require_client()
        with _cluster_errors("ping"):
            await client.ping(target_nodes=RedisCluster.PRIMARIES)

    def key_of(self, kind: str, rule_id: str, group_key: str) -> str:
        """The full name of one of a group's keys ("w", "p", "a", "s0", ...)."""
        return f"{self.key_prefix}{kind}:{cluster_key(rule_id, group_key)}"

    def counter_key(self, slot: int) -> str:
        """The arrival counter of one hash slot."""
        return f"{self.key_prefix}n:{{{_slot_tag(slot)}}}"

    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        if not ops:
            return []
        client = self._require_client()
        head: list[bytes | str | int] = [self.key_prefix, self._grace_ms, MAX_SAMPLE_EVENTS, self._max_entries]
        by_slot: dict[int, list[int]] = {}
        encoded: list[bytes] = []
        for index, op in enumerate(ops):
            base = cluster_key(op.rule_id, op.group_key)
            encoded.append(encode_op(op, base))
            by_slot.setdefault(key_slot(base.encode()), []).append(index)
        calls = [(self.counter_key(slot), [*head, *(encoded[i] for i in indices)]) for slot, indices in by_slot.items()]
        with _cluster_errors("window script"):
            replies = await self._call_all(client, calls)
        hits: list[Hit] = []
        for indices, reply in zip(by_slot.values(), replies, strict=True):
            for hit in decode_reply(reply, [ops[i] for i in indices]):
                hit.op_index = indices[hit.op_index]
                hits.append(hit)
        if len(by_slot) > 1:
            hits.sort(key=lambda hit: hit.op_index)
        return hits

    async def _call_all(self, client: RedisCluster, calls: list[tuple[str, list[Any]]]) -> list[list[bytes]]:
        """The reply of every (counter key, args) script call: one pipeline per node, the nodes in
        parallel; calls that meet NOSCRIPT load the script and go again, calls that meet a changed
        topology go again once redis-py has read the slots anew."""
        replies: list[list[bytes] | None] = [None] * len(calls)
        pending = list(range(len(calls)))
        backoff = ExponentialBackoff(cap=1.0, base=0.1)
        failures = rounds = 0
        while pending:
            rounds += 1
            if rounds > 2 * self._retries + 2:
                raise BackendUnavailable("redis cluster: the window script could not be run on every node")
            try:
                if self._sha is None:
                    self._sha = str(await client.script_load(_SCRIPT))
                results = await self._pipeline(client, [calls[i] for i in pending])
            except (*_TRANSIENT, RedisClusterException) as exc:  # before any node answered
                results = [exc] * len(pending)
            again: list[int] = []
            error: BaseException | None = None
            for index, result in zip(pending, results, strict=True):
                if isinstance(result, NoScriptError):
                    self._sha = None  # a restarted or promoted node: its script cache is empty
                    again.append(index)
                elif isinstance(result, (*_TRANSIENT, RedisClusterException)):
                    error = result
                    again.append(index)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    replies[index] = result
            if error is not None:
                failures += 1
                if failures > self._retries:
                    raise error
                await client.aclose()  # connections to a lost node go; the slots are read anew
                await asyncio.sleep(backoff.compute(failures))
            pending = again
        return [reply if reply is not None else [] for reply in replies]

    async def _pipeline(self, client: RedisCluster, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """One EVALSHA per call, grouped by node into pipelines (redis-py follows MOVED and ASK
        itself); with `wait_replicas`, each node's pipeline ends with WAIT on its connection."""
        sha = self._sha
        assert sha is not None
        pipe = client.pipeline(transaction=False)
        wait = self.parsed.wait_replicas
        if not wait:
            for key, args in calls:
                pipe.execute_command("EVALSHA", sha, 1, key, *args)
            return list(await pipe.execute(raise_on_error=False))
        by_node: dict[str, list[int]] = {}
        nodes: dict[str, ClusterNode] = {}
        if client._initialize:  # the node of each slot must be known to place the WAITs
            await client.initialize()
        for position, (key, _) in enumerate(calls):
            node = client.get_node_from_key(key)
            if node is None:
                raise SlotNotCoveredError(f"no node serves the slot of {key}")
            nodes[node.name] = node
            by_node.setdefault(node.name, []).append(position)
        order: list[int] = []  # the call of each pipelined command, -1 - n for the WAIT of node n
        wanted: list[int] = []
        for n, (name, positions) in enumerate(by_node.items()):
            for position in positions:
                key, args = calls[position]
                pipe.execute_command("EVALSHA", sha, 1, key, *args)
                order.append(position)
            # A node whose last WAIT timed out (a master whose replica failed over to it has none
            # until one joins) is not waited for again for a while: each wait would cost the timeout.
            wanted.append(0 if self._short_until.get(name, 0.0) > time.monotonic() else wait)
            if wanted[n] > 0:
                pipe.execute_command("WAIT", wanted[n], self.parsed.wait_timeout_ms, target_nodes=nodes[name])
                order.append(-1 - n)
            else:
                self._count_unreplicated(name, len(positions))
        results = await pipe.execute(raise_on_error=False)
        out: list[Any] = [None] * len(calls)
        for position, result in zip(order, results, strict=True):
            if position >= 0:
                out[position] = result
            elif isinstance(result, int) and result < wanted[-1 - position]:
                # Acknowledged by fewer replicas than asked within the timeout (a lagging or lost
                # replica): applied all the same, counted.
                name, positions = list(by_node.items())[-1 - position]
                self._count_unreplicated(name, len(positions))
                self._short_until[name] = time.monotonic() + _SKIP_WAIT_S
        return out

    def _count_unreplicated(self, node: str, calls: int) -> None:
        self.unreplicated_calls += calls
        self.unreplicated_by_node[node] += calls

    def _require_client(self) -> RedisCluster:
        if self._client is None:
            raise RuntimeError("RedisClusterWindowState used before start()")
        return self._client
