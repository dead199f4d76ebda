"""Shared window state in Redis (`redis://`): every `apply()` batch is one call of one Lua script,
so de-duplication, windows and suppression are atomic across any number of analysis replicas."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auditflow.backends.state.base import MAX_ENTRIES, MAX_SAMPLE_EVENTS, Hit, WindowOp, WindowState
from auditflow.backends.state.memory import DEFAULT_GRACE_MS
from auditflow.errors import BackendError, BackendUnavailable
from auditflow.tls import TlsOptions

__all__ = ["RedisWindowState", "decode_reply", "encode_op", "mapped_errors", "window_key"]

# The status of a hit in the script's reply.
_REPEAT, _NEW, _REPLAY = 0, 1, 2

_SCRIPT = resources.files("auditflow.backends.state").joinpath("window.lua").read_text(encoding="utf-8")


@contextlib.contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """The one place where redis-py errors become the project's: a lost or refused connection is
    BackendUnavailable (retry later), anything the server answered with is BackendError."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BackendUnavailable(f"redis is unreachable: {exc}") from exc
    except RedisError as exc:
        raise BackendError(f"redis {operation} failed: {exc}") from exc


def window_key(rule_id: str, group_key: str) -> str:
    """The key suffix of one (rule, group). The length prefix keeps it unambiguous whatever the
    rule id and group key contain ("a:b" + "c" never meets "a" + "b:c")."""
    return f"{len(rule_id)}:{rule_id}:{group_key}"


class RedisWindowState(WindowState):
    """Window state shared through Redis; keys live under `key_prefix`."""

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
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix)
        self.tls = tls
        self._grace_ms = grace_ms
        self._max_entries = max(1, max_entries)
        self._max_connections = max_connections
        self._socket_timeout = socket_timeout
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def start(self) -> None:
        """Create the pool; connections open lazily, so this succeeds while Redis is down."""
        if self._client is not None:
            return
        # redis-py takes ssl_* keywords only for rediss:// (a plain connection refuses them).
        tls = self.tls.redis_options() if self.tls is not None and self.url.startswith("rediss") else {}
        self._client = aioredis.Redis.from_url(
            self.url,
            **tls,
            decode_responses=False,  # payloads are arbitrary bytes
            max_connections=self._max_connections,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=5.0,
            health_check_interval=30,
            # No silent retry: a batch whose reply was lost has been applied; the caller gets
            # BackendUnavailable and decides (applying it again only replays its live alerts).
            retry=Retry(NoBackoff(), 0),
        )
        # EVALSHA, loading the script again when the server answers NOSCRIPT (after a restart).
        self._script = self._client.register_script(_SCRIPT)

    async def aclose(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        client = self._require_client()
        with mapped_errors("ping"):
            await client.ping()

    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        if not ops:
            return []
        self._require_client()
        assert self._script is not None
        args: list[bytes | str | int] = [self.key_prefix, self._grace_ms, MAX_SAMPLE_EVENTS, self._max_entries]
        args += (encode_op(op, window_key(op.rule_id, op.group_key)) for op in ops)
        with mapped_errors("window script"):
            reply = await self._script(keys=[self.key_prefix + "n"], args=args)
        return decode_reply(reply, ops)

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisWindowState used before start()")
        return self._client


# The step lists of ops as the script reads them, by tuple: a rule has a few.
_step_counts: dict[tuple[int, ...], str] = {}
_step_lists: dict[tuple[int, ...], str] = {}


def encode_op(op: WindowOp, base: str) -> bytes:
    """One op as one script argument: a header line of numbers and lengths, then the strings (see
    window.lua); `base` names the op's keys (and, with an empty `new_alert_id`, the rule and group
    the script derives the alert id from). Counts below one are read as one, as in the memory
    backend."""
    event_id, alert_id, distinct = op.event_id, op.new_alert_id, op.distinct
    steps = _step_counts.get(op.step_counts)
    if steps is None:
        steps = _step_counts[op.step_counts] = ",".join(str(max(1, n)) for n in op.step_counts)
    matched = _step_lists.get(op.matched_steps)
    if matched is None:
        matched = _step_lists[op.matched_steps] = ",".join(map(str, op.matched_steps))
    kind: str = op.kind if op.ordered or op.kind != "sequence" else "unordered"
    if distinct is None:
        distinct = ""
    else:
        kind = "distinct"
    strings = f"{base}{event_id}{alert_id}{distinct}"
    if strings.isascii():  # lengths in characters are lengths in bytes
        sizes = f"{len(base)} {len(event_id)} {len(alert_id)} {len(distinct)}"
    else:
        sizes = " ".join(str(len(part.encode())) for part in (base, event_id, alert_id, distinct))
    head = f"{kind} {op.ts_ms} {op.window_ms} {op.suppress_ms} {max(1, op.count)} {steps} {matched} {sizes}\n"
    return (head + strings).encode() + op.payload


def decode_reply(reply: list[bytes], ops: Sequence[WindowOp]) -> list[Hit]:
    """The hits of one script call over `ops`, in op order, indexed into `ops`."""
    hits: list[Hit] = []
    replayed: dict[str, list[tuple[str, bytes]]] = {}  # alert id -> the samples of its last replay
    position = 0
    while position < len(reply):
        fields = reply[position].split(b" ", 6)
        index, status, occurrences, first_ms, last_ms, count = map(int, fields[:6])
        op = ops[index]
        position += 1
        alert_id = fields[6].decode()
        if count < 0:
            events = list(replayed[alert_id])
        elif count:
            pairs = reply[position : position + 2 * count]
            events = [(pairs[i].decode(), pairs[i + 1]) for i in range(0, len(pairs), 2)]
            position += 2 * count
        elif status == _REPLAY and op.kind != "match":
            events = []  # the alert's events are no longer held
        else:
            events = [(op.event_id, op.payload)]
        if status == _REPLAY and count >= 0:
            replayed[alert_id] = events
        hits.append(Hit(index, alert_id, status == _NEW, occurrences, first_ms, last_ms, events, status == _REPLAY))
    return hits
