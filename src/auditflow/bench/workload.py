"""Synthetic workloads whose alerts are known in advance: benign noise that no default rule fires
on, plus failed-login bursts for unique (user, host) groups, each of which must become exactly one
`failed-login-burst` alert whose id the bench computes before sending anything."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import orjson

from auditflow.backends.state.base import derived_alert_id
from auditflow.model.timeutil import format_utc

BURST_RULE = "failed-login-burst"
BURST_SIZE = 3  # the default rule's count: three failures open one alert

# Benign event types and their default weights. Every type reaches at least one rule's index, so
# the detector does real work for noise too; none of them can fire (see `_noise`).
DEFAULT_MIX: dict[str, float] = {
    "user_login": 40,
    "user_logout": 20,
    "file_modified": 15,
    "sudo_command": 10,
    "service_state_change": 5,
    "group_modified": 5,
    "user_created": 5,
}

_NOISE_DETAILS: dict[str, str] = {
    # Constant JSON fragments: the values are chosen so that no default rule's conditions hold.
    "user_login": '"action_result":"SUCCESS","details":{"method":"ssh","source_ip":"10.0.1.7"}',
    "user_logout": '"action_result":"SUCCESS","details":{"session_seconds":1234}',
    "file_modified": '"action_result":"SUCCESS","details":{"resource":"/srv/app/config.yaml"}',
    "sudo_command": '"action_result":"SUCCESS","details":{"command":"systemctl status nginx"}',
    "service_state_change": '"action_result":"SUCCESS","details":{"service":"nginx","state":"stopped","expected":true}',
    "group_modified": '"action_result":"SUCCESS","details":{"group":"developers","member":"bob","action":"add"}',
    "user_created": '"action_result":"SUCCESS","details":{"new_user":"intern","groups":["users"]}',
}


def parse_mix(text: str) -> dict[str, float]:
    """`user_login=40,file_modified=10` -> weights; every type must be one the bench can generate."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in _NOISE_DETAILS:
            raise ValueError(f"unknown event type {name!r}; choose from {', '.join(_NOISE_DETAILS)}")
        mix[name] = float(weight or 1)
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the event mix needs at least one type with a positive weight")
    return mix


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    events: int
    batch_size: int = 1000
    users: int = 1000
    hosts: int = 50
    attack_share: float = 0.01  # share of events that belong to attack bursts
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 1


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    alert_id: str
    rule_id: str
    user_id: str
    server_hostname: str
    batch: int  # index of the batch that completes the burst


@dataclass
class Workload:
    """Pre-encoded request bodies (JSON arrays) and the alerts they must produce."""

    spec: WorkloadSpec
    bodies: list[bytes]
    sizes: list[int]
    expected: dict[str, ExpectedAlert]
    by_batch: dict[int, list[str]]
    start: datetime  # batch i carries the event time start + i ms

    def event_time(self, batch: int) -> datetime:
        return self.start + timedelta(milliseconds=batch)

    @property
    def events(self) -> int:
        return sum(self.sizes)

    def truncated(self, batches: int) -> Workload:
        """The first `batches` batches and the alerts they must produce (a run cut short by time)."""
        if batches >= len(self.bodies):
            return self
        expected = {k: v for k, v in self.expected.items() if v.batch < batches}
        by_batch = {k: v for k, v in self.by_batch.items() if k < batches}
        return Workload(self.spec, self.bodies[:batches], self.sizes[:batches], expected, by_batch, self.start)


def _uuid(rng: random.Random) -> str:
    return str(UUID(int=rng.getrandbits(128), version=4))


def _event(event_id: str, event_type: str, ts: str, user: str, host: str, rest: str) -> str:
    return (
        f'{{"event_id":"{event_id}","event_type":"{event_type}","timestamp":"{ts}",'
        f'"source_service":"bench","server_hostname":"{host}","user_id":"{user}","severity":"INFO",{rest}}}'
    )


def build(spec: WorkloadSpec, start: datetime | None = None) -> Workload:
    """Every batch is one JSON array; a burst never spans two batches, so its three failures reach
    the window state together and in order, whichever replica takes the batch."""
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible load, not security  # nosec B311
    base = (start or datetime.now(UTC)).replace(microsecond=0)
    types = list(spec.mix)
    weights = [spec.mix[t] for t in types]
    bodies: list[bytes] = []
    sizes: list[int] = []
    expected: dict[str, ExpectedAlert] = {}
    by_batch: dict[int, list[str]] = {}
    burst_probability = spec.attack_share / BURST_SIZE
    remaining = spec.events
    bursts = 0
    while remaining > 0:
        size = min(spec.batch_size, remaining)
        index = len(bodies)
        ts = format_utc(base + timedelta(milliseconds=index))
        parts: list[str] = []
        noise_types = iter(rng.choices(types, weights, k=size))
        while len(parts) < size:
            if size - len(parts) >= BURST_SIZE and rng.random() < burst_probability:
                user, host = f"atk-{spec.seed}-{bursts}", f"h{rng.randrange(spec.hosts)}"
                bursts += 1
                ids = [_uuid(rng) for _ in range(BURST_SIZE)]
                for event_id in ids:
                    parts.append(_event(event_id, "user_login", ts, user, host, '"action_result":"FAILURE"'))
                group_key = orjson.dumps([user, host]).decode()
                alert_id = derived_alert_id(BURST_RULE, group_key, ids[-1])
                expected[alert_id] = ExpectedAlert(alert_id, BURST_RULE, user, host, index)
                by_batch.setdefault(index, []).append(alert_id)
                continue
            event_type = next(noise_types)
            user, host = f"u{rng.randrange(spec.users)}", f"h{rng.randrange(spec.hosts)}"
            parts.append(_event(_uuid(rng), event_type, ts, user, host, _NOISE_DETAILS[event_type]))
        bodies.append(("[" + ",".join(parts) + "]").encode())
        sizes.append(size)
        remaining -= size
    return Workload(spec, bodies, sizes, expected, by_batch, base)


def open_windows(users: int, batch_size: int, seed: int = 1) -> Iterator[bytes]:
    """One failed login for each of `users` distinct users: every one opens threshold and sequence
    windows that stay open (below the count), which is what the memory scenario measures."""
    rng = random.Random(seed)  # noqa: S311 - reproducible load, not security  # nosec B311
    ts = format_utc(datetime.now(UTC))
    for start in range(0, users, batch_size):
        parts = [
            _event(_uuid(rng), "user_login", ts, f"w{seed}-{i}", "h0", '"action_result":"FAILURE"')
            for i in range(start, min(start + batch_size, users))
        ]
        yield ("[" + ",".join(parts) + "]").encode()
